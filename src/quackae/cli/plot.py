"""``quackae plot DIR``: redraw the plots of a run folder (``quackae.report.plots``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_plot_arguments(subparsers: argparse._SubParsersAction) -> None:
    """``quackae plot DIR [--storage_path OUT]``."""
    p = subparsers.add_parser(
        "plot",
        help="redraw the plots of a run folder (demo, training, embeddings, predictions, detect)",
        description="Training curves (teacher-forced and sampled steps apart where logged), 2-D "
        "maps of the latents (PCA, and UMAP when umap-learn is installed), probability "
        "histograms, and a detect output's probabilities, countries and days.",
    )
    p.add_argument(
        "path",
        type=Path,
        metavar="DIR",
        help="a demo output folder, or one run folder: `train --storage_path`, `classify "
        "train`, `encode`, `classify predict` or `detect predict --out` output",
    )
    p.add_argument(
        "--storage_path",
        type=Path,
        default=None,
        help="where the PNGs go (default: DIR/plots)",
    )
    p.set_defaults(func=_run_plot)


def _run_plot(args: argparse.Namespace) -> int:
    from quackae.io.folders import input_folder
    from quackae.report.plots import plot_all, recognised
    from quackae.synth.truth import labeller

    input_folder(args.path, "", "a run folder (e.g. the demo's --storage_path)")
    truth = labeller(sorted((Path(args.path) / "raw").glob("*.truth.jsonl")))
    written = plot_all(args.path, truth, args.storage_path)
    for path in written:
        print(f"plot: {path}")
    if not written:
        kinds = ", ".join(recognised(args.path)) or "nothing it recognises"
        print(f"plot: nothing to draw in {args.path} (found: {kinds})")
        return 1
    return 0
