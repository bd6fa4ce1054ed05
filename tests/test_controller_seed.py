"""The controller where the seed's ``ae_processor`` made a choice, and every Trainer flag.

Checkpoints every N steps with a final one, early stopping on the seed's loss scale, the
post-fit test's weights, the validation coin, the learning-rate schedule's -1, and the Trainer's
whole signature as flags (typed, reaching a real Trainer; the controller's own ones refused).
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from quackae import ae_processor as seed_cli  # the command line: parser and cli()
from quackae.model import controller
from quackae.model.autoencoder import QuackAutoEncoder, seed_scale_loss
from quackae.model.config import CONTROLLER_OWNED, build_parser, parse

TINY = [
    "--embed_size",
    "16",
    "--hidden_size",
    "32",
    "--batch_size",
    "32",
    "--l_rate",
    "1e-2",
    "--enable_progress_bar",
    "false",
    "--enable_model_summary",
    "false",
    "--num_sanity_val_steps",
    "0",
    "--limit_val_batches",
    "2",
    "--limit_test_batches",
    "2",
    "--ray_nodes",
    "0",
]


def run(capsys, data: Path, storage: Path, *args: str) -> dict:
    """The controller's command line in this process; its run summary."""
    code = seed_cli.cli(["--data_dir", str(data), "--storage_path", str(storage), *TINY, *args])
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    return json.loads((storage / controller.SUMMARY).read_text())


# --------------------------------------------------------------------------- Trainer flags


def trainer_group():
    return next(g for g in build_parser()._action_groups if g.title == "Lightning Trainer")


