"""`quackae demo` end to end on a small scale: every stage's artefact lands under one folder."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import run_cli
from quackae.dataset import store


@pytest.mark.slow
def test_small_demo_runs_every_stage(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = run_cli("demo", "--storage_path", out, "--scale", "0.12", "--autoencoder_epochs", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    for stage in (
        "synth",
        "flatten",
        "train autoencoder",
        "encode --filtered",
        "encode --evaluate",
        "encode every row",
        "classify train",
        "classify predict + report",
        "plots",
        "evaluate (leave-family-out)",
        "detect + HTML report",
    ):
        assert f"] {stage}:" in result.stdout
    assert (
        "held-out blockpage families: mean recall" in result.stdout
        and "held-out benign kinds: mean FPR" in result.stdout
    )
    index = out / "report" / "index.html"
    assert index.is_file() and f"HTML report (open in a browser): {index}" in result.stdout
    evaluation = json.loads((out / "evaluation" / "evaluation.json").read_text())
    assert (
        evaluation["summary"]["reported_folds"] == 5
        and evaluation["summary"]["mean_recall"] is not None
    )
    summary = json.loads((out / "summary.json").read_text())
    # the demo ends with its own seed's row of the evaluation table, both columns filled
    assert "this seed's row of the evaluation table" in result.stdout
    assert {"today's families", "variant families"} <= set(summary["table_row"])
    assert all(c["recall"] is not None for c in summary["table_row"].values())
    assert summary["truth"]["classifier"]["at_threshold"]["recall"] is not None
    # every undetermined row of the dataset got exactly one probability
    manifest = store.read_manifest(out / "dataset")
    ids = pq.read_table(sorted((out / "candidates" / "shards").glob("*.parquet")))[
        "row_id"
    ].to_pylist()
    assert len(ids) == len(set(ids)) == manifest["undetermined"]
    report = json.loads((out / "candidates" / "report.json").read_text())
    assert report["rows"] == manifest["undetermined"] and "groups" in report
    assert (out / "candidates" / "report.md").read_text().startswith("# Censorship candidates")
    assert {p.name for p in (out / "plots").glob("*.png")} >= {
        "training_curves.png",
        "embeddings_pca.png",
        "probabilities.png",
    }
    metrics = json.loads((out / "classifier" / "metrics.json").read_text())
    assert metrics["winner"] in ("classifier", "baseline", "tie")
    assert metrics["latent"] == "mean" and metrics["threshold_rule"]["calibration"] == "novel-kind"
    assert (
        summary["truth"]["classifier"]["at_threshold"]["threshold"] == metrics["threshold"] >= 0.5
    )
    for mode in ("filtered", "evaluate"):
        assert (
            json.loads((out / f"encoded_{mode}" / "embeddings.json").read_text())["latent"]
            == "mean"
        )
    # the detector is the default one: trained with the latents of every row of the dataset
    encoded = pq.read_table(
        sorted((out / "encoded" / "shards").glob("*.parquet")), columns=["row_id"]
    )
    assert encoded.num_rows == manifest["length"]
    detector = json.loads((out / "detector" / "detector.json").read_text())
    assert "latent" in detector["inputs"] and detector["radius"] > 0
    # and the evaluation's row is of the same detector, on its world's own autoencoder
    assert "+ latents (the default detector)" in result.stdout
    (ae,) = summary["evaluation"]["autoencoders"]
    assert ae["epochs_run"] == 1 and ae["last_val_loss"] > 0
    assert "latent" in evaluation["features"]
