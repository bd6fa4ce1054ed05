"""The seed's latent classifier on the leave-family-out protocol: its row of ``quackae evaluate``.

The seed's research ran: train the autoencoder (``ae_processor``), encode every record with a
kept checkpoint (``--encode``), train ``QuackLatentClassifier`` on the labelled, balanced latents
(``--encode --filtered``, then ``latent_processor``), and flag the undetermined records it scores
>= 0.5 (``latent_predict.sh``, a kept checkpoint). Here that chain runs on one generated world
per seed, on the detector's folds (``synth.evaluate.fold_plan``): for each reported fold the
fold's blockpage families and benign kinds lose their labels, the classifier is trained on what
is left, and it scores the held-out pages (recall) and benign pages (false-positive rate).

Three settings (``SETTINGS``):

``defaults``     the controller's and the classifier's defaults: E=128, H=512, batch 4, AdamW
                 1e-1 cosine to 1e-3; the ``seed`` classifier recipe. On the evaluation's worlds
                 this diverges (NaN training loss within the second epoch).
``seed_sizes``   the seed's sizes (E=128, H=512) with the job script's learning-rate schedule and
                 batch (below), which converge; the ``seed`` classifier recipe (the job scripts'
                 lr 1e-6 leaves the classifier's probabilities near 0.5 within ``Scale``'s epochs).
``job_scripts``  ``job_scripts/ae_processing.sh``: E=96, H=256, lr 3.2e-3 cosine to 1e-4 over 55
                 epochs, ``--limit_train_batches 0.1``, batch 2 on each of 8 Ray workers (here one
                 process, batch 16: the rows those 8 workers averaged one step over); the
                 ``seed_jobs`` classifier recipe (``latent_processing.sh``).

The autoencoder trains until its validation loss stops improving (early stopping on the seed's
``val_loss_seed`` with ``Scale.patience``, the seed's 200 threshold off, so it does not stop
before it converges; the epoch where the seed's threshold would have stopped it is reported).
Scaled to a 2-core machine by ``Scale``: epochs are capped, an epoch is at most
``train_batches`` batches, validation reads ``val_batches`` batches.
"""

from __future__ import annotations

import csv
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quackae.synth.evaluate import World, fold_labels, fold_plan, held_out_masks


@dataclass(frozen=True)
class Setting:
    """One way the seed trained its autoencoder, and the classifier recipe that went with it."""

    name: str
    embed_size: int
    hidden_size: int
    batch_size: int
    l_rate: float
    l_rate_min: float
    l_rate_max_epoch: int
    limit_train_batches: float | None  # a share of an epoch's batches (the job script's 0.1)
    classifier: str  # classify.recipes.RECIPES


SETTINGS = {
    "defaults": Setting("defaults", 128, 512, 4, 1e-1, 1e-3, -1, None, "seed"),
    "job_scripts": Setting(
        "job_scripts", 96, 256, 16, 3.2454813220625096e-3, 1e-4, 55, 0.1, "seed_jobs"
    ),
    "seed_sizes": Setting("seed_sizes", 128, 512, 16, 3.2454813220625096e-3, 1e-4, 55, 0.1, "seed"),
}


@dataclass(frozen=True)
class Scale:
    """How far one seed-row run may go on this machine (every field says how it was scaled)."""

    max_epochs: int = 40  # autoencoder epochs at most (the seed: until early stopping)
    patience: int = 3  # autoencoder validations without a better val_loss_seed (the seed's: 10)
    train_batches: int = 150  # an autoencoder epoch is at most this many batches
    val_batches: int = 40  # validation batches read per validation
    classifier_epochs: int = 60  # classifier epochs at most (the seed's: 1000, early stopping)
    target_fpr: float = 0.01  # recall is also read at this false-positive rate
    embed_size: int | None = None  # replace the setting's sizes (tests only: a tiny model)
    hidden_size: int | None = None


