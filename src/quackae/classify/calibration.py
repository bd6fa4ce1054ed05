"""Decision thresholds and probability calibration shared by every model.

``binary_metrics`` scores probabilities at a threshold; ``threshold_for_fpr`` picks the lowest
threshold meeting a false-positive budget; ``novel_kind_threshold`` and ``calibrate`` raise a
model's threshold for benign kinds it never saw; ``PlattScaler`` turns a score into a
probability that ranks (fitted on validation rows, not the training rows).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from quackae.classify.latents import LatentDataModule

MIN_KIND_ROWS = 5  # smallest kind of labelled negatives held out for the novel-kind threshold


def threshold_for_fpr(negatives: np.ndarray, target_fpr: float) -> float:
    """Lowest threshold whose false-positive rate on ``negatives`` is at most ``target_fpr``."""
    if len(negatives) == 0:
        return 0.5
    desc = np.sort(negatives)[::-1]
    k = int(np.floor(target_fpr * len(desc)))
    if k >= len(desc):
        return float(desc[-1])
    return float(np.nextafter(desc[k], np.inf))


def binary_metrics(target: np.ndarray, prob: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Accuracy, precision, recall, F1 at ``threshold`` and ROC-AUC (None with one class)."""
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    target = np.asarray(target).astype(bool)
    pred = np.asarray(prob) >= threshold
    both = 0 < target.sum() < len(target)
    return {
        "accuracy": round(float(accuracy_score(target, pred)), 4) if len(target) else None,
        "precision": round(float(precision_score(target, pred, zero_division=0)), 4),
        "recall": round(float(recall_score(target, pred, zero_division=0)), 4),
        "f1": round(float(f1_score(target, pred, zero_division=0)), 4),
        "roc_auc": round(float(roc_auc_score(target, prob)), 4) if both else None,
        "threshold": threshold,
        "n": int(len(target)),
        "positives": int(target.sum()),
    }


def novel_kind_threshold(
    dm: LatentDataModule,
    score_held_out: Callable[[LatentDataModule, np.ndarray], np.ndarray],
    target_fpr: float,
) -> dict[str, Any]:
    """Threshold keeping the false-positive rate on benign pages of an *unseen* kind <= target_fpr.

    The undetermined rows a classifier scores are, by construction, pages no signature knows:
    their benign ones are of kinds absent from the labelled negatives, so the validation split
    (kinds seen in training) understates their false-positive rate. Each kind of labelled
    negative (its false-positive fingerprint, or template match) is held out in turn: a model
    fitted without it (``score_held_out(view without the kind, kind mask)``) scores its rows, and
    the threshold is the highest of the per-kind thresholds at ``target_fpr``.
    """
    kinds = dm.negative_kinds(MIN_KIND_ROWS)
    if len(kinds) < 2:
        return {
            "skipped": f"needs at least two kinds of labelled negatives with {MIN_KIND_ROWS}+ "
            "rows, "
            f"found {len(kinds)}"
        }
    per_kind = {}
    for kind, mask in kinds.items():
        prob = np.asarray(score_held_out(dm.without(mask), mask), dtype=np.float64)
        per_kind[kind] = {
            "rows": int(mask.sum()),
            "threshold": threshold_for_fpr(prob, target_fpr),
            "max_probability": float(prob.max()),
            "median_probability": float(np.median(prob)),
        }
    return {
        "target_fpr": target_fpr,
        "threshold": max(k["threshold"] for k in per_kind.values()),
        "kinds": per_kind,
    }


CALIBRATIONS = ("novel-kind", "validation", "none")


def calibrate(
    floor: float,
    calibration: str,
    target_fpr: float,
    val_negatives: np.ndarray,
    dm: LatentDataModule,
    score_held_out: Callable[[LatentDataModule, np.ndarray], np.ndarray],
) -> dict[str, Any]:
    """A model's threshold and how it was set (``threshold_rule``), by ``calibration``.

    ``floor`` raised to keep the false-positive rate <= ``target_fpr`` on the validation
    negatives' probabilities (``validation``) and also on every held-out kind (``novel-kind``).
    """
    rule: dict[str, Any] = {"calibration": calibration, "floor": floor}
    threshold = floor
    if calibration != "none":
        rule["validation"] = threshold_for_fpr(
            np.asarray(val_negatives, dtype=np.float64), target_fpr
        )
        threshold = max(threshold, rule["validation"])
    if calibration == "novel-kind":
        rule["novel_kind"] = novel_kind_threshold(dm, score_held_out, target_fpr)
        threshold = max(threshold, rule["novel_kind"].get("threshold", threshold))
    rule["threshold"] = threshold
    return rule


@dataclass
class PlattScaler:
    """Platt scaling: ``sigmoid(a * score + b)`` fitted on held-aside rows so probabilities rank.

    A model fitted to separable training rows outputs saturated 0/1 probabilities; refitting
    only a slope and an offset on rows it did not train on (Platt 1999) spreads them back out.
    """

    a: float = 1.0
    b: float = 0.0

    @classmethod
    def fit(cls, score: np.ndarray, target: np.ndarray, c: float = 1.0) -> PlattScaler:
        """Fit slope and offset by L2-regularised logistic regression on one feature."""
        from sklearn.linear_model import LogisticRegression

        target = np.asarray(target).astype(int)
        if len(np.unique(target)) < 2:
            return cls()
        lr = LogisticRegression(C=c, max_iter=1000)
        lr.fit(np.asarray(score, np.float64).reshape(-1, 1), target)
        return cls(float(lr.coef_[0, 0]), float(lr.intercept_[0]))

    def __call__(self, score: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of raw scores."""
        z = self.a * np.asarray(score, np.float64) + self.b
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
