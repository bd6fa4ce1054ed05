"""Issue 10's fault table, one test per row: concurrency, partial downloads, the user's files,
a grown dataset under --encode, damaged shards, a missing tokenizer, a full disk, demo --out,
the Comet offline archive, and the small ones (inspect | head, synth sidecars, bad checkpoints).

Every test runs the real commands on generated archives and checks the files they leave.
"""

from __future__ import annotations

import json
import resource
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import run_cli
from quackae import ae_processor as seed_cli  # the command line: parser and cli()
from quackae import synth
from quackae.dataset import store
from quackae.demo import MARKER, _check_demo_out
from quackae.ingest.flatten import Options, flatten
from quackae.io import atomic
from quackae.model import controller as ae_processor

TINY = [
    "--embed_size",
    "16",
    "--hidden_size",
    "32",
    "--batch_size",
    "32",
    "--enable_progress_bar",
    "false",
    "--num_sanity_val_steps",
    "0",
    "--enable_model_summary",
    "false",
]
ECHO = "CP_Quack-echo-2021-10-11-01-01-01.tar.gz"


def flatten_cli(*args, **kw) -> subprocess.CompletedProcess:
    return run_cli("flatten", "--quiet", "--vocab_size", "512", "--max_tokens", "96", *args, **kw)


def one_line_error(result: subprocess.CompletedProcess, code: int = 2) -> str:
    """The single error line of a failed command (asserting there is no traceback)."""
    assert result.returncode == code, (result.stdout + result.stderr)[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.stderr.strip().splitlines()[-1]


def temps_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if atomic.is_temp(p.name) or ".tmp" in p.name]


def rows(root: Path):
    return store.Dataset(root).read_columns(["row_id", "source", "line", "try_index"])


def assert_every_row_once(root: Path) -> None:
    table = rows(root)
    keys = set(zip(*(table[c].to_pylist() for c in ("source", "line", "try_index")), strict=True))
    assert (
        len(keys)
        == len(set(table["row_id"].to_pylist()))
        == table.num_rows
        == len(store.Dataset(root))
    )
    listed = {s["file"] for s in store.read_manifest(root)["shards"]}
    assert {
        f"shards/{p.name}" for p in (root / "shards").glob("*.parquet")
    } == listed  # none unlisted


@pytest.fixture(scope="module")
def two_archives(tmp_path_factory) -> tuple[Path, Path]:
    raw = tmp_path_factory.mktemp("faults_raw")
    a = synth.write_archive(raw / "a", 250, seed=3, fmt="v2", scan="http").archive
    b = synth.write_archive(raw / "b", 250, seed=4, fmt="v1", scan="https").archive
    return a, b


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, two_archives) -> Path:
    """A small dataset of the first archive, copied by tests that damage it."""
    root = tmp_path_factory.mktemp("faults_ds") / "ds"
    flatten([two_archives[0]], root, Options(max_tokens=96), progress=False, vocab_size=512)
    return root


def copy_of(dataset: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(dataset, tmp_path / "copy"))


# ------------------------------------------------------------------------------ 1 concurrency


def test_1_two_flattens_at_once_both_land_once(two_archives, tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    solo = [
        flatten(
            [a], tmp_path / f"solo{i}", Options(max_tokens=96), progress=False, vocab_size=512
        ).rows
        for i, a in enumerate(two_archives)
    ]
    errs = [tmp_path / "err0", tmp_path / "err1"]
    with store.dataset_lock(ds):  # hold the lock so that both runs really contend for it
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "quackae",
                    "flatten",
                    "--quiet",
                    "--vocab_size",
                    "512",
                    "--chunk_lines",
                    "40",
                    "--max_tokens",
                    "96",
                    "--source",
                    str(a),
                    "--storage_path",
                    str(ds),
                ],
                stdout=subprocess.DEVNULL,
                stderr=err.open("w"),
            )
            for a, err in zip(two_archives, errs, strict=True)
        ]
        deadline = time.time() + 120
        while time.time() < deadline and not all(
            "waiting for another writer" in e.read_text() for e in errs
        ):
            time.sleep(0.1)
        assert all("waiting for another writer" in e.read_text() for e in errs)
        assert not (ds / store.MANIFEST).exists()  # nobody wrote while the lock was held
    assert [p.wait(timeout=300) for p in procs] == [0, 0], [e.read_text() for e in errs]
    assert len(store.Dataset(ds)) == sum(solo)
    assert_every_row_once(ds)


