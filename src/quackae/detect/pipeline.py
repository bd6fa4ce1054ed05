"""The detect stage as two calls: fit the detector on a dataset's labels; score every row."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from quackae.detect.detector import Detector, load_latents
from quackae.detect.features import RowFeatures, row_features
from quackae.detect.proposals import propose, write_proposals
from quackae.io.atomic import atomic_path, atomic_write

PREDICTIONS_FILE = "predictions.parquet"
SUMMARY_FILE = "detect.json"


@contextmanager
def _stages(names: list[str], progress: bool) -> Iterator[Any]:
    """A bar over named stages on stderr: ``step(name)`` marks the previous one done."""
    bar = tqdm(total=len(names), desc="detect", unit="stage", disable=not progress, file=sys.stderr)
    started = [False]

    def step(name: str) -> None:
        if started[0]:
            bar.update(1)
        started[0] = True
        bar.set_postfix_str(name)

    try:
        yield step
        bar.update(bar.total - bar.n)
    finally:
        bar.close()


def _latents(embeddings: Path | None, row_ids: np.ndarray) -> np.ndarray | None:
    if embeddings is None:
        return None
    x, have = load_latents(embeddings, row_ids)
    if not have.all():
        raise ValueError(
            f"{embeddings} lacks {int((~have).sum())} of the dataset's rows; encode every row "
            "(`quackae encode` without --filtered/--evaluate) or leave --embeddings out"
        )
    return x


def train(
    data_dir: Path,
    storage_path: Path,
    embeddings: Path | None = None,
    seed: int = 0,
    target_fpr: float = 0.01,
    lexical: bool = True,
    progress: bool = False,
) -> Detector:
    """Fit on ``data_dir``'s labels (and latents) and save under ``storage_path``."""
    with _stages(["read rows", "read latents", "fit", "save"], progress) as step:
        step("read rows")
        rf = row_features(data_dir)
        step("read latents")
        latents = _latents(embeddings, rf.row_ids)
        step("fit")
        det = Detector(seed=seed, target_fpr=target_fpr, lexical=lexical)
        det.fit(rf, rf.column("censored").astype(np.int64), latents)
        det.info["dataset"] = str(Path(data_dir).resolve())
        step("save")
        det.save(storage_path)
    return det


def predict(
    data_dir: Path,
    model: Path,
    out: Path,
    embeddings: Path | None = None,
    threshold: float | None = None,
    proposals: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Write ``probability``, ``candidate``, ``reason`` and ``cluster`` of every row, and proposals.

    ``cluster`` is the fingerprint of the proposed signature whose cluster holds the row (null
    for rows in none), so a report or an export lists exactly the rows a proposal covers.
    """
    names = ["read rows", "score", *(["propose signatures"] if proposals else []), "write"]
    with _stages(names, progress) as step:
        det = Detector.load(model)
        if "latent" in det.inputs and embeddings is None:
            raise ValueError(
                f"the detector in {model} was trained with --embeddings (its latent score): pass "
                "--embeddings DIR, the latents of every row of this dataset (`quackae encode`)"
            )
        step("read rows")
        rf = row_features(data_dir)
        if threshold is not None:
            det.threshold = threshold
        step("score")
        latents = _latents(embeddings, rf.row_ids) if "latent" in det.inputs else None
        prob, _, reason = det.predict(rf, latents)
        return _write_predictions(rf, det, prob, reason, Path(out), data_dir, proposals, step)


def _write_predictions(
    rf: RowFeatures,
    det: Detector,
    prob: np.ndarray,
    reason: list[str],
    out: Path,
    data_dir: Path,
    proposals: bool,
    step: Any,
) -> dict[str, Any]:
    """The proposed signatures (``proposals``), then the predictions table and the summary."""
    candidate = prob >= det.threshold
    out.mkdir(parents=True, exist_ok=True)
    labels = rf.column("censored").astype(np.int64)
    new = candidate & (labels == 0)
    if proposals:
        step("propose signatures")
    found = propose(rf, new, labels == -1, det.seed) if proposals else []
    step("write")
    cluster = np.full(len(prob), None, dtype=object)  # the proposal each row's page is in
    for p in found:
        cluster[p.rows] = p.fingerprint
    table = rf.table.append_column("template", pa.array(rf.template.tolist(), pa.string()))
    table = table.append_column("probability", pa.array(prob.astype(np.float32)))
    table = table.append_column("candidate", pa.array(candidate))
    table = table.append_column("reason", pa.array(reason, pa.string()))
    table = table.append_column("cluster", pa.array(cluster.tolist(), pa.string()))
    with atomic_path(out / PREDICTIONS_FILE) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    summary: dict[str, Any] = {
        "kind": "detect_predictions",
        "dataset": str(Path(data_dir).resolve()),
        "threshold": det.threshold,
        "rows": int(len(prob)),
        "candidates": int(candidate.sum()),
        "undetermined_candidates": int(new.sum()),
    }
    if proposals:
        summary["proposals"] = len(found)
        summary["proposals_file"] = str(write_proposals(out, found))
    atomic_write(out / SUMMARY_FILE, json.dumps(summary, indent=1))
    return summary
