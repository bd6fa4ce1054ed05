"""The embeddings directory written by ``ae_processor --encode``.

Layout::

    DIR/embeddings.json          mode, dim, latent, checkpoint, dataset (+ its version), complete
    DIR/shards/part-*.parquet    dataset metadata columns + ``embedding`` (float32[dim])

Shards are written atomically (``atomic.atomic_path``), so a killed run leaves only whole shards;
the rerun skips the row ids already written and appends the rest, ending with every selected
record exactly once. ``DIR`` may be an object-store URI (``gs://``, ``s3://``; see ``storage``):
an object appears whole when its upload ends, so the same holds there, and the writer lock is
an object (``.quackae.lock``: host, pid, time) instead of a ``flock``. ``dataset_version``
records which committed state of the dataset was encoded: when the dataset only grew since, a
rerun encodes just the new rows; any other change is refused (see ``check_version``).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from quackae.dataset import store
from quackae.io import atomic, folders, storage

META = "embeddings.json"
SHARDS = "shards"
COLUMNS = (
    "row_id",
    "source",
    "line",
    "try_index",
    "ip",
    "domain",
    "location",
    "country_code",
    "timestamp",
    "end_time",
    "scan",
    "censored",
    "fingerprint",
    "outcome",
    "anomaly",
)
IDENTITY_KEYS = ("mode", "dim", "checkpoint", "dataset", "tokenizer_sha256", "seed", "latent")


def schema(dim: int) -> pa.Schema:
    """Metadata columns as in the dataset, plus a fixed-size float32 ``embedding``."""
    fields = [store.SCHEMA.field(name) for name in COLUMNS]
    return pa.schema([*fields, pa.field("embedding", pa.list_(pa.float32(), dim))])


class EmbeddingStore:
    """Create, resume and complete an embeddings directory (a local path or an object-store URI)."""

    def __init__(self, storage_path: str | Path) -> None:
        self.location = storage.resolve(storage_path)
        self.remote = self.location.remote
        # messages name what the user passed; local code paths keep working on Paths
        self.storage: Path | str = self.location.uri if self.remote else Path(storage_path)
        self.shards = self.location.child(SHARDS) if self.remote else Path(storage_path) / SHARDS

    @property
    def meta_path(self) -> Path | str:
        """Location of ``embeddings.json`` (its URI on an object store)."""
        return self.location.child(META).uri if self.remote else Path(self.storage) / META

    def read_meta(self) -> dict[str, Any] | None:
        """The directory's metadata, or None when it holds no embeddings yet."""
        meta = self.location.child(META)
        if not meta.is_file():
            return None
        try:
            return json.loads(meta.read_bytes())
        except (OSError, json.JSONDecodeError) as e:
            raise store.StoreError(
                f"{self.meta_path} is unreadable ({e}); delete {self.storage} and rerun the command"
            ) from None

    def _write_meta(self, meta: dict[str, Any]) -> None:
        self.location.child(META).write_bytes(json.dumps(meta, indent=1).encode())

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the one-writer lock: ``flock`` locally, a lock object on an object store."""
        with store.dataset_lock(self.storage if not self.remote else self.location):
            yield

    def check_owned(self) -> None:
        """Refuse a non-empty directory that holds no embeddings (the user's own files)."""
        if self.remote:
            if self.location.child(META).is_file():
                return
            start = len(self.location.path.rstrip("/")) + 1
            names = {loc.path[start:].split("/", 1)[0] for loc in self.location.list_files()}
        else:
            if not Path(self.storage).is_dir() or Path(self.meta_path).is_file():
                return
            names = {p.name for p in Path(self.storage).iterdir()}
        foreign = sorted(n for n in names - {atomic.LOCK_FILE, SHARDS} if not atomic.is_temp(n))
        # the one refusal every command gives (quackae.io.folders)
        folders.refuse_foreign(
            self.storage, foreign, "--storage_path", f"`quackae encode` (no {META})"
        )

    def begin(self, meta: dict[str, Any]) -> set[int]:
        """Start or resume a run with ``meta``; return the row ids already written.

        Raises ``ValueError`` when the directory holds embeddings of a different run.
        """
        self.check_identity(meta)
        if not self.remote:  # an object store has no directories, and no half-written objects
            self.shards.mkdir(parents=True, exist_ok=True)
            atomic.remove_temps(self.shards)
        self._write_meta({"kind": "embeddings", **meta, "complete": False})
        return set(self.written_row_ids().tolist())

    def check_identity(self, meta: dict[str, Any]) -> None:
        """``ValueError`` when the directory holds embeddings of another run (not just older)."""
        existing = self.read_meta()
        if existing is not None:
            existing = {"latent": "final", **existing}  # directories from before --latent
            diff = [k for k in IDENTITY_KEYS if existing.get(k) != meta.get(k)]
            if diff:
                raise ValueError(
                    f"{self.storage} holds embeddings of another run (different "
                    f"{', '.join(diff)}); "
                    "choose another --storage_path or delete that directory"
                )

    def written_row_ids(self) -> np.ndarray:
        """Row ids of every committed shard."""
        ids = [table.column(0).to_numpy() for table in self.read_shards(["row_id"])]
        return np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)

    def shard_names(self) -> list[str]:
        """The committed shards: local paths, or URIs on an object store; sorted."""
        if not self.remote:
            return [str(p) for p in sorted(self.shards.glob("*.parquet"))]
        found = self.shards.list_files(recursive=False)
        return sorted(loc.uri for loc in found if loc.path.endswith(".parquet"))

    def read_shard(self, name: str, columns: list[str] | None = None) -> pa.Table:
        """One shard's ``columns`` (all if None); a damaged one is a one-line ``StoreError``."""
        loc = storage.resolve(name)
        try:
            return pq.read_table(loc.path, columns=columns, filesystem=loc.fs)
        except (OSError, pa.ArrowException) as e:
            raise store.damaged(Path(name) if not self.remote else loc, e) from None

    def read_shards(self, columns: list[str] | None = None) -> Iterator[pa.Table]:
        """Each committed shard's ``columns`` (all if None), in name order."""
        for name in self.shard_names():
            yield self.read_shard(name, columns)

    def summary(self) -> dict[str, Any]:
        """Counts per label, dimension and mode (``inspection.inspect_embeddings``' main keys)."""
        meta = self.read_meta() or {}
        labels: Counter = Counter()
        for table in self.read_shards(["censored"]):
            labels.update(table.column(0).to_pylist())
        return {
            "kind": "embeddings",
            "path": str(self.storage),
            "length": sum(labels.values()),
            "censored": labels[1],
            "undetermined": labels[0],
            "uncensored": labels[-1],
            "dim": int(meta.get("dim", 0)),
            "latent": meta.get("latent", "final"),
            "mode": meta.get("mode"),
            "complete": bool(meta.get("complete")),
        }

    def write_shard(
        self, name: str, rows: pa.Table | list[dict[str, Any]], latents: np.ndarray
    ) -> None:
        """Commit one shard atomically: metadata rows (Arrow table or dicts) and their latents."""
        dim = latents.shape[1]
        if isinstance(rows, pa.Table):
            columns = {c: rows.column(c) for c in COLUMNS}
        else:
            columns = {c: [r[c] for r in rows] for c in COLUMNS}
        flat = pa.array(np.ascontiguousarray(latents, dtype=np.float32).reshape(-1))
        columns["embedding"] = pa.FixedSizeListArray.from_arrays(flat, dim)
        table = pa.Table.from_pydict(columns, schema=schema(dim))
        if self.remote:  # the object appears, whole, when its upload ends
            target = self.shards.child(f"{name}.parquet")
            pq.write_table(table, target.path, compression="zstd", filesystem=target.fs)
            return
        with atomic.atomic_path(self.shards / f"{name}.parquet") as tmp:
            pq.write_table(table, tmp, compression="zstd")

    def write_array(self, name: str, values: np.ndarray) -> str:
        """Store ``values`` as ``name`` (``.npy``, no pickle) in the folder; its path or URI."""
        buffer = io.BytesIO()
        np.save(buffer, values, allow_pickle=False)
        target = self.location.child(name)
        target.write_bytes(buffer.getvalue())
        return target.uri

    def finish(self, expected: int) -> None:
        """Mark the run complete once every selected row is written exactly once."""
        ids = self.written_row_ids()
        if len(ids) != expected or len(np.unique(ids)) != len(ids):
            raise RuntimeError(
                f"{self.storage}: {len(ids)} embeddings ({len(np.unique(ids))} distinct) for "
                f"{expected} selected records; rerun the same command to complete it"
            )
        meta = self.read_meta() or {}
        self._write_meta({**meta, "complete": True, "length": int(len(ids))})


