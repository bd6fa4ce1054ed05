"""``quackae inspect DIR``: what a dataset or an embeddings directory holds.

Both kinds are summarised by streaming their shards a row group at a time, so inspecting a
dataset larger than memory is fine. ``verify`` reads every shard in full and lists the damaged
ones; a damaged shard met while summarising is a one-line ``StoreError`` naming it.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from quackae import store

TOP = 10


def _count(counter: Counter, column) -> None:
    counts = pc.value_counts(column)
    for item in counts.to_pylist():
        counter[item["values"]] += item["counts"]


def inspect_dataset(root: Path, stream: bool = True) -> dict[str, Any]:
    """Counts per label, scan, country; top fingerprints and outcomes; length percentiles.

    ``stream=False`` gives the manifest's totals only (for a dataset with damaged shards).
    """
    ds = store.Dataset(root)
    m = ds.manifest
    per_scan: Counter = Counter()
    per_country: Counter = Counter()
    fingerprints: Counter = Counter()
    outcomes: Counter = Counter()
    lengths: list[np.ndarray] = []
    columns = ["scan", "country_code", "fingerprint", "outcome", "length"]
    for batch in ds.iter_batches(columns) if stream else ():
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


def _embeddings_meta(root: Path) -> dict[str, Any]:
    path = root / "embeddings.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise store.StoreError(f"{path} is unreadable ({e}); rerun the --encode command") from None


def inspect_embeddings(root: Path, stream: bool = True) -> dict[str, Any]:
    """Counts per label and embedding dimension of an ``ae_processor --encode`` output."""
    meta = _embeddings_meta(root)
    labels: Counter = Counter()
    per_country: Counter = Counter()
    dim = int(meta.get("dim", 0))
    for path in sorted((root / "shards").glob("*.parquet")) if stream else ():
        try:
            table = pq.read_table(path, columns=["censored", "country_code"])
        except (OSError, pa.ArrowException) as e:
            raise store.damaged(path, e) from None
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
        "dataset_version": meta.get("dataset_version"),
        "per_country": dict(per_country.most_common()),
    }


def inspect(path: Path, skip_damaged: bool = False) -> dict[str, Any]:
    """Summary of whatever ``path`` holds; ``store.StoreError`` when it is neither kind.

    ``skip_damaged``: summarise from the metadata only, without reading shards.
    """
    path = Path(path)
    if (path / "embeddings.json").is_file():
        return inspect_embeddings(path, stream=not skip_damaged)
    return inspect_dataset(path, stream=not skip_damaged)


def verify(path: Path) -> list[str]:
    """Read every shard of a dataset or embeddings directory in full; one line per problem."""
    path = Path(path)
    if not (path / "embeddings.json").is_file():
        return store.verify(path)
    _embeddings_meta(path)
    problems = []
    for shard in sorted((path / "shards").glob("*.parquet")):
        try:
            pq.read_table(shard)
        except (OSError, pa.ArrowException) as e:
            problems.append(str(store.damaged(shard, e)))
    return problems


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
        if key == "verify":
            lines.append("  verify: " + ("every shard reads back whole" if value["ok"] else
                                         f"{len(value['problems'])} problem(s)"))  # fmt: skip
            lines += [f"    {problem}" for problem in value["problems"]]
            continue
        if isinstance(value, dict):
            shown = ", ".join(f"{k}: {v}" for k, v in list(value.items())[:TOP])
            lines.append(f"  {key}: {shown}")
        else:
            lines.append(f"  {key}: {value}")
    return "\n".join(lines)
