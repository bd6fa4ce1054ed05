"""``quackae evaluate``: leave-family-out evaluation on generated worlds (``synth.evaluate``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_evaluate_arguments(sub: argparse._SubParsersAction) -> None:
    """``quackae evaluate``: leave-family-out evaluation on generated worlds."""
    p = sub.add_parser(
        "evaluate",
        help="leave-family-out evaluation of the detector on generated data",
        description="Hold whole blockpage families and benign kinds out of training and score the "
        "detector on them, on generated worlds",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output folder (one sub-folder per seed, evaluation.json)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="world and model seeds (default %(default)s)",
    )
    p.add_argument(
        "--folds",
        type=int,
        default=5,
        help="reported folds per seed; one more is the development fold (default %(default)s)",
    )
    p.add_argument(
        "--measurements",
        type=int,
        default=3000,
        help="measurements generated per seed (default %(default)s)",
    )
    p.add_argument(
        "--autoencoder_epochs",
        type=int,
        default=0,
        help="train one autoencoder per seed for this many epochs and add its latents (0: none; "
        "default %(default)s)",
    )
    p.add_argument(
        "--no_lexical", action="store_true", help="leave the bag-of-tokens score out (an ablation)"
    )
    p.add_argument(
        "--seed_row",
        choices=("none", "defaults", "job_scripts", "both"),
        default="none",
        help="add the seed's latent classifier on the same folds: its autoencoder trained until "
        "val_loss_seed stops improving (3 validations; at most 40 epochs of 150 batches), with "
        "the controller's defaults (E=128, H=512), the job scripts' settings (E=96, H=256), or "
        "both; costly: benchmarks/seed_row.py runs it at a chosen scale (default %(default)s)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.folds < 2 or args.measurements < 200:
        print(
            "quackae evaluate: error: use --folds >= 2 and --measurements >= 200", file=sys.stderr
        )
        return 2
    from quackae.synth.evaluate import RESULT_FILE, render, run_evaluation

    ae = {"epochs": args.autoencoder_epochs} if args.autoencoder_epochs > 0 else None
    rows = {"none": (), "both": ("defaults", "job_scripts")}.get(args.seed_row, (args.seed_row,))
    result = run_evaluation(
        args.out, args.seeds, args.folds, args.measurements, ae, not args.no_lexical, rows
    )
    print(render(result))
    print(f"evaluate: {result['seconds']:.0f}s; details in {Path(args.out) / RESULT_FILE}")
    return 0
