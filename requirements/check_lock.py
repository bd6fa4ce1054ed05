"""Check that this interpreter's packages are exactly a lock file's, and that it covers the project.

``make install`` runs it after installing the lock: ``pip freeze --all --exclude-editable``
(every installed distribution but the editable quackae) must equal the lock's ``name==version``
lines, and every requirement of quackae (its dependencies and the extras installed) must be met
by the lock, so a ``pyproject.toml`` edited without ``make lock`` is caught here.
``--uninstall_extra`` first removes what is installed but not locked (a venv made earlier).
Runs on the standard library and ``packaging`` (which the lock holds).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PROJECT = "quackae"


def canonical(name: str) -> str:
    """A distribution name as PEP 503 compares them (``Foo_Bar`` = ``foo-bar``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    """``{name: version}`` of a pip-compile lock (``name==version \\`` lines, hashes below)."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        found = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", line)
        if found:
            pins[canonical(found.group(1))] = found.group(2)
    return pins


def installed() -> dict[str, str]:
    """``{name: version}`` as ``pip freeze --all --exclude-editable`` lists this interpreter's."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--all", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = {}
    for line in out.splitlines():
        name, sep, version = line.partition("==")
        found[canonical(name.split(" @ ")[0].strip())] = version.strip() if sep else line
    return found


def differences(pins: dict[str, str], have: dict[str, str]) -> list[str]:
    """What differs between the lock and the installed set, one phrase each."""
    out = [f"{n} {have[n]} installed, {v} locked" for n, v in pins.items() if have.get(n, v) != v]
    out += [f"{n} {pins[n]} locked, not installed" for n in sorted(set(pins) - set(have))]
    out += [f"{n} {have[n]} installed, not locked" for n in sorted(set(have) - set(pins))]
    return out


def unmet(pins: dict[str, str], extras: set[str]) -> list[str]:
    """The project's requirements (its own and those of ``extras``) that the lock does not meet."""
    from packaging.requirements import Requirement

    out = []
    for text in metadata.requires(PROJECT) or []:
        req = Requirement(text)
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in {"", *extras}):
            continue
        version = pins.get(canonical(req.name))
        if version is None or not req.specifier.contains(version, prereleases=True):
            out.append(f"{req} (locked: {version or 'absent'})")
    return out


def main() -> int:
    """Exit 0 when the installed set equals the lock and the lock meets the project."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("lock", type=Path, help="the lock file (requirements/lock.txt)")
    p.add_argument(
        "--extras", default="dev,comet", help="extras make installs (default: %(default)s)"
    )
    p.add_argument("--uninstall_extra", action="store_true", help="first remove what is not locked")
    args = p.parse_args()
    pins = read_lock(args.lock)
    have = installed()
    extra = sorted(set(have) - set(pins))
    if args.uninstall_extra and extra:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", *extra], check=True)
        have = installed()
    problems = differences(pins, have)
    needs = unmet(pins, set(filter(None, args.extras.split(","))))
    if needs:
        print(
            f"check_lock: {args.lock} does not meet pyproject.toml: {'; '.join(needs)}: run "
            "`make lock` (it refreshes the lock and runs the suite)",
            file=sys.stderr,
        )
    if problems:
        print(
            f"check_lock: installed packages differ from {args.lock}: {'; '.join(problems)}: "
            "run `make install` (it installs the lock and removes what is not in it)",
            file=sys.stderr,
        )
    if needs or problems:
        return 1
    print(f"check_lock: {len(have)} packages installed exactly as {args.lock}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
