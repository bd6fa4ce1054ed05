"""Sources and datasets on object storage: a real GCS-API server, the real CLI, pyarrow reads."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import run_cli
from quackae import synth
from quackae.dataset import store
from quackae.io import storage
from quackae.model.datamodule import QuackTokenizedDataModule

FLAGS = ["--max_tokens", "64", "--vocab_size", "600", "--chunk_lines", "60", "--quiet"]


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch) -> None:
    """Mirrors of remote datasets go to this test's folder, never to ~/.cache (subprocesses too)."""
    monkeypatch.setenv(store.CACHE_ENV, str(tmp_path / "cache"))


def upload(path: Path, uri: str) -> None:
    storage.resolve(uri).write_bytes(path.read_bytes())


def rows(root: str | Path):
    """Every committed row, sorted by row id (a URI is read through its local mirror)."""
    table = store.Dataset(root).read_columns(list(store.SCHEMA.names))
    return table.sort_by("row_id")


@pytest.fixture(scope="module")
def archives(tmp_path_factory, synth_signatures: Path) -> dict[str, Path]:
    """Two small synth archives (v2 HTTP, v1 echo) and the synth signatures."""
    raw = tmp_path_factory.mktemp("objstore_raw")
    http = synth.write_archive(raw / "d1", 160, seed=11, fmt="v2", scan="http").archive
    echo = synth.write_archive(raw / "d2", 120, seed=12, fmt="v1", scan="echo").archive
    return {"http": http, "echo": echo, "signatures": synth_signatures}


@pytest.fixture(scope="module")
def pair(archives, gcs, tmp_path_factory) -> dict[str, str]:
    """The same two archives flattened locally, and from gs:// (a glob) into a gs:// dataset."""
    for scan, sub in (("http", "d1"), ("echo", "d2")):
        upload(archives[scan], gcs.uri("scans", f"day/{sub}/{archives[scan].name}"))
    upload(
        archives["signatures"] / "blockpage_signatures.json",
        gcs.uri("scans", "day/d1/blockpage_signatures.json"),
    )
    local = tmp_path_factory.mktemp("objstore_local") / "ds"
    sig = ["--signatures", archives["signatures"]]
    done = run_cli(
        "flatten",
        "--source",
        archives["http"],
        archives["echo"],
        "--storage_path",
        local,
        *sig,
        *FLAGS,
    )
    assert done.returncode == 0, done.stderr
    remote = gcs.uri("datasets", "hq/ds")
    glob = gcs.uri("scans", "day/*/CP_Quack-*.tar.gz")
    done = run_cli("flatten", "--source", glob, "--storage_path", remote, *sig, *FLAGS)
    assert done.returncode == 0, done.stderr
    assert "rows" in done.stdout and remote in done.stdout
    return {"local": str(local), "remote": remote, "glob": glob}


def test_gs_sources_to_gs_dataset_equal_the_local_run(pair, archives, gcs) -> None:
    local, remote = pair["local"], pair["remote"]
    manifest = store.read_manifest(remote)
    assert manifest["length"] > 100 and len(manifest["sources"]) == 2
    assert manifest["tokenizer_sha256"] == store.read_manifest(local)["tokenizer_sha256"]
    # the objects are on the server: shards open with pyarrow straight from the bucket
    root = storage.resolve(remote)
    names = sorted(f.path[len(root.path) + 1 :] for f in root.list_files())
    assert "manifest.json" in names and "tokenizer.json" in names and ".quackae.lock" not in names
    counted = sum(
        pq.read_metadata(root.child(s["file"]).path, filesystem=root.fs).num_rows
        for s in manifest["shards"]
    )
    assert counted == manifest["length"] == store.read_manifest(local)["length"]
    # the same rows (ids, labels, tokens) as the same archives flattened from local files
    assert rows(remote).equals(rows(local))
    assert len(manifest["shards"]) > 2  # several chunks committed, as locally
    # a rerun adds nothing; mixing a local source with the URI appends only the new one
    again = run_cli(
        "flatten",
        "--source",
        pair["glob"],
        "--storage_path",
        remote,
        "--signatures",
        archives["signatures"],
        *FLAGS,
    )
    assert again.returncode == 0, again.stderr
    assert "2 source(s) already ingested" in again.stdout
    assert store.read_manifest(remote)["shards"] == manifest["shards"]


