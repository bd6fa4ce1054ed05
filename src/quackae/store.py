"""The dataset directory: Parquet shards + ``manifest.json``; atomic append, resume, mmap reads.

Layout::

    DIR/manifest.json            what is committed (only shards listed here exist for readers)
    DIR/tokenizer.json           the BPE tokenizer the tokens were made with
    DIR/shards/part-*.parquet    one row per non-control try
    DIR/rejects/part-*.jsonl     every rejected input line: {"file", "line", "reason"}
    DIR/cache/                   flat token cache, memory-mapped by readers (rebuilt on demand)

Every file is written to a temporary name and renamed into place, and the manifest is replaced
last, so a run killed at any moment leaves the previous committed state intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"

SCHEMA = pa.schema(
    [
        ("row_id", pa.int64()),
        ("source", pa.string()),
        ("line", pa.int64()),
        ("try_index", pa.int16()),
        ("ip", pa.string()),
        ("domain", pa.string()),
        ("location", pa.string()),
        ("country_code", pa.string()),
        ("timestamp", pa.int64()),
        ("end_time", pa.int64()),
        ("duration_ms", pa.float32()),
        ("scan", pa.string()),
        ("censored", pa.int8()),
        ("fingerprint", pa.string()),
        ("outcome", pa.string()),
        ("anomaly", pa.bool_()),
        ("length", pa.int32()),
        ("tokens", pa.list_(pa.int32())),
    ]
)
METADATA_COLUMNS = tuple(n for n in SCHEMA.names if n not in ("tokens",))
LABEL_KEYS = {1: "censored", 0: "undetermined", -1: "uncensored"}


class StoreError(Exception):
    """A dataset directory that cannot be used; the message says what to do."""


def row_id(source_key: str, line: int, try_index: int) -> int:
    """Stable signed 64-bit id of a row, the same in every run over the same source."""
    digest = hashlib.blake2b(f"{source_key}:{line}:{try_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


# --------------------------------------------------------------------------- manifest


def new_manifest(layout: dict, tokenizer_sha256: str, max_tokens: int) -> dict[str, Any]:
    """An empty manifest for a dataset made with this tokenizer and layout."""
    return {
        "kind": "dataset",
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "length": 0,
        "censored": 0,
        "undetermined": 0,
        "uncensored": 0,
        "rejected": 0,
        "max_width": 0,
        "max_tokens": max_tokens,
        "vocab_size": layout["vocab_size"],
        "layout": layout,
        "tokenizer_sha256": tokenizer_sha256,
        "sources": {},
        "shards": [],
    }


def read_manifest(root: Path) -> dict[str, Any]:
    """Load ``manifest.json``; a clear ``StoreError`` if the directory is not a dataset."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise StoreError(
            f"no dataset at {root}: make one with `quackae flatten --source ARCHIVE "
            f"--storage_path {root}` (or `quackae synth` for sample data)"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise StoreError(f"{path} is unreadable ({e}); re-create the dataset") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise StoreError(
            f"{path} has format_version {manifest.get('format_version')}, this quackae reads "
            f"{FORMAT_VERSION}; re-flatten the sources into a new directory"
        )
    return manifest


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    """Replace the manifest atomically: the commit point of every change to the dataset."""
    _atomic_write(Path(root) / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())


def add_shard(manifest: dict[str, Any], shard: dict[str, Any]) -> None:
    """Account a committed shard in the manifest totals (caller writes the manifest)."""
    manifest["shards"].append(shard)
    for key in ("length", "censored", "undetermined", "uncensored", "rejected"):
        manifest[key] += shard[key if key != "length" else "rows"]
    manifest["max_width"] = max(manifest["max_width"], shard["max_width"])


def remove_orphans(root: Path, manifest: dict[str, Any]) -> int:
    """Delete shard, reject and temporary files the manifest does not list (a killed run's)."""
    listed = {s["file"] for s in manifest["shards"]} | {
        s["rejects_file"] for s in manifest["shards"] if s.get("rejects_file")
    }
    removed = 0
    for sub in ("shards", "rejects"):
        for path in (Path(root) / sub).glob("*"):
            if f"{sub}/{path.name}" not in listed:
                path.unlink(missing_ok=True)
                removed += 1
    return removed


# --------------------------------------------------------------------------- writing


def write_shard(
    root: Path, name: str, columns: dict[str, list], rejects: list[dict[str, Any]]
) -> dict[str, Any]:
    """Write one shard (and its rejects) atomically; return its manifest entry."""
    root = Path(root)
    (root / "shards").mkdir(parents=True, exist_ok=True)
    (root / "rejects").mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pydict(columns, schema=SCHEMA)
    shard_file = f"shards/{name}.parquet"
    tmp = root / f"{shard_file}.tmp{os.getpid()}"
    pq.write_table(table, tmp, compression="zstd", row_group_size=16384)
    tmp.replace(root / shard_file)
    rejects_file = ""
    if rejects:
        rejects_file = f"rejects/{name}.jsonl"
        _atomic_write(root / rejects_file, "".join(json.dumps(r) + "\n" for r in rejects).encode())
    labels = np.asarray(columns["censored"], dtype=np.int8)
    lengths = columns["length"]
    return {
        "file": shard_file,
        "rejects_file": rejects_file,
        "rows": table.num_rows,
        "censored": int((labels == 1).sum()),
        "undetermined": int((labels == 0).sum()),
        "uncensored": int((labels == -1).sum()),
        "rejected": len(rejects),
        "max_width": int(max(lengths)) if lengths else 0,
    }


# --------------------------------------------------------------------------- reading


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
    """A committed dataset directory, opened read-only with bounded memory."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
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
        return pa.concat_tables(pq.read_table(p, columns=columns) for p in self.shard_paths)

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
            for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=columns):
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
        for old in cache.glob("*"):
            if key not in old.name:
                old.unlink(missing_ok=True)
        offsets = np.zeros(len(self) + 1, dtype=np.int64)
        row = 0
        tmp_values = values_path.with_name(values_path.name + f".tmp{os.getpid()}")
        with open(tmp_values, "wb") as f:
            for batch in self.iter_batches(["tokens"], batch_size=16384):
                col = batch.column(0)
                flat = col.flatten().to_numpy(zero_copy_only=False).astype(dtype)
                lens = np.diff(col.offsets.to_numpy())
                offsets[row + 1 : row + 1 + len(lens)] = offsets[row] + np.cumsum(lens)
                row += len(lens)
                f.write(flat.tobytes())
        tmp_values.replace(values_path)
        tmp_offsets = offsets_path.with_name(offsets_path.name + f".tmp{os.getpid()}.npy")
        np.save(tmp_offsets, offsets, allow_pickle=False)
        tmp_offsets.replace(offsets_path)


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

    def texts(self, row_ids: np.ndarray) -> list[str]:
        """The normalised text of each row (placeholders kept), decoded from its BPE ids."""
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_file(str(self.dataset.root / TOKENIZER))
        values, indptr = self.flat(row_ids)
        seqs = [values[a:b] for a, b in zip(indptr[:-1], indptr[1:], strict=True)]
        ids = [[int(i) - self.text_offset for i in s if i >= self.text_offset] for s in seqs]
        return self._tokenizer.decode_batch(ids, skip_special_tokens=False)
