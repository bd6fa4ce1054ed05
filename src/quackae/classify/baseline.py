"""The model without the autoencoder: logistic regression on a row's bag of token ids.

It is the peer every latent model is compared with (``classify train`` fits both on the same
split), and the lexical evidence of the detector.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from quackae.classify.calibration import binary_metrics, calibrate
from quackae.dataset import store
from quackae.io.atomic import atomic_path

BASELINE_FILE = "baseline.npz"

if TYPE_CHECKING:
    from quackae.classify.latents import LatentDataModule


@dataclass
class BagOfTokensBaseline:
    """Logistic regression on log(1 + count) of every token id (static features and BPE text).

    Column ``j`` of the feature matrix is token id ``j`` of the dataset's layout (no hashing
    needed: the vocabulary is bounded), so the model is its coefficients and intercept.
    """

    coef: np.ndarray
    intercept: float
    tokenizer_sha256: str

    @property
    def n_features(self) -> int:
        """Number of token ids (the dataset's vocab_size)."""
        return int(len(self.coef))

    @staticmethod
    def features(tokens: store.DatasetTokens, row_ids: np.ndarray):
        """Sparse ``(rows, vocab_size)`` log1p token counts of the rows (empty for unknown ids)."""
        from scipy.sparse import csr_matrix

        values, indptr = tokens.flat(row_ids)
        x = csr_matrix(
            (np.ones(len(values), np.float32), values, indptr),
            shape=(len(row_ids), tokens.vocab_size),
        )
        x.sum_duplicates()
        x.data = np.log1p(x.data)
        return x

    def probability(self, x) -> np.ndarray:
        """Sigmoid of the linear score of a feature matrix."""
        score = np.asarray(x @ self.coef, dtype=np.float64) + self.intercept
        return (1.0 / (1.0 + np.exp(-np.clip(score, -50, 50)))).astype(np.float32)

    def save(self, path: Path) -> None:
        """Write the coefficients to ``.npz`` (plain arrays, readable with allow_pickle=False)."""
        with atomic_path(Path(path)) as tmp, open(tmp, "wb") as f:
            np.savez(
                f,
                coef=self.coef.astype(np.float64),
                intercept=np.array([self.intercept]),
                tokenizer_sha256=np.array(self.tokenizer_sha256),
                transform=np.array("log1p_count"),
            )

    @classmethod
    def load(cls, path: Path) -> BagOfTokensBaseline:
        """Read a baseline written by ``save`` (no pickle)."""
        with np.load(path, allow_pickle=False) as z:
            return cls(
                coef=z["coef"],
                intercept=float(z["intercept"][0]),
                tokenizer_sha256=str(z["tokenizer_sha256"]),
            )


def fit_baseline(
    tokens: store.DatasetTokens,
    dm: LatentDataModule,
    seed: int,
    threshold: float,
    target_fpr: float = 0.01,
    calibration: str = "none",
) -> tuple[BagOfTokensBaseline, dict[str, Any]]:
    """Fit the baseline on the training split and measure it on the test split.

    Its threshold is ``threshold`` raised by ``calibration`` exactly as the latent classifier's
    (``train_classifier``), from its own probabilities: its own operating point.
    """
    x_tr, y_tr, ids_tr = dm.part("train")
    _, y_te, ids_te = dm.part("test")
    missing = int((tokens.index_of(np.concatenate([ids_tr, ids_te])) < 0).sum())
    if missing:
        raise ValueError(f"{missing} embedded rows are not in the dataset {tokens.dataset.root}")
    model = _fit_bag_of_tokens(tokens, dm, seed)
    _, y_va, ids_va = dm.part("val")
    val_prob = model.probability(BagOfTokensBaseline.features(tokens, ids_va))

    def held_out(view: LatentDataModule, mask: np.ndarray) -> np.ndarray:
        return _fit_bag_of_tokens(tokens, view, seed).probability(
            BagOfTokensBaseline.features(tokens, dm.row_ids[mask])
        )

    rule = calibrate(threshold, calibration, target_fpr, val_prob[y_va == 0], dm, held_out)
    threshold = rule["threshold"]
    prob = model.probability(BagOfTokensBaseline.features(tokens, ids_te))
    return model, {
        "model": "logistic regression on log1p bag of token ids (text + static features)",
        "threshold_rule": rule,
        **binary_metrics(y_te, prob, threshold),
    }


def _fit_bag_of_tokens(
    tokens: store.DatasetTokens, dm: LatentDataModule, seed: int
) -> BagOfTokensBaseline:
    """Logistic regression on the bag of token ids of ``dm``'s training split."""
    from sklearn.linear_model import LogisticRegression

    _, y_tr, ids_tr = dm.part("train")
    if len(np.unique(y_tr)) < 2:
        raise ValueError("the training split has a single class")
    lr = LogisticRegression(C=1.0, max_iter=2000, random_state=seed)
    lr.fit(BagOfTokensBaseline.features(tokens, ids_tr), y_tr)
    return BagOfTokensBaseline(lr.coef_[0].copy(), float(lr.intercept_[0]), tokens.tokenizer_sha256)


def open_dataset_tokens(meta: dict[str, Any]) -> store.DatasetTokens:
    """Token lookup of the dataset an embeddings directory was encoded from."""
    dataset = meta.get("dataset")
    if not dataset or not (Path(dataset) / "manifest.json").is_file():
        raise ValueError(f"the dataset of these embeddings is not available ({dataset!r})")
    return store.DatasetTokens(dataset)
