"""The seed's latent classifier on the leave-family-out protocol, on a tiny world."""

from __future__ import annotations

import numpy as np
import pytest

from quackae.synth import evaluate, seed_row

TINY = seed_row.Scale(
    max_epochs=2,
    patience=1,
    train_batches=4,
    val_batches=2,
    classifier_epochs=2,
    embed_size=8,
    hidden_size=16,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("seed_row_world")
    return out, evaluate.make_world(out, seed=0, measurements=240)


def test_protocol_holds_families_out_and_reports_the_seeds_row(world) -> None:
    out, w = world
    rows = seed_row.run_seed_rows(w, out, 2, ("job_scripts",), TINY)
    run = rows["job_scripts"]
    ae = run["autoencoder"]
    assert (ae["embed_size"], ae["hidden_size"]) == (8, 16) and ae["epochs"] <= 2
    assert {"val_loss", "val_loss_seed"} <= set(ae["last_validation"])
    assert ae["stopped"]["by"] in ("patience_exhausted", "limits") and ae["best_val_loss_seed"] > 0
    plan = evaluate.fold_plan(2, w.seed)
    assert [f["families"] for f in run["folds"]] == [sorted(fams) for fams, _ in plan[1:]]
    for fold, (fams, kinds) in zip(run["folds"], plan[1:], strict=True):
        labels = evaluate.fold_labels(w, fams, kinds)
        trained = seed_row.balanced_rows(labels, w.rf.row_ids, w.seed)
        page, benign = evaluate.held_out_masks(w, fams, kinds)
        assert not (page | benign)[trained].any()  # no held-out row reaches the classifier
        assert fold["pages"] == int(page.sum()) > 0
        assert 0 <= fold["recall"] <= 1 and (fold["fpr"] is None or 0 <= fold["fpr"] <= 1)
        own = fold["own_split"]
        n = sum(c["rows"] for c in own["counts"].values())
        assert n == len(trained) and own["counts"]["test"]["rows"] == round(0.2 * n)
        assert own["accuracy"] == own["f1_seed"]  # the seed's F1 is its accuracy
    summary = seed_row.summarise([rows])["job_scripts"]
    cell = summary["cells"]["today's families"]
    assert cell["folds"] == 2 and cell["recall"] == pytest.approx(summary["mean_recall"], abs=1e-3)
    assert summary["reported_folds"] == 2 and summary["worst_fold_recall"] <= summary["mean_recall"]
    text = "\n".join(seed_row.render({"job_scripts": summary}, TINY.target_fpr))
    assert "the seed's latent classifier (job_scripts)" in text and "val_loss_seed" in text


def test_same_latents_same_fold_numbers(world, tmp_path) -> None:
    _, w = world
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(w.rf.table.num_rows, 8)).astype(np.float32)
    latents[w.labels == 1] += 1.0
    fams, kinds = evaluate.fold_plan(2, w.seed)[1]
    runs = [
        seed_row.score_fold(w, latents, fams, kinds, "seed_jobs", TINY, tmp_path / str(i))
        for i in range(2)
    ]
    assert runs[0] == runs[1]


def test_table_cells_pool_each_column_over_the_variant_worlds_folds(tmp_path) -> None:
    w = evaluate.make_world(tmp_path / "w", seed=1, measurements=240, variants=True)
    rng = np.random.default_rng(1)
    latents = rng.normal(size=(w.rf.table.num_rows, 8)).astype(np.float32)
    latents[w.censored_truth.astype(bool)] += 1.5
    plan = evaluate.fold_plan(2, w.seed, variants=True)
    folds = [
        seed_row.score_fold(w, latents, fams, kinds, "seed_jobs", TINY, tmp_path / str(i))
        for i, (fams, kinds) in enumerate(plan[1:], start=1)
    ]
    cells = seed_row.table_cells([{"folds": folds, "real_pages": False}])
    assert set(cells) == set(evaluate.COLUMNS)  # no real-pages column for a world without them
    for column, (families, kinds) in evaluate.COLUMNS.items():
        recalls, fprs = [], []
        for (fams, held_kinds), fold in zip(plan[1:], folds, strict=True):
            page, benign = evaluate.held_out_masks(w, fams, held_kinds)
            col_page = page & np.isin(w.family, families)
            col_benign = benign & np.isin(w.family, kinds)
            if col_page.any():
                hit = sum(
                    fold["family_recall"].get(f, 0) * n
                    for f, n in fold["family_rows"].items()
                    if f in families
                )
                recalls.append(hit / col_page.sum())
            if col_benign.any():
                fp = sum(
                    fold["kind_fpr"].get(k, 0) * n
                    for k, n in fold["kind_rows"].items()
                    if k in kinds
                )
                fprs.append(fp / col_benign.sum())
        assert recalls, column  # every column holds pages in some reported fold
        c = cells[column]
        assert c["folds"] == len(recalls) and c["coverage"] is None  # it proposes nothing
        assert c["recall"] == pytest.approx(np.mean(recalls), abs=1e-4)
        assert c["worst_fold_recall"] == pytest.approx(min(recalls), abs=1e-4)
        if fprs:
            assert c["fpr"] == pytest.approx(np.mean(fprs), abs=1e-4)