def test_s3_sources_to_s3_dataset_equal_the_local_run(pair, archives, s3) -> None:
    """The same code on S3 (moto's S3 server): a glob of s3:// archives into an s3:// dataset."""
    for scan in ("http", "echo"):
        upload(archives[scan], s3.uri("scans", f"day/{scan}/{archives[scan].name}"))
    remote = s3.uri("datasets", "hq/ds")
    sig = ["--signatures", archives["signatures"]]
    done = run_cli(
        "flatten",
        "--source",
        s3.uri("scans", "day/*/CP_Quack-*.tar.gz"),
        "--storage_path",
        remote,
        *sig,
        *FLAGS,
    )
    assert done.returncode == 0, done.stderr
    manifest = store.read_manifest(remote)
    assert (
        len(manifest["sources"]) == 2
        and manifest["length"] == store.read_manifest(pair["local"])["length"]
    )
    root = storage.resolve(remote)
    names = {f.path[len(root.path) + 1 :] for f in root.list_files()}
    assert {"manifest.json", "tokenizer.json"} <= names and ".quackae.lock" not in names
    assert rows(remote).equals(rows(pair["local"]))
    verified = run_cli("inspect", remote, "--json", "--verify")
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["verify"] == {"ok": True, "problems": []}


def test_inspect_and_verify_a_gs_dataset(pair) -> None:
    remote = run_cli("inspect", pair["remote"], "--json", "--verify")
    assert remote.returncode == 0, remote.stderr
    local = run_cli("inspect", pair["local"], "--json")
    got, want = json.loads(remote.stdout), json.loads(local.stdout)
    assert got["verify"] == {"ok": True, "problems": []}
    assert got["path"] == pair["remote"]
    for key in (
        "length",
        "censored",
        "uncensored",
        "per_scan",
        "per_country",
        "top_outcomes",
        "token_length_percentiles",
    ):
        assert got[key] == want[key], key


def test_datamodule_over_gs_yields_the_local_batches(pair, tmp_path: Path) -> None:
    remote = QuackTokenizedDataModule(pair["remote"], batch_size=16, seed=3)
    local = QuackTokenizedDataModule(pair["local"], batch_size=16, seed=3)
    mirror = store.cache_dir(pair["remote"])
    assert remote.data_dir == mirror and mirror.is_relative_to(tmp_path / "cache")
    for split in ("train", "val"):
        got = [b.numpy() for b in getattr(remote, f"{split}_dataloader")()]
        want = [b.numpy() for b in getattr(local, f"{split}_dataloader")()]
        assert len(got) == len(want) > 0
        assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    # a second open downloads nothing: same files, same modification times
    before = {p.name: p.stat().st_mtime_ns for p in (mirror / "shards").iterdir()}
    assert store.local_dataset(pair["remote"]) == mirror
    assert {p.name: p.stat().st_mtime_ns for p in (mirror / "shards").iterdir()} == before


