"""``quackae evaluate``: leave-family-out evaluation on generated worlds (``synth.evaluate``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

RESULT_FILE = "evaluation.json"  # synth.evaluate's, spelled here to keep the checks light


def add_evaluate_arguments(sub: argparse._SubParsersAction) -> None:
    """``quackae evaluate``: leave-family-out evaluation on generated worlds."""
    p = sub.add_parser(
        "evaluate",
        help="leave-family-out evaluation of the detector on generated data",
        description="Hold whole blockpage families and benign kinds out of training and score the "
        "detector on them, on generated worlds",
    )
    p.add_argument(
        "--storage_path",
        type=Path,
        required=True,
        metavar="DIR",
        help="output folder (one sub-folder per seed, evaluation.json); new, empty or an earlier "
        "evaluate's, whose seed folders are replaced",
    )
    p.deprecate("--out", "--storage_path")
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
        choices=("none", "defaults", "job_scripts", "seed_sizes", "both", "all"),
        default="none",
        help="add the seed's latent classifier on the same folds: its autoencoder trained until "
        "val_loss_seed stops improving (3 validations; at most 40 epochs of 150 batches), with "
        "the controller's defaults (E=128, H=512, lr 0.1: diverges), the job scripts' settings "
        "(E=96, H=256), the seed's sizes with the job scripts' learning rate (seed_sizes), the "
        "first two (both) or all three; costly: benchmarks/evaluate.py --seed_row runs it at a "
        "chosen scale (default %(default)s)",
    )
    p.add_argument(
        "--real_pages",
        action="store_true",
        help="add the corpus of real blockpages and benign pages (synth/data/real_pages.jsonl) "
        "as one more archive of each world, without signatures: censors from their country's "
        "vantage points, benign pages as a CDN or ISP serves them; real censors and benign kinds "
        "are dealt into the same folds (leave-page-out) and scored as their own column",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.folds < 2 or args.measurements < 200 or args.autoencoder_epochs < 0:
        print(
            "quackae evaluate: error: use --folds >= 2, --measurements >= 200 and "
            "--autoencoder_epochs >= 0",
            file=sys.stderr,
        )
        return 2
    from quackae.io.folders import claim_output

    # evaluation.json marks an older evaluate's folder; checked before synth.evaluate's imports
    claim_output(args.storage_path, "--storage_path", "quackae evaluate", proof=(RESULT_FILE,))
    from quackae.synth.evaluate import render, run_evaluation

    ae = {"epochs": args.autoencoder_epochs} if args.autoencoder_epochs > 0 else None
    rows = {
        "none": (),
        "both": ("defaults", "job_scripts"),
        "all": ("defaults", "job_scripts", "seed_sizes"),
    }.get(args.seed_row, (args.seed_row,))
    result = run_evaluation(
        args.storage_path,
        args.seeds,
        args.folds,
        args.measurements,
        ae,
        not args.no_lexical,
        rows,
        real_pages=args.real_pages,
    )
    print(render(result))
    print(f"evaluate: {result['seconds']:.0f}s; details in {Path(args.storage_path) / RESULT_FILE}")
    return 0
