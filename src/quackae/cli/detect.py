"""``quackae detect train|predict``: the command-line face of ``quackae.detect.pipeline``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_detect_arguments(sub: argparse._SubParsersAction) -> None:
    """``quackae detect train|predict``."""
    p = sub.add_parser(
        "detect",
        help="fit the generalising detector; score every row; propose signatures",
        description="A detector built on Censored Planet's semantics, cluster evidence, lexical "
        "and "
        "(optionally) latent scores, calibrated so its probabilities rank.",
    )
    s = p.add_subparsers(dest="detect_command", required=True, metavar="ACTION")
    t = s.add_parser("train", help="fit on a dataset's labels; writes detector.json/.npz")
    t.add_argument(
        "--data_dir", type=Path, required=True, help="dataset (quackae flatten, with signatures)"
    )
    t.add_argument("--storage_path", type=Path, required=True, help="where the detector is written")
    t.add_argument(
        "--embeddings",
        type=Path,
        default=None,
        help="latents of every row (quackae encode) to add the latent score",
    )
    t.add_argument("--seed", type=int, default=0, help="seed (default %(default)s)")
    t.add_argument(
        "--target_fpr",
        type=float,
        default=0.01,
        help="false-positive budget on cross-fitted labelled negatives that sets the threshold "
        "(default %(default)s)",
    )
    t.add_argument("--no_lexical", action="store_true", help="leave the bag-of-tokens score out")
    t.set_defaults(func=_run_train)
    r = s.add_parser(
        "predict", help="probability, candidate, reason for every row; proposed_signatures.json"
    )
    r.add_argument("--data_dir", type=Path, required=True, help="dataset to score")
    r.add_argument("--model", type=Path, required=True, help="directory `detect train` wrote")
    r.add_argument("--out", type=Path, required=True, help="output directory")
    r.add_argument(
        "--embeddings",
        type=Path,
        default=None,
        help="latents of every row, if the detector uses them",
    )
    r.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="candidate threshold (default: the trained one)",
    )
    r.add_argument("--no_proposals", action="store_true", help="do not propose signatures")
    r.set_defaults(func=_run_predict)


def _run_train(args: argparse.Namespace) -> int:
    from quackae.detect import pipeline

    try:
        det = pipeline.train(
            args.data_dir,
            args.storage_path,
            args.embeddings,
            args.seed,
            args.target_fpr,
            not args.no_lexical,
        )
    except ValueError as e:
        print(f"quackae detect train: error: {e}", file=sys.stderr)
        return 2
    print(
        f"detect: fitted on {det.info['train_rows']} labelled rows of {det.info['kinds']} kinds; "
        f"threshold {det.threshold:.4f}; inputs "
        f"{', '.join(det.inputs) or 'cluster evidence only'}; -> {args.storage_path}"
    )
    return 0


def _run_predict(args: argparse.Namespace) -> int:
    from quackae.detect import pipeline

    try:
        s = pipeline.predict(
            args.data_dir,
            args.model,
            args.out,
            args.embeddings,
            args.threshold,
            not args.no_proposals,
        )
    except ValueError as e:
        print(f"quackae detect predict: error: {e}", file=sys.stderr)
        return 2
    print(
        f"detect: {s['candidates']} of {s['rows']} rows at probability >= {s['threshold']:.4f} "
        f"({s['undetermined_candidates']} undetermined); -> "
        f"{Path(args.out) / pipeline.PREDICTIONS_FILE}"
    )
    if "proposals" in s:
        print(f"detect: {s['proposals']} proposed signatures -> {s['proposals_file']}")
    return 0
