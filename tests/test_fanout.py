"""One archive on many cores: chunks cut by one reader, parsed by worker processes or Ray tasks,
committed in order by the driver; exactly once whoever is killed."""

from __future__ import annotations

import contextlib
import gzip
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from conftest import run_cli
from quackae import synth
from quackae.dataset import store
from quackae.ingest import fanout
from quackae.ingest.flatten import Options, _make_processor, flatten
from quackae.ingest.sources import iter_lines

ARGS = ["--max_tokens", "64", "--vocab_size", "600", "--quiet"]


def read_rows(root: Path):
    """Every committed row (all columns), sorted by row id."""
    return store.Dataset(root).read_columns(list(store.SCHEMA.names)).sort_by("row_id")


def shard_files(root: Path) -> list[tuple[str, int]]:
    """The committed shard files and their row counts, in commit order."""
    return [(s["file"], s["rows"]) for s in store.read_manifest(root)["shards"]]


def rejects(root: Path) -> list[str]:
    """The lines of every rejects file, by file name."""
    return [
        line
        for p in sorted((root / "rejects").glob("*.jsonl"))
        for line in p.read_text().splitlines()
    ]


@pytest.fixture(scope="module")
def one_archive(tmp_path_factory) -> Path:
    """One v2 HTTP archive of 800 measurements (the only source: one reader, many workers)."""
    return synth.write_archive(
        tmp_path_factory.mktemp("one"), 800, seed=11, fmt="v2", scan="http"
    ).archive


@pytest.fixture(scope="module")
def clean(one_archive: Path, tmp_path_factory) -> Path:
    """The archive flattened by ``--workers 1`` (the reference every other run must equal)."""
    root = tmp_path_factory.mktemp("clean") / "ds"
    done = run_cli(
        "flatten", "--source", one_archive, "--storage_path", root, "--chunk_lines", "60", *ARGS
    )
    assert done.returncode == 0, done.stderr
    return root


def test_two_workers_on_one_archive_equal_one_worker(
    one_archive: Path, clean: Path, tmp_path: Path
) -> None:
    two = tmp_path / "two"
    done = run_cli(
        "flatten",
        "--source",
        one_archive,
        "--storage_path",
        two,
        "--chunk_lines",
        "60",
        "--workers",
        "2",
        *ARGS,
    )
    assert done.returncode == 0, done.stderr
    assert len(shard_files(clean)) >= 10  # one archive, many chunks
    assert shard_files(two) == shard_files(clean)  # same shards, same order
    assert read_rows(two).equals(read_rows(clean))  # same row ids, tokens, labels, everything
    assert store.read_manifest(two)["sources"] == store.read_manifest(clean)["sources"]


def test_bad_lines_are_rejected_the_same_in_parallel(tmp_path: Path) -> None:
    archive = synth.write_archive(tmp_path / "raw", 300, seed=3, fmt="v2", scan="http").archive
    lines = [item.data for item in iter_lines(archive)]
    src = tmp_path / "src"
    src.mkdir()
    bad = [b"{not json", b"[1, 2]", b'{"blob": "' + b"a" * (9 * 2**20) + b'"}']
    mixed = []
    for i, line in enumerate(lines):
        mixed.append(line)
        if i % 37 == 5:
            mixed.append(bad[i % 3])
    with gzip.open(src / "CP_Quack-http-2021-10-11-01-01-01.jsonl.gz", "wb") as f:
        f.write(b"\n".join(mixed) + b"\n")
    outs = {}
    for workers in (1, 2):
        outs[workers] = tmp_path / f"w{workers}"
        done = run_cli(
            "flatten",
            "--source",
            src,
            "--storage_path",
            outs[workers],
            "--chunk_lines",
            "40",
            "--workers",
            workers,
            *ARGS,
        )
        assert done.returncode == 0, done.stderr
    assert read_rows(outs[2]).equals(read_rows(outs[1]))
    assert rejects(outs[2]) == rejects(outs[1])
    reasons = Counter(json.loads(r)["reason"].split(":")[0] for r in rejects(outs[1]))
    assert (
        reasons["invalid JSON"] >= 2
        and reasons["unknown shape"] >= 2
        and reasons["line too long (> 8388608 bytes), skipped"] >= 2
    )


class _Shuffled:
    """Runs jobs for real, but hands results back late, newest first, and each one twice."""

    slots = 6

    def __init__(self, root: Path) -> None:
        self.inline = fanout.InlineExecutor(_make_processor, str(root), Options(max_tokens=64))
        self.held: list[tuple[int, tuple]] = []

    def submit(self, seq: int, job: fanout.ChunkJob) -> None:
        self.inline.submit(seq, job)
        self.held += self.inline.wait()

    def wait(self) -> list[tuple[int, tuple]]:
        held, self.held = self.held[::-1], []
        return held + held

    def close(self) -> None:
        pass


def test_out_of_order_results_are_committed_in_order_once(
    one_archive: Path, clean: Path, tmp_path: Path
) -> None:
    root = tmp_path / "ds"
    flatten(
        [], root, Options(max_tokens=64), tokenizer=clean / store.TOKENIZER, progress=False
    )  # an empty dataset
    commits: list[tuple] = []
    jobs = fanout.cut_all([(str(one_archive), "k" * 32, 0, 0)], 100, 2**30)
    fanout.drive(jobs, _Shuffled(root), commits.append, lambda entry: None)
    chunk_msgs = [m for m in commits if m[0] == "commit"]
    assert [m[4] for m in chunk_msgs] == list(
        range(1, len(chunk_msgs) + 1)
    )  # chunk 0, 1, 2, ... once each
    assert [m[3] for m in chunk_msgs] == sorted(m[3] for m in chunk_msgs)  # lines_done only grows
    assert chunk_msgs[-1][5] and not any(m[5] for m in chunk_msgs[:-1])  # done only on the last
    assert sum(m[2]["rows"] for m in chunk_msgs if m[2]) == store.read_manifest(clean)["length"]


