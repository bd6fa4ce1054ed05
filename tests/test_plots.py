"""Plots: training curves from CSVLogger files, embedding maps, histograms, plot_all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from quackae.report import plots
from test_classifier import demo_run

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return demo_run(tmp_path_factory)


def _is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG


def test_plot_all_finds_the_demo_layout(run):
    ae_logs = run / "autoencoder" / "logs" / "ae"
    ae_logs.mkdir(parents=True, exist_ok=True)
    (ae_logs / "metrics.csv").write_text(
        "epoch,step,train_loss_step,train_loss_epoch,val_loss\n"
        ",0,5.1,,\n0,1,4.9,,\n0,1,,4.95,4.8\n,2,4.2,,\n1,3,,4.1,4.0\n"
    )
    written = plots.plot_all(run)
    names = {p.name for p in written}
    assert {"training_curves.png", "embeddings_pca.png", "probabilities.png"} <= names
    assert all(p.parent == run / "plots" and _is_png(p) for p in written)


def test_read_curve_prefers_listed_keys(tmp_path):
    csv = tmp_path / "metrics.csv"
    csv.write_text("epoch,step,train_loss_step,val_loss\n0,1,2.0,\n0,1,,1.5\n1,3,1.0,\n")
    steps, values, key = plots.read_curve(csv, plots.TRAIN_KEYS)
    assert key == "train_loss_step" and list(steps) == [1, 3] and list(values) == [2.0, 1.0]
    assert plots.read_curve(csv, ("missing",))[2] == ""


def test_nothing_to_draw(tmp_path):
    assert plots.plot_all(tmp_path) == []


def test_training_curve_separates_forced_and_sampled_steps(tmp_path):
    """The autoencoder's two kinds of steps are two series (not one zigzag), each with a trend."""
    logs = tmp_path / "logs" / "demo"
    logs.mkdir(parents=True)
    rows = ["epoch,step,train_loss,train_loss_forced,train_loss_sampled,val_loss"]
    for step in range(120):
        forced = step % 2 == 0  # alternating: one line through both would zigzag by ~2 nats
        loss = (2.0 if forced else 4.0) - step / 100
        rows.append(f"0,{step},{loss},{loss if forced else ''},{'' if forced else loss},")
    rows.append("0,119,,,,2.5")
    (logs / "metrics.csv").write_text("\n".join(rows) + "\n")
    series = plots._training_series(logs / "metrics.csv")
    assert [s[0] for s in series] == [
        "training, teacher-forced steps",
        "training, sampled steps (decoder fed its own output)",
    ]
    forced, sampled = series[0][2], series[1][2]
    assert len(forced) == len(sampled) == 60 and np.all(sampled - forced[: len(sampled)] > 1.9)
    trend = plots.running_median(sampled, 5)
    assert np.all(np.diff(trend) <= 0)  # the trend of a falling curve falls
    written = plots.plot_all(tmp_path)  # a training run folder alone is recognised
    assert [p.name for p in written] == ["training_curves.png"] and _is_png(written[0])
    only_mixed = tmp_path / "mixed" / "logs" / "x"
    only_mixed.mkdir(parents=True)
    (only_mixed / "metrics.csv").write_text("epoch,step,train_loss\n0,1,3.0\n0,2,2.0\n")
    assert "mixed" in plots._training_series(only_mixed / "metrics.csv")[0][0]


def test_plot_draws_a_detect_output(report_world, tmp_path):
    out = tmp_path / "plots"
    done = run_cli("plot", report_world.detections, "--storage_path", out)
    assert done.returncode == 0, done.stderr
    names = {p.name for p in out.glob("*.png")}
    assert names == {"detect_probabilities.png", "detect_countries.png", "detect_days.png"}
    assert all(_is_png(p) for p in out.glob("*.png"))
    assert plots.recognised(report_world.detections) == ["detections"]
    assert plots.recognised(tmp_path) == [] and plots.plot_all(tmp_path) == []
