"""The row schema of dataset shards, how shards are written, and stable row ids."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

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


#: How shards are written. Dictionary encoding only for the few-valued text columns: on the token
#: lists and per-row ids it costs a third of the write time and makes the file larger (measured on
#: the real mix of ``benchmarks/ingest.py --real``: 0.61 s -> 0.39 s per 105k rows, 20% smaller).
SHARD_WRITE_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "row_group_size": 16384,
    "use_dictionary": [
        "source",
        "domain",
        "location",
        "country_code",
        "scan",
        "fingerprint",
        "outcome",
    ],
    "write_statistics": [
        name for name in SCHEMA.names if name != "tokens"
    ],  # min/max of ids: no use
}


METADATA_COLUMNS = tuple(n for n in SCHEMA.names if n not in ("tokens",))


LABEL_KEYS = {1: "censored", 0: "undetermined", -1: "uncensored"}


def row_id(source_key: str, line: int, try_index: int) -> int:
    """Stable signed 64-bit id of a row, the same in every run over the same source."""
    digest = hashlib.blake2b(f"{source_key}:{line}:{try_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def row_ids(source_key: str, lines: Sequence[int], try_indices: Sequence[int]) -> list[int]:
    """``row_id`` of many rows of one source (the key is encoded once)."""
    prefix, blake2b, from_bytes = f"{source_key}:".encode(), hashlib.blake2b, int.from_bytes
    return [
        from_bytes(
            blake2b(prefix + b"%d:%d" % (line, t), digest_size=8).digest(), "little", signed=True
        )
        for line, t in zip(lines, try_indices, strict=True)
    ]