def train_autoencoder(
    dataset: Path, out: Path, setting: Setting, scale: Scale, seed: int
) -> dict[str, Any]:
    """Train by ``setting`` until validation stops improving; the run summary and its losses."""
    from quackae.model import controller
    from quackae.model.config import ControllerConfig

    limit = scale.train_batches
    if setting.limit_train_batches is not None:
        rows = _train_rows(dataset, seed)
        limit = min(limit, max(int(rows / setting.batch_size * setting.limit_train_batches), 1))
    cfg = ControllerConfig(
        data_dir=str(dataset),
        storage_path=str(out),
        embed_size=scale.embed_size or setting.embed_size,
        hidden_size=scale.hidden_size or setting.hidden_size,
        batch_size=setting.batch_size,
        l_rate=setting.l_rate,
        l_rate_min=setting.l_rate_min,
        l_rate_max_epoch=setting.l_rate_max_epoch,
        ray_nodes=0,
        seed=seed,
        exp_label=f"seed-row-{setting.name}",
        patience=scale.patience,
        stopping_threshold=None,
        checkpoint_every_n_steps=0,
        trainer={
            "max_epochs": scale.max_epochs,
            "limit_train_batches": limit,
            "limit_val_batches": scale.val_batches,
            "limit_test_batches": scale.val_batches,
            "num_sanity_val_steps": 0,
            "enable_progress_bar": False,
            "enable_model_summary": False,
        },
    )
    summary = controller.train(cfg)
    summary["seed_threshold_epoch"] = _first_epoch_below(out, "val_loss_seed", 200.0)
    summary["train_batches_per_epoch"] = limit
    return summary


def _train_rows(dataset: Path, seed: int) -> int:
    """Rows of the dataset's training split (what the job script's 0.1 is a share of)."""
    from quackae.dataset import store
    from quackae.model.datamodule import split_of

    ids = store.Dataset(dataset).read_columns(["row_id"]).column("row_id").to_numpy()
    return int((split_of(ids, seed) == 0).sum())


def _first_epoch_below(storage: Path, metric: str, bound: float) -> int | None:
    """The first epoch whose logged ``metric`` is <= ``bound`` (the seed's early stop), if any."""
    for path in sorted(storage.glob("logs/*/metrics.csv")):
        with path.open() as f:
            for row in csv.DictReader(f):
                if row.get(metric) and float(row[metric]) <= bound:
                    return int(row["epoch"])
    return None


def encode_all(dataset: Path, checkpoint: str, out: Path, seed: int) -> Path:
    """Every row's final latent (the seed's) by ``checkpoint``; the embeddings directory."""
    from quackae.model import controller
    from quackae.model.config import ControllerConfig

    controller.encode(
        ControllerConfig(
            data_dir=str(dataset),
            storage_path=str(out),
            checkpoint_path=checkpoint,
            encode=True,
            latent="final",
            batch_size=64,
            ray_nodes=0,
            seed=seed,
            trainer={"enable_progress_bar": False, "enable_model_summary": False},
        )
    )
    return out


def balanced_rows(labels: np.ndarray, row_ids: np.ndarray, seed: int) -> np.ndarray:
    """The seed's ``--encode --filtered`` selection of a fold's labels: every censored row and
    the uncensored ones kept with probability censored/uncensored (seeded by row id)."""
    from quackae.model.datamodule import select_rows

    counts = {"censored": int((labels == 1).sum()), "uncensored": int((labels == -1).sum())}
    return select_rows(labels, row_ids, "filtered", counts, seed)


