"""``quackae synth``: a generated Hyperquack archive, its ground truth and its signatures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: ``quackae.synth``'s ``FORMATS`` and ``SCANS``, spelled here so ``--help`` imports
#: neither numpy nor pyarrow (tests/test_cli_help.py checks that they agree).
FORMATS = ("v1", "v2")
SCANS = ("echo", "discard", "http", "https")


def add_synth_arguments(sub: argparse._SubParsersAction) -> None:
    """``quackae synth``."""
    parser = sub.add_parser(
        "synth",
        help="write a realistic synthetic Hyperquack archive plus ground truth",
        description="Deterministic raw Hyperquack data shaped like Censored Planet's archives, "
        "with a ground-truth sidecar saying which tries are truly censored and how.",
    )
    parser.add_argument(
        "--storage_path",
        type=Path,
        required=True,
        metavar="DIR",
        help="folder for the archive, its truth sidecar and DIR/signatures (new, empty or an "
        "earlier synth's: archives of other scans and seeds can share it)",
    )
    parser.deprecate("--out", "--storage_path")
    parser.add_argument(
        "--measurements", type=int, default=2000, help="measurement lines (default %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    parser.add_argument(
        "--format",
        dest="format",
        choices=FORMATS,
        default="v2",
        help="Hyperquack format (default %(default)s)",
    )
    parser.add_argument(
        "--scan", choices=SCANS, default="http", help="scan type (default %(default)s)"
    )
    parser.add_argument(
        "--fingerprinted",
        default="default",
        metavar="all|none|default|A,B,...",
        help="blockpage families that DIR/signatures/ fingerprints (and the truth's "
        "'fingerprinted' field refers to) (default %(default)s: about three quarters of them)",
    )
    parser.set_defaults(func=run_synth)


def _fail(message: str) -> int:
    print(f"quackae synth: error: {message}", file=sys.stderr)
    return 2


def run_synth(args: argparse.Namespace) -> int:
    """Run ``quackae synth``: write the archive and print one summary line."""
    from quackae.io.folders import claim_output
    from quackae.synth import parse_fingerprinted, write_archive, write_signatures

    if args.measurements < 1:
        return _fail(f"--measurements {args.measurements}: pass 1 or more measurement lines")
    if args.seed < 0:
        return _fail(f"--seed {args.seed}: pass 0 or a positive integer")
    try:
        fingerprinted = parse_fingerprinted(getattr(args, "fingerprinted", "default"))
    except ValueError as exc:
        return _fail(f"--fingerprinted: {exc}")
    claim_output(args.storage_path, "--storage_path", "quackae synth")
    result = write_archive(
        args.storage_path,
        args.measurements,
        args.seed,
        args.format,
        args.scan,
        fingerprinted=fingerprinted,
    )
    sigs = write_signatures(Path(args.storage_path) / "signatures", fingerprinted)
    print(
        f"synth: archive {result.archive} truth {result.truth} "
        f"measurements {result.measurements} tries {result.tries} signatures {sigs}"
    )
    return 0
