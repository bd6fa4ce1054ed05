"""The embeddings directory written by ``ae_processor --encode``.

Layout::

    DIR/embeddings.json          mode, dim, latent, checkpoint, dataset (+ its version), complete
    DIR/shards/part-*.parquet    dataset metadata columns + ``embedding`` (float32[dim])

Shards are written atomically (``atomic.atomic_path``), so a killed run leaves only whole shards;
the rerun skips the row ids already written and appends the rest, ending with every selected
record exactly once. ``dataset_version`` records which committed state of the dataset was
encoded: when the dataset only grew since, a rerun encodes just the new rows; any other change
is refused (see ``check_version``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from quackae import atomic, store

META = "embeddings.json"
COLUMNS = (
    "row_id", "source", "line", "try_index", "ip", "domain", "location", "country_code",
    "timestamp", "end_time", "scan", "censored", "fingerprint", "outcome", "anomaly",
)  # fmt: skip
IDENTITY_KEYS = ("mode", "dim", "checkpoint", "dataset", "tokenizer_sha256", "seed", "latent")


def schema(dim: int) -> pa.Schema:
    """Metadata columns as in the dataset, plus a fixed-size float32 ``embedding``."""
    fields = [store.SCHEMA.field(name) for name in COLUMNS]
    return pa.schema([*fields, pa.field("embedding", pa.list_(pa.float32(), dim))])


class EmbeddingStore:
    """Create, resume and complete an embeddings directory."""

    def __init__(self, storage: str | Path) -> None:
        self.storage = Path(storage)
        self.shards = self.storage / "shards"

    @property
    def meta_path(self) -> Path:
        """Location of ``embeddings.json``."""
        return self.storage / META

    def read_meta(self) -> dict[str, Any] | None:
        """The directory's metadata, or None when it holds no embeddings yet."""
        if not self.meta_path.is_file():
            return None
        try:
            return json.loads(self.meta_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise store.StoreError(
                f"{self.meta_path} is unreadable ({e}); delete {self.storage} and rerun the command"
            ) from None

    def _write_meta(self, meta: dict[str, Any]) -> None:
        atomic.atomic_write(self.meta_path, json.dumps(meta, indent=1))

    def check_owned(self) -> None:
        """Refuse a non-empty directory that holds no embeddings (the user's own files)."""
        if not self.storage.is_dir() or self.meta_path.is_file():
            return
        names = {p.name for p in self.storage.iterdir()}
        foreign = sorted(n for n in names - {atomic.LOCK_FILE, "shards"} if not atomic.is_temp(n))
        if foreign:
            raise store.StoreError(
                f"{self.storage} is not empty (e.g. {foreign[0]}) and holds no embeddings "
                f"({META}); pass a new or empty --storage_path"
            )

    def begin(self, meta: dict[str, Any]) -> set[int]:
        """Start or resume a run with ``meta``; return the row ids already written.

        Raises ``ValueError`` when the directory holds embeddings of a different run.
        """
        self.check_identity(meta)
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
                    f"{self.storage} holds embeddings of another run (different {', '.join(diff)}); "
                    "choose another --storage_path or delete that directory"
                )

    def written_row_ids(self) -> np.ndarray:
        """Row ids of every committed shard."""
        ids = []
        for path in sorted(self.shards.glob("*.parquet")):
            try:
                ids.append(pq.read_table(path, columns=["row_id"]).column(0).to_numpy())
            except (OSError, pa.ArrowException) as e:
                raise store.damaged(path, e) from None
        return np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)

    def write_shard(self, name: str, rows: pa.Table | list[dict[str, Any]], latents: np.ndarray) -> None:
        """Commit one shard: metadata rows (an Arrow table or row dicts) and their latents, atomically."""
        dim = latents.shape[1]
        if isinstance(rows, pa.Table):
            columns = {c: rows.column(c) for c in COLUMNS}
        else:
            columns = {c: [r[c] for r in rows] for c in COLUMNS}
        flat = pa.array(np.ascontiguousarray(latents, dtype=np.float32).reshape(-1))
        columns["embedding"] = pa.FixedSizeListArray.from_arrays(flat, dim)
        table = pa.Table.from_pydict(columns, schema=schema(dim))
        with atomic.atomic_path(self.shards / f"{name}.parquet") as tmp:
            pq.write_table(table, tmp, compression="zstd")

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


def check_version(storage: Path, meta: dict[str, Any] | None, manifest: dict[str, Any], mode: str) -> str:
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
                f"{storage}: the dataset grew from {old['length']} to {version['length']} rows "
                "since these --filtered embeddings were made, and --filtered balances the labels "
                "over the whole dataset; encode into a new --storage_path"
            )
        return "grew"
    raise store.StoreError(
        f"{storage}: the dataset changed since these embeddings were made (rows replaced or "
        f"removed, not only added: {old['length']} -> {version['length']} rows); encode into a "
        "new --storage_path"
    )
