"""The embeddings directory written by ``ae_processor --encode``.

Layout::

    DIR/embeddings.json          mode, dim, latent, checkpoint, dataset, complete flag
    DIR/shards/part-*.parquet    dataset metadata columns + ``embedding`` (float32[dim])

Shards are written atomically (temporary name, then rename), so a killed run leaves only whole
shards; the rerun skips the row ids already written and appends the rest, ending with every
selected record exactly once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from quackae import store

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
        return json.loads(self.meta_path.read_text()) if self.meta_path.is_file() else None

    def _write_meta(self, meta: dict[str, Any]) -> None:
        tmp = self.meta_path.with_name(META + f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(meta, indent=1))
        tmp.replace(self.meta_path)

    def begin(self, meta: dict[str, Any]) -> set[int]:
        """Start or resume a run with ``meta``; return the row ids already written.

        Raises ``ValueError`` when the directory holds embeddings of a different run.
        """
        existing = self.read_meta()
        if existing is not None:
            existing = {"latent": "final", **existing}  # directories from before --latent
            diff = [k for k in IDENTITY_KEYS if existing.get(k) != meta.get(k)]
            if diff:
                raise ValueError(
                    f"{self.storage} holds embeddings of another run (different {', '.join(diff)}); "
                    "choose another --storage_path or delete that directory"
                )
        self.shards.mkdir(parents=True, exist_ok=True)
        for tmp in self.shards.glob("*.tmp*"):
            tmp.unlink(missing_ok=True)
        self._write_meta({"kind": "embeddings", **meta, "complete": False})
        return set(self.written_row_ids().tolist())

    def written_row_ids(self) -> np.ndarray:
        """Row ids of every committed shard."""
        ids = [
            pq.read_table(p, columns=["row_id"]).column(0).to_numpy()
            for p in sorted(self.shards.glob("*.parquet"))
        ]
        return np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)

    def write_shard(self, name: str, rows: list[dict[str, Any]], latents: np.ndarray) -> None:
        """Commit one shard: metadata rows and their latents, atomically."""
        dim = latents.shape[1]
        columns = {c: [r[c] for r in rows] for c in COLUMNS}
        flat = pa.array(np.ascontiguousarray(latents, dtype=np.float32).reshape(-1))
        columns["embedding"] = pa.FixedSizeListArray.from_arrays(flat, dim)
        table = pa.Table.from_pydict(columns, schema=schema(dim))
        path = self.shards / f"{name}.parquet"
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        pq.write_table(table, tmp, compression="zstd")
        tmp.replace(path)

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
