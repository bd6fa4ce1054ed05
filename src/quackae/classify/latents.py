"""The labelled latents of an embeddings folder as a Lightning data module, split by row id.

The classifier, the baseline and the calibration all work on its splits, so the three see
the same train/validation/test rows.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from quackae.dataset import splits
from quackae.dataset.embeddings import read_embeddings, read_meta
from quackae.dataset.splits import SPLITS

SPLIT_FRACTIONS = (0.70, 0.15, 0.15)
TEMPLATE_KIND = (
    "template match"  # the kind of a labelled negative no false-positive signature named
)


def split_of(row_ids: np.ndarray, seed: int = 0) -> np.ndarray:
    """0 train / 1 val / 2 test per row by stable row-id hash (other fractions than training's)."""
    return splits.split_of(row_ids, seed, SPLIT_FRACTIONS)


def seed_random_split(n: int, seed: int) -> np.ndarray:
    """Split number (0 train, 1 val, 2 test) of ``n`` rows as the seed's ``cp_latent_data``.

    Its ``random_split(dataset, [n - test - val, test, val])`` with test = round(0.2 n) and val =
    round(0.1 n): train, test and validation in that order. The seed drew it unseeded, so each
    run (and each restart) split differently; here the generator is seeded with ``seed``.
    """
    from torch.utils.data import random_split

    test, val = round(n * 0.2), round(n * 0.1)
    parts = random_split(
        range(n), [n - test - val, test, val], generator=torch.Generator().manual_seed(seed)
    )
    split = np.empty(n, dtype=np.int8)
    for code, part in zip((0, 2, 1), parts, strict=True):  # train, test, val
        split[np.asarray(part.indices, dtype=np.int64)] = code
    return split


class LatentDataModule(pl.LightningDataModule):
    """Labelled latents (target: censored == 1) and their train/validation/test splits.

    Read from an embeddings directory (``setup``) or given as arrays (``from_arrays``).
    Undetermined rows (censored == 0) carry no label and are left out of all splits. ``split``:
    ``"row_hash"`` 70/15/15 by stable row-id hash, or ``"seed_random"`` the seed's 70/20/10
    (:func:`seed_random_split`).
    """

    def __init__(
        self, embeddings: Path | None, batch_size: int = 256, seed: int = 0, split: str = "row_hash"
    ) -> None:
        super().__init__()
        self.embeddings = None if embeddings is None else Path(embeddings)
        self.batch_size, self.seed, self.split_rule = batch_size, seed, split
        self.x: np.ndarray | None = None

    @classmethod
    def from_arrays(
        cls,
        x: np.ndarray,
        censored: np.ndarray,
        row_ids: np.ndarray,
        kind: np.ndarray,
        batch_size: int = 256,
        seed: int = 0,
        split: str = "row_hash",
    ) -> LatentDataModule:
        """Latents and labels (1 / 0 / -1, as the dataset's ``censored``) already in memory."""
        dm = cls(None, batch_size, seed, split)
        dm._keep(np.asarray(x, dtype=np.float32), np.asarray(censored), row_ids, kind, "arrays")
        return dm

    def setup(self, stage: str | None = None) -> None:
        """Read the shards once; keep labelled rows; assign splits."""
        if self.x is not None:
            return
        table, x = read_embeddings(self.embeddings, ("row_id", "censored", "fingerprint"))
        fingerprints = np.array(table.column("fingerprint").to_pylist(), dtype=object)
        kind = np.where(fingerprints == "", TEMPLATE_KIND, fingerprints).astype(str)
        self._keep(
            x,
            table.column("censored").to_numpy(),
            table.column("row_id").to_numpy(),
            kind,
            str(self.embeddings),
        )

    def _keep(
        self, x: np.ndarray, labels: np.ndarray, row_ids: np.ndarray, kind: np.ndarray, name: str
    ) -> None:
        """Keep the labelled rows of ``x`` and split them by ``split_rule``."""
        keep = labels != 0
        if keep.sum() == 0:
            raise ValueError(
                f"{name} has no labelled rows (censored 1 or -1); encode with --filtered"
            )
        self.row_ids = np.asarray(row_ids)[keep]
        self.x, self.y = x[keep], (labels[keep] == 1).astype(np.float32)
        self.kind = np.asarray(kind)[keep].astype(str)
        if self.split_rule == "seed_random":
            self.split = seed_random_split(len(self.row_ids), self.seed)
        elif self.split_rule == "row_hash":
            self.split = split_of(self.row_ids, self.seed)
        else:
            raise ValueError(f"unknown split {self.split_rule!r}; expected row_hash or seed_random")
        for i, part in enumerate(SPLITS):
            if not (self.split == i).any():
                raise ValueError(f"{name}: too few labelled rows ({keep.sum()}) for a {part} split")

    def without(self, drop: np.ndarray) -> LatentDataModule:
        """The same splits minus the rows where ``drop`` is True (a held-out kind)."""
        view = LatentDataModule(self.embeddings, self.batch_size, self.seed, self.split_rule)
        keep = ~np.asarray(drop, dtype=bool)
        view.x, view.y, view.row_ids = self.x[keep], self.y[keep], self.row_ids[keep]
        view.kind, view.split = self.kind[keep], self.split[keep]
        return view

    def negative_kinds(self, min_rows: int) -> dict[str, np.ndarray]:
        """Masks of the labelled negatives of each kind with at least ``min_rows`` rows."""
        negative = self.y == 0
        kinds = sorted(set(self.kind[negative].tolist()))
        masks = {k: negative & (self.kind == k) for k in kinds}
        return {k: m for k, m in masks.items() if m.sum() >= min_rows}

    @property
    def dim(self) -> int:
        """Latent dimension."""
        if self.x is not None:
            return int(self.x.shape[1])
        return int(read_meta(self.embeddings)["dim"])

    def part(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Latents, targets and row ids of one split."""
        mask = self.split == SPLITS.index(name)
        return self.x[mask], self.y[mask], self.row_ids[mask]

    def counts(self) -> dict[str, dict[str, int]]:
        """Rows and positives per split."""
        return {
            s: {"rows": int(len(y)), "censored": int(y.sum())}
            for s in SPLITS
            for _, y, _ in [self.part(s)]
        }

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        x, y, _ = self.part(name)
        gen = torch.Generator().manual_seed(self.seed)
        ds = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
        return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle, generator=gen)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches."""
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches."""
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        """Held-out test batches."""
        return self._loader("test", False)
