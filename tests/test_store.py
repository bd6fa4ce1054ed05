"""The dataset store: token cache gathers, cache invalidation on append, manifest safety."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from quackae import store, synth
from quackae.flatten import Options, flatten


def test_token_cache_matches_parquet(small_dataset: Path) -> None:
    ds = store.Dataset(small_dataset)
    cache = ds.tokens()
    seqs = ds.read_columns(["tokens"])["tokens"].to_pylist()
    assert len(cache) == len(seqs) == len(ds)
    rng = np.random.default_rng(0)
    index = rng.choice(len(seqs), size=17, replace=False)
    batch = cache.batch(index, pad_id=ds.pad_id)
    width = max(len(seqs[i]) for i in index)
    assert batch.shape == (17, width) and batch.dtype == np.int64
    for row, i in zip(batch, index, strict=True):
        n = len(seqs[i])
        assert row[:n].tolist() == seqs[i]
        assert (row[n:] == ds.pad_id).all()


def test_cache_rebuilt_after_append(tmp_path: Path) -> None:
    a = synth.write_archive(tmp_path / "raw", 40, seed=1, fmt="v2", scan="echo")
    b = synth.write_archive(tmp_path / "raw", 40, seed=2, fmt="v2", scan="discard")
    root = tmp_path / "ds"
    flatten([a.archive], root, Options(max_tokens=64), progress=False, vocab_size=600)
    n1 = len(store.Dataset(root).tokens())
    flatten([b.archive], root, Options(max_tokens=64), progress=False)
    ds = store.Dataset(root)
    assert len(ds.tokens()) == len(ds) == n1 + b.tries
    assert len(list((root / "cache").glob("offsets-*.npy"))) == 1


def test_iter_batches_ranges(small_dataset: Path) -> None:
    ds = store.Dataset(small_dataset)
    all_ids = ds.read_columns(["row_id"])["row_id"].to_pylist()
    got = [x for b in ds.iter_batches(["row_id"], 5, 123, batch_size=7) for x in b.column(0).to_pylist()]
    assert got == all_ids[5:123]


def test_orphans_from_a_killed_run_are_removed(tmp_path: Path, small_dataset: Path) -> None:
    manifest = store.read_manifest(small_dataset)
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(small_dataset, copy)
    (copy / "shards" / "part-orphan.parquet").write_bytes(b"half a file")
    (copy / "shards" / "part-x.parquet.tmp123").write_bytes(b"tmp")
    assert store.remove_orphans(copy, manifest) == 2
    assert len(store.Dataset(copy).read_columns(["row_id"])) == manifest["length"]


def test_manifest_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(store.StoreError, match="quackae flatten"):
        store.read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(store.StoreError, match="format_version"):
        store.read_manifest(tmp_path)
    assert store.row_id("k", 1, 0) == store.row_id("k", 1, 0) != store.row_id("k", 1, 1)
