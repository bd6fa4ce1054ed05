"""ae_processor --encode: row selection per mode, balance, exactly-once under Ray, resume."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import run_cli
from quackae import ae_processor as seed_cli  # the command line: parser and cli()
from quackae import synth
from quackae.dataset import store
from quackae.ingest.flatten import Options, flatten
from quackae.model import controller as ae_processor
from quackae.model.datamodule import select_rows

TINY = ["--embed_size", "16", "--hidden_size", "32", "--enable_progress_bar", "false"]


@pytest.fixture(scope="session")
def checkpoint(small_dataset: Path, tmp_path_factory) -> Path:
    """A briefly trained tiny autoencoder of the small dataset."""
    storage = tmp_path_factory.mktemp("ae")
    args = seed_cli.build_parser().parse_args(
        [
            "--data_dir",
            str(small_dataset),
            "--storage_path",
            str(storage),
            "--ray_nodes",
            "0",
            "--max_epochs",
            "1",
            "--limit_train_batches",
            "5",
            "--limit_val_batches",
            "2",
            "--limit_test_batches",
            "2",
            "--batch_size",
            "16",
            "--l_rate",
            "1e-2",
            *TINY,
        ]
    )
    ae_processor.main(args)
    return storage / "last.ckpt"


def encode(capsys, data: Path, ckpt: Path, out: Path, *extra: str) -> tuple[int, str]:
    argv = [
        "--data_dir",
        str(data),
        "--checkpoint_path",
        str(ckpt),
        "--storage_path",
        str(out),
        "--encode",
        "--ray_nodes",
        "0",
        "--batch_size",
        "64",
        *TINY,
        *extra,
    ]
    code = seed_cli.cli(argv)
    out_text, err = capsys.readouterr()
    return code, out_text + err


def written(out: Path):
    files = sorted((out / "shards").glob("*.parquet"))
    return pq.read_table(files) if len(files) != 1 else pq.read_table(files[0])


def dataset_rows(data: Path):
    return store.Dataset(data).read_columns(["row_id", "censored"])


@pytest.mark.parametrize("mode", ["all", "filtered", "evaluate", "both"])
def test_each_mode_selects_its_rows(
    small_dataset: Path, checkpoint: Path, tmp_path: Path, capsys, mode: str
) -> None:
    flags = {
        "all": [],
        "filtered": ["--filtered"],
        "evaluate": ["--evaluate"],
        "both": ["--filtered", "--evaluate"],
    }[mode]
    code, text = encode(capsys, small_dataset, checkpoint, tmp_path / "enc", *flags)
    assert code == 0, text
    table = written(tmp_path / "enc")
    rows = dataset_rows(small_dataset)
    manifest = store.read_manifest(small_dataset)
    labels, ids = rows["censored"].to_numpy(), rows["row_id"].to_numpy()
    selection = {"both": "evaluate"}.get(mode, mode)
    expected = set(ids[select_rows(labels, ids, selection, manifest, 1234)].tolist())
    got = table["row_id"].to_pylist()
    assert len(got) == len(set(got)) and set(got) == expected
    assert table["embedding"].type.list_size == 32
    emb = np.stack(table["embedding"].to_numpy(zero_copy_only=False))
    assert emb.dtype == np.float32 and np.isfinite(emb).all() and emb.std() > 0
    if selection == "evaluate":
        assert set(table["censored"].to_pylist()) == {0}
    if selection == "filtered":
        c = table["censored"].to_numpy()
        assert 0 not in set(c.tolist()) and (c == 1).sum() == manifest["censored"]
        assert abs((c == -1).sum() - (c == 1).sum()) <= max(0.25 * (c == 1).sum(), 8)
    for column in (
        "ip",
        "domain",
        "location",
        "country_code",
        "timestamp",
        "scan",
        "censored",
        "fingerprint",
        "outcome",
    ):
        assert column in table.column_names


def test_inspect_embeddings(small_dataset: Path, checkpoint: Path, tmp_path: Path, capsys) -> None:
    assert encode(capsys, small_dataset, checkpoint, tmp_path / "enc", "--evaluate")[0] == 0
    # DeviceStatsMonitor beside the writer, as the seed's --encode, logging every predict batch
    (log,) = (tmp_path / "enc").glob("logs/*/metrics.csv")
    header, *batches = log.read_text().splitlines()
    assert "DeviceStatsMonitor.on_predict_batch_end/cpu_percent" in header.split(",") and batches
    result = run_cli("inspect", tmp_path / "enc", "--json")
    info = json.loads(result.stdout)
    manifest = store.read_manifest(small_dataset)
    assert (
        info["kind"] == "embeddings"
        and info["dim"] == 32
        and info["complete"]
        and info["latent"] == "final"
    )
    assert info["length"] == info["undetermined"] == manifest["undetermined"]
    assert info["censored"] == info["uncensored"] == 0


def test_resume_after_a_kill_ends_complete(
    small_dataset: Path, checkpoint: Path, tmp_path: Path, capsys
) -> None:
    # a larger dataset so a run is still going when it is killed
    raw = synth.write_archive(tmp_path / "raw", 3000, seed=11, fmt="v2", scan="http")
    data = tmp_path / "ds"
    shutil.copy(small_dataset / "tokenizer.json", tmp_path / "tok.json")
    flatten(
        [raw.archive],
        data,
        Options(max_tokens=128),
        progress=False,
        tokenizer=tmp_path / "tok.json",
    )
    out = tmp_path / "enc"
    cmd = [
        sys.executable,
        "-m",
        "quackae.ae_processor",
        "--data_dir",
        str(data),
        "--checkpoint_path",
        str(checkpoint),
        "--storage_path",
        str(out),
        "--encode",
        "--ray_nodes",
        "0",
        "--batch_size",
        "8",
        *TINY,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list((out / "shards").glob("*.parquet")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = len(written(out))
    assert 0 < partial < len(store.Dataset(data))
    assert not json.loads((out / "embeddings.json").read_text())["complete"]
    code, text = encode(capsys, data, checkpoint, out, "--batch_size", "64")
    assert code == 0, text
    ids = written(out)["row_id"].to_pylist()
    assert len(ids) == len(set(ids)) == len(store.Dataset(data))
    assert json.loads((out / "embeddings.json").read_text())["complete"]


def test_refuses_a_dataset_with_another_tokenizer(checkpoint: Path, tmp_path: Path, capsys) -> None:
    raw = synth.write_archive(tmp_path / "raw", 60, seed=12, fmt="v1", scan="echo")
    other = tmp_path / "other"
    flatten([raw.archive], other, Options(max_tokens=128), progress=False, vocab_size=700)
    code, text = encode(capsys, other, checkpoint, tmp_path / "enc")
    assert code == 2 and "tokenizer" in text and "Traceback" not in text
    assert not (tmp_path / "enc" / "shards").exists()


def test_refuses_another_runs_output_dir(
    small_dataset: Path, checkpoint: Path, tmp_path: Path, capsys
) -> None:
    assert encode(capsys, small_dataset, checkpoint, tmp_path / "enc", "--evaluate")[0] == 0
    code, text = encode(capsys, small_dataset, checkpoint, tmp_path / "enc", "--filtered")
    assert code == 2 and "another run" in text


def test_mean_latent_is_recorded_and_differs_from_final(
    small_dataset: Path, checkpoint: Path, tmp_path: Path, capsys
) -> None:
    tables = {}
    for latent in ("final", "mean"):
        code, text = encode(
            capsys, small_dataset, checkpoint, tmp_path / latent, "--evaluate", "--latent", latent
        )
        assert code == 0, text
        assert json.loads((tmp_path / latent / "embeddings.json").read_text())["latent"] == latent
        tables[latent] = written(tmp_path / latent).sort_by("row_id")
    assert tables["final"]["row_id"].equals(tables["mean"]["row_id"])
    final, mean = (
        np.stack(tables[k]["embedding"].to_numpy(zero_copy_only=False)) for k in ("final", "mean")
    )
    assert final.shape == mean.shape and np.isfinite(mean).all()
    assert np.abs(final - mean).max() > 1e-3
    code, text = encode(
        capsys, small_dataset, checkpoint, tmp_path / "mean", "--evaluate", "--latent", "final"
    )
    assert code == 2 and "another run" in text and "latent" in text


@pytest.mark.slow
def test_two_ray_workers_write_every_record_exactly_once(
    small_dataset: Path, checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "enc"
    result = run_cli(
        "--data_dir",
        small_dataset,
        "--checkpoint_path",
        checkpoint,
        "--storage_path",
        out,
        "--encode",
        "--ray_nodes",
        "2",
        "--batch_size",
        "7",
        *TINY,
        module="quackae.ae_processor",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = written(out)
    ids = table["row_id"].to_pylist()
    assert len(ids) == len(set(ids)) == len(store.Dataset(small_dataset))
    ranks = {p.name.split("-r")[1][:3] for p in (out / "shards").glob("*.parquet")}
    assert ranks == {"000", "001"}  # both workers wrote their own part


def test_bf16_encoding_agrees_with_fp32(
    small_dataset: Path, checkpoint: Path, tmp_path: Path, capsys
) -> None:
    assert encode(capsys, small_dataset, checkpoint, tmp_path / "fp32", "--evaluate")[0] == 0
    code, text = encode(
        capsys,
        small_dataset,
        checkpoint,
        tmp_path / "bf16",
        "--evaluate",
        "--precision",
        "bf16-true",
    )
    assert code == 0, text
    a, b = (
        written(tmp_path / "fp32").sort_by("row_id"),
        written(tmp_path / "bf16").sort_by("row_id"),
    )
    assert a["row_id"].to_pylist() == b["row_id"].to_pylist()
    x = np.stack(a["embedding"].to_numpy(zero_copy_only=False))
    y = np.stack(b["embedding"].to_numpy(zero_copy_only=False))
    assert y.dtype == np.float32
    cos = (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
    assert cos.min() > 0.999


@pytest.mark.parametrize("latent", ["final", "mean"])
def test_encode_runs_the_no_grad_kernel_not_the_training_scan(
    small_dataset: Path, checkpoint: Path, tmp_path: Path, capsys, monkeypatch, latent: str
) -> None:
    """--encode never falls back to the autograd scan: make the scan unusable and encode anyway."""
    from quackae.model import gru

    def scan_called(*args: object) -> None:
        raise AssertionError("the encode path fell back to the training scan")

    monkeypatch.setattr(gru, "gru_scan", scan_called)
    code, text = encode(capsys, small_dataset, checkpoint, tmp_path / "out", "--latent", latent)
    assert code == 0, text
    assert written(tmp_path / "out").num_rows == len(store.Dataset(small_dataset))
