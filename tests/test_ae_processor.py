"""The seed's controller: flags, in-process and Ray Train training, restarts, clear errors."""

from __future__ import annotations

import csv
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from conftest import run_cli
from quackae import ae_processor as seed_cli  # the command line: parser and cli()
from quackae.model import controller as ae_processor

SMALL = [
    "--embed_size",
    "32",
    "--hidden_size",
    "64",
    "--batch_size",
    "16",
    "--l_rate",
    "1e-2",
    "--l_rate_min",
    "1e-3",
    "--enable_progress_bar",
    "false",
    "--num_sanity_val_steps",
    "0",
    "--checkpoint_every_n_steps",  # short runs: after every validation, not the seed's 2000 steps
    "0",
]

SEED_DEFAULTS = {
    "data_dir": "./data",
    "batch_size": 4,
    "num_workers": 0,
    "embed_size": 128,
    "hidden_size": 512,
    "encode": False,
    "filtered": False,
    "evaluate": False,
    "checkpoint_path": None,
    "storage_path": "./data/encoded",
    "l_rate": 1e-1,
    "l_rate_min": 1e-3,
    "l_rate_max_epoch": -1,
    "exp_label": "autoencoder-train",
    "ray_nodes": 4,
}


def controller(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """The controller in a subprocess, as a user runs it."""
    return run_cli(*args, module="quackae.ae_processor", timeout=timeout)


def in_process(capsys, *args) -> subprocess.CompletedProcess:
    """The controller's command-line entry point called in this process (no import cost)."""
    argv = [str(a) for a in args]
    code = seed_cli.cli(argv)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, out, err)


def summary(storage: Path) -> dict:
    return json.loads((storage / ae_processor.SUMMARY).read_text())


def epoch_val_losses(storage: Path) -> list[float]:
    rows = list(csv.DictReader((next(storage.glob("logs/*/metrics.csv"))).open()))
    return [float(r["val_loss"]) for r in rows if r.get("val_loss")]


def test_every_seed_flag_parses_with_its_default() -> None:
    args = seed_cli.build_parser().parse_args([])
    for name, default in SEED_DEFAULTS.items():
        assert getattr(args, name) == default, name
    # the Trainer's own flags, as Trainer.add_argparse_args used to add them
    args = seed_cli.build_parser().parse_args(
        [
            "--max_epochs",
            "3",
            "--accelerator",
            "cpu",
            "--devices",
            "1",
            "--precision",
            "32-true",
            "--limit_train_batches",
            "0.5",
            "--log_every_n_steps",
            "7",
            "--encode",
            "--filtered",
        ]
    )
    assert (args.max_epochs, args.accelerator, args.devices, args.precision) == (
        3,
        "cpu",
        1,
        "32-true",
    )
    assert (args.limit_train_batches, args.log_every_n_steps, args.encode, args.filtered) == (
        0.5,
        7,
        True,
        True,
    )
    assert "--ray_nodes" in seed_cli.build_parser().format_help()


