"""The dataset store: token cache gathers, cache invalidation on append, manifest safety."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from quackae import synth
from quackae.dataset import store
from quackae.ingest.flatten import Options, flatten
from quackae.ingest.sources import source_key


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
    # 100 measurements: enough tries to train a tokenizer on (MIN_TOKENIZER_TEXTS)
    a = synth.write_archive(tmp_path / "raw", 100, seed=1, fmt="v2", scan="echo")
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
    got = [
        x
        for b in ds.iter_batches(["row_id"], 5, 123, batch_size=7)
        for x in b.column(0).to_pylist()
    ]
    assert got == all_ids[5:123]


def test_orphans_from_a_killed_run_are_removed_and_nothing_else(
    tmp_path: Path, small_dataset: Path
) -> None:
    manifest = store.read_manifest(small_dataset)
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(small_dataset, copy)
    orphan = copy / "shards" / "part-0123456789abcdef-00042.parquet"  # a name quackae gives
    orphan.write_bytes(b"half a file")
    (copy / "rejects" / "part-0123456789abcdef-00042.jsonl").write_bytes(b"{}")
    (copy / "shards" / ".part-x.parquet.123-ab.quackae-tmp").write_bytes(b"tmp")
    mine = [
        copy / "shards" / "part-orphan.parquet",
        copy / "shards" / "notes.txt",
        copy / "rejects" / "keep.jsonl",
    ]
    for path in mine:
        path.write_bytes(b"the user's")
    assert store.remove_orphans(copy, manifest) == 3
    assert all(path.read_bytes() == b"the user's" for path in mine)
    assert not orphan.exists()
    assert len(store.Dataset(copy).read_columns(["row_id"])) == manifest["length"]


def test_golden_row_id() -> None:
    """A change of the hash would re-key every dataset: pinned values."""
    key = source_key("CP_Quack-echo-2021-10-11-01-01-01.tar.gz")
    assert key == "a6a0b007dc2e1e24b3b79b3e32f4e069"
    assert store.row_id(key, 1, 0) == -782868308606187217
    assert store.row_id("k", 7, 2) == 6347215640354040258


def test_manifest_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(store.StoreError, match="quackae flatten"):
        store.read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(store.StoreError, match="format_version"):
        store.read_manifest(tmp_path)
    assert store.row_id("k", 1, 0) == store.row_id("k", 1, 0) != store.row_id("k", 1, 1)