def score_fold(
    world: World,
    latents: np.ndarray,
    families: frozenset[str],
    kinds: frozenset[str],
    recipe_name: str,
    scale: Scale,
    out: Path,
) -> dict[str, Any]:
    """Train the seed's classifier without the fold's families and kinds; score them."""
    from quackae.classify.classifier import fit_recipe
    from quackae.classify.latents import TEMPLATE_KIND, LatentDataModule
    from quackae.classify.recipes import recipe

    labels = fold_labels(world, families, kinds)
    page, benign = held_out_masks(world, families, kinds)
    if int((labels[page | benign] != 0).sum()):
        raise AssertionError("held-out rows kept a label")
    ids = world.rf.row_ids
    rows = balanced_rows(labels, ids, world.seed)
    settings = recipe(recipe_name, max_epochs=scale.classifier_epochs)
    fingerprint = world.rf.column("fingerprint")
    dm = LatentDataModule.from_arrays(
        latents[rows],
        labels[rows],
        ids[rows],
        np.where(fingerprint[rows] == "", TEMPLATE_KIND, fingerprint[rows]),
        batch_size=settings.batch_size,
        seed=world.seed,
        split=settings.split,
    )
    out.mkdir(parents=True, exist_ok=True)
    fit = fit_recipe(dm, settings, out, world.seed, target_fpr=scale.target_fpr)
    prob = fit["model"].probability(latents)
    hit = prob >= settings.threshold
    at = fit["seed"]["recall_at_fpr"]["threshold"]
    noise = world.rf.scored & (world.mechanism == "noise")
    return {
        "families": sorted(families),
        "kinds": sorted(kinds),
        "pages": int(page.sum()),
        "benign_rows": int(benign.sum()),
        "recall": _rate(hit, page),
        "fpr": _rate(hit, benign),
        "noise_fpr": _rate(hit, noise),
        "family_recall": {
            f: _rate(hit, page & (world.family == f))
            for f in sorted(families)
            if (page & (world.family == f)).any()
        },
        "family_rows": {f: int((page & (world.family == f)).sum()) for f in sorted(families)},
        "kind_fpr": {
            k: _rate(hit, benign & (world.family == k))
            for k in sorted(kinds)
            if (benign & (world.family == k)).any()
        },
        "kind_rows": {k: int((benign & (world.family == k)).sum()) for k in sorted(kinds)},
        "at_target_fpr": {
            "threshold": at,
            "recall": _rate(prob >= at, page),
            "fpr": _rate(prob >= at, benign),
        },
        "own_split": {
            **{k: fit["seed"][k] for k in ("accuracy", "f1_seed", "f1_censored", "n")},
            "counts": dm.counts(),
        },
        "classifier_epochs": fit["epochs"],
        "classifier_stopped": fit["stopped"],
    }


def _rate(hit: np.ndarray, mask: np.ndarray) -> float | None:
    return round(float(hit[mask].mean()), 4) if mask.any() else None


def run_setting(
    world: World, dataset: Path, out: Path, folds: int, setting: Setting, scale: Scale
) -> dict[str, Any]:
    """One setting on one world: autoencoder, latents, the classifier on every reported fold."""
    from quackae.detect.detector import load_latents

    started = time.perf_counter()
    ae = train_autoencoder(dataset, out / "autoencoder", setting, scale, world.seed)
    ckpt = ae["best_checkpoint"] or ae["last_checkpoint"]
    x, have = load_latents(encode_all(dataset, ckpt, out / "encoded", world.seed), world.rf.row_ids)
    if not have.all():
        raise ValueError(f"{int((~have).sum())} rows were not encoded")
    plan = fold_plan(folds, world.seed, world.variants, world.real_pages)
    reported = [
        {
            "fold": i,
            **score_fold(world, x, fams, kinds, setting.classifier, scale, out / f"fold{i}"),
        }
        for i, (fams, kinds) in enumerate(plan[1:], start=1)
    ]
    return {
        "real_pages": world.real_pages,
        "setting": dataclasses.asdict(setting),
        "autoencoder": {
            "embed_size": scale.embed_size or setting.embed_size,
            "hidden_size": scale.hidden_size or setting.hidden_size,
            "epochs": ae["epochs"],
            "steps": ae["steps"],
            "train_batches_per_epoch": ae["train_batches_per_epoch"],
            "stopped": ae["stopped"],
            "best_val_loss_seed": ae["best_score"],
            "last_validation": ae["last_validation"],
            "seed_threshold_epoch": ae["seed_threshold_epoch"],
            "test": ae["test"],
            "checkpoint": ckpt,
        },
        "folds": reported,
        "seconds": round(time.perf_counter() - started, 1),
    }


