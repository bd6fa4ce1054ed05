"""QuackTokenizedDataModule: padded token batches from a dataset directory.

Tokens are read from the dataset's flat memory-mapped token cache (``store.TokenCache``), so a
dataset larger than memory trains with bounded memory and a batch is one vectorised gather.
The data module shards batches across distributed ranks itself (every rank gets the same number
of batches, so collective ops never wait on a missing peer); the Trainer must therefore run with
``use_distributed_sampler=False``, which ``ae_processor`` sets.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from quackae.dataset import splits, store
from quackae.dataset.splits import SPLITS

SPLIT_FRACTIONS = (0.7, 0.1, 0.2)
MODES = ("all", "filtered", "evaluate")


def split_of(
    row_ids: np.ndarray, seed: int, fractions: tuple[float, ...] = SPLIT_FRACTIONS
) -> np.ndarray:
    """Split number (0 train, 1 val, 2 test) of every row: stable across runs and appends."""
    return splits.split_of(row_ids, seed, fractions)


def select_rows(
    labels: np.ndarray, row_ids: np.ndarray, mode: str, manifest: dict, seed: int
) -> np.ndarray:
    """Indices of the rows an encode run writes.

    ``all``: every row. ``evaluate``: undetermined rows (0). ``filtered``: every censored row
    and the uncensored rows kept with probability censored/uncensored (the manifest's counts),
    so the output is balanced; seeded by row id, hence reproducible across runs and ranks.
    """
    if mode == "all":
        return np.arange(len(labels), dtype=np.int64)
    if mode == "evaluate":
        return np.flatnonzero(labels == 0).astype(np.int64)
    if mode != "filtered":
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    ratio = (
        min(manifest["censored"] / manifest["uncensored"], 1.0) if manifest["uncensored"] else 1.0
    )
    keep_uncensored = (labels == -1) & (splits.uniform(row_ids, seed, "filtered") < ratio)
    return np.flatnonzero((labels == 1) | keep_uncensored).astype(np.int64)


class BatchSampler(Sampler[np.ndarray]):
    """Index batches of one rank: shuffled per epoch, maybe length-bucketed, same count per rank."""

    def __init__(
        self,
        indices: np.ndarray,
        lengths: np.ndarray,
        batch_size: int,
        shuffle: bool,
        bucketing: bool,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        pad_ranks: bool = True,
    ) -> None:
        self.indices = np.asarray(indices, dtype=np.int64)
        self.lengths = lengths
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.bucketing = bucketing
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.pad_ranks = pad_ranks
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle differently each epoch (Lightning calls this when present)."""
        self.epoch = epoch

    def _rank_indices(self) -> np.ndarray:
        idx = self.indices
        if self.shuffle:
            idx = np.random.default_rng([self.seed, self.epoch]).permutation(idx)
        if self.world_size == 1:
            return idx
        if self.pad_ranks and len(idx) % self.world_size:
            extra = self.world_size - len(idx) % self.world_size
            idx = np.concatenate([idx, idx[:extra]])
        per = -(-len(idx) // self.world_size)
        return (
            idx[self.rank * per : (self.rank + 1) * per]
            if not self.pad_ranks
            else idx[self.rank :: self.world_size]
        )

    def _batches(self) -> list[np.ndarray]:
        idx = self._rank_indices()
        if self.bucketing and len(idx):
            window = self.batch_size * 64  # sort by length within windows of 64 batches
            parts = [
                w[np.argsort(self.lengths[w], kind="stable")]
                for w in np.array_split(idx, max(len(idx) // window, 1))
            ]
            idx = np.concatenate(parts)
        batches = [idx[i : i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
        if self.bucketing and self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch, 1]).permutation(len(batches))
            batches = [batches[i] for i in order]
        return batches

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self._batches())

    def __len__(self) -> int:
        return -(-len(self._rank_indices()) // self.batch_size)


class TokenBatches(Dataset):
    """Map an index batch to a right-padded ``(B, T)`` int64 tensor."""

    def __init__(self, root: Path, pad_id: int) -> None:
        self.root = Path(root)
        self.pad_id = pad_id
        self._cache: store.TokenCache | None = None

    @property
    def cache(self) -> store.TokenCache:
        """The memory-mapped token cache, opened lazily in each worker process."""
        if self._cache is None:
            self._cache = store.Dataset(self.root).tokens()
        return self._cache

    def __getitem__(self, index: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.cache.batch(index, self.pad_id))

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self.root, "pad_id": self.pad_id, "_cache": None}


class PredictBatches(TokenBatches):
    """Map an index batch to ``(metadata table, (B, T) batch)`` for the predict loop."""

    def __init__(
        self, root: Path, pad_id: int, columns: tuple[str, ...] = store.METADATA_COLUMNS
    ) -> None:
        super().__init__(root, pad_id)
        self.columns = list(columns)
        self._starts: np.ndarray | None = None
        self._group: OrderedDict[int, pa.Table] | None = None

    def _row_groups(self) -> list[tuple[int, Path, int, int]]:
        groups = []
        base = 0
        ds = store.Dataset(self.root)
        for path in ds.shard_paths:
            meta = pq.ParquetFile(path).metadata
            for g in range(meta.num_row_groups):
                groups.append((base, path, g, meta.row_group(g).num_rows))
                base += meta.row_group(g).num_rows
        return groups

    def _metadata(self, index: np.ndarray) -> pa.Table:
        """The metadata rows of a batch, in batch order, as one Arrow table (no per-row Python)."""
        if self._starts is None:
            self._groups = self._row_groups()
            self._starts = np.array([g[0] for g in self._groups], dtype=np.int64)
        index = np.asarray(index, dtype=np.int64)
        groups = np.searchsorted(self._starts, index, side="right") - 1
        order = np.argsort(groups, kind="stable")  # rows grouped by row group, batch order within
        parts = [
            self._row_group(int(g)).take(pa.array(index[groups == g] - self._starts[g]))
            for g in np.unique(groups)
        ]
        table = pa.concat_tables(parts) if len(parts) != 1 else parts[0]
        return table.take(pa.array(np.argsort(order, kind="stable")))  # back to batch order

    def _row_group(self, gi: int) -> pa.Table:
        """One row group's metadata, from a small cache (a bucketed batch may span two groups)."""
        if self._group is None:
            self._group = OrderedDict()
        if gi in self._group:
            self._group.move_to_end(gi)
        else:
            _, path, g, _ = self._groups[gi]
            self._group[gi] = pq.ParquetFile(path).read_row_group(g, columns=self.columns)
            if len(self._group) > 3:
                self._group.popitem(last=False)
        return self._group[gi]

    def __getitem__(self, index: np.ndarray) -> tuple[pa.Table, torch.Tensor]:
        return self._metadata(index), super().__getitem__(index)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.update(columns=self.columns, _starts=None, _group=None)
        return state


def _passthrough(batch: Any) -> Any:
    return batch


class QuackTokenizedDataModule(pl.LightningDataModule):
    """Train/val/test/predict loaders over a quackae dataset directory.

    Parameters
    ----------
    data_dir : str
        A dataset directory written by ``quackae flatten``, or its object-store URI (mirrored
        into a local cache first: ``store.local_dataset``).
    batch_size : int
        Sequences per batch.
    workers : int
        DataLoader worker processes; 0 loads in the main process.
    seed : int
        Seeds the 70/10/20 split (by stable row id, so it survives restarts and appends)
        and the shuffling.
    bucketing : bool
        Group sequences of similar length into batches (shuffled between buckets) to cut padding.
    mode : str
        Rows of the predict loader: ``all``, ``filtered`` (labelled, balanced) or ``evaluate``
        (undetermined only).
    """

    def __init__(
        self,
        data_dir: str,
        batch_size: int = 4,
        workers: int = 0,
        seed: int = 1234,
        bucketing: bool = False,
        mode: str = "all",
    ) -> None:
        super().__init__()
        self.data_dir = store.local_dataset(data_dir)  # a URI: its local mirror
        self.batch_size = batch_size
        self.workers = workers
        self.seed = seed
        self.bucketing = bucketing
        self.mode = mode
        self.dataset = store.Dataset(self.data_dir)  # fails early with a clear StoreError
        self.manifest = self.dataset.manifest
        self.pad_id = self.dataset.pad_id
        self._split: np.ndarray | None = None
        self._lengths: np.ndarray | None = None
        self._excluded = np.zeros(0, dtype=np.int64)

    def exclude_rows(self, row_ids) -> None:
        """Leave these row ids out of the predict loader (rows a resumed encode already wrote)."""
        self._excluded = np.asarray(list(row_ids), dtype=np.int64)

    # ------------------------------------------------------------------ facts about the data
    def get_width(self) -> int:
        """Length of the widest sequence in the dataset."""
        return int(self.manifest["max_width"])

    @property
    def num_embeddings(self) -> int:
        """Size of the token space: the model's embedding table size."""
        return int(self.manifest["vocab_size"])

    @property
    def tokenizer_sha256(self) -> str:
        """Identity of the tokenizer the dataset was made with."""
        return str(self.manifest["tokenizer_sha256"])

    @property
    def layout(self) -> dict:
        """The token layout of the dataset."""
        return dict(self.manifest["layout"])

    def _row_ids(self) -> np.ndarray:
        return self.dataset.read_columns(["row_id"]).column(0).to_numpy()

    def split_indices(self, split: str) -> np.ndarray:
        """Global row indices of ``train``, ``val`` or ``test``."""
        if self._split is None:
            self._split = split_of(self._row_ids(), self.seed)
        return np.flatnonzero(self._split == SPLITS.index(split)).astype(np.int64)

    def predict_indices(self) -> np.ndarray:
        """Global row indices the predict loader covers (see ``select_rows``)."""
        table = self.dataset.read_columns(["row_id", "censored"])
        row_ids = table.column(0).to_numpy()
        chosen = select_rows(
            table.column(1).to_numpy(), row_ids, self.mode, self.manifest, self.seed
        )
        if len(self._excluded):
            chosen = chosen[~np.isin(row_ids[chosen], self._excluded)]
        return chosen

    def lengths(self) -> np.ndarray:
        """Token length of every row (from the memory-mapped cache)."""
        if self._lengths is None:
            self._lengths = np.asarray(self.dataset.tokens().lengths)
        return self._lengths

    # ------------------------------------------------------------------ loaders
    def prepare_data(self) -> None:
        """Build the token cache once, before workers or ranks open it."""
        self.dataset.tokens()

    def _rank(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def _loader(self, dataset: Dataset, sampler: BatchSampler) -> DataLoader:
        return DataLoader(
            dataset,
            sampler=sampler,
            batch_size=None,
            collate_fn=_passthrough,
            num_workers=self.workers,
            persistent_workers=self.workers > 0,
            pin_memory=False,
        )

    def _split_loader(self, split: str, shuffle: bool) -> DataLoader:
        rank, world = self._rank()
        sampler = BatchSampler(
            self.split_indices(split),
            self.lengths(),
            self.batch_size,
            shuffle=shuffle,
            bucketing=self.bucketing,
            seed=self.seed,
            rank=rank,
            world_size=world,
        )
        return self._loader(TokenBatches(self.data_dir, self.pad_id), sampler)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches."""
        return self._split_loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches in a fixed order."""
        return self._split_loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Held-out test batches in a fixed order."""
        return self._split_loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """``(metadata list, batch)`` pairs; each selected row exactly once across all ranks."""
        rank, world = self._rank()
        sampler = BatchSampler(
            self.predict_indices(),
            self.lengths(),
            self.batch_size,
            shuffle=False,
            bucketing=True,  # order is free here (rows carry their ids): cut the padding
            seed=self.seed,
            rank=rank,
            world_size=world,
            pad_ranks=False,
        )
        return self._loader(PredictBatches(self.data_dir, self.pad_id), sampler)

    def state_dict(self) -> dict[str, Any]:
        """Recorded in checkpoints so a restart uses the same split."""
        return {
            "seed": self.seed,
            "split_fractions": list(SPLIT_FRACTIONS),
            "tokenizer_sha256": self.tokenizer_sha256,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the split seed of the run that wrote the checkpoint."""
        self.seed = int(state_dict.get("seed", self.seed))
        self._split = None
