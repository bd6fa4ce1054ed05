"""Named settings of the latent classifier: quackae's head, and the seed's as it published it.

``quackae``    today's head: standardised inputs, LeakyReLU(0.01), AdamW 1e-3 cosine to 0 over
               20 epochs, batch 256, the best epoch by validation loss, a 70/15/15 split by
               row-id hash, a threshold calibrated to a false-positive budget.
``seed``       the seed's ``latent_processor.py`` with its own defaults (``cp_latent_classifier``,
               ``cp_latent_data``): H -> H/4 -> H/8 -> 1 with LeakyReLU(0.1) on raw latents;
               AdamW at 1e-1 (weight decay: AdamW's default, 1e-2), cosine to 1e-3 over
               ``lr_max_epochs``; EarlyStopping(val_loss, patience 10, stopping_threshold 0.05,
               non-finite); top 3 and last checkpoints; ``random_split`` 70/20/10 (train, test,
               val); batch 4; threshold 0.5; the post-fit test on the final weights
               (``trainer.test(model)``). Lightning's default of 1000 epochs when none is given.
``seed_jobs``  as ``seed`` with ``job_scripts/latent_processing.sh``'s settings: learning rate
               1e-6 cosine to 1e-7 over 10 epochs (the cosine's period: after 10 epochs it rises
               again, as torch's CosineAnnealingLR does), batch 8 on each of 8 Ray workers. Here
               one process takes the 64 rows those 8 workers averaged one step over (batch 64).

Where the seed passed ``-1`` as the cosine's length (its default), quackae anneals over
``max_epochs`` instead (docs/departures.md); ``lr_max_epochs=1`` gives the seed's every-epoch
swing. The seed's metrics are reported beside quackae's (:func:`seed_metrics`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

SPLIT_RULES = ("row_hash", "seed_random")
TEST_WEIGHTS = ("best", "final")


@dataclass(frozen=True)
class Recipe:
    """Every setting of one way to train the latent classifier."""

    name: str
    learning_rate: float
    learning_rate_min: float
    lr_max_epochs: int  # the cosine's length in epochs; <= 0: max_epochs
    batch_size: int
    max_epochs: int
    weight_decay: float
    leak: float  # LeakyReLU negative slope
    standardise: bool  # centre and scale inputs by the training split
    patience: int | None  # early stopping on val_loss; None: never by patience
    stopping_threshold: float | None  # early stopping once val_loss reaches it
    save_top_k: int
    save_last: bool
    split: str  # SPLIT_RULES
    calibration: str  # calibration.CALIBRATIONS
    test_weights: str  # TEST_WEIGHTS: the post-fit test's weights
    threshold: float = 0.5
    input_dropout: float = 0.0
    input_noise: float = 0.0

    def replace(self, **changes: Any) -> Recipe:
        """A copy with the ``changes`` that are not None (an unset flag keeps the recipe's)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for metrics.json."""
        return dataclasses.asdict(self)


RECIPES: dict[str, Recipe] = {
    "quackae": Recipe(
        name="quackae",
        learning_rate=1e-3,
        learning_rate_min=0.0,
        lr_max_epochs=-1,
        batch_size=256,
        max_epochs=20,
        weight_decay=1e-2,
        leak=0.01,
        standardise=True,
        patience=None,
        stopping_threshold=None,
        save_top_k=1,
        save_last=False,
        split="row_hash",
        calibration="novel-kind",
        test_weights="best",
    ),
    "seed": Recipe(
        name="seed",
        learning_rate=1e-1,
        learning_rate_min=1e-3,
        lr_max_epochs=-1,
        batch_size=4,
        max_epochs=1000,
        weight_decay=1e-2,
        leak=0.1,
        standardise=False,
        patience=10,
        stopping_threshold=0.05,
        save_top_k=3,
        save_last=True,
        split="seed_random",
        calibration="none",
        test_weights="final",
    ),
}
RECIPES["seed_jobs"] = dataclasses.replace(
    RECIPES["seed"],
    name="seed_jobs",
    learning_rate=1e-6,
    learning_rate_min=1e-7,
    lr_max_epochs=10,
    batch_size=64,
)


def recipe(name: str, **changes: Any) -> Recipe:
    """The named recipe with ``changes`` (None: keep the recipe's); one line if unknown."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; expected one of {', '.join(RECIPES)}")
    found = RECIPES[name].replace(**changes)
    if found.split not in SPLIT_RULES or found.test_weights not in TEST_WEIGHTS:
        raise ValueError(
            f"recipe {name!r}: split must be one of {SPLIT_RULES}, test_weights one of "
            f"{TEST_WEIGHTS}"
        )
    return found


def seed_f1(target: np.ndarray, predicted: np.ndarray) -> float:
    """F1 as the seed's ``torchmetrics.F1Score(num_classes=2)`` computed it.

    In torchmetrics 0.7-0.10 (the only ones with that class and no ``task``) ``average`` defaulted
    to ``"micro"``: true positives, false positives and false negatives summed over both classes,
    which on two classes with one label per row is the accuracy (checked with 0.7.3 and 0.10.3
    on the seed's (B, 1) int8 inputs; docs/departures.md). Computed here with today's
    ``multiclass_f1_score(average="micro")``.
    """
    import torch
    from torchmetrics.functional.classification import multiclass_f1_score

    if len(target) == 0:
        return float("nan")
    return float(
        multiclass_f1_score(
            torch.as_tensor(np.asarray(predicted, dtype=np.int64)),
            torch.as_tensor(np.asarray(target, dtype=np.int64)),
            num_classes=2,
            average="micro",
        )
    )


def seed_metrics(
    target: np.ndarray,
    prob: np.ndarray,
    val_negatives: np.ndarray,
    target_fpr: float,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """The seed's metrics and two more: accuracy and its F1 at ``threshold``; binary F1 of the
    censored class; recall at a false-positive rate.

    ``recall_at_fpr``: the threshold keeping the false-positive rate on ``val_negatives`` (the
    validation split's negatives' probabilities) <= ``target_fpr``, and the recall and
    false-positive rate it gives on ``target``/``prob`` (an operating point chosen without the
    rows it is measured on).
    """
    from sklearn.metrics import f1_score

    from quackae.classify.calibration import threshold_for_fpr

    target = np.asarray(target).astype(bool)
    prob = np.asarray(prob, dtype=np.float64)
    predicted = prob >= threshold
    at = threshold_for_fpr(np.asarray(val_negatives, dtype=np.float64), target_fpr)
    hit = prob >= at
    return {
        "accuracy": round(float((predicted == target).mean()), 4) if len(target) else None,
        "f1_seed": round(seed_f1(target, predicted), 4),
        "f1_censored": round(float(f1_score(target, predicted, zero_division=0)), 4),
        "recall_at_fpr": {
            "target_fpr": target_fpr,
            "threshold": round(float(at), 6),
            "recall": round(float(hit[target].mean()), 4) if target.any() else None,
            "fpr": round(float(hit[~target].mean()), 4) if (~target).any() else None,
        },
        "threshold": threshold,
        "n": int(len(target)),
        "positives": int(target.sum()),
    }
