"""The dataset directory: Parquet shards + ``manifest.json``; atomic append, resume, mmap reads.

Layout::

    DIR/manifest.json            what is committed (only shards listed here exist for readers)
    DIR/tokenizer.json           the BPE tokenizer the tokens were made with
    DIR/shards/part-*.parquet    one row per non-control try
    DIR/rejects/part-*.jsonl     every rejected input line: {"file", "line", "reason"}
    DIR/cache/                   flat token cache, memory-mapped by readers (rebuilt on demand)

Every file is written through ``atomic.atomic_path`` (temporary name, fsync, rename, fsync of the
directory), and the manifest is replaced last, so a run killed at any moment leaves the previous
committed state intact. Writers hold ``dataset_lock(root)``; ``commit`` is the one way to change
the manifest from a process that did not write the shards itself.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from quackae import atomic

FORMAT_VERSION = 2  # 2: sources keyed by file name (a truncated copy and the full one share a key)
MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"
SHARD_NAME = re.compile(r"part-[0-9a-f]{16}-\d{5,}\.(parquet|jsonl)")
CACHE_NAME = re.compile(r"(tokens|offsets)-[0-9a-f]{16}\.(bin|npy)")
dataset_lock = atomic.directory_lock  # ``with dataset_lock(root):`` around every change

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


StoreError = atomic.StoreError  # a dataset directory that cannot be used; the message says what to do


def row_id(source_key: str, line: int, try_index: int) -> int:
    """Stable signed 64-bit id of a row, the same in every run over the same source."""
    digest = hashlib.blake2b(f"{source_key}:{line}:{try_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def damaged(path: Path, exc: BaseException) -> StoreError:
    """The one-line error for a shard that cannot be read (truncated, overwritten, missing)."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    root = Path(path).parent.parent
    return StoreError(
        f"{path} is damaged ({reason}); `quackae inspect {root} --verify` lists every damaged "
        "shard: restore them from a backup, or re-flatten the sources into a new --storage_path"
    )


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
    atomic.atomic_write(Path(root) / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))


def add_shard(manifest: dict[str, Any], shard: dict[str, Any]) -> None:
    """Account a committed shard in the manifest totals (caller writes the manifest)."""
    manifest["shards"].append(shard)
    for key in ("length", "censored", "undetermined", "uncensored", "rejected"):
        manifest[key] += shard[key if key != "length" else "rows"]
    manifest["max_width"] = max(manifest["max_width"], shard["max_width"])


def dataset_version(manifest: dict[str, Any], shards: int | None = None) -> dict[str, Any]:
    """Which committed state of a dataset this is (of its first ``shards`` shards if given).

    Appends only add shards, so the version of an older state equals the version of the
    newer one's prefix: that is how a reader tells "grew" from "changed".
    """
    listed = manifest["shards"][:shards] if shards is not None else manifest["shards"]
    digest = hashlib.sha256(json.dumps([(s["file"], s["rows"]) for s in listed]).encode())
    return {"shards": len(listed), "length": sum(s["rows"] for s in listed),
            "digest": digest.hexdigest()[:32]}  # fmt: skip


def drop_source(manifest: dict[str, Any], key: str) -> list[str]:
    """Forget a source's shards and totals (it is being re-read); return the files to delete."""
    kept, files = [], []
    for shard in manifest["shards"]:
        if shard.get("source") != key:
            kept.append(shard)
            continue
        files += [f for f in (shard["file"], shard.get("rejects_file")) if f]
        manifest["length"] -= shard["rows"]
        for k in ("censored", "undetermined", "uncensored", "rejected"):
            manifest[k] -= shard[k]
    manifest["shards"] = kept
    manifest["max_width"] = max((s["max_width"] for s in kept), default=0)
    manifest["sources"].pop(key, None)
    return files


def delete_files(root: Path, files: Iterable[str]) -> None:
    """Delete dataset files the committed manifest no longer lists (after it was written)."""
    for name in files:
        (Path(root) / name).unlink(missing_ok=True)