def read_array(path: str) -> np.ndarray:
    """An array written by ``EmbeddingStore.write_array`` (from any node that reaches the store)."""
    return np.load(io.BytesIO(storage.resolve(path).read_bytes()), allow_pickle=False)


def check_version(
    storage_path: Path | str, meta: dict[str, Any] | None, manifest: dict[str, Any], mode: str
) -> str:
    """How a rerun relates to the dataset version already encoded: ``same``, ``grew`` or ``new``.

    Raises ``store.StoreError`` (saying why) when the dataset changed in any other way than
    growing, or grew under ``--filtered``, whose balanced sample depends on the whole dataset.
    """
    old = (meta or {}).get("dataset_version")
    version = store.dataset_version(manifest)
    if meta is None or old is None:
        return "new"
    if old == version:
        return "same"
    if old["shards"] <= version["shards"] and old == store.dataset_version(manifest, old["shards"]):
        if mode == "filtered":
            raise store.StoreError(
                f"{storage_path}: the dataset grew from {old['length']} to {version['length']} "
                "rows "
                "since these --filtered embeddings were made, and --filtered balances the labels "
                "over the whole dataset; encode into a new --storage_path"
            )
        return "grew"
    raise store.StoreError(
        f"{storage_path}: the dataset changed since these embeddings were made (rows replaced or "
        f"removed, not only added: {old['length']} -> {version['length']} rows); encode into a "
        "new --storage_path"
    )


