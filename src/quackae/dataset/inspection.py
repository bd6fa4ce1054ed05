"""``quackae inspect DIR``: what a dataset or an embeddings directory holds.

Both kinds are summarised by streaming their shards a row group at a time, so inspecting a
dataset larger than memory is fine. ``verify`` reads every shard in full and lists the damaged
ones; a damaged shard met while summarising is a one-line ``StoreError`` naming it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pyarrow.compute as pc

from quackae.dataset import store
from quackae.dataset.embeddings import META, EmbeddingStore
from quackae.io.storage import Location

TOP = 10


def _count(counter: Counter, column) -> None:
    counts = pc.value_counts(column)
    for item in counts.to_pylist():
        counter[item["values"]] += item["counts"]


def inspect_dataset(root: store.Root, stream: bool = True) -> dict[str, Any]:
    """Counts per label, scan, country; top fingerprints and outcomes; length percentiles.

    ``stream=False`` gives the manifest's totals only (for a dataset with damaged shards). An
    object-store dataset is read through its local mirror (``store.local_dataset``).
    """
    ds = store.Dataset(root) if stream else None
    m = ds.manifest if ds is not None else store.read_manifest(root)
    per_scan: Counter = Counter()
    per_country: Counter = Counter()
    fingerprints: Counter = Counter()
    outcomes: Counter = Counter()
    lengths: list[np.ndarray] = []
    columns = ["scan", "country_code", "fingerprint", "outcome", "length"]
    for batch in ds.iter_batches(columns) if ds is not None else ():
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


def inspect_embeddings(root: store.Root, stream: bool = True) -> dict[str, Any]:
    """Counts per label and embedding dimension of an ``ae_processor --encode`` output."""
    given, out = str(root), EmbeddingStore(root if not isinstance(root, Location) else root.uri)
    meta = out.read_meta() or {}
    labels: Counter = Counter()
    per_country: Counter = Counter()
    dim = int(meta.get("dim", 0))
    for table in out.read_shards(["censored", "country_code"]) if stream else ():
        _count(labels, table.column("censored"))
        _count(per_country, table.column("country_code"))
    return {
        "kind": "embeddings",
        "path": given,
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


def _is_embeddings(path: store.Root) -> bool:
    return store.exists(path, META)


def inspect(path: store.Root, skip_damaged: bool = False) -> dict[str, Any]:
    """Summary of whatever ``path`` (local or URI) holds; ``store.StoreError`` when neither kind.

    ``skip_damaged``: summarise from the metadata only, without reading shards.
    """
    if _is_embeddings(path):
        info = inspect_embeddings(path, stream=not skip_damaged)
    else:
        info = inspect_dataset(path, stream=not skip_damaged)
    info["path"] = str(path)
    return info


def verify(path: store.Root) -> list[str]:
    """Read every shard of a dataset or embeddings directory in full; one line per problem.

    On an object store the objects themselves are read (not a local mirror).
    """
    if not _is_embeddings(path):
        return store.verify(path)
    out = EmbeddingStore(path if not isinstance(path, Location) else path.uri)
    out.read_meta()
    problems = []
    for name in out.shard_names():
        try:
            out.read_shard(name)
        except store.StoreError as e:
            problems.append(str(e))
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
            lines.append(
                "  verify: "
                + (
                    "every shard reads back whole"
                    if value["ok"]
                    else f"{len(value['problems'])} problem(s)"
                )
            )
            lines += [f"    {problem}" for problem in value["problems"]]
            continue
        if isinstance(value, dict):
            shown = ", ".join(f"{k}: {v}" for k, v in list(value.items())[:TOP])
            lines.append(f"  {key}: {shown}")
        else:
            lines.append(f"  {key}: {value}")
    return "\n".join(lines)
