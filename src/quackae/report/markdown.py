"""The censorship candidates report of a predict output: candidates ranked and grouped.

``write_report(pred_dir)`` reads the prediction shards (metadata + ``probability`` and
``baseline_probability``) and writes ``report.md`` and ``report.json``: the candidates
(probability >= threshold) ranked and grouped by country, domain, vantage point, outcome,
scan and the page they received. Ground-truth scoring of generated data is ``quackae.synth.truth``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quackae.classify.predictions import PREDICTIONS_META, count_rows, read_predictions
from quackae.dataset import store
from quackae.dataset.pages import page_signatures
from quackae.io.atomic import atomic_write

log = logging.getLogger(__name__)

REPORT_MD = "report.md"
REPORT_JSON = "report.json"
GROUP_KEYS = ("country", "domain", "ip", "outcome", "page", "scan")
CONFIDENCE_BANDS = (("high", 0.9), ("medium", 0.7))  # lower bounds; the rest is "low"
MAX_SIGNATURES = (
    200_000  # candidates whose page is decoded; the rest are grouped as "(not decoded)"
)
# --------------------------------------------------------------------------- grouping


def _country(table: pa.Table) -> np.ndarray:
    code = table.column("country_code").to_numpy(zero_copy_only=False)
    loc = table.column("location").to_numpy(zero_copy_only=False)
    return np.array([c or lo or "unknown" for c, lo in zip(code, loc, strict=True)], dtype=object)


def _distinct_first(values: np.ndarray, n: int) -> list[str]:
    """The first ``n`` distinct values, in order (values arrive sorted by probability)."""
    seen: dict[str, None] = {}
    for v in values:
        seen.setdefault(str(v), None)
        if len(seen) >= n:
            break
    return list(seen)


def group_rows(
    keys: np.ndarray, prob: np.ndarray, examples: dict[str, np.ndarray], limit: int
) -> list[dict[str, Any]]:
    """Count, mean and max probability per key, sorted by count then mean probability.

    ``prob`` and the example columns must be sorted by probability, highest first, so the
    examples of a group are its most confident rows.
    """
    if len(keys) == 0:
        return []
    uniq, inverse = np.unique(keys.astype(str), return_inverse=True)
    counts = np.bincount(inverse, minlength=len(uniq))
    means = np.bincount(inverse, weights=prob, minlength=len(uniq)) / counts
    maxes = np.full(len(uniq), -np.inf)
    np.maximum.at(maxes, inverse, prob)
    order = np.lexsort((-means, -counts))[:limit]
    groups = []
    for g in order:
        mask = inverse == g
        groups.append(
            {
                "key": str(uniq[g]),
                "count": int(counts[g]),
                "mean_probability": round(float(means[g]), 4),
                "max_probability": round(float(maxes[g]), 4),
                **{f"example_{k}": _distinct_first(v[mask], 3) for k, v in examples.items()},
            }
        )
    return groups


def confidence_bands(prob: np.ndarray, threshold: float) -> dict[str, int]:
    """Candidates per confidence band: high (>= 0.9), medium (>= 0.7), low (the rest)."""
    out, upper = {}, np.inf
    for name, lo in CONFIDENCE_BANDS:
        lo = max(lo, threshold)
        out[name] = int(((prob >= lo) & (prob < upper)).sum())
        upper = min(upper, lo)
    out["low"] = int((prob < upper).sum())
    return out


# --------------------------------------------------------------------------- the report


def _page_keys(candidates: pa.Table, dataset: str | None) -> np.ndarray | None:
    """Page signature of every candidate (most confident first), None when the dataset is gone."""
    if not dataset or not (Path(dataset) / store.MANIFEST).is_file():
        return None
    try:
        tokens = store.DatasetTokens(dataset)
    except (store.StoreError, OSError) as e:
        log.warning("no page signatures: %s", e)
        return None
    ids = candidates.column("row_id").to_numpy()
    head = page_signatures(tokens, ids[:MAX_SIGNATURES])
    return np.array(head + ["(not decoded)"] * (len(ids) - len(head)), dtype=object)


def build_report(
    pred_dir: Path,
    threshold: float = 0.5,
    metrics: dict[str, Any] | None = None,
    truth_score: dict[str, Any] | None = None,
    group_limit: int = 50,
    top: int = 100,
) -> dict[str, Any]:
    """The report as a JSON-ready dict (see ``write_report``)."""
    pred_dir = Path(pred_dir)
    meta_path = pred_dir / PREDICTIONS_META
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    cols = [
        "row_id",
        "source",
        "line",
        "try_index",
        "ip",
        "domain",
        "location",
        "country_code",
        "scan",
        "outcome",
        "probability",
        "baseline_probability",
    ]
    cand = read_predictions(pred_dir, cols, min_probability=threshold)
    cand = cand.take(
        pc.sort_indices(cand, [("probability", "descending"), ("row_id", "ascending")])
    )
    total = count_rows(pred_dir)
    prob = cand.column("probability").to_numpy(zero_copy_only=False).astype(np.float64)
    pages = _page_keys(cand, meta.get("dataset"))
    keys = {
        "country": _country(cand),
        "domain": cand.column("domain").to_numpy(zero_copy_only=False),
        "ip": cand.column("ip").to_numpy(zero_copy_only=False),
        "outcome": cand.column("outcome").to_numpy(zero_copy_only=False),
        "scan": cand.column("scan").to_numpy(zero_copy_only=False),
    }
    if pages is not None:
        keys["page"] = pages
    examples = {"domains": keys["domain"], "ips": keys["ip"], "countries": keys["country"]}
    if pages is not None:
        examples["pages"] = pages
    groups = {k: group_rows(keys[k], prob, examples, group_limit) for k in GROUP_KEYS if k in keys}
    base = cand.column("baseline_probability")
    base_np = (
        base.to_numpy(zero_copy_only=False).astype(np.float64)
        if base.null_count < len(base)
        else None
    )
    rows = cand.slice(0, top).to_pylist()
    for i, r in enumerate(rows):
        r["country"] = str(keys["country"][i])
        r["page"] = str(pages[i]) if pages is not None else None
    return {
        "kind": "candidates_report",
        "predictions": str(pred_dir.resolve()),
        "embeddings": meta.get("embeddings"),
        "checkpoint": meta.get("checkpoint"),
        "threshold": threshold,
        "rows": total,
        "candidates": len(prob),
        "candidate_share": round(len(prob) / total, 6) if total else 0.0,
        "mean_probability": round(float(prob.mean()), 4) if len(prob) else None,
        "confidence": confidence_bands(prob, threshold),
        "baseline_agrees": int((base_np >= threshold).sum()) if base_np is not None else None,
        "baseline_candidates": meta.get("baseline_candidates"),
        "metrics": _metrics_summary(metrics),
        "truth": truth_score,
        "groups": groups,
        "top": rows,
    }


def _metrics_summary(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    if not metrics:
        return None
    keep = (
        "classifier",
        "baseline",
        "winner",
        "winner_by",
        "verdict",
        "threshold",
        "threshold_rule",
        "target_fpr",
        "counts",
    )
    return {k: metrics.get(k) for k in keep}


def write_report(
    pred_dir: Path,
    threshold: float = 0.5,
    metrics: dict[str, Any] | None = None,
    truth_score: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``report.json`` and ``report.md`` into ``pred_dir``; return the report dict."""
    report = build_report(pred_dir, threshold, metrics, truth_score)
    atomic_write(Path(pred_dir) / REPORT_JSON, json.dumps(report, indent=1, default=_jsonable))
    atomic_write(Path(pred_dir) / REPORT_MD, render_markdown(report))
    return report


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "nan" if np.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _metrics_md(m: dict[str, Any] | None) -> list[str]:
    if not m:
        return ["_No held-out metrics found (metrics.json next to the checkpoint)._", ""]
    out = [
        "| model | accuracy | F1 | ROC-AUC | threshold | test rows |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in ("classifier", "baseline"):
        r = m.get(name) or {}
        if r.get("skipped"):
            out.append(f"| {name} | skipped: {_cell(r['skipped'])} | | | | |")
            continue
        out.append(
            f"| {name} | {_fmt(r.get('accuracy'))} | {_fmt(r.get('f1'))} | "
            f"{_fmt(r.get('roc_auc'))} | {_fmt(r.get('threshold'), 4)} | {_fmt(r.get('n'))} |"
        )
    out += ["", f"**Which wins:** {m.get('verdict') or m.get('winner')}", ""]
    rule = m.get("threshold_rule")
    if isinstance(rule, dict) and rule.get("calibration") == "novel-kind":
        out += [
            "Thresholds: 0.5, raised to keep the false-positive rate <= "
            f"{_fmt(m.get('target_fpr'), 2)} on the "
            "labelled validation split and on each kind of benign page held out of training in "
            "turn "
            f"({len((rule.get('novel_kind') or {}).get('kinds') or {})} kinds): benign pages of "
            "a kind no "
            "signature knows are what the undetermined rows hold.",
            "",
        ]
    return out


def _truth_md(t: dict[str, Any] | None) -> list[str]:
    if not t:
        return []
    out = ["## Against ground truth", ""]
    for name in ("classifier", "baseline"):
        s = t.get(name)
        if not s:
            continue
        a, f = s["at_threshold"], s.get("at_fpr") or {}
        out.append(
            f"- **{name}**: recall {_fmt(a['recall'])} at FPR {_fmt(a['fpr'])} "
            f"(threshold {_fmt(a['threshold'])}); recall {_fmt(f.get('recall'))} at FPR "
            f"{_fmt(f.get('fpr'))} (threshold {_fmt(f.get('threshold'))}, target FPR <= "
            f"{_fmt(f.get('target_fpr'), 2)}); ROC-AUC {_fmt(s.get('roc_auc'))}"
        )
    return [*out, ""]


def _summary_md(r: dict[str, Any]) -> list[str]:
    c, n = r["candidates"], r["rows"]
    if c == 0:
        return [
            f"No try of the {n} scored scores at or above {r['threshold']}: nothing newly "
            "looks censored at this threshold.",
            "",
        ]
    band = r["confidence"]
    lines = [
        f"**{c}** of {n} scored tries ({100 * r['candidate_share']:.1f}%) newly look censored "
        f"(probability >= {r['threshold']}): {band['high']} with high confidence (>= 0.9), "
        f"{band['medium']} medium (>= 0.7), {band['low']} low."
    ]
    for key, label in (
        ("country", "Where"),
        ("page", "What they received"),
        ("domain", "Which domains"),
    ):
        top = r["groups"].get(key) or []
        if top:
            parts = [
                f"{_cell(g['key'])} ({g['count']}, mean p {g['mean_probability']:.2f})"
                for g in top[:3]
            ]
            lines.append(f"- {label}: " + "; ".join(parts))
    if r.get("baseline_agrees") is not None:
        lines.append(f"- The bag-of-tokens baseline agrees on {r['baseline_agrees']} of these {c}.")
    return [*lines, ""]


def _group_md(name: str, groups: list[dict[str, Any]], limit: int = 15) -> list[str]:
    out = [
        f"### By {name}",
        "",
        "| " + name + " | count | mean p | max p | examples |",
        "| --- | --- | --- | --- | --- |",
    ]
    for g in groups[:limit]:
        ex = g["example_domains"] if name != "domain" else g["example_countries"]
        if name == "domain":
            ex = [*ex, *g["example_ips"][:2]]
        out.append(
            f"| {_cell(g['key'])} | {g['count']} | {g['mean_probability']:.3f} | "
            f"{g['max_probability']:.3f} | {_cell(', '.join(ex))} |"
        )
    return [*out, ""]


def render_markdown(r: dict[str, Any], top: int = 25) -> str:
    """The report as Markdown: metrics and verdict first, then the summary, groups, top rows."""
    lines = [
        "# Censorship candidates",
        "",
        f"Predictions: `{r['predictions']}`  ",
        f"Checkpoint: `{r.get('checkpoint')}`",
        "",
        "## Held-out metrics (labelled test split)",
        "",
        *_metrics_md(r.get("metrics")),
        *_truth_md(r.get("truth")),
        "## What newly looks censored",
        "",
        *_summary_md(r),
        "## Groups",
        "",
    ]
    for key in GROUP_KEYS:
        if key in r["groups"]:
            lines += _group_md(key, r["groups"][key])
    lines += [
        f"## Top {min(top, len(r['top']))} candidates",
        "",
        "| p | baseline p | country | domain | ip | outcome | page |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in r["top"][:top]:
        lines.append(
            f"| {row['probability']:.3f} | {_fmt(row.get('baseline_probability'))} | "
            f"{_cell(row['country'])} | {_cell(row['domain'])} | {row['ip']} | "
            f"{_cell(row['outcome'])} | {_cell(row.get('page') or '')} |"
        )
    return "\n".join(lines) + "\n"
