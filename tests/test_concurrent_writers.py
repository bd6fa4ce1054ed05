"""Concurrent writers on object stores: the fake GCS server and moto's S3, real processes.

The lock object is created with the store's precondition and the manifest is replaced only at
the version last read, so two processes racing for one dataset each land every row once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import run_cli
from quackae import synth
from quackae.dataset import store
from quackae.io import locks, storage

FLAGS = ["--max_tokens", "64", "--chunk_lines", "50", "--quiet"]


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch) -> None:
    """Mirrors of remote datasets go to this test's folder; a short lease keeps waits short."""
    monkeypatch.setenv(store.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(locks.LEASE_ENV, "2")


@pytest.fixture(params=["gcs", "s3"])
def base(request) -> object:
    """A fresh prefix maker on one of the two servers."""
    server = request.getfixturevalue(request.param)
    return lambda bucket, path: server.uri(f"{bucket}-{request.param}", path)


def _spawn(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]


COUNTER = """
import sys, time
from quackae.io import locks, storage
root, rounds = sys.argv[1], int(sys.argv[2])
counter = storage.resolve(root).child("counter")
for _ in range(rounds):
    with locks.writer_lock(root):
        value = int(counter.read_bytes()) if counter.is_file() else 0
        time.sleep(0.1)  # a read-modify-write that two holders at once would break
        counter.write_bytes(str(value + 1).encode())
"""


def test_lock_lets_one_writer_in_at_a_time(base) -> None:
    root = base("locks", "race")
    procs = [_spawn(COUNTER, root, "3") for _ in range(2)]
    _finish(procs)
    counter = storage.resolve(root).child("counter")
    assert int(counter.read_bytes()) == 6  # no increment lost
    assert not storage.resolve(root).child(".quackae.lock").is_file()


COMMITTER = """
import sys
from quackae.dataset import store
root, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
key = (who * 32)[:32]
for i in range(n):
    columns = {name: [None] for name in store.SCHEMA.names}
    columns.update(row_id=[store.row_id(key, i, 0)], line=[i], try_index=[0], censored=[1],
                   length=[3], tokens=[[1, 2, 3]], anomaly=[False])
    entry = store.write_shard(root, f"part-{key[:16]}-{i:05d}", columns, [])
    entry["source"] = key
    store.commit(root, [entry], {key: {"name": who, "done": i == n - 1}})  # no lock held
"""


def test_commits_without_the_lock_land_every_shard_once(base) -> None:
    root = base("commits", "race")
    store.write_manifest(root, store.new_manifest({"vocab_size": 300}, "0" * 64, 64))
    procs = [_spawn(COMMITTER, root, who, "5") for who in ("a", "b")]
    _finish(procs)
    manifest = store.read_manifest(root)
    files = [s["file"] for s in manifest["shards"]]
    assert len(files) == len(set(files)) == 10 and manifest["length"] == 10
    assert {s["source"] for s in manifest["shards"]} == {"a" * 32, "b" * 32}
    assert manifest["censored"] == 10


def test_two_flatten_runs_at_once_land_every_row_once(
    base, tmp_path: Path, synth_signatures
) -> None:
    raw = tmp_path / "raw"
    archives = [
        synth.write_archive(raw, 150, seed=21, fmt="v2", scan="http").archive,
        synth.write_archive(raw, 120, seed=22, fmt="v1", scan="echo").archive,
    ]
    seed = tmp_path / "seed"
    made = run_cli(
        "flatten", "--source", archives[0], "--storage_path", seed, "--vocab_size", "600", *FLAGS
    )
    assert made.returncode == 0, made.stderr
    common = ["--tokenizer", seed / store.TOKENIZER, "--signatures", synth_signatures, *FLAGS]
    remote = base("flatten", "both")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "quackae",
                "flatten",
                "--source",
                str(a),
                "--storage_path",
                remote,
                *map(str, common),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ},
        )
        for a in archives
    ]
    _finish(procs)
    local = tmp_path / "local"
    one = run_cli("flatten", "--source", *archives, "--storage_path", local, *common)
    assert one.returncode == 0, one.stderr
    read = store.Dataset(remote).read_columns(list(store.SCHEMA.names)).sort_by("row_id")
    expected = store.Dataset(local).read_columns(list(store.SCHEMA.names)).sort_by("row_id")
    assert read.num_rows == expected.num_rows > 0
    assert read.equals(expected)  # every row of both runs, once, as one run writes them
    manifest = store.read_manifest(remote)
    assert all(s["done"] for s in manifest["sources"].values()) and len(manifest["sources"]) == 2
    assert not storage.resolve(remote).child(".quackae.lock").is_file()


def test_a_lock_whose_heartbeat_stopped_is_refused_in_one_line(base, tmp_path: Path) -> None:
    """A holder on another host that died: after two leases without a beat, one line."""
    remote = base("stale", "ds")
    lock = storage.resolve(remote).child(".quackae.lock")
    held = {"host": "other-host", "pid": 7, "since": "2026-01-01T00:00:00Z", "lease_s": 0.5}
    lock.write_bytes(json.dumps(held).encode())
    # 60 measurements: enough tries (>= 100) to train a new dataset's tokenizer on
    archive = synth.write_archive(tmp_path / "raw", 60, seed=3, fmt="v2", scan="http").archive
    done = run_cli("flatten", "--source", archive, "--storage_path", remote, *FLAGS, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "other-host" in last and "heartbeat stopped" in last and "delete the lock" in last
    assert [f.name for f in storage.resolve(remote).list_files()] == [".quackae.lock"]