# ------------------------------------------------------------------------------ 2 partial download


def test_2_truncated_archive_stays_incomplete_and_the_full_one_replaces_it(tmp_path: Path) -> None:
    full = synth.write_archive(tmp_path / "full", 400, seed=1, fmt="v2", scan="echo").archive
    assert full.name == ECHO
    (tmp_path / "trunc").mkdir()
    cut = tmp_path / "trunc" / ECHO
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 60 // 100])
    ds, ref = tmp_path / "ds", tmp_path / "ref"
    result = flatten_cli("--source", cut, "--storage_path", ds)
    assert result.returncode == 1 and "ended early" in result.stdout, result.stdout + result.stderr
    (source,) = store.read_manifest(ds)["sources"].values()
    assert not source["done"] and source["ended_early"].startswith("truncated archive")
    partial = len(store.Dataset(ds))
    assert partial > 0
    again = flatten_cli("--source", cut, "--storage_path", ds)  # the same partial copy: nothing new
    assert (
        again.returncode == 1 and "ends early" in again.stdout and len(store.Dataset(ds)) == partial
    )
    assert flatten_cli("--source", full, "--storage_path", ds).returncode == 0
    assert (
        flatten_cli(
            "--source", full, "--storage_path", ref, "--tokenizer", ds / store.TOKENIZER
        ).returncode
        == 0
    )
    assert len(store.Dataset(ds)) == len(store.Dataset(ref)) > partial
    assert sorted(rows(ds)["row_id"].to_pylist()) == sorted(rows(ref)["row_id"].to_pylist())
    (source,) = store.read_manifest(ds)["sources"].values()
    assert source["done"] and source["rows"] == len(store.Dataset(ds))
    assert_every_row_once(ds)
    late = flatten_cli("--source", cut, "--storage_path", ds)  # the partial copy after the full one
    assert late.returncode == 1 and "already ingested completely" in late.stdout
    assert len(store.Dataset(ds)) == len(store.Dataset(ref))


# ------------------------------------------------------------------------------ 3 the user's files


