"""Training and encoding with object-store outputs (a real GCS-API server), and on a Ray cluster."""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from quackae import ae_processor as seed_cli  # the command line: parser and cli()
from quackae.dataset import store
from quackae.ingest.flatten import Options
from quackae.ingest.flatten import flatten as flatten_local
from quackae.io import storage
from quackae.model import controller as ae_processor

TINY = [
    "--embed_size",
    "16",
    "--hidden_size",
    "32",
    "--batch_size",
    "16",
    "--l_rate",
    "1e-2",
    "--enable_progress_bar",
    "false",
    "--num_sanity_val_steps",
    "0",
    "--limit_val_batches",
    "2",
    "--limit_test_batches",
    "2",
]


def controller(
    *args, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """The controller in a subprocess, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "quackae.ae_processor", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def in_process(capsys, *args) -> tuple[int, str, str]:
    """The controller's entry point in this process: exit code, stdout, stderr."""
    code = seed_cli.cli([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def names(uri: str) -> list[str]:
    """Object names below ``uri``, relative to it."""
    base = storage.resolve(uri)
    return [loc.path[len(base.path) + 1 :] for loc in base.list_files()]


def embedding_rows(uri: str):
    """The embedding shards under ``uri`` read with pyarrow from the store: one table."""
    base = storage.resolve(uri).child("shards")
    tables = [pq.read_table(loc.path, filesystem=loc.fs) for loc in base.list_files()]
    return tables, [row for t in tables for row in t.column("row_id").to_pylist()]


def test_train_resume_and_encode_on_an_object_store(small_dataset: Path, gcs, capsys) -> None:
    run = gcs.uri("runs", "first")
    code, out, err = in_process(
        capsys,
        "--data_dir",
        small_dataset,
        "--storage_path",
        run,
        "--ray_nodes",
        "0",
        "--max_epochs",
        "1",
        "--limit_train_batches",
        "4",
        *TINY,
    )
    assert code == 0, err[-3000:]
    found = names(run)
    assert "last.ckpt" in found and ae_processor.SUMMARY in found
    assert any(n.startswith("epoch=0-step=4-val_loss=") for n in found)
    assert any(n.startswith("logs/") and n.endswith("metrics.csv") for n in found)
    s = json.loads(storage.resolve(run).child(ae_processor.SUMMARY).read_bytes())
    assert (
        s["storage_path"] == run
        and s["last_checkpoint"] == storage.resolve(run).child("last.ckpt").uri
    )
    assert storage.resolve(s["best_checkpoint"]).is_file() and f"checkpoints in {run}" in out
    # the uploaded checkpoint is whole: it loads with weights_only
    last = storage.resolve(run).child("last.ckpt")
    saved = ae_processor._load_weights(last.uri)
    assert saved["global_step"] == 4
    assert any(key.startswith("ModelCheckpoint{") for key in saved["callbacks"])  # as a local run's

    # --resume from the store continues that run: optimizer and step state restored
    code, out, err = in_process(
        capsys,
        "--data_dir",
        small_dataset,
        "--storage_path",
        run,
        "--ray_nodes",
        "0",
        "--max_epochs",
        "2",
        "--limit_train_batches",
        "4",
        "--resume",
        *TINY,
    )
    assert code == 0, err[-3000:]
    s = json.loads(storage.resolve(run).child(ae_processor.SUMMARY).read_bytes())
    assert s["resumed_from"]["step"] == 4 and s["steps"] == 8 and s["batches_this_run"] == 4
    assert ae_processor._load_weights(last.uri)["global_step"] == 8

    # --encode with a gs:// checkpoint into gs:// embeddings; the same command again adds nothing
    emb = gcs.uri("runs", "emb")
    encode = [
        "--data_dir",
        small_dataset,
        "--checkpoint_path",
        last.uri,
        "--storage_path",
        emb,
        "--encode",
        "--ray_nodes",
        "0",
        "--batch_size",
        "64",
        "--enable_progress_bar",
        "false",
    ]
    code, out, err = in_process(capsys, *encode)
    assert code == 0, err[-3000:]
    _, ids = embedding_rows(emb)
    assert len(ids) == len(set(ids)) == len(store.Dataset(small_dataset))
    meta = json.loads(storage.resolve(emb).child("embeddings.json").read_bytes())
    assert meta["complete"] and meta["checkpoint"] == last.uri and meta["dim"] == 32
    assert f"encoded {len(ids)} new record(s)" in out and ".done_rows.npy" not in names(emb)
    code, out, err = in_process(capsys, *encode)
    assert code == 0 and "encoded 0 new record(s)" in out, err[-3000:]

    # a live writer's lock object (another host) refuses a second writer in one line
    lock = storage.resolve(emb).child(".quackae.lock")
    lock.write_bytes(json.dumps({"host": "elsewhere", "pid": 1, "time": "now"}).encode())
    code, out, err = in_process(capsys, *encode)
    assert code == 2 and "another writer (host elsewhere" in err and "Traceback" not in err
    lock.delete()

    code, out, err = in_process(
        capsys,
        "--data_dir",
        small_dataset,
        "--ray_nodes",
        "0",
        "--storage_path",
        run,
        "--checkpoint_path",
        storage.resolve(run).child("none.ckpt").uri,
        *TINY,
    )
    assert code == 2 and "no such object" in err.strip().splitlines()[-1]
    # (pyarrow retries an unreachable GCS endpoint for 15 min unless the URI says otherwise)
    nowhere = "gs://anonymous@nobucket/run?scheme=http&endpoint_override=127.0.0.1:9&retry_limit_seconds=2"
    code, out, err = in_process(
        capsys, "--data_dir", small_dataset, "--ray_nodes", "0", "--storage_path", nowhere, *TINY
    )
    assert (
        code == 2 and "cannot reach it" in err.strip().splitlines()[-1] and "Traceback" not in err
    )


def flatten_on_cluster(gcs, ray_cluster, archive: Path, signatures: Path) -> str:
    """Upload ``archive`` to the store and flatten it there as Ray tasks; the dataset's URI."""
    storage.resolve(gcs.uri("cluster", f"raw/{archive.name}")).write_bytes(archive.read_bytes())
    data = gcs.uri("cluster", "ds")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "quackae",
            "flatten",
            "--source",
            gcs.uri("cluster", "raw/CP_Quack-*.tar.gz"),
            "--storage_path",
            data,
            "--ray_address",
            ray_cluster.address,
            "--chunk_lines",
            "100",
            "--signatures",
            str(signatures),
            "--max_tokens",
            "128",
            "--vocab_size",
            "1024",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=ray_cluster.env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return data


@pytest.mark.slow
def test_flatten_train_and_encode_on_a_two_node_cluster(
    archive_v2_http, synth_signatures: Path, tmp_path: Path, gcs, ray_cluster, capsys
) -> None:
    """The whole chain on two Ray nodes, every input and output on the object store."""
    data = flatten_on_cluster(gcs, ray_cluster, archive_v2_http.archive, synth_signatures)
    local = tmp_path / "local"  # the same archive flattened here, in one process
    flatten_local(
        [archive_v2_http.archive],
        local,
        Options(max_tokens=128, signatures=synth_signatures),
        progress=False,
        vocab_size=1024,
    )
    remote = store.Dataset(data)  # read through the local mirror
    columns = ["row_id", "censored", "fingerprint", "length"]
    assert remote.read_columns(columns).equals(store.Dataset(local).read_columns(columns))
    assert len(remote.manifest["shards"]) > 1  # several chunks, committed in order
    rows = len(remote)

    run = gcs.uri("cluster", "train")
    result = controller(
        "--data_dir",
        data,
        "--storage_path",
        run,
        "--ray_address",
        ray_cluster.address,
        "--ray_nodes",
        "2",
        "--max_epochs",
        "1",
        "--limit_train_batches",
        "3",
        *TINY,
        env=ray_cluster.env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = names(run)
    # Ray Train's reported checkpoints persisted under URI/ray, Lightning's mirrored beside the
    # summary
    assert any(fnmatch.fnmatch(n, "ray/*/checkpoint_*/checkpoint.ckpt") for n in found), found
    assert "last.ckpt" in found and ae_processor.SUMMARY in found
    s = json.loads(storage.resolve(run).child(ae_processor.SUMMARY).read_bytes())
    assert (
        s["workers"] == 2 and s["steps"] == 3 and "test_loss" in s["test"]
    )  # 1 CPU per node: both nodes

    emb = gcs.uri("cluster", "emb")
    last = storage.resolve(run).child("last.ckpt").uri
    encode = [
        "--data_dir",
        data,
        "--checkpoint_path",
        last,
        "--storage_path",
        emb,
        "--encode",
        "--batch_size",
        "64",
        "--embed_size",
        "16",
        "--hidden_size",
        "32",
        "--enable_progress_bar",
        "false",
    ]
    result = controller(
        *encode, "--ray_address", ray_cluster.address, "--ray_nodes", "2", env=ray_cluster.env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    tables, ids = embedding_rows(emb)
    assert (
        len(tables) == 2 and len(ids) == len(set(ids)) == rows
    )  # one shard per worker, each row once
    assert set(ids) == set(remote.read_columns(["row_id"]).column(0).to_pylist())

    # resume reads what is written back from the store: lose one shard, the rerun writes just its
    # rows
    shard = storage.resolve(emb).child("shards").list_files()[0]
    lost = pq.read_table(shard.path, filesystem=shard.fs).num_rows
    shard.delete()
    meta = storage.resolve(emb).child("embeddings.json")
    meta.write_bytes(json.dumps({**json.loads(meta.read_bytes()), "complete": False}).encode())
    code, out, err = in_process(capsys, *encode, "--ray_nodes", "0")
    assert code == 0 and f"encoded {lost} new record(s); {rows} in all" in out, err[-3000:]
    _, ids = embedding_rows(emb)
    assert len(ids) == len(set(ids)) == rows


def test_a_refused_cluster_is_one_line(small_dataset: Path, ray_cluster, tmp_path: Path) -> None:
    env = {**ray_cluster.env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "wrong-token"}
    result = controller(
        "--data_dir",
        small_dataset,
        "--storage_path",
        tmp_path / "run",
        "--ray_address",
        ray_cluster.address,
        "--ray_nodes",
        "2",
        "--max_epochs",
        "1",
        env=env,
        timeout=300,
    )
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert (
        last.startswith(f"ae_processor: error: --ray_address {ray_cluster.address}:")
        and "RAY_AUTH_MODE=token" in last
    )