def test_training_lowers_val_loss_and_reconstructs(
    small_dataset: Path, tmp_path: Path, capsys
) -> None:
    storage = tmp_path / "run"
    result = in_process(
        capsys,
        "--data_dir",
        small_dataset,
        "--storage_path",
        storage,
        "--ray_nodes",
        "0",
        "--max_epochs",
        "4",
        "--limit_train_batches",
        "25",
        "--eval_decoding",
        "forced",  # validation teacher-forced: the learning curve without the coin's noise
        *SMALL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "best val_loss_seed" in result.stdout and "test_loss" in result.stdout
    losses = epoch_val_losses(storage)
    assert len(losses) == 4 and losses[-1] < losses[0] * 0.8
    s = summary(storage)
    vocab = json.loads((small_dataset / "manifest.json").read_text())["vocab_size"]
    assert s["test"]["test_acc"] > 20 / vocab  # far above chance (1/vocab)
    assert (storage / "last.ckpt").is_file() and len(
        list(storage.glob("epoch=*-step=*-val_loss=*.ckpt"))
    ) == 3
    ckpt = torch.load(storage / "last.ckpt", weights_only=True, map_location="cpu")
    hp = ckpt["hyper_parameters"]
    manifest = json.loads((small_dataset / "manifest.json").read_text())
    assert hp["tokenizer_sha256"] == manifest["tokenizer_sha256"] and hp["num_embeddings"] == vocab
    assert hp["layout"] == manifest["layout"]
    assert hp["sampling"] == "multinomial"  # the seed's feedback is the default
    # every epoch's training loss, overall and per kind of batch, beside val_loss in metrics.csv
    rows = list(csv.DictReader(next(storage.glob("logs/*/metrics.csv")).open()))
    for key in ("train_loss", "train_loss_forced", "train_loss_sampled"):
        values = [float(r[key]) for r in rows if r.get(key)]
        assert len(values) == 4 and all(math.isfinite(v) for v in values), key


def test_checkpoint_path_starts_from_the_weights(
    small_dataset: Path, tmp_path: Path, capsys
) -> None:
    first = tmp_path / "first"
    assert (
        in_process(
            capsys,
            "--data_dir",
            small_dataset,
            "--storage_path",
            first,
            "--ray_nodes",
            "0",
            "--max_epochs",
            "2",
            "--limit_train_batches",
            "20",
            *SMALL,
        ).returncode
        == 0
    )
    args = seed_cli.build_parser().parse_args(
        ["--data_dir", str(small_dataset), "--checkpoint_path", str(first / "last.ckpt"), *SMALL]
    )
    model = ae_processor.build_model(args, ae_processor.build_data(args))
    saved = torch.load(first / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())
    second = tmp_path / "second"
    result = in_process(
        capsys,
        "--data_dir",
        small_dataset,
        "--storage_path",
        second,
        "--ray_nodes",
        "0",
        "--max_epochs",
        "1",
        "--limit_train_batches",
        "20",
        "--checkpoint_path",
        first / "last.ckpt",
        *SMALL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # weights only: the epoch counter starts again, the loss does not
    assert summary(second)["epochs"] == 1
    assert epoch_val_losses(second)[0] < epoch_val_losses(first)[0]


def test_resume_after_a_kill(small_dataset: Path, tmp_path: Path) -> None:
    storage = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "quackae.ae_processor",
        "--data_dir",
        str(small_dataset),
        "--storage_path",
        str(storage),
        "--ray_nodes",
        "0",
        "--max_epochs",
        "4",
        "--limit_train_batches",
        "20",
        *SMALL,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (storage / "last.ckpt").exists():
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (storage / "last.ckpt").exists() and not (storage / ae_processor.SUMMARY).exists()
    at_kill = torch.load(storage / "last.ckpt", weights_only=True)
    epoch_at_kill, step_at_kill = at_kill["epoch"], at_kill["global_step"]
    result = controller(*cmd[3:], "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    s = summary(storage)
    assert s["epochs"] == 4 and s["steps"] == 4 * 20
    assert epoch_at_kill < 3 and step_at_kill > 0
    # resumed: state restored (started at the checkpoint's step), no step trained twice
    assert s["resumed_from"]["step"] == step_at_kill
    assert s["batches_this_run"] == 4 * 20 - step_at_kill
    epochs = [
        int(r["epoch"])
        for r in csv.DictReader(next(storage.glob("logs/*/metrics.csv")).open())
        if r.get("val_loss")
    ]
    assert (
        epochs == sorted(set(epochs)) and epochs[-1] == 3
    )  # one validation row per epoch, none repeated


@pytest.mark.slow
def _registered_checkpoint(ray_storage: Path) -> bool:
    """Whether Ray Train's controller has registered a checkpoint (a directory alone is not enough:
    a worker killed before the controller saw its report restarts from the previous one)."""
    for snapshot in ray_storage.glob("*/checkpoint_manager_snapshot.json"):
        try:
            if json.loads(snapshot.read_text()).get("latest_checkpoint_result"):
                return True
        except (OSError, ValueError):
            pass
    return False


@pytest.mark.slow
def test_ray_survives_a_killed_worker(small_dataset: Path, tmp_path: Path) -> None:
    storage = tmp_path / "ray"
    cmd = [
        sys.executable,
        "-m",
        "quackae.ae_processor",
        "--data_dir",
        str(small_dataset),
        "--storage_path",
        str(storage),
        "--ray_nodes",
        "2",
        "--max_epochs",
        "4",
        "--limit_train_batches",
        "15",
        "--max_failures",
        "2",
        *SMALL,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = None
    deadline = time.time() + 300
    while time.time() < deadline and killed is None:
        if _registered_checkpoint(
            storage / "ray"
        ):  # Ray Train's controller holds one to restart from
            workers = [
                p
                for p in psutil.process_iter(["cmdline"])
                if "RayTrainWorker" in " ".join(p.info["cmdline"] or [])
            ]
            if workers:
                killed = workers[-1].pid
                workers[-1].send_signal(signal.SIGKILL)
        time.sleep(0.2)
    out, _ = proc.communicate(timeout=600)
    assert killed is not None, "no Ray Train worker found to kill"
    assert proc.returncode == 0, out[-3000:]
    s = summary(storage)
    # two Ray Train workers trained, checkpointed and tested (and one of them was replaced)
    assert s["workers"] == 2 and s["epochs"] == 4 and "test_loss" in s["test"]
    assert (storage / "last.ckpt").is_file()
    assert list(storage.glob("epoch=*-val_loss=*.ckpt"))
    # the final attempt restored Ray Train's checkpoint: it started past step 0 and trained the rest
    # only
    assert s["resumed_from"]["step"] > 0
    assert s["batches_this_run"] == s["steps"] - s["resumed_from"]["step"]


def test_clear_one_line_errors(small_dataset: Path, tmp_path: Path, capsys) -> None:
    def one_line(result: subprocess.CompletedProcess, *needles: str) -> None:
        assert result.returncode == 2, result.stderr[-2000:]
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("ae_processor: error:") and "Traceback" not in result.stderr
        for needle in needles:
            assert needle in last

    one_line(
        in_process(capsys, "--data_dir", tmp_path / "none", "--ray_nodes", "0"), "quackae flatten"
    )
    started = time.time()
    one_line(in_process(capsys, "--data_dir", small_dataset, "--ray_nodes", "64"), "--ray_nodes")
    assert time.time() - started < 60
    one_line(
        in_process(
            capsys,
            "--data_dir",
            small_dataset,
            "--ray_nodes",
            "0",
            "--logger",
            "comet",
            "--storage_path",
            tmp_path / "c",
        ),
        "comet",
    )
    one_line(
        in_process(
            capsys,
            "--data_dir",
            small_dataset,
            "--ray_nodes",
            "0",
            "--storage_path",
            tmp_path / "nan",
            "--max_epochs",
            "1",
            *SMALL,
            "--l_rate",
            "1e25",
        ),
        "nan",
    )
    one_line(
        in_process(capsys, "--data_dir", small_dataset, "--encode", "--ray_nodes", "0"),
        "--checkpoint_path",
    )
    bogus = tmp_path / "bogus.ckpt"
    bogus.write_bytes(b"not a checkpoint")
    one_line(
        in_process(
            capsys, "--data_dir", small_dataset, "--ray_nodes", "0", "--checkpoint_path", bogus
        ),
        "checkpoint",
    )


def test_quackae_train_and_encode_reach_the_controller() -> None:
    result = run_cli("train", "--help")
    assert (
        result.returncode == 0
        and "--ray_nodes" in result.stdout
        and "--max_epochs" in result.stdout
    )
    result = run_cli("encode", "--data_dir", "/nonexistent/quackae", "--checkpoint_path", "x.ckpt")
    # the controller's checks: the checkpoint file first (before the dataset is read)
    assert result.returncode == 2 and "--checkpoint_path x.ckpt: no such file" in result.stderr


@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16-true"])
def test_reduced_precision_trains(
    small_dataset: Path, tmp_path: Path, capsys, precision: str
) -> None:
    result = in_process(
        capsys,
        "--data_dir",
        small_dataset,
        "--storage_path",
        tmp_path / precision,
        "--ray_nodes",
        "0",
        "--max_epochs",
        "1",
        "--limit_train_batches",
        "3",
        "--limit_val_batches",
        "2",
        "--limit_test_batches",
        "2",
        "--precision",
        precision,
        *SMALL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert summary(tmp_path / precision)["steps"] == 3


def test_console_is_quiet_and_counts_epochs_truthfully(small_dataset: Path, tmp_path: Path) -> None:
    """`quackae train` as a user sees it: the bar says "Epoch 2/2", no tips, FLOPs or v_num."""
    shown = [a for a in SMALL if a not in ("--enable_progress_bar", "false")]
    result = run_cli(
        "train",
        "--data_dir",
        small_dataset,
        "--storage_path",
        tmp_path / "run",
        "--ray_nodes",
        "0",
        "--max_epochs",
        "2",
        "--limit_train_batches",
        "2",
        "--limit_val_batches",
        "1",
        "--limit_test_batches",
        "1",
        *shown,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    console = result.stdout + result.stderr
    assert "Epoch 2/2" in console and "Epoch 1/2" in console, console[-3000:]
    assert "Trainable params" in console  # the model summary is still shown
    for noise in ("FLOPs", "v_num", "Tip:", "litlogger", "litmodels", "GPU available"):
        assert noise not in console, (noise, console[-3000:])