def test_truncated_object_then_complete_one_replaces_it(archives, gcs, tmp_path: Path) -> None:
    data = archives["http"].read_bytes()
    src = gcs.uri("scans2", f"t/{archives['http'].name}")
    remote = gcs.uri("datasets2", "trunc")
    storage.resolve(src).write_bytes(data[: len(data) // 2])
    sig = ["--signatures", archives["signatures"]]
    first = run_cli("flatten", "--source", src, "--storage_path", remote, *sig, *FLAGS)
    assert first.returncode == 1 and "ended early" in first.stdout, first.stdout + first.stderr
    partial = store.read_manifest(remote)["length"]
    upload(archives["http"], src)  # the complete file under the same name
    second = run_cli("flatten", "--source", src, "--storage_path", remote, *sig, *FLAGS)
    assert second.returncode == 0, second.stdout + second.stderr
    local = tmp_path / "local"
    done = run_cli("flatten", "--source", archives["http"], "--storage_path", local, *sig, *FLAGS)
    assert done.returncode == 0, done.stderr
    got, want = rows(remote), rows(local)
    assert 0 < partial < want.num_rows
    assert got.select(["row_id", "censored", "line"]).equals(
        want.select(["row_id", "censored", "line"])
    )
    # the truncated copy's shards were deleted from the bucket, not just dropped from the manifest
    listed = {s["file"] for s in store.read_manifest(remote)["shards"]}
    on_store = {
        f.path.split("/trunc/", 1)[1] for f in storage.resolve(remote).child("shards").list_files()
    }
    assert on_store == listed


def test_killed_run_resumes_and_takes_over_its_dead_lock(archives, gcs, tmp_path: Path) -> None:
    big = synth.write_archive(tmp_path / "raw", 1200, seed=13, fmt="v2", scan="http").archive
    src = gcs.uri("scans3", big.name)
    upload(big, src)
    remote = gcs.uri("datasets3", "killed")
    args = ["--source", src, "--signatures", archives["signatures"], *FLAGS]
    proc = subprocess.Popen(
        [sys.executable, "-m", "quackae", "flatten", "--storage_path", remote, *map(str, args)]
    )
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        found = (
            store.exists(remote, store.MANIFEST) and len(store.read_manifest(remote)["shards"]) >= 3
        )
        if found:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    held = json.loads(storage.resolve(remote).child(".quackae.lock").read_bytes())
    assert (
        held["pid"] == proc.pid and held["host"] == socket.gethostname()
    )  # left behind by the kill
    partial = store.read_manifest(remote)["length"]
    rerun = run_cli("flatten", "--storage_path", remote, *args)
    assert rerun.returncode == 0, rerun.stderr
    local = tmp_path / "clean"
    clean = run_cli("flatten", "--storage_path", local, *args[:1], big, *args[2:])
    assert clean.returncode == 0, clean.stderr
    assert 0 < partial < store.read_manifest(local)["length"]
    assert rows(remote).equals(rows(local))
    assert not storage.resolve(remote).child(".quackae.lock").is_file()


def test_live_writer_lock_refuses_with_one_line(archives, gcs) -> None:
    remote = gcs.uri("datasets4", "locked")
    lock = storage.resolve(remote).child(".quackae.lock")
    lock.write_bytes(
        json.dumps({"host": "other-host", "pid": 4242, "time": "2026-01-01T00:00:00Z"}).encode()
    )
    done = run_cli("flatten", "--source", archives["echo"], "--storage_path", remote, *FLAGS)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert (
        "another writer" in done.stderr
        and "other-host" in done.stderr
        and "delete the lock object" in done.stderr
    )
    assert len(done.stderr.strip().splitlines()) == 1
    assert [f.name for f in storage.resolve(remote).list_files()] == [
        ".quackae.lock"
    ]  # nothing written


def test_unreachable_or_empty_sources_are_one_line(gcs, tmp_path: Path) -> None:
    dead = "gs://anonymous@nobucket/x/*.tar.gz?scheme=http&endpoint_override=127.0.0.1:9&retry_limit_seconds=1"
    done = run_cli("flatten", "--source", dead, "--storage_path", tmp_path / "ds", *FLAGS)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "nobucket" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    empty = gcs.uri("scans5", "none/CP_Quack-*.tar.gz")
    done = run_cli("flatten", "--source", empty, "--storage_path", tmp_path / "ds", *FLAGS)
    assert done.returncode == 2 and "no object matches it" in done.stderr, done.stderr
    assert not (tmp_path / "ds").exists()
    missing = run_cli("inspect", gcs.uri("scans5", "nothing-here"))
    assert (
        missing.returncode == 2
        and "no dataset at" in missing.stderr
        and "Traceback" not in missing.stderr
    )
    dead_ds = (
        "gs://anonymous@nobucket/ds?scheme=http&endpoint_override=127.0.0.1:9&retry_limit_seconds=1"
    )
    done = run_cli("flatten", "--source", empty, "--storage_path", dead_ds, *FLAGS)
    assert (
        done.returncode == 2
        and "Traceback" not in done.stderr
        and len(done.stderr.strip().splitlines()) == 1
    )


def test_inspect_embeddings_on_a_store(gcs) -> None:
    import pyarrow as pa

    root = storage.resolve(gcs.uri("emb7", "run/embeddings"))
    root.child("embeddings.json").write_bytes(
        json.dumps({"dim": 4, "complete": True, "mode": "all"}).encode()
    )
    table = pa.table(
        {"censored": pa.array([1, -1, -1, 0], pa.int8()), "country_code": ["IR", "US", "US", "CN"]}
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    root.child("shards", "part-00000.parquet").write_bytes(sink.getvalue().to_pybytes())
    done = run_cli("inspect", root.uri, "--json", "--verify")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert (
        info["kind"] == "embeddings"
        and info["length"] == 4
        and info["censored"] == 1
        and info["uncensored"] == 2
    )
    assert info["per_country"] == {"US": 2, "IR": 1, "CN": 1} and info["verify"]["ok"]


def test_gs_sources_in_worker_processes_to_a_local_dataset(pair, archives, tmp_path: Path) -> None:
    local = tmp_path / "ds"
    done = run_cli(
        "flatten",
        "--source",
        pair["glob"],
        "--storage_path",
        local,
        "--workers",
        "2",
        "--signatures",
        archives["signatures"],
        *FLAGS,
    )
    assert done.returncode == 0, done.stderr
    assert rows(local).equals(rows(pair["local"]))


def test_shards_written_elsewhere_commit_to_a_uri_root(gcs) -> None:
    """The committer's API with the storage path a string, as a Ray task on another node gets it."""
    uri = gcs.uri("datasets6", "api")
    layout = {"vocab_size": 300, "specials": {"pad": 0}}
    with store.dataset_lock(uri):
        store.write_manifest(uri, store.new_manifest(layout, "0" * 64, 64))
    n = 5
    columns = {name: [None] * n for name in store.SCHEMA.names}
    columns.update(
        row_id=[store.row_id("k" * 32, i, 0) for i in range(n)],
        line=list(range(n)),
        try_index=[0] * n,
        censored=[1, 0, -1, -1, 0],
        length=[3] * n,
        tokens=[[1, 2, 3]] * n,
        anomaly=[False] * n,
    )
    entry = store.write_shard(
        uri, "part-" + "a" * 16 + "-00000", columns, [{"file": "f", "line": 9, "reason": "x"}]
    )
    entry["source"] = "k" * 32
    with (
        store.dataset_lock(storage.resolve(uri)),
        store.dataset_lock(uri),
    ):  # re-entrant, Location or string
        assert storage.resolve(uri).child(".quackae.lock").is_file()
        manifest = store.commit(uri, [entry], {"k" * 32: {"name": "f", "done": True}})
    assert not storage.resolve(uri).child(".quackae.lock").is_file()
    assert manifest["length"] == 5 and manifest["censored"] == 1 and manifest["rejected"] == 1
    assert store.read_manifest(uri) == manifest
    assert store.verify(uri) == [
        f"{storage.resolve(uri).child('tokenizer.json')}: missing; restore it or re-flatten into "
        "a new --storage_path"
    ]
    # a second commit dropping that source deletes its objects after the manifest no longer lists
    # them
    with store.dataset_lock(uri):
        store.commit(uri, [], replace=["k" * 32])
    assert [f.name for f in storage.resolve(uri).list_files()] == ["manifest.json"]