def _wait_for_shards(
    root: Path, at_least: int, proc: subprocess.Popen, deadline: float = 120
) -> None:
    end = time.time() + deadline
    while time.time() < end and proc.poll() is None:
        with contextlib.suppress(FileNotFoundError, ValueError, store.StoreError):
            if len(store.read_manifest(root)["shards"]) >= at_least:
                return
        time.sleep(0.02)


def test_killed_driver_of_two_workers_resumes_to_identical_rows(
    one_archive: Path, clean: Path, tmp_path: Path
) -> None:
    killed = tmp_path / "killed"
    args = [
        "flatten",
        "--source",
        one_archive,
        "--storage_path",
        killed,
        "--chunk_lines",
        "60",
        "--workers",
        "2",
        *ARGS,
    ]
    proc = subprocess.Popen([sys.executable, "-m", "quackae", *map(str, args)])
    _wait_for_shards(killed, 3, proc)
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, alive = psutil.wait_procs(children, timeout=15)  # the workers notice and stop by themselves
    assert not alive
    partial = store.read_manifest(killed)["length"]
    assert 0 < partial < store.read_manifest(clean)["length"]
    rerun = run_cli(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert read_rows(killed).equals(read_rows(clean))
    assert shard_files(killed) == shard_files(clean)


def test_killed_worker_process_is_replaced_and_rows_land_once(
    one_archive: Path, clean: Path, tmp_path: Path
) -> None:
    root = tmp_path / "ds"
    args = [
        "flatten",
        "--source",
        one_archive,
        "--storage_path",
        root,
        "--chunk_lines",
        "60",
        "--workers",
        "2",
        *ARGS,
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "quackae", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_shards(root, 2, proc)
    workers = [
        p for p in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(p.cmdline())
    ]
    assert workers
    workers[0].kill()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "worker process died" in err
    assert read_rows(root).equals(read_rows(clean))
    assert store.read_manifest(root)["length"] == store.read_manifest(clean)["length"]


# --------------------------------------------------------------------------- on a Ray cluster


def _task_workers(cluster) -> list[psutil.Process]:
    """Worker processes of ``cluster`` running an ingest task right now."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "raylet" in cmd and str(cluster.temp_dir) in cmd:
            with contextlib.suppress(psutil.Error):
                found += [
                    c
                    for c in proc.children(recursive=True)
                    if fanout.RAY_TASK_NAME in " ".join(c.cmdline())
                ]
    return found


def test_ray_cluster_rows_equal_local_even_when_a_task_is_killed(
    ray_cluster, one_archive: Path, clean: Path, tmp_path: Path
) -> None:
    root = tmp_path / "ray"
    cmd = [
        sys.executable,
        "-m",
        "quackae",
        "flatten",
        "--source",
        str(one_archive),
        "--storage_path",
        str(root),
        "--chunk_lines",
        "60",
        "--ray_address",
        ray_cluster.address,
        *ARGS,
    ]
    proc = subprocess.Popen(
        cmd, env=ray_cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    killed = 0
    end = time.time() + 240
    while not killed and proc.poll() is None and time.time() < end:
        for victim in _task_workers(ray_cluster):  # a task mid-run: its worker process dies
            with contextlib.suppress(psutil.Error):
                victim.kill()
                killed += 1
                break
        time.sleep(0.01)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert killed == 1
    assert read_rows(root).equals(read_rows(clean))
    assert shard_files(root) == shard_files(clean)
    assert "rows from" in out


def test_ray_driver_killed_then_rerun_gives_identical_rows(
    ray_cluster, one_archive: Path, clean: Path, tmp_path: Path
) -> None:
    root = tmp_path / "ray"
    cmd = [
        sys.executable,
        "-m",
        "quackae",
        "flatten",
        "--source",
        str(one_archive),
        "--storage_path",
        str(root),
        "--chunk_lines",
        "60",
        "--ray_address",
        ray_cluster.address,
        *ARGS,
    ]
    proc = subprocess.Popen(
        cmd, env=ray_cluster.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _wait_for_shards(root, 3, proc, deadline=240)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < store.read_manifest(root)["length"] < store.read_manifest(clean)["length"]
    rerun = subprocess.run(cmd, env=ray_cluster.env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert read_rows(root).equals(read_rows(clean))
    assert shard_files(root) == shard_files(clean)


def test_ingest_processes_skip_pyarrows_pandas_probe_and_keep_pandas_usable(tmp_path: Path) -> None:
    """After ``skip_pandas_probe`` pyarrow converts and writes without importing pandas, and a later
    ``to_pandas`` / ``from_pandas`` still works (a fresh process: the probe is per process)."""
    code = f"""
import sys
import pyarrow as pa, pyarrow.parquet as pq
from quackae.ingest.fanout import skip_pandas_probe
skip_pandas_probe()
table = pa.table({{"a": pa.array([1, 2]), "b": ["x", "y"]}})
pq.write_table(table, {str(tmp_path / "t.parquet")!r})
assert "pandas" not in sys.modules, "pyarrow imported pandas"
frame = pq.read_table({str(tmp_path / "t.parquet")!r}).to_pandas()
assert frame.shape == (2, 2) and pa.Table.from_pandas(frame).num_rows == 2
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
