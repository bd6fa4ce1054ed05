"""Plots: training curves from CSVLogger files, embedding maps, histograms, plot_all."""

from __future__ import annotations

from pathlib import Path

import pytest

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
