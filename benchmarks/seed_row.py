"""The seed's latent classifier on the leave-family-out folds, at a chosen scale; prints its row.

    python benchmarks/seed_row.py [--settings defaults job_scripts] [--seeds 0] \
        [--measurements 600] [--folds 3] [--train_batches 150] [--val_batches 40] \
        [--max_epochs 40] [--patience 3] [--classifier_epochs 60]

``quackae evaluate --seed_row`` runs the same code at ``seed_row.Scale()``'s defaults; this script
lets a run be made smaller (a loaded machine) or larger (a quiet one) and says which. It runs
only the seed's row (``synth.seed_row``), not the detector's, on the same worlds and folds. It
prints, per setting: the autoencoder's epochs, why it stopped, its validation losses (token
mean and the seed's scale), the held-out recall and FPR at the seed's 0.5, recall at a
validation-set FPR, the seed's own random-split accuracy and F1, and the seconds it took.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from quackae.synth import evaluate, seed_row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--settings", nargs="+", default=list(seed_row.SETTINGS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--measurements", type=int, default=600)
    p.add_argument("--folds", type=int, default=3)
    defaults = seed_row.Scale()
    for name in ("train_batches", "val_batches", "max_epochs", "patience", "classifier_epochs"):
        p.add_argument(f"--{name}", type=int, default=getattr(defaults, name))
    p.add_argument("--out", type=Path, default=None, help="keep outputs here (default: temporary)")
    args = p.parse_args()
    scale = seed_row.Scale(
        max_epochs=args.max_epochs,
        patience=args.patience,
        train_batches=args.train_batches,
        val_batches=args.val_batches,
        classifier_epochs=args.classifier_epochs,
    )
    print("command: python " + " ".join(sys.argv))
    print(f"scale: {scale}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        base = args.out or Path(tmp)
        per_seed = []
        for seed in args.seeds:
            d = base / f"seed{seed}"
            world = evaluate.make_world(d, seed, args.measurements)
            per_seed.append(
                seed_row.run_seed_rows(world, d, args.folds, tuple(args.settings), scale)
            )
            for name, run in per_seed[-1].items():
                print(f"seed {seed} {name}: {run['seconds']:.0f}s")
        summary = seed_row.summarise(per_seed)
        if args.out:
            (args.out / "seed_row.json").write_text(
                json.dumps({"summary": summary, "per_seed": per_seed}, indent=1)
            )
    print("\n".join(seed_row.render(summary, scale.target_fpr)))
    print(f"total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
