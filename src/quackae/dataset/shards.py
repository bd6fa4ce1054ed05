"""Writing one shard (with its rejects) and reading shards back, damage as one line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from quackae.dataset.files import Root, damaged, local_root, remote_root, write_file
from quackae.dataset.schema import SCHEMA, SHARD_WRITE_OPTIONS
from quackae.io import atomic


def write_shard(
    root: Root, name: str, columns: dict[str, list], rejects: list[dict[str, Any]]
) -> dict[str, Any]:
    """Write one shard (and its rejects) atomically; return its manifest entry.

    ``root`` may be a local path or an object-store URI (string or Location): any process that
    can reach it may write shards; only the lock holder commits them (``commit``).
    """
    table = pa.Table.from_pydict(columns, schema=SCHEMA)
    shard_file = f"shards/{name}.parquet"
    remote = remote_root(root)
    if remote is None:
        local = local_root(root)
        (local / "shards").mkdir(parents=True, exist_ok=True)
        (local / "rejects").mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(local / shard_file) as tmp:
            pq.write_table(table, tmp, **SHARD_WRITE_OPTIONS)
    else:  # serialised first, so a failure never leaves a partial object behind
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, **SHARD_WRITE_OPTIONS)
        write_file(remote, shard_file, sink.getvalue().to_pybytes())
    rejects_file = ""
    if rejects:
        rejects_file = f"rejects/{name}.jsonl"
        write_file(root, rejects_file, "".join(json.dumps(r) + "\n" for r in rejects).encode())
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


def read_shard(path: Path, columns: list[str]) -> pa.Table:
    """Selected columns of one shard; a damaged file is a one-line ``StoreError`` naming it."""
    try:
        return pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException) as e:
        raise damaged(path, e) from None


def shard_batches(path: Path, batch_size: int, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """Record batches of one shard; a damaged file is a one-line ``StoreError`` naming it."""
    try:
        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=columns)
    except (OSError, pa.ArrowException) as e:
        raise damaged(path, e) from None
