"""``quackae demo``: the whole pipeline on generated data (what ``make demo`` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_demo_arguments(sub: argparse._SubParsersAction) -> None:
    """``quackae demo``: the whole pipeline on generated data (what `make demo` runs)."""
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on generated data and score it against ground truth",
        description="synth -> flatten -> train -> encode --filtered/--evaluate/every row -> "
        "classify -> report -> plots -> evaluate -> detect (with the latents) -> HTML report, all "
        "under --storage_path, then a summary scored against the synthetic ground truth.",
    )
    p.add_argument(
        "--storage_path",
        type=Path,
        default=Path("demo_out"),
        metavar="DIR",
        help="output folder; a previous demo's output there is replaced, any other non-empty "
        "folder refused (default %(default)s)",
    )
    p.deprecate("--out", "--storage_path")
    p.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply the number of generated measurements (default %(default)s)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the data and the models (default %(default)s)"
    )
    p.add_argument(
        "--autoencoder_epochs",
        type=int,
        default=8,
        help="autoencoder epochs, at most, of the demo's autoencoder and of its evaluation world's "
        "own one (default %(default)s; `quackae train` defaults to 20: the demo's small "
        "generated data needs fewer)",
    )
    p.deprecate("--epochs", "--autoencoder_epochs")
    p.add_argument(
        "--ray_nodes",
        type=int,
        default=0,
        help="train and encode on this many Ray workers; 0 = in-process (default %(default)s)",
    )
    p.add_argument(
        "--all_tries",
        action="store_true",
        help="flatten every try, not only the anomalous ones the original research trained on",
    )
    p.add_argument(
        "--latent",
        choices=("final", "mean"),
        default="mean",
        help="the feature encoded per record (ae_processor --latent): the encoder's final "
        "states, as the seed, or its states averaged over the text tokens, which carries a page's "
        "wording (default %(default)s; `quackae encode` keeps the seed's final, the demo "
        "classifies what pages say)",
    )
    p.set_defaults(func=_run)


def _run(a: argparse.Namespace) -> int:
    from quackae.demo import run_demo

    run_demo(
        a.storage_path,
        a.scale,
        a.seed,
        a.autoencoder_epochs,
        a.ray_nodes,
        not a.all_tries,
        a.latent,
    )
    return 0
