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


class LatentDataModule(pl.LightningDataModule):
    """Labelled latents of an embeddings directory (target: censored == 1), split 70/15/15.

    Undetermined rows (censored == 0) carry no label and are left out of all splits.
    """

    def __init__(self, embeddings: Path, batch_size: int = 256, seed: int = 0) -> None:
        super().__init__()
        self.embeddings, self.batch_size, self.seed = Path(embeddings), batch_size, seed
        self.x: np.ndarray | None = None

    def setup(self, stage: str | None = None) -> None:
        """Read the shards once; keep labelled rows; assign splits by row id hash."""
        if self.x is not None:
            return
        table, x = read_embeddings(self.embeddings, ("row_id", "censored", "fingerprint"))
        labels = table.column("censored").to_numpy()
        keep = labels != 0
        if keep.sum() == 0:
            raise ValueError(
                f"{self.embeddings} has no labelled rows (censored 1 or -1); encode with --filtered"
            )
        self.row_ids = table.column("row_id").to_numpy()[keep]
        self.x, self.y = x[keep], (labels[keep] == 1).astype(np.float32)
        fingerprints = np.array(table.column("fingerprint").to_pylist(), dtype=object)[keep]
        self.kind = np.where(fingerprints == "", TEMPLATE_KIND, fingerprints).astype(str)
        self.split = split_of(self.row_ids, self.seed)
        for i, name in enumerate(SPLITS):
            if not (self.split == i).any():
                raise ValueError(
                    f"{self.embeddings}: too few labelled rows ({keep.sum()}) for a {name} split"
                )

    def without(self, drop: np.ndarray) -> LatentDataModule:
        """The same splits minus the rows where ``drop`` is True (a held-out kind)."""
        view = LatentDataModule(self.embeddings, self.batch_size, self.seed)
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
