"""QuackTokenizedDataModule: splits, padded batches, bucketing, predict metadata, row selection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from quackae.dataset import store
from quackae.model.datamodule import BatchSampler, QuackTokenizedDataModule, select_rows, split_of


def test_split_is_seeded_disjoint_and_70_10_20(small_dataset: Path) -> None:
    dm = QuackTokenizedDataModule(str(small_dataset), batch_size=8)
    parts = [dm.split_indices(s) for s in ("train", "val", "test")]
    n = len(store.Dataset(small_dataset))
    assert sum(len(p) for p in parts) == n
    assert len(set(np.concatenate(parts).tolist())) == n
    assert abs(len(parts[0]) / n - 0.7) < 0.08 and abs(len(parts[2]) / n - 0.2) < 0.08
    again = QuackTokenizedDataModule(str(small_dataset), batch_size=8)
    assert np.array_equal(again.split_indices("test"), parts[2])
    other = QuackTokenizedDataModule(str(small_dataset), batch_size=8, seed=99)
    assert not np.array_equal(other.split_indices("test"), parts[2])
    # the split of a row depends on its id only, so appends never move old rows
    ids = np.array([5, 17, -3, 2**40], dtype=np.int64)
    assert np.array_equal(split_of(ids, 1), split_of(ids[::-1], 1)[::-1])


@pytest.mark.parametrize("workers", [0, 2])
def test_loaders_yield_padded_int64_batches(small_dataset: Path, workers: int) -> None:
    dm = QuackTokenizedDataModule(str(small_dataset), batch_size=8, workers=workers)
    dm.prepare_data()
    seen = 0
    for batch in dm.train_dataloader():
        assert batch.dtype == torch.int64 and batch.dim() == 2 and batch.shape[0] <= 8
        assert batch.shape[1] <= dm.get_width()
        assert (batch[:, 0] == 1).all()  # START
        lengths = (batch != dm.pad_id).sum(1)
        assert (batch.gather(1, (lengths - 1)[:, None]) == 3).all()  # END right before the padding
        seen += batch.shape[0]
    assert seen == len(dm.split_indices("train"))
    assert sum(b.shape[0] for b in dm.val_dataloader()) == len(dm.split_indices("val"))
    assert sum(b.shape[0] for b in dm.test_dataloader()) == len(dm.split_indices("test"))


def test_bucketing_cuts_padding(small_dataset: Path) -> None:
    def padding(bucketing: bool) -> int:
        dm = QuackTokenizedDataModule(str(small_dataset), batch_size=8, bucketing=bucketing)
        return sum(int((b == dm.pad_id).sum()) for b in dm.train_dataloader())

    assert padding(True) < padding(False)


def test_ranks_get_equal_batches_and_cover_everything() -> None:
    idx = np.arange(103)
    lengths = np.ones(103, dtype=np.int64)
    samplers = [
        BatchSampler(idx, lengths, 10, True, False, 0, rank=r, world_size=2) for r in range(2)
    ]
    batches = [list(s) for s in samplers]
    assert len(batches[0]) == len(batches[1]) == len(samplers[0])
    covered = set(np.concatenate([np.concatenate(b) for b in batches]).tolist())
    assert covered == set(range(103))
    # predict: no padding duplicates, each index exactly once
    predict = [
        BatchSampler(idx, lengths, 10, False, False, 0, rank=r, world_size=2, pad_ranks=False)
        for r in range(2)
    ]
    flat = np.concatenate([np.concatenate(list(s)) for s in predict])
    assert sorted(flat.tolist()) == list(range(103))


def test_predict_loader_yields_metadata_and_batch(small_dataset: Path) -> None:
    dm = QuackTokenizedDataModule(str(small_dataset), batch_size=16, mode="evaluate", workers=0)
    table = store.Dataset(small_dataset).read_columns(["row_id", "censored"])
    rows = []
    cache = store.Dataset(small_dataset).tokens()
    ids = table["row_id"].to_numpy()
    for metadata, batch in dm.predict_dataloader():
        assert isinstance(metadata, pa.Table) and metadata.num_rows == batch.shape[0]
        # the metadata rows are the batch's rows, in the batch's order (lengths agree row by row)
        index = np.searchsorted(ids, metadata["row_id"].to_numpy(), sorter=np.argsort(ids))
        order = np.argsort(ids)[index]
        assert (cache.lengths[order] == (batch != dm.pad_id).sum(1).numpy()).all()
        rows.extend(metadata.to_pylist())
    assert all(r["censored"] == 0 for r in rows)
    assert len(rows) == sum(1 for c in table["censored"].to_pylist() if c == 0)
    assert {"ip", "domain", "location", "country_code", "timestamp", "row_id"} <= set(rows[0])


def test_filtered_selection_is_balanced_and_reproducible() -> None:
    rng = np.random.default_rng(0)
    labels = rng.choice([-1, -1, -1, -1, 0, 1], size=20000).astype(np.int8)
    ids = rng.integers(-(2**62), 2**62, size=20000)
    manifest = {"censored": int((labels == 1).sum()), "uncensored": int((labels == -1).sum())}
    chosen = select_rows(labels, ids, "filtered", manifest, seed=3)
    got = labels[chosen]
    assert (got != 0).all() and (got == 1).sum() == manifest["censored"]
    assert abs((got == -1).sum() / manifest["censored"] - 1.0) < 0.08
    assert np.array_equal(chosen, select_rows(labels, ids, "filtered", manifest, seed=3))
    assert (labels[select_rows(labels, ids, "evaluate", manifest, 3)] == 0).all()
    assert len(select_rows(labels, ids, "all", manifest, 3)) == len(labels)


def test_missing_dataset_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(store.StoreError, match="quackae flatten"):
        QuackTokenizedDataModule(str(tmp_path / "nothing"))
