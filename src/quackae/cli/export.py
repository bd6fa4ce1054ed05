"""``quackae export``: scored rows in Censored Planet's field names (``quackae.report.export``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quackae.report.export import FORMATS


def add_export_arguments(sub: argparse._SubParsersAction) -> None:
    """``quackae export --data_dir DS --detections DIR --format F --storage_path OUT``."""
    p = sub.add_parser(
        "export",
        help="write every scored row with Censored Planet's BigQuery column names",
        description="Join predictions.parquet with the dataset's rows and write them as CSV, "
        "Parquet or JSON lines: columns named as Censored Planet's Hyperquack BigQuery tables "
        "where the dataset has the field (domain, server_ip, date, start_time, "
        "is_known_blockpage, page_signature, outcome, controls_failed, stateful_block, ...), "
        "and quackae's own (probability, candidate, reason, cluster, ...) beside them.",
    )
    p.add_argument("--data_dir", required=True, help="the dataset `detect predict` scored")
    p.add_argument(
        "--detections",
        type=Path,
        required=True,
        help="the folder `quackae detect predict --storage_path` wrote",
    )
    p.add_argument(
        "--format",
        choices=tuple(FORMATS),
        default="parquet",
        help="file format (default %(default)s)",
    )
    p.add_argument(
        "--storage_path",
        type=Path,
        required=True,
        help="folder to write hyperquack_predictions.<format> into (created)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from quackae.report.export import export
    from quackae.report.queries import ReportError

    try:
        path, rows = export(args.data_dir, args.detections, args.format, args.storage_path)
    except ReportError as e:
        print(f"quackae export: error: {e}", file=sys.stderr)
        return 2
    print(f"export: {rows} rows -> {path}")
    return 0
