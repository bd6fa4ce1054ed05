"""``quackae inspect DIR``: what a dataset or an embeddings directory holds.

Both kinds are summarised by streaming their shards a row group at a time, so inspecting a
dataset larger than memory is fine.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from quackae import store

TOP = 10


def _count(counter: Counter, column) -> None:
    counts = pc.value_counts(column)
    for item in counts.to_pylist():
        counter[item["values"]] += item["counts"]


def inspect_dataset(root: Path) -> dict[str, Any]:
    """Counts per label, scan, country; top fingerprints and outcomes; length percentiles."""
    ds = store.Dataset(root)
    m = ds.manifest
    per_scan: Counter = Counter()
    per_country: Counter = Counter()
    fingerprints: Counter = Counter()
    outcomes: Counter = Counter()
    lengths: list[np.ndarray] = []
    for batch in ds.iter_batches(["scan", "country_code", "fingerprint", "outcome", "length"]):
        _count(per_scan, batch.column(0))
        _count(per_country, batch.column(1))
        _count(fingerprints, batch.column(2))
        _count(outcomes, batch.column(3))
        lengths.append(batch.column(4).to_numpy())
    fingerprints.pop("", None)
    all_lengths = np.concatenate(lengths) if lengths else np.zeros(0)
    pct = (
        {f"p{q}": int(np.percentile(all_lengths, q)) for q in (50, 90, 99)}
        if len(all_lengths)
        else {}
    )
    pct["max"] = int(all_lengths.max()) if len(all_lengths) else 0
    return {
        "kind": "dataset",
        "path": str(root),
        "length": m["length"],
        "censored": m["censored"],
        "undetermined": m["undetermined"],
        "uncensored": m["uncensored"],
        "rejected": m["rejected"],
        "max_width": m["max_width"],
        "max_tokens": m["max_tokens"],
        "vocab_size": m["vocab_size"],
        "tokenizer_sha256": m["tokenizer_sha256"],
        "filters": m.get("filters", {}),
        "sources": len(m["sources"]),
        "shards": len(m["shards"]),
        "per_scan": dict(per_scan.most_common()),
        "per_country": dict(per_country.most_common()),
        "top_fingerprints": dict(fingerprints.most_common(TOP)),
        "top_outcomes": dict(outcomes.most_common(TOP)),
        "token_length_percentiles": pct,
    }


def inspect_embeddings(root: Path) -> dict[str, Any]:
    """Counts per label and embedding dimension of an ``ae_processor --encode`` output."""
    meta = json.loads((root / "embeddings.json").read_text())
    labels: Counter = Counter()
    per_country: Counter = Counter()
    dim = int(meta.get("dim", 0))
    for path in sorted((root / "shards").glob("*.parquet")):
        table = pq.read_table(path, columns=["censored", "country_code"])
        _count(labels, table.column("censored"))
        _count(per_country, table.column("country_code"))
    return {
        "kind": "embeddings",
        "path": str(root),
        "length": sum(labels.values()),
        "censored": labels[1],
        "undetermined": labels[0],
        "uncensored": labels[-1],
        "dim": dim,
        "latent": meta.get("latent", "final"),
        "mode": meta.get("mode"),
        "complete": bool(meta.get("complete")),
        "checkpoint": meta.get("checkpoint"),
        "dataset": meta.get("dataset"),
        "per_country": dict(per_country.most_common()),
    }


def inspect(path: Path) -> dict[str, Any]:
    """Summary of whatever ``path`` holds; ``store.StoreError`` when it is neither kind."""
    path = Path(path)
    if (path / "embeddings.json").is_file():
        return inspect_embeddings(path)
    return inspect_dataset(path)


def render(info: dict[str, Any]) -> str:
    """Human-readable form of an inspect summary."""
    lines = [f"{info['kind']} at {info['path']}: {info['length']} rows"]
    lines.append(
        f"  censored {info['censored']}  undetermined {info['undetermined']}  "
        f"uncensored {info['uncensored']}"
    )
    for key, value in info.items():
        if key in ("kind", "path", "length", "censored", "undetermined", "uncensored"):
            continue
        if isinstance(value, dict):
            shown = ", ".join(f"{k}: {v}" for k, v in list(value.items())[:TOP])
            lines.append(f"  {key}: {shown}")
        else:
            lines.append(f"  {key}: {value}")
    return "\n".join(lines)