def test_3_a_folder_of_other_files_is_refused_and_orphan_cleanup_spares_them(
    two_archives, dataset: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "mine"
    (mine / "shards").mkdir(parents=True)
    (mine / "shards" / "results.parquet").write_bytes(b"the user's")
    (mine / "tokenizer.json").write_text("the user's")
    line = one_line_error(flatten_cli("--source", two_archives[0], "--storage_path", mine))
    assert str(mine) in line and "not empty" in line and "--storage_path" in line
    assert (mine / "tokenizer.json").read_text() == "the user's"
    assert sorted(p.name for p in mine.rglob("*")) == [
        "results.parquet",
        "shards",
        "tokenizer.json",
    ]
    # an existing dataset with the user's files in its folders: an append keeps them
    ds = copy_of(dataset, tmp_path)
    keep = [ds / "shards" / "notes.parquet", ds / "rejects" / "mine.jsonl", ds / "README.txt"]
    for path in keep:
        path.write_text("the user's")
    assert flatten_cli("--source", two_archives[1], "--storage_path", ds).returncode == 0
    assert all(p.read_text() == "the user's" for p in keep)


# ------------------------------------------------------------------------------ 4 grown dataset


def _train(data: Path, storage: Path) -> Path:
    args = seed_cli.build_parser().parse_args(
        [
            "--data_dir",
            str(data),
            "--storage_path",
            str(storage),
            "--ray_nodes",
            "0",
            "--max_epochs",
            "1",
            "--limit_train_batches",
            "3",
            "--limit_val_batches",
            "1",
            "--limit_test_batches",
            "1",
            *TINY,
        ]
    )
    ae_processor.main(args)
    return storage / "last.ckpt"


def _encode(capsys, data: Path, ckpt: Path, out: Path, *extra: str) -> tuple[int, str]:
    code = seed_cli.cli(
        [
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
    )
    text, err = capsys.readouterr()
    return code, text + err


def _embedded_ids(out: Path) -> list[int]:
    return pq.read_table(sorted((out / "shards").glob("*.parquet")), columns=["row_id"])[
        "row_id"
    ].to_pylist()


def test_4_encode_after_the_dataset_grew_adds_only_new_rows(
    two_archives, dataset: Path, tmp_path: Path, capsys
) -> None:
    ds = copy_of(dataset, tmp_path)
    ckpt = _train(ds, tmp_path / "ae")
    out = tmp_path / "enc"
    code, text = _encode(capsys, ds, ckpt, out)
    assert code == 0, text
    before = len(store.Dataset(ds))
    assert len(_embedded_ids(out)) == before
    assert flatten_cli("--source", two_archives[1], "--storage_path", ds).returncode == 0
    after = len(store.Dataset(ds))
    code, text = _encode(capsys, ds, ckpt, out)
    assert code == 0, text
    assert f"encoded {after - before} new record(s); {after} in all" in text
    ids = _embedded_ids(out)
    assert len(ids) == len(set(ids)) == after
    assert sorted(ids) == sorted(rows(ds)["row_id"].to_pylist())
    meta = json.loads((out / "embeddings.json").read_text())
    assert meta["complete"] and meta["dataset_version"] == store.dataset_version(
        store.read_manifest(ds)
    )
    code, text = _encode(capsys, ds, ckpt, out)  # the same command once more: nothing to do
    assert code == 0 and "encoded 0 new record(s)" in text
    # --filtered balances over the whole dataset: growth is refused, saying why
    filtered = tmp_path / "filtered"
    assert _encode(capsys, ds, ckpt, filtered, "--filtered")[0] == 0
    assert (
        flatten_cli(
            "--source",
            synth.write_archive(tmp_path / "c", 60, seed=9, fmt="v2", scan="discard").archive,
            "--storage_path",
            ds,
        ).returncode
        == 0
    )
    code, text = _encode(capsys, ds, ckpt, filtered, "--filtered")
    assert code == 2 and "--filtered" in text and "grew" in text
    # any other change (here: committed shards reordered, as when a source's rows are replaced)
    manifest = store.read_manifest(ds)
    manifest["shards"] = manifest["shards"][1:] + manifest["shards"][:1]  # not a prefix any more
    store.write_manifest(ds, manifest)
    code, text = _encode(capsys, ds, ckpt, out)
    assert code == 2 and "changed since these embeddings were made" in text


# ------------------------------------------------------------------------------ 5 damaged shard


def test_5_damaged_shard_is_one_line_everywhere(
    two_archives, dataset: Path, tmp_path: Path, capsys
) -> None:
    ds = copy_of(dataset, tmp_path)
    shard = ds / store.read_manifest(ds)["shards"][0]["file"]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    line = one_line_error(run_cli("inspect", ds))
    assert str(shard) in line and "--verify" in line
    verify = run_cli("inspect", ds, "--verify", "--json")
    assert verify.returncode == 1 and "Traceback" not in verify.stderr
    info = json.loads(verify.stdout)
    assert (
        not info["verify"]["ok"]
        and len(info["verify"]["problems"]) == 1
        and str(shard) in info["verify"]["problems"][0]
    )
    assert run_cli("inspect", tmp_path / "none").returncode == 2
    good = run_cli("inspect", dataset, "--verify", "--json")
    assert good.returncode == 0 and json.loads(good.stdout)["verify"] == {
        "ok": True,
        "problems": [],
    }
    # training builds the token cache: one line naming the shard, no temporary file left
    code = seed_cli.cli(
        [
            "--data_dir",
            str(ds),
            "--storage_path",
            str(tmp_path / "ae"),
            "--ray_nodes",
            "0",
            "--max_epochs",
            "1",
            "--limit_train_batches",
            "2",
            *TINY,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and str(shard) in err.strip().splitlines()[-1] and "Traceback" not in err
    assert temps_under(ds) == []
    # appending notices the damage instead of committing on top of it
    line = one_line_error(flatten_cli("--source", two_archives[1], "--storage_path", ds))
    assert str(shard) in line
    assert len(store.read_manifest(ds)["sources"]) == 1


# ------------------------------------------------------------------------------ 6 missing tokenizer


def test_6_missing_tokenizer_then_append(two_archives, dataset: Path, tmp_path: Path) -> None:
    ds = copy_of(dataset, tmp_path)
    (ds / store.TOKENIZER).unlink()
    line = one_line_error(flatten_cli("--source", two_archives[1], "--storage_path", ds))
    assert str(ds / store.TOKENIZER) in line and "restore" in line
    # restoring it through --tokenizer works
    restored = flatten_cli(
        "--source", two_archives[1], "--storage_path", ds, "--tokenizer", dataset / store.TOKENIZER
    )
    assert restored.returncode == 0, restored.stderr
    assert (ds / store.TOKENIZER).read_bytes() == (dataset / store.TOKENIZER).read_bytes()


# ------------------------------------------------------------------------------ 7 disk full


def _flatten_with_file_limit(limit: int, *args) -> subprocess.CompletedProcess:
    """flatten with every file capped at ``limit`` bytes: writes past it fail as on a full disk."""

    def cap() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [
            sys.executable,
            "-m",
            "quackae",
            "flatten",
            "--quiet",
            "--vocab_size",
            "512",
            "--max_tokens",
            "96",
            *map(str, args),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=cap,
    )


def test_7_disk_full_writing_tokenizer_or_shard(
    two_archives, dataset: Path, tmp_path: Path
) -> None:
    fresh = tmp_path / "fresh"
    line = one_line_error(
        _flatten_with_file_limit(8_000, "--source", two_archives[0], "--storage_path", fresh)
    )
    assert str(fresh / store.TOKENIZER) in line and "free space" in line
    assert temps_under(fresh) == [] and not (fresh / store.MANIFEST).exists()
    ds = copy_of(dataset, tmp_path)
    before = store.read_manifest(ds)
    line = one_line_error(
        _flatten_with_file_limit(
            12_000, "--source", two_archives[1], "--storage_path", ds, "--chunk_lines", "1000"
        )
    )
    assert "shards/part-" in line and "free space" in line and "rerun the same command" in line
    assert temps_under(ds) == [] and store.read_manifest(ds) == before
    assert store.verify(ds) == []
    # with space again, the same command completes
    assert flatten_cli("--source", two_archives[1], "--storage_path", ds).returncode == 0
    assert_every_row_once(ds)


# ------------------------------------------------------------------------------ 8 demo --out


def test_8_demo_refuses_a_folder_that_is_not_a_demo_output(tmp_path: Path) -> None:
    out = tmp_path / "x"
    out.mkdir()
    (out / "thesis.tex").write_text("the user's")
    line = one_line_error(
        run_cli("demo", "--storage_path", out, "--scale", "0.01", "--autoencoder_epochs", "1")
    )
    assert str(out) in line and "--storage_path" in line
    assert (out / "thesis.tex").read_text() == "the user's" and len(list(out.iterdir())) == 1
    (out / "thesis.tex").unlink()
    _check_demo_out(out)  # empty: fine
    (out / MARKER).write_text("demo")
    (out / "summary.json").write_text("{}")
    _check_demo_out(out)  # a previous demo's output: fine to replace


# ------------------------------------------------------------------------------ 9 Comet offline


def _comet_metrics(directory: Path) -> dict[str, list]:
    """Metric names -> values found in the offline experiment archives of ``directory``."""
    archives = sorted(directory.glob("*.zip"))
    assert len(archives) == 1, archives
    found: dict[str, list] = {}
    with zipfile.ZipFile(archives[0]) as z:
        for name in z.namelist():
            for line in z.read(name).decode("utf-8", "replace").splitlines():
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                metric = msg.get("payload", msg).get("metric") if isinstance(msg, dict) else None
                if isinstance(metric, dict) and "metricName" in metric:
                    found.setdefault(metric["metricName"], []).append(metric.get("metricValue"))
    return found


@pytest.mark.parametrize("ray_nodes", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_9_comet_offline_leaves_an_archive_with_val_loss(
    dataset: Path, tmp_path: Path, ray_nodes: int
) -> None:
    pytest.importorskip("comet_ml")
    comet = tmp_path / "comet"
    result = run_cli(
        "--data_dir",
        dataset,
        "--storage_path",
        tmp_path / "ae",
        "--ray_nodes",
        ray_nodes,
        "--max_epochs",
        "1",
        "--limit_train_batches",
        "3",
        "--limit_val_batches",
        "2",
        "--limit_test_batches",
        "1",
        "--comet_offline",
        comet,
        *TINY,
        module="quackae.ae_processor",
        timeout=600,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    metrics = _comet_metrics(comet)  # exactly one archive: only rank 0 logs
    assert "val_loss" in metrics and all(float(v) > 0 for v in metrics["val_loss"])
    assert "test_loss" in metrics


# ------------------------------------------------------------------------------ 10 the small ones


def test_10_inspect_into_head_exits_cleanly(dataset: Path) -> None:
    result = subprocess.run(
        f"{sys.executable} -m quackae inspect {dataset} | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.startswith("dataset at") and result.stderr == ""


def test_10_synth_sidecars_are_skipped_not_rejected(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    synth.write_archive(raw, 80, seed=5, fmt="v2", scan="http")
    assert len(list(raw.glob("*.truth.jsonl"))) == 1
    result = flatten_cli("--source", raw, "--storage_path", tmp_path / "ds")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("skipped 1 ground-truth sidecar") == 1
    manifest = store.read_manifest(tmp_path / "ds")
    assert manifest["rejected"] == 0 and len(manifest["sources"]) == 1


def test_10_bad_checkpoint_gives_no_pytorch_advice(dataset: Path, tmp_path: Path, capsys) -> None:
    import torch

    for name, content in (("garbage.ckpt", b"not a checkpoint"), ("pickled.ckpt", None)):
        path = tmp_path / name
        if content is None:
            torch.save(
                {"state_dict": {}, "thing": Path("x")}, path
            )  # needs pickle to load: refused
        else:
            path.write_bytes(content)
        code = seed_cli.cli(
            [
                "--data_dir",
                str(dataset),
                "--ray_nodes",
                "0",
                "--checkpoint_path",
                str(path),
                "--storage_path",
                str(tmp_path / "ae"),
            ]
        )
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err
        line = err.strip().splitlines()[-1]
        assert str(path) in line and "weights_only" not in line and "quackae train" in line


def test_two_encode_runs_in_one_second_name_their_shards_apart() -> None:
    """Run ids differ (and sort in order) even within one second of one process: a resumed
    encode must never overwrite the shard an earlier run wrote."""
    from quackae.model.controller import new_run_id

    ids = [new_run_id() for _ in range(50)]
    assert len(set(ids)) == len(ids) and ids == sorted(ids)
