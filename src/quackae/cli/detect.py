"""``quackae detect train|predict``: the command-line face of ``quackae.detect.pipeline``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from quackae.cli.args import subparsers

DATASET = "a dataset folder written by `quackae flatten`"
EMBEDDINGS = "the embeddings folder of `quackae encode` (every row: no --filtered/--evaluate)"
# the file names of detect.detector and detect.pipeline, spelled here so that a mistake is
# refused before those modules (and, through the latent score, torch) are imported
MODEL_FILE = "detector.json"
SUMMARY_FILE = "detect.json"


def add_detect_arguments(sub: argparse._SubParsersAction) -> None:
    """``quackae detect train|predict``."""
    p = sub.add_parser(
        "detect",
        help="fit the generalising detector; score every row; propose signatures",
        description="A detector built on Censored Planet's semantics, cluster evidence, lexical "
        "and (optionally) latent scores, calibrated so its probabilities rank.",
    )
    s = subparsers(p, "detect_command", "ACTION")
    t = s.add_parser("train", help="fit on a dataset's labels; writes detector.json/.npz")
    t.add_argument(
        "--data_dir",
        type=Path,
        required=True,
        metavar="DIR",
        help="dataset (quackae flatten, with signatures)",
    )
    t.add_argument(
        "--storage_path",
        type=Path,
        required=True,
        metavar="DIR",
        help="folder the detector is written to (new, empty or an earlier detect train's)",
    )
    t.add_argument(
        "--embeddings",
        type=Path,
        default=None,
        metavar="DIR",
        help="latents of every row (quackae encode without --filtered/--evaluate): adds the "
        "latent score, latent-neighbourhood evidence and the latent site principle, the default "
        "detector of the evaluation table and of `quackae demo`; without it, templates and the "
        "lexical score only (default: none)",
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
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_run_train)
    r = s.add_parser(
        "predict", help="probability, candidate, reason for every row; proposed_signatures.json"
    )
    r.add_argument("--data_dir", type=Path, required=True, metavar="DIR", help="dataset to score")
    r.add_argument(
        "--checkpoint_path",
        type=Path,
        required=True,
        metavar="DIR",
        help="the detector: the --storage_path folder of `quackae detect train`",
    )
    r.deprecate("--model", "--checkpoint_path")
    r.add_argument(
        "--storage_path",
        type=Path,
        required=True,
        metavar="DIR",
        help="folder for predictions.parquet, proposals.md and proposed_signatures.json (new, "
        "empty or an earlier detect predict's)",
    )
    r.deprecate("--out", "--storage_path")
    r.add_argument(
        "--embeddings",
        type=Path,
        default=None,
        metavar="DIR",
        help="latents of every row, needed when the detector was trained with them (default: none)",
    )
    r.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="candidate threshold (default: the trained one)",
    )
    r.add_argument("--no_proposals", action="store_true", help="do not propose signatures")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_run_predict)


def _check_inputs(args: argparse.Namespace) -> None:
    """One-line errors for a missing or wrong input folder, before anything is read."""
    from quackae.io.folders import input_folder

    input_folder(args.data_dir, "--data_dir", DATASET)
    if args.embeddings is not None:
        input_folder(args.embeddings, "--embeddings", EMBEDDINGS)


def _run_train(args: argparse.Namespace) -> int:
    from quackae.io.folders import claim_output

    _check_inputs(args)
    claim_output(args.storage_path, "--storage_path", "quackae detect train", proof=(MODEL_FILE,))
    from quackae.detect import pipeline  # after the checks: it imports torch

    try:
        det = pipeline.train(
            args.data_dir,
            args.storage_path,
            args.embeddings,
            args.seed,
            args.target_fpr,
            not args.no_lexical,
            progress=not args.quiet,
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
    from quackae.detect.proposals import PROPOSALS_MD
    from quackae.io.folders import check_output, claim_output, input_folder

    owned = {"command": "quackae detect predict", "proof": (SUMMARY_FILE,)}
    _check_inputs(args)
    check_output(args.storage_path, "--storage_path", **owned)  # before the detector is read
    input_folder(
        args.checkpoint_path, "--checkpoint_path", "the folder `quackae detect train` wrote"
    )
    if not (args.checkpoint_path / MODEL_FILE).is_file():
        print(
            f"quackae detect predict: error: --checkpoint_path {args.checkpoint_path} holds no "
            f"{MODEL_FILE}; pass the --storage_path folder of `quackae detect train`",
            file=sys.stderr,
        )
        return 2
    try:
        trained_with = json.loads((args.checkpoint_path / MODEL_FILE).read_text())["inputs"]
    except (ValueError, KeyError, TypeError):
        print(
            f"quackae detect predict: error: {args.checkpoint_path / MODEL_FILE} is not a "
            "detector's file (unreadable JSON); run `quackae detect train` again",
            file=sys.stderr,
        )
        return 2
    if "latent" in trained_with and args.embeddings is None:
        print(
            f"quackae detect predict: error: the detector in {args.checkpoint_path} was trained "
            "with --embeddings (its latent score): pass --embeddings DIR, the latents of every "
            "row of this dataset (`quackae encode`)",
            file=sys.stderr,
        )
        return 2
    out = args.storage_path
    claim_output(out, "--storage_path", **owned)
    from quackae.detect import pipeline  # after the checks: it imports torch

    try:
        s = pipeline.predict(
            args.data_dir,
            args.checkpoint_path,
            out,
            args.embeddings,
            args.threshold,
            not args.no_proposals,
            progress=not args.quiet,
        )
    except ValueError as e:
        print(f"quackae detect predict: error: {e}", file=sys.stderr)
        return 2
    print(
        f"detect: {s['candidates']} of {s['rows']} rows at probability >= {s['threshold']:.4f} "
        f"({s['undetermined_candidates']} undetermined); -> {Path(out) / pipeline.PREDICTIONS_FILE}"
    )
    if "proposals" in s:
        print(
            f"detect: {s['proposals']} proposed signatures in {s['proposals_file']}; read "
            f"{Path(out) / PROPOSALS_MD} for each one's pages, domains and vantage points"
        )
    return 0
