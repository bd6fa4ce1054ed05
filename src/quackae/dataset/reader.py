"""Reading a committed dataset: columns, streamed batches and the memory-mapped token cache.

The token cache is nanoGPT's idea: every sequence in one flat file of token ids plus row
offsets, memory-mapped, so a batch is a gather, not a file read per record.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from quackae.dataset.files import CACHE_NAME, TOKENIZER, Root
from quackae.dataset.manifest import read_manifest
from quackae.dataset.mirror import local_dataset
from quackae.dataset.schema import SCHEMA
from quackae.dataset.shards import read_shard, shard_batches
from quackae.io import atomic


@dataclass
class TokenCache:
    """All token sequences as one flat memory-mapped array plus row offsets (nanoGPT style)."""

    values: np.ndarray  # flat token ids, uint16 or uint32
    offsets: np.ndarray  # int64, len = rows + 1

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Length of every sequence."""
        return np.diff(self.offsets)

    def batch(self, index: np.ndarray, pad_id: int = 0, width: int | None = None) -> np.ndarray:
        """Right-padded ``(B, T)`` int64 batch of the given rows, gathered without a Python loop."""
        index = np.asarray(index, dtype=np.int64)
        starts = self.offsets[index]
        lengths = self.offsets[index + 1] - starts
        width = int(lengths.max()) if width is None else width
        cols = np.arange(width, dtype=np.int64)
        mask = cols[None, :] < lengths[:, None]
        pos = np.where(mask, starts[:, None] + cols[None, :], 0)
        out = self.values[pos].astype(np.int64)
        out[~mask] = pad_id
        return out


class Dataset:
    """A committed dataset directory, opened read-only with bounded memory.

    An object-store URI is mirrored first (``local_dataset``); ``root`` is then the mirror and
    ``uri`` what was given.
    """

    def __init__(self, root: Root) -> None:
        self.uri = str(root)
        self.root = local_dataset(root)
        self.manifest = read_manifest(self.root)

    def __len__(self) -> int:
        return int(self.manifest["length"])

    @property
    def shard_paths(self) -> list[Path]:
        """Shard files in manifest order: the global row order."""
        return [self.root / s["file"] for s in self.manifest["shards"]]

    @property
    def pad_id(self) -> int:
        """Padding id of the token layout."""
        return int(self.manifest["layout"]["specials"]["pad"])

    def read_columns(self, columns: list[str]) -> pa.Table:
        """Selected columns of every row, in global order (for small columns: labels, ids)."""
        if not self.shard_paths:
            return pa.table({c: pa.array([], SCHEMA.field(c).type) for c in columns})
        return pa.concat_tables(read_shard(p, columns) for p in self.shard_paths)

    def iter_batches(
        self, columns: list[str], start: int = 0, stop: int | None = None, batch_size: int = 4096
    ) -> Iterator[pa.RecordBatch]:
        """Stream rows ``[start, stop)`` of the selected columns, a row group at a time."""
        stop = len(self) if stop is None else stop
        base = 0
        for path, shard in zip(self.shard_paths, self.manifest["shards"], strict=True):
            rows = shard["rows"]
            if base + rows <= start or base >= stop:
                base += rows
                continue
            pos = base
            for batch in shard_batches(path, batch_size, columns):
                lo, hi = max(start - pos, 0), min(stop - pos, batch.num_rows)
                if lo < hi:
                    yield batch.slice(lo, hi - lo)
                pos += batch.num_rows
            base += rows

    def tokens(self) -> TokenCache:
        """The flat memory-mapped token cache, built (bounded memory) if missing or stale."""
        key = hashlib.sha256(
            json.dumps([(s["file"], s["rows"]) for s in self.manifest["shards"]]).encode()
        ).hexdigest()[:16]
        dtype = np.uint16 if self.manifest["vocab_size"] <= 65536 else np.uint32
        cache = self.root / "cache"
        values_path, offsets_path = cache / f"tokens-{key}.bin", cache / f"offsets-{key}.npy"
        if not offsets_path.exists():
            self._build_cache(values_path, offsets_path, dtype)
        offsets = np.load(offsets_path, mmap_mode="r")
        values = (
            np.memmap(values_path, dtype=dtype, mode="r")
            if int(offsets[-1]) > 0
            else np.zeros(0, dtype=dtype)
        )
        return TokenCache(values=values, offsets=offsets)

    def _build_cache(self, values_path: Path, offsets_path: Path, dtype: type) -> None:
        cache = values_path.parent
        cache.mkdir(exist_ok=True)
        key = values_path.name.split("-", 1)[1].split(".", 1)[0]
        for old in cache.iterdir():  # only quackae's own names of other (stale) keys
            ours = CACHE_NAME.fullmatch(old.name) or atomic.is_temp(old.name)
            if ours and key not in old.name:  # a concurrent builder's temp of this key stays
                old.unlink(missing_ok=True)
        offsets = np.zeros(len(self) + 1, dtype=np.int64)
        row = 0
        with atomic.atomic_path(values_path) as tmp_values, open(tmp_values, "wb") as f:
            for batch in self.iter_batches(["tokens"], batch_size=16384):
                col = batch.column(0)
                flat = col.flatten().to_numpy(zero_copy_only=False).astype(dtype)
                lens = np.diff(col.offsets.to_numpy())
                offsets[row + 1 : row + 1 + len(lens)] = offsets[row] + np.cumsum(lens)
                row += len(lens)
                f.write(flat.tobytes())
        with atomic.atomic_path(offsets_path) as tmp_offsets, open(tmp_offsets, "wb") as f:
            np.save(f, offsets, allow_pickle=False)


