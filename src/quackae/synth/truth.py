"""Ground truth of generated data: read the generator's sidecars, score predictions on them.

Real data has no ground truth; this module is what the demo, the evaluation and the benchmarks
score against. It reads the sidecar files only (no import of the generator), so the pipeline
never depends on ``synth``. Each truth line names the try (archive stem, line, try index), whether
it was censored, the mechanism, and the ``family``: the blockpage family for ``blockpage``, the
benign kind for ``benign``, ``noise`` for noise, else empty (older sidecars: from vendor/detail).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from quackae.classify.calibration import threshold_for_fpr
from quackae.classify.predictions import read_predictions

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".jsonl.gz", ".json.gz", ".jsonl", ".json", ".gz")
CENSORED_MECHANISMS = ("blockpage", "reset", "timeout", "refused", "status", "tls", "garbled")
TRUTH_SCHEMA = pa.schema(
    [
        ("line", pa.int64()),
        ("try_index", pa.int64()),
        ("domain", pa.string()),
        ("censored", pa.bool_()),
        ("mechanism", pa.string()),
        ("vendor", pa.string()),
        ("family", pa.string()),
        ("detail", pa.string()),
        ("fingerprinted", pa.bool_()),
    ]
)


def archive_stem(name: str) -> str:
    """An archive file name without its archive suffix (synth names truth files after it)."""
    for suffix in ARCHIVE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _family(t: pa.Table) -> pa.Array:
    """``family`` where the sidecar has it, else vendor (blockpage), detail (benign) or "noise"."""
    mech = t.column("mechanism").fill_null("").to_pylist()
    fam = t.column("family").to_pylist()
    vendor = t.column("vendor").fill_null("").to_pylist()
    detail = t.column("detail").fill_null("").to_pylist()
    out = []
    for m, f, v, d in zip(mech, fam, vendor, detail, strict=True):
        if f is None:
            f = v if m == "blockpage" else d if m == "benign" else "noise" if m == "noise" else ""
        out.append(f)
    return pa.array(out, pa.string())


def load_truth(truth_files: Sequence[Path]) -> pa.Table:
    """Ground truth rows of synth sidecars, with ``stem`` (the archive stem) and ``family`` set."""
    parse = pajson.ParseOptions(explicit_schema=TRUTH_SCHEMA, unexpected_field_behavior="ignore")
    tables = []
    for path in truth_files:
        path = Path(path)
        t = pajson.read_json(path, parse_options=parse)
        t = t.set_column(t.schema.get_field_index("family"), "family", _family(t))
        stem = path.name.removesuffix(".truth.jsonl")
        tables.append(t.append_column("stem", pa.array([stem] * t.num_rows, pa.string())))
    if not tables:
        raise ValueError("no truth files given")
    return pa.concat_tables(tables)


def join_truth(rows: pa.Table, truth: pa.Table) -> pa.Table:
    """Inner join of rows (with source, line, try_index) and truth on (archive stem, line, try)."""
    stems = pa.array([archive_stem(s) for s in rows.column("source").to_pylist()], pa.string())
    left = rows.append_column("stem", stems).set_column(
        rows.schema.get_field_index("try_index"),
        "try_index",
        pc.cast(rows.column("try_index"), pa.int64()),
    )
    if "domain" in left.column_names:
        truth = truth.drop_columns(["domain"])
    return left.join(truth, keys=["stem", "line", "try_index"], join_type="inner")


def rate(hit: np.ndarray, mask: np.ndarray) -> float | None:
    """Mean of ``hit`` over ``mask`` to 4 places, None for an empty mask."""
    n = int(mask.sum())
    return round(float(hit[mask].mean()), 4) if n else None


def rates_at(
    prob: np.ndarray,
    censored: np.ndarray,
    mechanism: np.ndarray,
    family: np.ndarray,
    fingerprinted: np.ndarray,
    threshold: float,
) -> dict[str, Any]:
    """Recall on truly censored tries (overall, per mechanism, per family) and FPR on the rest."""
    hit = prob >= threshold
    neg = ~censored
    page = censored & (mechanism == "blockpage")
    by_mech = {m: rate(hit, censored & (mechanism == m)) for m in CENSORED_MECHANISMS}
    families = sorted(set(family[page].tolist()))
    unfp = {f: rate(hit, page & (family == f) & ~fingerprinted) for f in families}
    fp = {f: rate(hit, page & (family == f) & fingerprinted) for f in families}
    fpr_by = {m: rate(hit, neg & (mechanism == m)) for m in ("none", "benign", "noise")}
    return {
        "threshold": threshold,
        "recall": rate(hit, censored),
        "fpr": rate(hit, neg),
        "recall_by_mechanism": {k: v for k, v in by_mech.items() if v is not None},
        "recall_by_unfingerprinted_family": {k: v for k, v in unfp.items() if v is not None},
        "recall_by_fingerprinted_family": {k: v for k, v in fp.items() if v is not None},
        "fpr_by_mechanism": {k: v for k, v in fpr_by.items() if v is not None},
        "flagged": int(hit.sum()),
    }


def _score(
    prob: np.ndarray, cols: dict[str, np.ndarray], threshold: float, target_fpr: float
) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    censored = cols["censored"]
    both = 0 < censored.sum() < len(censored)
    at_fpr = threshold_for_fpr(prob[~censored], target_fpr)
    args = (censored, cols["mechanism"], cols["family"], cols["fingerprinted"])
    return {
        "roc_auc": round(float(roc_auc_score(censored, prob)), 4) if both else None,
        "at_threshold": rates_at(prob, *args, threshold),
        "at_fpr": {"target_fpr": target_fpr, **rates_at(prob, *args, at_fpr)},
    }


def truth_columns(joined: pa.Table) -> dict[str, np.ndarray]:
    """``censored``, ``fingerprinted`` (bool), ``mechanism``, ``family`` (object) of joined rows."""
    return {
        "censored": joined.column("censored")
        .fill_null(False)
        .to_numpy(zero_copy_only=False)
        .astype(bool),
        "fingerprinted": joined.column("fingerprinted")
        .fill_null(False)
        .to_numpy(zero_copy_only=False)
        .astype(bool),
        "mechanism": np.asarray(joined.column("mechanism").fill_null("").to_pylist(), dtype=object),
        "family": np.asarray(joined.column("family").fill_null("").to_pylist(), dtype=object),
    }


def score_against_truth(
    predictions: Path,
    truth_files: Sequence[Path],
    threshold: float = 0.5,
    target_fpr: float = 0.02,
    baseline_threshold: float | None = None,
) -> dict[str, Any]:
    """Recall on truly censored scored tries and FPR on truly uncensored ones, for both models.

    Rates are over the rows of ``predictions`` (for an ``--evaluate`` run: the undetermined
    tries) that have a ground-truth line; ``at_fpr`` uses the lowest threshold whose FPR on
    those rows is at most ``target_fpr`` (chosen on the same rows: an optimistic operating point).
    """
    rows = read_predictions(
        predictions, ["source", "line", "try_index", "probability", "baseline_probability"]
    )
    joined = join_truth(rows, load_truth(truth_files))
    cols = truth_columns(joined)
    censored, mechanism = cols["censored"], cols["mechanism"]
    out: dict[str, Any] = {
        "threshold": threshold,
        "rows": rows.num_rows,
        "matched": joined.num_rows,
        "unmatched": rows.num_rows - joined.num_rows,
        "truly_censored": int(censored.sum()),
        "truly_uncensored": int((~censored).sum()),
        "censored_by_mechanism": {
            m: int((censored & (mechanism == m)).sum()) for m in CENSORED_MECHANISMS
        },
    }
    for name, col in (("classifier", "probability"), ("baseline", "baseline_probability")):
        arr = joined.column(col)
        if joined.num_rows == 0 or arr.null_count == len(arr):
            out[name] = None
            continue
        prob = arr.fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64)
        at = (
            baseline_threshold
            if name == "baseline" and baseline_threshold is not None
            else threshold
        )
        out[name] = _score(prob, cols, at, target_fpr)
    return out


def labeller(truth_files: Sequence[Path]) -> Callable[[pa.Table], np.ndarray] | None:
    """The plots' ``Truth`` of these sidecars: rows -> 1 truly censored, -1 truly not, 0 unknown."""
    if not truth_files:
        return None
    truth = load_truth(truth_files)

    def labels(table: pa.Table) -> np.ndarray:
        rows = table.select(["source", "line", "try_index"])
        rows = rows.append_column("_pos", pa.array(np.arange(table.num_rows)))
        joined = join_truth(rows, truth)
        out = np.zeros(table.num_rows, dtype=np.int8)
        pos = joined.column("_pos").to_numpy()
        out[pos] = np.where(joined.column("censored").to_numpy(zero_copy_only=False), 1, -1)
        return out

    return labels