# --------------------------------------------------------------------------- readers


def read_meta(embeddings: str | Path) -> dict[str, Any]:
    """``embeddings.json`` of an embeddings directory; ValueError if it is not one."""
    meta = EmbeddingStore(embeddings).read_meta()
    if meta is None:
        raise ValueError(
            f"{embeddings} is not an embeddings directory (no {META}); make one with "
            "`python -m quackae.ae_processor --encode --filtered|--evaluate`"
        )
    return meta


def shard_paths(embeddings: str | Path) -> list[Path]:
    """Committed shards of a local embeddings directory, in name order."""
    return [Path(name) for name in EmbeddingStore(embeddings).shard_names()]


def embedding_matrix(column: pa.ChunkedArray | pa.Array, dim: int) -> np.ndarray:
    """A fixed-size-list ``embedding`` column as a ``(rows, dim)`` float32 array."""
    if isinstance(column, pa.ChunkedArray):
        empty = pa.array([], pa.list_(pa.float32(), dim))
        column = column.combine_chunks() if column.num_chunks else empty
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return np.array(flat, dtype=np.float32, copy=True).reshape(-1, dim)


def read_embeddings(
    embeddings: str | Path, columns: tuple[str, ...] = ("row_id", "censored")
) -> tuple[pa.Table, np.ndarray]:
    """Metadata columns and the latents of every shard (for modest, e.g. ``--filtered``, dirs)."""
    dim = int(read_meta(embeddings)["dim"])
    tables = list(EmbeddingStore(embeddings).read_shards([*columns, "embedding"]))
    if not tables:
        raise ValueError(f"{embeddings} holds no embedding shards")
    table = pa.concat_tables(tables)
    return table.drop_columns(["embedding"]), embedding_matrix(table.column("embedding"), dim)