class DatasetTokens:
    """Token ids of a dataset's rows by ``row_id``: sorted ids plus the memory-mapped token cache.

    Used by the bag-of-tokens baseline (features), the detector and the report (page texts).
    """

    def __init__(self, root: Path | str) -> None:
        self.dataset = Dataset(root)
        ids = self.dataset.read_columns(["row_id"]).column(0).to_numpy()
        self._order = np.argsort(ids, kind="stable")
        self._sorted = ids[self._order]
        self.cache = self.dataset.tokens()
        layout = self.dataset.manifest["layout"]
        self.text_offset = int(layout["text_offset"])
        self.vocab_size = int(self.dataset.manifest["vocab_size"])
        self.tokenizer_sha256 = str(self.dataset.manifest.get("tokenizer_sha256", ""))
        self._tokenizer = None

    def index_of(self, row_ids: np.ndarray) -> np.ndarray:
        """Global row index of each id in the dataset, -1 where the dataset lacks it."""
        row_ids = np.asarray(row_ids, dtype=np.int64)
        if len(self._sorted) == 0:
            return np.full(len(row_ids), -1, dtype=np.int64)
        pos = np.clip(np.searchsorted(self._sorted, row_ids), 0, len(self._sorted) - 1)
        found = self._sorted[pos] == row_ids
        return np.where(found, self._order[pos], -1).astype(np.int64)

    def flat(self, row_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tokens of the rows concatenated, and CSR-style row pointers (missing rows are empty)."""
        index = self.index_of(row_ids)
        ok = index >= 0
        safe = np.where(ok, index, 0)
        starts = np.asarray(self.cache.offsets[safe], dtype=np.int64)
        lengths = np.where(ok, np.asarray(self.cache.offsets[safe + 1], dtype=np.int64) - starts, 0)
        indptr = np.zeros(len(index) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        positions = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1], dtype=np.int64)
        return np.asarray(self.cache.values[positions], dtype=np.int64), indptr

    @property
    def tokenizer(self):
        """The dataset's BPE tokenizer (``tokenizers.Tokenizer``), loaded on first use."""
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_file(str(self.dataset.root / TOKENIZER))
        return self._tokenizer

    def texts(self, row_ids: np.ndarray) -> list[str]:
        """The normalised text of each row (placeholders kept), decoded from its BPE ids."""
        values, indptr = self.flat(row_ids)
        seqs = [values[a:b] for a, b in zip(indptr[:-1], indptr[1:], strict=True)]
        return decode_texts(self.tokenizer, seqs, self.text_offset)


def decode_texts(tokenizer, sequences, text_offset: int) -> list[str]:
    """The normalised text of token sequences: their BPE ids (those from ``text_offset``) decoded.

    Shared by ``DatasetTokens.texts`` and readers that fetch a few rows' tokens themselves.
    """
    ids = [[int(i) - text_offset for i in s if i >= text_offset] for s in sequences]
    return tokenizer.decode_batch(ids, skip_special_tokens=False)
