"""``quackae report``: the HTML report of a detect run (``quackae.report.site``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quackae.report.site import Limits


def add_report_arguments(sub: argparse._SubParsersAction) -> None:
    """``quackae report --data_dir DS --detections DIR --storage_path REPORT_DIR``."""
    p = sub.add_parser(
        "report",
        help="write a browsable, self-contained HTML report of what `detect predict` found",
        description="Static HTML pages (an overview; tables by country, domain, vantage point, "
        "page cluster and day; a page per country, page cluster and proposed signature) that "
        "open from disk with no network access. Measured pages are shown as escaped text and "
        "in sandboxed frames under a strict Content-Security-Policy.",
    )
    p.add_argument("--data_dir", required=True, help="the dataset `detect predict` scored")
    p.add_argument(
        "--detections",
        type=Path,
        required=True,
        help="the folder `quackae detect predict --storage_path` wrote (predictions.parquet, ...)",
    )
    p.add_argument(
        "--storage_path",
        type=Path,
        required=True,
        help="report folder (created; an earlier report there is replaced, any other non-empty "
        "folder refused)",
    )
    p.add_argument(
        "--max_rows",
        type=int,
        default=Limits.rows,
        metavar="N",
        help="flagged rows listed per country, cluster or proposal page (default %(default)s)",
    )
    p.add_argument(
        "--cluster_pages",
        type=int,
        default=Limits.cluster_pages,
        metavar="N",
        help="page clusters with a page of their own, most new candidates first (default "
        "%(default)s)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from quackae.report.queries import ReportError
    from quackae.report.site import build_report

    if args.max_rows < 1 or args.cluster_pages < 0:
        print(
            "quackae report: error: --max_rows must be >= 1, --cluster_pages >= 0", file=sys.stderr
        )
        return 2
    limits = Limits(rows=args.max_rows, cluster_pages=args.cluster_pages)
    try:
        built = build_report(args.data_dir, args.detections, args.storage_path, limits)
    except ReportError as e:
        print(f"quackae report: error: {e}", file=sys.stderr)
        return 2
    print(
        f"report: {len(built.pages)} pages, {built.bytes / 1e6:.1f} MB, in {built.seconds:.1f}s "
        f"-> {built.index}"
    )
    return 0
