"""``quackae plot DIR``: redraw the plots of a run folder (``quackae.report.plots``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_plot_arguments(subparsers: argparse._SubParsersAction) -> None:
    """``quackae plot DIR``."""
    p = subparsers.add_parser(
        "plot",
        help="redraw the plots of a demo output folder into DIR/plots",
        description="Training curves, 2-D maps of the latents (PCA, and UMAP "
        "when umap-learn is installed), probability histograms.",
    )
    p.add_argument("path", type=Path, metavar="DIR", help="a demo output folder")
    p.set_defaults(func=_run_plot)


def _run_plot(args: argparse.Namespace) -> int:
    from quackae.io.folders import input_folder
    from quackae.report.plots import plot_all
    from quackae.synth.truth import labeller

    input_folder(args.path, "", "a run folder (e.g. the demo's --storage_path)")
    written = plot_all(args.path, labeller(sorted((Path(args.path) / "raw").glob("*.truth.jsonl"))))
    for path in written:
        print(f"plot: {path}")
    if not written:
        print(f"plot: nothing to draw in {args.path}")
        return 1
    return 0
