"""docs/cluster.md's recipe run as written, and what quackae does on an open cluster.

Each cluster lives in a network namespace of its own (``unshare --net``: loopback only, plus
198.51.100.7 on loopback as an address that is not loopback), so the recipe's fixed ports
cannot meet another cluster on this machine and no packet leaves it. Every role starts from an
empty ``HOME`` and a minimal environment, so nothing depends on what ``~/.ray`` holds here.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.dataset as pads
import pytest

from quackae.dataset import store
from quackae.ingest.flatten import Options, flatten
from quackae.io import cluster
from quackae.model import config

DOC = Path(__file__).resolve().parents[1] / "docs" / "cluster.md"
BIN = Path(sys.executable).parent
ELSEWHERE = "198.51.100.7"  # TEST-NET-2, on the namespace's loopback device only
ROLES = ("values", "head", "node", "client", "train")


def recipe_blocks() -> dict[str, str]:
    """The ``sh`` blocks of the doc's "Start or join a cluster" section, by role."""
    section = DOC.read_text(encoding="utf-8").split("## Start or join a cluster", 1)[1]
    section = section.split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) == len(ROLES), f"{DOC}: expected {len(ROLES)} sh blocks, found {blocks}"
    return dict(zip(ROLES, blocks, strict=True))


class Namespace:
    """A network namespace held by a sleeping process; commands enter it with ``nsenter``."""

    def __init__(self, temp: Path) -> None:
        self.temp = temp
        setup = f"ip link set lo up && ip addr add {ELSEWHERE}/32 dev lo && echo ready"
        try:
            self.holder = subprocess.Popen(
                ["unshare", "--net", "--", "sh", "-c", f"{setup} && exec sleep 1800"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        except OSError as e:
            pytest.skip(f"needs unshare (util-linux): {e}")
        if self.holder.stdout.readline().strip() != "ready":
            self.holder.kill()
            pytest.skip(f"needs unshare --net (root): {self.holder.stderr.read().strip()}")

    def env(self, home: Path, **extra: str) -> dict[str, str]:
        """A minimal environment: this venv's tools, an own HOME, Ray's files under temp."""
        home.mkdir(parents=True, exist_ok=True)
        keep = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")}
        return {
            **keep,
            "PATH": f"{BIN}:/usr/sbin:/usr/bin:/bin",
            "HOME": str(home),
            "RAY_TMPDIR": str(self.temp),
            "RAY_USAGE_STATS_ENABLED": "0",
            **extra,
        }

    def run(self, script: str, env: dict[str, str], timeout: float = 240):
        """Run a bash script inside the namespace (``set -eu``: the first failing line ends it)."""
        return subprocess.run(
            ["nsenter", "-t", str(self.holder.pid), "-n", "--", "bash", "-c", "set -eu\n" + script],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def close(self) -> None:
        """Stop every Ray process of this namespace's clusters, then the holder."""
        cluster.stop_local(self.temp)
        self.holder.kill()
        self.holder.wait()


@dataclass
class Site:
    """One namespace's cluster: where its files are and the values block the test uses."""

    ns: Namespace
    temp: Path
    archive: Path

    def values(self, **changes: str) -> str:
        """The test's values block (the doc's is the reader's own): the head on loopback."""
        values = {
            "HEAD_IP": "127.0.0.1",
            "RAY_PORT": "6379",
            "CPUS": "1",
            "TOKEN_COPY": str(self.temp / "copied_token"),
            "SOURCES": str(self.archive),
            "DATASET": str(self.temp / "dataset"),
            **changes,
        }
        return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items())


@contextlib.contextmanager
def _site(archive: Path) -> Iterator[Site]:
    """A fresh namespace and temp folder; every Ray process in it is stopped after."""
    temp = Path(tempfile.mkdtemp(prefix="qns-", dir="/tmp"))  # Ray's socket paths stay short
    ns = Namespace(temp)
    try:
        yield Site(ns, temp, archive)
    finally:
        ns.close()
        shutil.rmtree(temp, ignore_errors=True)


def _quackae_lines(block: str) -> str:
    """The quackae command(s) of a block (the rest sets up the token and its mode)."""
    return "".join(line + "\n" for line in block.splitlines() if line.startswith("quackae "))


def _rows(dataset: Path) -> list[tuple]:
    """(row_id, domain, censored, outcome) of every row of a dataset, sorted."""
    table = pads.dataset(dataset / "shards", format="parquet").to_table(
        columns=["row_id", "domain", "censored", "outcome"]
    )
    return sorted(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))


# --------------------------------------------------------------------------- the recipe


@pytest.fixture(scope="class")
def recipe(archive_v2_http) -> Iterator[Site]:
    """The doc's head and node blocks run as written from empty homes: a two-node cluster."""
    blocks = recipe_blocks()
    with _site(archive_v2_http.archive) as site:
        head = site.ns.run(site.values() + blocks["head"], site.ns.env(site.temp / "head"))
        assert head.returncode == 0, head.stdout[-2000:] + head.stderr[-2000:]
        token = site.temp / "head" / ".ray" / "auth_token"
        shutil.copy(token, site.temp / "copied_token")  # what scp does on a real cluster
        node = site.ns.run(site.values() + blocks["node"], site.ns.env(site.temp / "node"))
        assert node.returncode == 0, node.stdout[-2000:] + node.stderr[-2000:]
        yield site


class TestRecipe:
    def test_the_blocks_say_what_the_issue_asks(self) -> None:
        blocks = recipe_blocks()
        head = blocks["head"]
        assert head.index("ray get-auth-token --generate") < head.index("ray start --head")
        for role in ("head", "node", "client"):
            assert "export RAY_AUTH_MODE=token" in blocks[role], role
        assert "--ray_address" in blocks["client"] and "--ray_address" in blocks["train"]

    def test_the_training_block_parses(self) -> None:
        text = recipe_blocks()["train"].replace("\\\n", " ")
        words = shlex.split(os.path.expandvars(text))
        assert words[:3] == ["python", "-m", "quackae.ae_processor"]
        cfg = config.parse(words[3:])
        assert cfg.ray_address and cfg.ray_nodes == 32 and not cfg.allow_open_cluster

    def test_the_token_is_private_and_the_node_joins(self, recipe: Site) -> None:
        for role in ("head", "node"):
            mode = (recipe.temp / role / ".ray" / "auth_token").stat().st_mode & 0o777
            assert mode == 0o600, (role, oct(mode))
        count = (
            "import ray; ray.init(address='127.0.0.1:6379', log_to_driver=False); "
            "print('alive', sum(n['Alive'] for n in ray.nodes()))"
        )
        env = recipe.ns.env(recipe.temp / "head", RAY_AUTH_MODE="token")
        done = recipe.ns.run(f"python -c {shlex.quote(count)}", env)
        assert done.returncode == 0 and "alive 2" in done.stdout, done.stderr[-2000:]

    @pytest.mark.parametrize("mode", ["token", "unset"])
    def test_a_client_without_the_token_is_refused_in_one_line(
        self, recipe: Site, mode: str
    ) -> None:
        script = recipe.values(DATASET=str(recipe.temp / f"refused-{mode}"))
        script += "export RAY_AUTH_MODE=token\n" if mode == "token" else ""
        script += _quackae_lines(recipe_blocks()["client"])
        done = recipe.ns.run(script, recipe.ns.env(recipe.temp / f"stranger-{mode}"), timeout=120)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr[-3000:]
        assert lines[0].startswith(
            "quackae flatten: error: --ray_address 127.0.0.1:6379: the cluster requires a token "
            "and none is set here"
        ), lines
        assert not (recipe.temp / f"refused-{mode}").exists()  # refused before writing

    def test_a_client_with_the_token_is_admitted(self, recipe: Site, tmp_path: Path) -> None:
        done = recipe.ns.run(
            recipe.values() + recipe_blocks()["client"], recipe.ns.env(recipe.temp / "client")
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert "is open" not in done.stderr
        local = tmp_path / "local"
        flatten([recipe.archive], local, Options(), progress=False)
        assert _rows(recipe.temp / "dataset") == _rows(local)
        assert store.read_manifest(recipe.temp / "dataset")["length"] > 0


# --------------------------------------------------------------------------- an open cluster


@pytest.fixture(scope="class")
def open_site(archive_v2_http) -> Iterator[Site]:
    """A one-node cluster without token authentication, reachable at ELSEWHERE and loopback.

    With a node address that is not loopback Ray's GCS listens on every interface, as on a real
    network; with 127.0.0.1 (the recipe's namespace has nothing else) it listens there only.
    """
    with _site(archive_v2_http.archive) as site:
        head = site.ns.run(
            f"ray start --head --port 6379 --node-ip-address {ELSEWHERE} --num-cpus 1 "
            "--include-dashboard false",
            site.ns.env(site.temp / "head", RAY_AUTH_MODE="disabled"),
        )
        assert head.returncode == 0, head.stdout[-2000:] + head.stderr[-2000:]
        yield site


def _flatten(site: Site, host: str, out: str, *flags: str):
    """``quackae flatten`` of the site's archive into temp/out with ``--ray_address host``."""
    cmd = [
        "quackae",
        "flatten",
        "--source",
        str(site.archive),
        "--storage_path",
        str(site.temp / out),
        "--ray_address",
        f"{host}:6379",
        "--quiet",
        *flags,
    ]
    return site.ns.run(shlex.join(cmd), site.ns.env(site.temp / "client"))


def _open_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("quackae: the Ray cluster")]


class TestOpenCluster:
    def test_on_loopback_it_is_said_in_one_line_and_goes_on(self, open_site: Site) -> None:
        done = _flatten(open_site, "127.0.0.1", "loopback")
        assert done.returncode == 0, done.stderr[-3000:]
        assert _open_lines(done.stderr) == [cluster.open_cluster_line("127.0.0.1:6379")]
        assert "RAY_AUTH_MODE=token" in _open_lines(done.stderr)[0]  # how to close it
        assert store.read_manifest(open_site.temp / "loopback")["length"] > 0

    def test_elsewhere_it_is_refused_before_anything_is_written(self, open_site: Site) -> None:
        done = _flatten(open_site, ELSEWHERE, "elsewhere")
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr[-3000:]
        assert lines[0].startswith(
            f"quackae flatten: error: --ray_address {ELSEWHERE}:6379: this Ray cluster is open"
        )
        assert "--allow_open_cluster" in lines[0]
        assert not (open_site.temp / "elsewhere").exists()

    def test_elsewhere_the_flag_lets_it_go_on_and_it_is_still_said(self, open_site: Site) -> None:
        done = _flatten(open_site, ELSEWHERE, "allowed", "--allow_open_cluster")
        assert done.returncode == 0, done.stderr[-3000:]
        assert _open_lines(done.stderr) == [cluster.open_cluster_line(f"{ELSEWHERE}:6379")]
        assert store.read_manifest(open_site.temp / "allowed")["length"] > 0

    def test_auto_is_asked_after_joining(self, open_site: Site) -> None:
        join = (
            "from quackae.io import cluster\n"
            "try:\n"
            "    cluster.connect('auto')\n"
            "    print('joined')\n"
            "except cluster.ClusterError as e:\n"
            "    print('refused:', e)\n"
        )
        here = open_site.ns.run(f"python -c {shlex.quote(join)}", open_site.ns.env(open_site.temp))
        assert here.stdout.strip() == "joined", here.stderr[-3000:]
        assert _open_lines(here.stderr) == [cluster.open_cluster_line("auto")]
        env = open_site.ns.env(open_site.temp, RAY_ADDRESS=f"{ELSEWHERE}:6379")
        away = open_site.ns.run(f"python -c {shlex.quote(join)}", env)
        assert away.stdout.startswith("refused: --ray_address auto: this Ray cluster is open")

    def test_training_elsewhere_is_refused_too(self, open_site: Site, small_dataset: Path) -> None:
        cmd = [
            "python",
            "-m",
            "quackae.ae_processor",
            "--data_dir",
            str(small_dataset),
            "--storage_path",
            str(open_site.temp / "run"),
            "--ray_address",
            f"{ELSEWHERE}:6379",
            "--ray_nodes",
            "1",
            "--max_epochs",
            "1",
        ]
        done = open_site.ns.run(shlex.join(cmd), open_site.ns.env(open_site.temp / "trainer"))
        last = done.stderr.strip().splitlines()[-1]
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
        assert last.startswith(f"ae_processor: error: --ray_address {ELSEWHERE}:6379: this Ray")
        assert not (open_site.temp / "run" / "last.ckpt").exists()


# --------------------------------------------------------------------------- a local cluster

LOCAL = (
    "import ray\n"
    "from quackae.io import cluster\n"
    "cluster.connect(None, 1)\n"
    "gcs = ray.get_runtime_context().gcs_address\n"
    "print(cluster.probe(gcs), ray.get(ray.remote(lambda: 'ran').remote()))\n"
)


def test_a_local_cluster_needs_a_token_and_keeps_it_private(tmp_path: Path) -> None:
    """quackae's own local cluster, RAY_AUTH_MODE unset: token mode, first without a token
    file (Ray makes one), then with it (on Ray 2.52 the mode set after `import ray` once broke
    this run: the driver sent no token to its own GCS)."""
    with _site(tmp_path) as site:
        home = site.temp / "home"
        for run in ("no token yet", "token from the first run"):
            done = site.ns.run(f"python -c {shlex.quote(LOCAL)}", site.ns.env(home), timeout=180)
            assert done.returncode == 0, (run, done.stderr[-3000:])
            assert done.stdout.split() == ["refused", "ran"], (run, done.stdout)
            assert "is open" not in done.stderr, run
            assert (home / ".ray" / "auth_token").stat().st_mode & 0o777 == 0o600, run


# --------------------------------------------------------------------------- no cluster needed


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:6379", True),
        ("127.8.0.1:6379", True),
        ("localhost:6379", True),
        ("[::1]:6379", True),
        ("10.0.0.5:6379", False),
        ("head.example.org:6379", False),
        ("[2001:db8::1]:6379", False),
    ],
)
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert cluster.is_loopback(address) is loopback


def test_auto_is_this_machine_unless_ray_address_says_otherwise(monkeypatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert cluster.is_loopback("auto")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert not cluster.is_loopback("auto")


def test_every_command_with_ray_address_has_the_flag() -> None:
    parser = config.build_parser()
    assert parser.parse_args([]).allow_open_cluster is False
    assert config.parse(["--allow_open_cluster"]).allow_open_cluster is True
    help_text = subprocess.run(
        [sys.executable, "-m", "quackae", "flatten", "--help"], capture_output=True, text=True
    ).stdout
    assert "--ray_address" in help_text and "--allow_open_cluster" in help_text
