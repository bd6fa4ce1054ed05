"""``quackae synth``: a generated Hyperquack archive, its ground truth and its signatures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_synth_arguments(sub: argparse._SubParsersAction) -> None:
    """``quackae synth``."""
    from quackae.synth import FORMATS, SCANS

    parser = sub.add_parser(
        "synth",
        help="write a realistic synthetic Hyperquack archive plus ground truth",
        description="Deterministic raw Hyperquack data shaped like Censored Planet's archives, "
        "with a ground-truth sidecar saying which tries are truly censored and how.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--measurements", type=int, default=2000, help="measurement lines")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument(
        "--format", dest="format", choices=FORMATS, default="v2", help="Hyperquack format"
    )
    parser.add_argument("--scan", choices=SCANS, default="http", help="scan type")
    parser.add_argument(
        "--fingerprinted",
        default="default",
        metavar="all|none|default|A,B,...",
        help="blockpage families that DIR/signatures/ fingerprints (and the truth's "
        "'fingerprinted' field refers to); default: about three quarters",
    )
    parser.set_defaults(func=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    """Run ``quackae synth``: write the archive and print one summary line."""
    from quackae.synth import parse_fingerprinted, write_archive, write_signatures

    try:
        fingerprinted = parse_fingerprinted(getattr(args, "fingerprinted", "default"))
    except ValueError as exc:
        print(f"synth: --fingerprinted: {exc}", file=sys.stderr)
        return 2
    result = write_archive(
        args.out, args.measurements, args.seed, args.format, args.scan, fingerprinted=fingerprinted
    )
    sigs = write_signatures(Path(args.out) / "signatures", fingerprinted)
    print(
        f"synth: archive {result.archive} truth {result.truth} "
        f"measurements {result.measurements} tries {result.tries} signatures {sigs}"
    )
    return 0
