"""Latent classifier: training on separable latents, the baseline, predict coverage, dim checks.

``demo_run`` builds (once per session) a small demo-layout folder: a synth archive flattened
into ``dataset/``, embeddings dirs whose latents are Gaussians separated by label
(``encoded_filtered``) or by ground truth (``encoded_evaluate``), a trained ``classifier/`` and
a ``candidates/`` predict output. test_report.py and test_plots.py reuse it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from quackae import synth
from quackae.classify import baseline, calibration, classifier, latents
from quackae.classify.latents import LatentDataModule
from quackae.cli.classify import add_classify_arguments
from quackae.cli.plot import add_plot_arguments
from quackae.dataset import store
from quackae.dataset.embeddings import COLUMNS, EmbeddingStore, read_embeddings
from quackae.ingest.flatten import Options, flatten
from quackae.report import markdown as report

DIM = 16
_CACHE: dict[str, Path] = {}


def _truth(path: Path) -> dict[tuple[int, int], bool]:
    rows = (json.loads(line) for line in path.read_text().splitlines())
    return {(r["line"], r["try_index"]): r["censored"] for r in rows}


def write_embeddings(
    root: Path, mode: str, rows: list[dict], positive: np.ndarray, dataset: Path, dim: int = DIM
) -> None:
    """An embeddings dir of ``rows`` in two shards; latents N(+1, 1) if positive else N(-1, 1)."""
    rng = np.random.default_rng(len(rows) + dim)
    latents = rng.normal(np.where(positive, 1.0, -1.0)[:, None], 1.0, (len(rows), dim)).astype(
        np.float32
    )
    es = EmbeddingStore(root)
    es.begin(
        {
            "mode": mode,
            "dim": dim,
            "checkpoint": "test",
            "dataset": str(dataset),
            "tokenizer_sha256": "",
            "seed": 0,
        }
    )
    half = len(rows) // 2
    es.write_shard("part-00000", rows[:half], latents[:half])
    es.write_shard("part-00001", rows[half:], latents[half:])
    es.finish(len(rows))


def build_demo(run: Path) -> Path:
    """Dataset, embeddings, trained classifier and predictions in the demo folder layout."""
    result = synth.write_archive(run / "raw", 800, seed=3, fmt="v2", scan="http")
    sigs = synth.write_signatures(run / "raw" / "signatures")
    flatten(
        [result.archive],
        run / "dataset",
        Options(max_tokens=64, signatures=sigs),
        progress=False,
        vocab_size=600,
    )
    rows = store.Dataset(run / "dataset").read_columns(list(COLUMNS)).to_pylist()
    censored = [r for r in rows if r["censored"] == 1]
    uncensored = [r for r in rows if r["censored"] == -1][
        : 2 * len(censored)
    ]  # --filtered balances
    labelled = censored + uncensored
    labels = np.array([r["censored"] == 1 for r in labelled])
    write_embeddings(run / "encoded_filtered", "filtered", labelled, labels, run / "dataset")
    truth = _truth(result.truth)
    undetermined = [r for r in rows if r["censored"] == 0]
    hidden = np.array([truth[(r["line"], r["try_index"])] for r in undetermined])
    write_embeddings(run / "encoded_evaluate", "evaluate", undetermined, hidden, run / "dataset")
    metrics = classifier.train_classifier(
        run / "encoded_filtered",
        run / "classifier",
        max_epochs=30,
        lr=2e-2,
        batch_size=32,
        progress=False,
    )
    classifier.predict(run / "encoded_evaluate", Path(metrics["checkpoint"]), run / "candidates")
    report.write_report(run / "candidates", metrics=metrics)
    return run


def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared demo folder, built on first use."""
    if "run" not in _CACHE:
        _CACHE["run"] = build_demo(tmp_path_factory.mktemp("demo"))
    return _CACHE["run"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return demo_run(tmp_path_factory)


def test_training_beats_chance_and_writes_metrics(run):
    metrics = json.loads((run / "classifier" / classifier.METRICS_FILE).read_text())
    for key in (
        "accuracy",
        "f1",
        "roc_auc",
        "threshold",
        "counts",
        "classifier",
        "baseline",
        "winner",
        "verdict",
    ):
        assert key in metrics
    assert metrics["roc_auc"] > 0.9 and metrics["accuracy"] > 0.8
    assert metrics["counts"]["test"]["rows"] > 0 and metrics["counts"]["test"]["censored"] > 0
    base = metrics["baseline"]
    assert "skipped" not in base and base["n"] == metrics["classifier"]["n"]
    assert metrics["winner"] in ("classifier", "baseline", "tie")
    assert (run / "classifier" / "logs" / "classifier" / "metrics.csv").is_file()
    ckpt = torch.load(metrics["checkpoint"], map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["input_dim"] == DIM


def test_baseline_saved_without_pickle(run):
    path = run / "classifier" / baseline.BASELINE_FILE
    with np.load(path, allow_pickle=False) as z:
        assert z["coef"].ndim == 1
    model = baseline.BagOfTokensBaseline.load(path)
    assert model.n_features == store.Dataset(run / "dataset").manifest["vocab_size"]


def test_baseline_skipped_without_dataset(run, tmp_path):
    dm = LatentDataModule(run / "encoded_filtered")
    dm.setup()
    out = classifier._baseline_metrics(
        {"dataset": str(tmp_path / "gone")}, dm, tmp_path, 0, 0.5, 0.01, "none"
    )
    assert "skipped" in out
    assert classifier.verdict({"roc_auc": 0.9, "f1": 0.8}, out)[0].startswith("classifier")


def test_novel_kind_calibration_holds_out_each_benign_kind(run):
    metrics = json.loads((run / "classifier" / classifier.METRICS_FILE).read_text())
    for rule, threshold in (
        (metrics["threshold_rule"], metrics["threshold"]),
        (metrics["baseline"]["threshold_rule"], metrics["baseline"]["threshold"]),
    ):
        assert rule["calibration"] == "novel-kind" and rule["threshold"] == threshold
        kinds = rule["novel_kind"]["kinds"]
        assert len(kinds) >= 2 and all(
            k["rows"] >= calibration.MIN_KIND_ROWS for k in kinds.values()
        )
        assert threshold == max(0.5, rule["validation"], *(k["threshold"] for k in kinds.values()))
    dm = LatentDataModule(run / "encoded_filtered")
    dm.setup()
    assert set(dm.negative_kinds(calibration.MIN_KIND_ROWS)) == set(
        metrics["threshold_rule"]["novel_kind"]["kinds"]
    )


def test_novel_kind_threshold_fits_without_the_held_out_kind(run):
    dm = LatentDataModule(run / "encoded_filtered")
    dm.setup()
    seen = []

    def score(view, mask):  # a held-out kind's rows must be absent from every split of the view
        assert not set(dm.row_ids[mask]) & set(view.row_ids)
        assert len(view.row_ids) == len(dm.row_ids) - mask.sum()
        seen.append(dm.kind[mask][0])
        return np.linspace(0, 1, int(mask.sum()))

    rule = calibration.novel_kind_threshold(dm, score, target_fpr=0.0)
    assert sorted(seen) == sorted(rule["kinds"])
    assert all(k["max_probability"] == 1.0 for k in rule["kinds"].values())
    assert (
        rule["threshold"] > 1.0 - 1e-9
    )  # FPR 0 on a kind scoring up to 1.0: nothing below 1.0 is flagged
    one_kind = dm.without((dm.y == 0) & (dm.kind != seen[0]))  # positives and a single benign kind
    assert "skipped" in calibration.novel_kind_threshold(one_kind, score, 0.01)


def test_calibration_none_and_validation(run, tmp_path):
    none = classifier.train_classifier(
        run / "encoded_filtered",
        tmp_path / "none",
        max_epochs=3,
        lr=2e-2,
        batch_size=32,
        progress=False,
        calibration="none",
    )
    assert none["threshold"] == 0.5 and none["baseline"]["threshold"] == 0.5
    val = classifier.train_classifier(
        run / "encoded_filtered",
        tmp_path / "val",
        max_epochs=3,
        lr=2e-2,
        batch_size=32,
        progress=False,
        calibration="validation",
    )
    assert "novel_kind" not in val["threshold_rule"] and val["threshold"] >= 0.5
    with pytest.raises(ValueError, match="calibration"):
        classifier.train_classifier(run / "encoded_filtered", tmp_path / "x", calibration="oracle")


def test_predict_cli_uses_the_trained_threshold(run, tmp_path, capsys):
    from quackae.cli import main

    metrics = json.loads((run / "classifier" / classifier.METRICS_FILE).read_text())
    assert classifier.trained_threshold(Path(metrics["checkpoint"])) == metrics["threshold"]
    code = main(
        [
            "classify",
            "predict",
            "--embeddings",
            str(run / "encoded_evaluate"),
            "--checkpoint_path",
            metrics["checkpoint"],
            "--storage_path",
            str(tmp_path / "pred"),
        ]
    )
    assert code == 0, capsys.readouterr()
    assert (
        json.loads((tmp_path / "pred" / "predictions.json").read_text())["threshold"]
        == metrics["threshold"]
    )
    assert classifier.trained_threshold(tmp_path / "elsewhere.ckpt") == 0.5


def test_predict_scores_every_row_once(run):
    want = read_embeddings(run / "encoded_evaluate")[0].column("row_id").to_numpy()
    table = pq.read_table(run / "candidates" / "shards")
    ids = table.column("row_id").to_numpy()
    assert len(ids) == len(want) == len(np.unique(ids)) and set(ids) == set(want)
    assert set(COLUMNS) <= set(table.column_names)
    assert str(table.schema.field("probability").type) == "float"
    assert table.column("baseline_probability").null_count == 0
    prob = table.column("probability").to_numpy()
    assert ((prob >= 0) & (prob <= 1)).all()


def test_predict_refuses_other_dim(run, tmp_path):
    rows = read_embeddings(run / "encoded_evaluate", COLUMNS)[0].slice(0, 6).to_pylist()
    write_embeddings(tmp_path / "emb8", "evaluate", rows, np.zeros(6, bool), run / "dataset", dim=8)
    ckpt = json.loads((run / "classifier" / classifier.METRICS_FILE).read_text())["checkpoint"]
    with pytest.raises(ValueError, match="8-dimensional"):
        classifier.predict(tmp_path / "emb8", Path(ckpt), tmp_path / "out")


def test_split_is_stable_and_proportioned():
    ids = np.arange(-20000, 20000, dtype=np.int64) * 7919
    a, b = latents.split_of(ids, 0), latents.split_of(ids, 0)
    assert (a == b).all() and not (a == latents.split_of(ids, 1)).all()
    share = np.bincount(a, minlength=3) / len(a)
    assert np.allclose(share, latents.SPLIT_FRACTIONS, atol=0.02)


def test_cli_glue_parses():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    add_classify_arguments(sub)
    add_plot_arguments(sub)
    args = parser.parse_args(
        ["classify", "train", "--embeddings", "e", "--storage_path", "s", "--max_epochs", "3"]
    )
    assert args.max_epochs == 3 and callable(args.func)
    args = parser.parse_args(
        [
            "classify",
            "predict",
            "--embeddings",
            "e",
            "--checkpoint_path",
            "c",
            "--storage_path",
            "o",
        ]
    )
    assert args.threshold is None and callable(args.func)
    assert callable(parser.parse_args(["plot", "d"]).func)


def test_seed_random_split_is_the_seeds_random_split_seeded():
    from torch.utils.data import random_split

    split = latents.seed_random_split(1003, seed=5)
    counts = np.bincount(split, minlength=3)  # train, val, test
    assert counts.tolist() == [1003 - round(200.6) - round(100.3), round(100.3), round(200.6)]
    gen = torch.Generator().manual_seed(5)
    train, test, val = random_split(range(1003), [702, 201, 100], generator=gen)
    assert (split[train.indices] == 0).all() and (split[test.indices] == 2).all()
    assert (split[val.indices] == 1).all()
    assert (split == latents.seed_random_split(1003, seed=5)).all()


def test_seed_f1_is_the_accuracy_and_binary_f1_is_not():
    from quackae.classify.recipes import seed_f1, seed_metrics

    target = np.array([1, 1, 0, 0, 0, 0, 1, 0])
    never = np.zeros(8, bool)  # a head that flags nothing: accurate on the majority, F1 0
    assert seed_f1(target, never) == pytest.approx(5 / 8) and seed_f1(target, target) == 1.0
    m = seed_metrics(target, np.array([0.9, 0.4, 0.1, 0.2, 0.6, 0.3, 0.8, 0.1]), [0.2, 0.7], 0.0)
    assert m["accuracy"] == m["f1_seed"] == 0.75 and m["f1_censored"] == pytest.approx(0.6667)
    # recall at FPR 0 on the validation negatives (0.2, 0.7): the threshold lies just above 0.7
    assert m["recall_at_fpr"]["recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert m["recall_at_fpr"]["fpr"] == 0.0


def test_seed_recipe_trains_as_published(run, tmp_path):
    m = classifier.train_classifier(
        run / "encoded_filtered",
        tmp_path / "seed",
        recipe_name="seed",
        max_epochs=4,
        progress=False,
    )
    r = m["recipe"]
    assert (r["learning_rate"], r["learning_rate_min"], r["batch_size"], r["leak"]) == (
        0.1,
        1e-3,
        4,
        0.1,
    )
    assert (r["patience"], r["stopping_threshold"], r["save_top_k"], r["save_last"]) == (
        10,
        0.05,
        3,
        True,
    )
    assert m["threshold"] == 0.5 and m["test_weights"] == "final"
    n = sum(c["rows"] for c in m["counts"].values())
    assert (m["counts"]["val"]["rows"], m["counts"]["test"]["rows"]) == (
        round(0.1 * n),
        round(0.2 * n),
    )
    seed = m["seed_metrics"]
    assert seed["accuracy"] == seed["f1_seed"] and 0 <= seed["f1_censored"] <= 1
    assert set(seed["recall_at_fpr"]) == {"target_fpr", "threshold", "recall", "fpr"}
    kept = sorted(p.name for p in (tmp_path / "seed").glob("*.ckpt"))
    # top 3 and last: these separable latents reach the seed's val_loss 0.05 in the first epoch
    assert m["stopped"] == "stopping_threshold" and m["epochs"] == 1
    assert "last.ckpt" in kept and len(kept) == 2
    hp = torch.load(m["checkpoint"], weights_only=True, map_location="cpu")["hyper_parameters"]
    assert (hp["leak"], hp["standardise"], hp["input_dim"]) == (0.1, False, DIM)
    head = classifier.load_classifier(Path(m["checkpoint"]))
    assert head.net[1].negative_slope == 0.1 and float(head.scale.sum()) == DIM  # raw inputs
