"""``quackae detect train|predict``: fit the detector on a dataset's labels; score every row."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from quackae.atomic import atomic_path, atomic_write
from quackae.detect.detector import Detector, load_latents
from quackae.detect.features import row_features
from quackae.detect.proposals import propose, write_proposals

PREDICTIONS_FILE = "predictions.parquet"
SUMMARY_FILE = "detect.json"


def _latents(embeddings: Path | None, row_ids: np.ndarray) -> np.ndarray | None:
    if embeddings is None:
        return None
    x, have = load_latents(embeddings, row_ids)
    if not have.all():
        raise ValueError(f"{embeddings} lacks {int((~have).sum())} of the dataset's rows; encode every row "
                         "(`quackae encode` without --filtered/--evaluate) or leave --embeddings out")  # fmt: skip
    return x


def train(data_dir: Path, storage_path: Path, embeddings: Path | None = None, seed: int = 0,
          target_fpr: float = 0.01, lexical: bool = True) -> Detector:  # fmt: skip
    """Fit on ``data_dir``'s labels (and latents) and save under ``storage_path``."""
    rf = row_features(data_dir)
    det = Detector(seed=seed, target_fpr=target_fpr, lexical=lexical)
    det.fit(rf, rf.column("censored").astype(np.int64), _latents(embeddings, rf.row_ids))
    det.info["dataset"] = str(Path(data_dir).resolve())
    det.save(storage_path)
    return det


def predict(data_dir: Path, model: Path, out: Path, embeddings: Path | None = None,
            threshold: float | None = None, proposals: bool = True) -> dict[str, Any]:  # fmt: skip
    """Write ``probability``, ``candidate`` and ``reason`` for every row, and proposed signatures."""
    det = Detector.load(model)
    rf = row_features(data_dir)
    if threshold is not None:
        det.threshold = threshold
    prob, candidate, reason = det.predict(rf, _latents(embeddings, rf.row_ids))
    candidate = prob >= det.threshold
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = rf.table.append_column("template", pa.array(rf.template.tolist(), pa.string()))
    table = table.append_column("probability", pa.array(prob.astype(np.float32)))
    table = table.append_column("candidate", pa.array(candidate))
    table = table.append_column("reason", pa.array(reason, pa.string()))
    with atomic_path(out / PREDICTIONS_FILE) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    labels = rf.column("censored").astype(np.int64)
    new = candidate & (labels == 0)
    summary: dict[str, Any] = {"kind": "detect_predictions", "dataset": str(Path(data_dir).resolve()),
                               "threshold": det.threshold, "rows": int(len(prob)), "candidates": int(candidate.sum()),
                               "undetermined_candidates": int(new.sum())}  # fmt: skip
    if proposals:
        found = propose(rf, new, labels == -1, det.seed)
        summary["proposals"] = len(found)
        summary["proposals_file"] = str(write_proposals(out, found))
    atomic_write(out / SUMMARY_FILE, json.dumps(summary, indent=1))
    return summary


def add_detect_arguments(sub: argparse._SubParsersAction) -> None:
    """``quackae detect train|predict``."""
    p = sub.add_parser("detect", help="fit the generalising detector; score every row; propose signatures",
                       description="A detector built on Censored Planet's semantics, cluster evidence, lexical and "
                                   "(optionally) latent scores, calibrated so its probabilities rank.")  # fmt: skip
    s = p.add_subparsers(dest="detect_command", required=True, metavar="ACTION")
    t = s.add_parser("train", help="fit on a dataset's labels; writes detector.json/.npz")
    t.add_argument("--data_dir", type=Path, required=True, help="dataset (quackae flatten, with signatures)")
    t.add_argument("--storage_path", type=Path, required=True, help="where the detector is written")
    t.add_argument("--embeddings", type=Path, default=None, help="latents of every row (quackae encode) to add the latent score")
    t.add_argument("--seed", type=int, default=0, help="seed (default %(default)s)")
    t.add_argument("--target_fpr", type=float, default=0.01,
                   help="false-positive budget on cross-fitted labelled negatives that sets the threshold (default %(default)s)")
    t.add_argument("--no_lexical", action="store_true", help="leave the bag-of-tokens score out")
    t.set_defaults(func=_run_train)
    r = s.add_parser("predict", help="probability, candidate, reason for every row; proposed_signatures.json")
    r.add_argument("--data_dir", type=Path, required=True, help="dataset to score")
    r.add_argument("--model", type=Path, required=True, help="directory `detect train` wrote")
    r.add_argument("--out", type=Path, required=True, help="output directory")
    r.add_argument("--embeddings", type=Path, default=None, help="latents of every row, if the detector uses them")
    r.add_argument("--threshold", type=float, default=None, help="candidate threshold (default: the trained one)")
    r.add_argument("--no_proposals", action="store_true", help="do not propose signatures")
    r.set_defaults(func=_run_predict)


def _run_train(args: argparse.Namespace) -> int:
    try:
        det = train(args.data_dir, args.storage_path, args.embeddings, args.seed, args.target_fpr, not args.no_lexical)
    except ValueError as e:
        print(f"quackae detect train: error: {e}", file=sys.stderr)
        return 2
    print(f"detect: fitted on {det.info['train_rows']} labelled rows of {det.info['kinds']} kinds; "
          f"threshold {det.threshold:.4f}; inputs {', '.join(det.inputs) or 'cluster evidence only'}; -> {args.storage_path}")
    return 0


def _run_predict(args: argparse.Namespace) -> int:
    try:
        s = predict(args.data_dir, args.model, args.out, args.embeddings, args.threshold, not args.no_proposals)
    except ValueError as e:
        print(f"quackae detect predict: error: {e}", file=sys.stderr)
        return 2
    print(f"detect: {s['candidates']} of {s['rows']} rows at probability >= {s['threshold']:.4f} "
          f"({s['undetermined_candidates']} undetermined); -> {Path(args.out) / PREDICTIONS_FILE}")
    if "proposals" in s:
        print(f"detect: {s['proposals']} proposed signatures -> {s['proposals_file']}")
    return 0