def run_seed_rows(
    world: World, out: Path, folds: int, names: tuple[str, ...], scale: Scale | None = None
) -> dict[str, Any]:
    """Every named setting on one world (its dataset at ``out/dataset``)."""
    scale = scale or Scale()
    return {
        name: run_setting(
            world, out / "dataset", out / "seed_row" / name, folds, SETTINGS[name], scale
        )
        for name in names
    }


def summarise(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Per setting, over seeds and reported folds: recall, worst fold, FPR, the seed's metrics."""
    out: dict[str, Any] = {}
    names = sorted({name for s in per_seed for name in s})
    for name in names:
        runs = [s[name] for s in per_seed if name in s]
        folds = [f for r in runs for f in r["folds"]]
        recalls = [f["recall"] for f in folds if f["recall"] is not None]
        fprs = [f["fpr"] for f in folds if f["fpr"] is not None]
        at = [f["at_target_fpr"] for f in folds]
        own = [f["own_split"] for f in folds]
        out[name] = {
            "reported_folds": len(folds),
            "mean_recall": _mean(recalls),
            "worst_fold_recall": round(min(recalls), 4) if recalls else None,
            "mean_fpr": _mean(fprs),
            "worst_fold_fpr": round(max(fprs), 4) if fprs else None,
            "recall_at_target_fpr": _mean([a["recall"] for a in at if a["recall"] is not None]),
            "fpr_at_target": _mean([a["fpr"] for a in at if a["fpr"] is not None]),
            "own_split_accuracy": _mean([o["accuracy"] for o in own if o["accuracy"] is not None]),
            "own_split_f1_seed": _mean([o["f1_seed"] for o in own]),
            "own_split_f1_censored": _mean([o["f1_censored"] for o in own]),
            "autoencoder": [r["autoencoder"] for r in runs],
            "classifier_stopped": sorted({f["classifier_stopped"] for f in folds}),
            "cells": table_cells(runs),
        }
    return out


def table_cells(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One setting's cells of the evaluation table (``evaluate.table_cells``), per column.

    ``runs``: that setting's ``run_setting`` result per seed. The classifier flags at the seed's
    0.5, so a cell's FPR is what the seed's own decision rule gives; it proposes no signatures,
    so its coverage is 0.
    """
    from quackae.synth.evaluate import table_cells as cells

    return cells([{"folds": r["folds"], "real_pages": r.get("real_pages", False)} for r in runs])


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def render(summary: dict[str, Any], target_fpr: float) -> list[str]:
    """The seed rows as lines of the evaluation's text."""
    lines = []
    for name, s in summary.items():
        ae = s["autoencoder"]
        losses = "; ".join(
            f"E={a['embed_size']} H={a['hidden_size']}: {a['epochs']} epochs (stopped by "
            f"{a['stopped']['by']}), val_loss {_fmt(a['last_validation'].get('val_loss'))}, "
            f"best val_loss_seed {_fmt(a['best_val_loss_seed'])} (the seed's 200 reached at "
            f"epoch {a['seed_threshold_epoch']})"
            for a in ae
        )
        lines += [
            f"  the seed's latent classifier ({name}): held-out recall {s['mean_recall']} (worst "
            f"fold {s['worst_fold_recall']}), FPR {s['mean_fpr']} (worst {s['worst_fold_fpr']}) "
            f"at 0.5; at FPR <= {target_fpr} on its validation split: recall "
            f"{s['recall_at_target_fpr']}, FPR {s['fpr_at_target']}",
            f"    its own random test split (as published): accuracy {s['own_split_accuracy']}, "
            f"F1 (its torchmetrics, = accuracy) {s['own_split_f1_seed']}, binary F1 of censored "
            f"{s['own_split_f1_censored']}; classifier stopped by "
            f"{', '.join(s['classifier_stopped'])}",
            f"    autoencoder: {losses}",
        ]
    return lines


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


__all__ = [
    "SETTINGS",
    "Scale",
    "Setting",
    "balanced_rows",
    "render",
    "run_seed_rows",
    "run_setting",
    "score_fold",
    "summarise",
    "table_cells",
]