def commit(
    root: Path,
    shards: list[dict[str, Any]],
    sources: dict[str, dict[str, Any]] | None = None,
    replace: Iterable[str] = (),
) -> dict[str, Any]:
    """Commit shards written by any process: re-read the manifest, add them, write it back.

    Call it inside ``with dataset_lock(root):``. ``replace`` names source keys whose earlier
    shards are dropped first (a complete copy replacing a truncated one); ``sources`` updates
    the per-source bookkeeping. Returns the new manifest.
    """
    root = Path(root)
    manifest = read_manifest(root)
    dropped: list[str] = []
    for key in replace:
        dropped += drop_source(manifest, key)
    for shard in shards:
        add_shard(manifest, shard)
    manifest["sources"].update(sources or {})
    write_manifest(root, manifest)
    delete_files(root, dropped)
    return manifest


def remove_orphans(root: Path, manifest: dict[str, Any]) -> int:
    """Delete a killed run's leftovers: unlisted files with quackae's shard names, and temps.

    Only names quackae itself gives are touched; anything else in the directory is left alone.
    """
    listed = {s["file"] for s in manifest["shards"]} | {
        s["rejects_file"] for s in manifest["shards"] if s.get("rejects_file")
    }
    removed = atomic.remove_temps(Path(root))
    for sub in ("shards", "rejects"):
        directory = Path(root) / sub
        removed += atomic.remove_temps(directory)
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            if SHARD_NAME.fullmatch(path.name) and f"{sub}/{path.name}" not in listed:
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def check_owned(root: Path) -> None:
    """Refuse a non-empty directory that holds no quackae dataset, before writing anything."""
    root = Path(root)
    if not root.exists() or (root / MANIFEST).exists():
        return
    if not root.is_dir():
        raise StoreError(f"{root} is a file, not a directory; pass a new --storage_path")
    names = {p.name for p in root.iterdir()}
    # a creation killed before its first manifest leaves only the lock, the tokenizer and temps
    ours = {atomic.LOCK_FILE, TOKENIZER} if atomic.LOCK_FILE in names else set()
    foreign = sorted(n for n in names if n not in ours and not atomic.is_temp(n))
    if foreign:
        raise StoreError(
            f"{root} is not empty ({len(foreign)} entries, e.g. {foreign[0]}) and holds no quackae "
            f"dataset ({MANIFEST}); pass a new or empty --storage_path: quackae never writes "
            "into a folder of other files"
        )


def check_shards(root: Path, manifest: dict[str, Any]) -> None:
    """Cheap integrity check before appending: each listed shard's footer and row count."""
    for shard in manifest["shards"]:
        path = Path(root) / shard["file"]
        try:
            rows = pq.read_metadata(path).num_rows
        except (OSError, pa.ArrowException) as e:
            raise damaged(path, e) from None
        if rows != shard["rows"]:
            raise damaged(path, ValueError(f"{rows} rows, the manifest says {shard['rows']}"))


def verify(root: Path) -> list[str]:
    """Read every committed shard in full; return one problem line per damaged file."""
    root = Path(root)
    manifest = read_manifest(root)
    problems = []
    for shard in manifest["shards"]:
        path = root / shard["file"]
        try:
            table = pq.read_table(path)
            if table.num_rows != shard["rows"] or table.schema.names != SCHEMA.names:
                raise ValueError(f"{table.num_rows} rows, the manifest says {shard['rows']}")
        except (OSError, ValueError, pa.ArrowException) as e:
            problems.append(str(damaged(path, e)))
        rejects = shard.get("rejects_file")
        if rejects and not (root / rejects).is_file():
            problems.append(f"{root / rejects}: missing (the rejects of {shard['file']})")
    if not (root / TOKENIZER).is_file():
        problems.append(f"{root / TOKENIZER}: missing; restore it or re-flatten into a new --storage_path")
    return problems


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
    with atomic.atomic_path(root / shard_file) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=16384)
    rejects_file = ""
    if rejects:
        rejects_file = f"rejects/{name}.jsonl"
        atomic.atomic_write(root / rejects_file, "".join(json.dumps(r) + "\n" for r in rejects))
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
        return pa.concat_tables(_read_shard(p, columns) for p in self.shard_paths)

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
            for batch in _shard_batches(path, batch_size, columns):
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


def _read_shard(path: Path, columns: list[str]) -> pa.Table:
    """Selected columns of one shard; a damaged file is a one-line ``StoreError`` naming it."""
    try:
        return pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException) as e:
        raise damaged(path, e) from None


def _shard_batches(path: Path, batch_size: int, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """Record batches of one shard; a damaged file is a one-line ``StoreError`` naming it."""
    try:
        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=columns)
    except (OSError, pa.ArrowException) as e:
        raise damaged(path, e) from None



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