def test_every_trainer_argument_is_a_flag_and_help_lists_it() -> None:
    wanted = set(inspect.signature(pl.Trainer.__init__).parameters) - {"self"}
    flags = {a.dest for a in trainer_group()._group_actions}
    # --logger is the controller's own flag (auto|comet|csv), so not in the Trainer group
    assert flags == wanted - {"logger"}
    assert {"num_nodes", "profiler", "inference_mode", "sync_batchnorm"} <= flags
    options = {o for a in build_parser()._actions for o in a.option_strings}
    assert {f"--{n}" for n in wanted} <= options
    shown = subprocess.run(
        [sys.executable, "-m", "quackae.ae_processor", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0
    assert all(f"--{n}" in shown.stdout for n in wanted)


@pytest.mark.parametrize("name", sorted(CONTROLLER_OWNED))
def test_each_owned_argument_fails_in_one_line_saying_what_to_pass(name: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse([f"--{name}", "x"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and "Traceback" not in "\n".join(err)
    if name == "logger":  # the controller's --logger: argparse names the choices
        assert "invalid choice: 'x' (choose from 'auto', 'comet', 'csv')" in err[-1]
    else:
        assert err[-1].endswith(f"--{name} is set by the controller: use {CONTROLLER_OWNED[name]}")


def test_typed_values_reach_the_trainer() -> None:
    cfg = parse(
        [
            *("--max_epochs", "3", "--limit_train_batches", "0.25", "--val_check_interval", "2"),
            *("--accumulate_grad_batches", "2", "--gradient_clip_val", "0.5"),
            *("--max_time", '{"minutes": 7}', "--profiler", "simple", "--inference_mode", "false"),
            *("--num_nodes", "1", "--reload_dataloaders_every_n_epochs", "2"),
            *("--deterministic", "warn", "--enable_progress_bar", "false", "--precision", "bf16"),
        ]
    )
    kwargs = controller.trainer_kwargs(cfg)
    assert kwargs["limit_train_batches"] == 0.25 and isinstance(kwargs["val_check_interval"], int)
    assert kwargs["max_time"] == {"minutes": 7} and kwargs["enable_progress_bar"] is False
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, **kwargs)
    assert (trainer.max_epochs, trainer.limit_train_batches, trainer.val_check_interval) == (
        3,
        0.25,
        2,
    )
    assert (trainer.accumulate_grad_batches, trainer.gradient_clip_val) == (2, 0.5)
    assert trainer.reload_dataloaders_every_n_epochs == 2 and trainer.num_nodes == 1
    assert type(trainer.profiler).__name__ == "SimpleProfiler"
    assert trainer.predict_loop.inference_mode is False and trainer.precision == "bf16-mixed"
    timer = next(cb for cb in trainer.callbacks if type(cb).__name__ == "Timer")
    assert timer._duration == 7 * 60
    with pytest.raises(SystemExit):
        parse(["--max_epochs", "many"])  # typed: an int (or none) only


# --------------------------------------------------------------------------- the seed's choices


def test_defaults_wire_the_seeds_callbacks(tmp_path: Path) -> None:
    from lightning.pytorch.callbacks import (
        DeviceStatsMonitor,
        EarlyStopping,
        LearningRateMonitor,
        ModelCheckpoint,
    )

    cfg = parse([])
    assert (cfg.test_weights, cfg.eval_decoding, cfg.teacher_forcing) == ("final", "coin", 0.5)
    callbacks = controller.training_callbacks(cfg, tmp_path)

    def one(kind: type):
        (found,) = [c for c in callbacks if isinstance(c, kind)]
        return found

    ckpt, stop = one(ModelCheckpoint), one(EarlyStopping)
    assert (ckpt.monitor, ckpt.save_top_k, ckpt.save_last, ckpt._every_n_train_steps) == (
        "val_loss_seed",
        3,
        True,
        2000,
    )
    assert (stop.monitor, stop.patience, stop.stopping_threshold, stop.check_finite) == (
        "val_loss_seed",
        10,
        200.0,
        True,
    )
    assert one(DeviceStatsMonitor) and one(LearningRateMonitor).logging_interval == "epoch"
    every_validation = controller.training_callbacks(
        parse(["--checkpoint_every_n_steps", "0"]), tmp_path
    )[1]
    assert (every_validation._every_n_train_steps, every_validation._every_n_epochs) == (0, 1)


def test_step_checkpoints_plus_a_final_one_and_the_final_weights_tested(
    small_dataset: Path, tmp_path: Path, capsys
) -> None:
    storage = tmp_path / "steps"
    s = run(
        capsys,
        small_dataset,
        storage,
        *("--max_epochs", "2", "--limit_train_batches", "3", "--checkpoint_every_n_steps", "4"),
        *("--eval_decoding", "forced"),
    )
    assert s["steps"] == 6 and s["monitor"] == "val_loss_seed" and s["tested_weights"] == "final"
    steps = sorted(int(p.name.split("step=")[1].split("-")[0]) for p in storage.glob("epoch=*"))
    assert steps == [4, 6]  # step 4 by the interval, step 6 when training ended
    last = torch.load(storage / "last.ckpt", weights_only=True, map_location="cpu")
    assert last["global_step"] == 6
    # the post-fit test saw the final weights: testing last.ckpt's gives the same loss
    cfg = parse(["--data_dir", str(small_dataset), *TINY, "--eval_decoding", "forced"])
    dm = controller.build_data(cfg)
    model = controller.build_model(cfg, dm)
    model.load_state_dict(last["state_dict"])
    trainer = pl.Trainer(logger=False, limit_test_batches=2, enable_progress_bar=False)
    again = trainer.test(model, datamodule=dm, verbose=False)[0]
    assert again["test_loss"] == pytest.approx(s["test"]["test_loss"], rel=1e-5)
    assert set(s["last_validation"]) == {"val_loss", "val_loss_seed", "val_acc"}


def test_seed_threshold_stops_and_a_short_run_still_leaves_checkpoints(
    small_dataset: Path, tmp_path: Path, capsys
) -> None:
    storage = tmp_path / "threshold"
    s = run(
        capsys,
        small_dataset,
        storage,
        *("--max_epochs", "5", "--limit_train_batches", "2", "--stopping_threshold", "1e9"),
        *("--test_weights", "best"),
    )
    # the seed's 2000-step interval never fired; training ended at the threshold after epoch 0
    assert s["stopped"] == {"by": "stopping_threshold", "epoch": 0} and s["steps"] == 2
    assert (storage / "last.ckpt").is_file() and Path(s["best_checkpoint"]).is_file()
    assert Path(s["best_checkpoint"]).name.startswith("epoch=0-step=2-val_loss=")
    assert s["tested_weights"] == "best"
    assert s["best_score"] == pytest.approx(s["last_validation"]["val_loss_seed"])


def test_unbounded_epochs_with_schedule_minus_one_fails_in_one_line(
    small_dataset: Path, tmp_path: Path, capsys
) -> None:
    code = seed_cli.cli(
        ["--data_dir", str(small_dataset), "--storage_path", str(tmp_path), "--max_steps", "3"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("ae_processor: error: --l_rate_max_epoch -1")
    assert "--l_rate_max_epoch N" in err[-1]


def lr_sequence(scheduler, optimizer, epochs: int) -> list[float]:
    rates = []
    for _ in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_schedule_minus_one_anneals_and_one_gives_the_seeds_swing() -> None:
    def model(max_epochs: int) -> QuackAutoEncoder:
        return QuackAutoEncoder(
            40, 8, 8, learning_rate=0.1, learning_rate_min=1e-3, lr_max_epochs=max_epochs
        )

    # the seed: CosineAnnealingLR(T_max=-1) as its configure_optimizers built it
    seed_opt = torch.optim.AdamW(nn.Linear(2, 2).parameters(), lr=0.1)
    seed = lr_sequence(
        torch.optim.lr_scheduler.CosineAnnealingLR(seed_opt, T_max=-1, eta_min=1e-3), seed_opt, 6
    )
    assert seed == pytest.approx([0.1, 1e-3, 0.1, 1e-3, 0.1, 1e-3])
    one = model(1).configure_optimizers()
    assert lr_sequence(one["lr_scheduler"]["scheduler"], one["optimizer"], 6) == pytest.approx(seed)
    m = model(-1)
    trainer = pl.Trainer(max_epochs=4, logger=False, enable_checkpointing=False)
    m.trainer = trainer
    cfg = m.configure_optimizers()
    rates = lr_sequence(cfg["lr_scheduler"]["scheduler"], cfg["optimizer"], 5)
    assert rates[0] == 0.1 and rates[-1] == pytest.approx(1e-3) and rates == sorted(rates)[::-1]


# --------------------------------------------------------------------------- validation, test


def test_seed_scale_loss_is_the_per_step_mean_summed_over_steps() -> None:
    gen = torch.Generator().manual_seed(0)
    pad, vocab = 1, 11
    x = torch.randint(2, vocab, (4, 6), generator=gen)
    for row, length in enumerate([6, 4, 2, 5]):
        x[row, length:] = pad
    logits = torch.randn(4, 6, vocab, generator=gen)
    real = x.ne(pad)
    per_token = nn.functional.cross_entropy(logits[real], x[real], reduction="none")
    # the seed's loss_over_time: CrossEntropyLoss(ignore_index=pad) per step, added up
    step_loss = nn.CrossEntropyLoss(ignore_index=pad)
    expected = sum(step_loss(logits[:, t], x[:, t]) for t in range(x.shape[1]))
    assert seed_scale_loss(per_token, real) == pytest.approx(float(expected), rel=1e-6)


def tiny_model(**kw) -> QuackAutoEncoder:
    torch.manual_seed(0)
    return QuackAutoEncoder(30, 8, 16, max_decode_length=8, pad_id=1, **kw)


def batches(n: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    out = []
    for _ in range(n):
        x = torch.randint(2, 30, (3, 8), generator=gen)
        x[1, 5:] = 1
        out.append(x)
    return out


def validate(model: QuackAutoEncoder, data: list[torch.Tensor]) -> dict[str, float]:
    trainer = pl.Trainer(
        logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu"
    )
    loader = DataLoader(data, batch_size=None)
    return {k: float(v) for k, v in trainer.validate(model, loader, verbose=False)[0].items()}


def test_validation_coin_is_seeded_per_batch_and_logs_both_scales(one_thread) -> None:
    m = tiny_model()
    coins = [m.eval_teacher_forced("val", i) for i in range(2000)]
    assert abs(np.mean(coins) - 0.5) < 0.04  # the seed's coin: teacher-forced half the time
    assert coins == [m.eval_teacher_forced("val", i) for i in range(2000)]
    data = batches(6)
    first, again = validate(m, data), validate(m, data)
    assert first == again  # the same batches draw the same coin every validation
    assert {"val_loss", "val_loss_seed", "val_acc"} <= set(first)
    drawn = {m.eval_teacher_forced("val", i) for i in range(len(data))}
    assert ("val_loss_forced" in first, "val_loss_sampled" in first) == (
        True in drawn,
        False in drawn,
    )
    m.eval_decoding = "forced"
    forced = validate(m, data)
    assert "val_loss_sampled" not in forced and forced["val_loss_forced"] == forced["val_loss"]
    losses = [m.decode_loss(x, "fast")[0].detach() for x in data]
    tokens = [int(x[:, :8].ne(1).sum()) for x in data]
    want = sum(float(v) * n for v, n in zip(losses, tokens, strict=True)) / sum(tokens)
    assert forced["val_loss"] == pytest.approx(want, rel=1e-5)
