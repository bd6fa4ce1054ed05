"""The evaluation table: detector variants x sets of held-out families, leave-family-out, seeded.

    python benchmarks/evaluate.py [--seeds 0 1 2] [--measurements 3000] [--folds 3] \
        [--autoencoder_epochs 12] [--patience 3] [--no_variants] [--real_pages] \
        [--seed_row seed_sizes] [--seed_max_epochs 40] [--seed_train_batches 150] ...

Per seed, one world with the default families and the variant families of ``synth.variants``
(``make_world(..., variants=True)``) is generated and flattened once, and one autoencoder is
trained on every row until validation loss stops improving (early stopping on ``val_loss``,
``--patience`` epochs, at most ``--autoencoder_epochs``); its best validation loss is printed.
The same folds then score each detector row; settings are chosen on each seed's development fold
and never reported. Rows: template + cluster evidence only; + lexical (no autoencoder); the
same detector given a token SVD (``evaluate.token_latents``: TF-IDF + truncated SVD of the token
bag, the baseline an autoencoder must beat) in place of latents; + latents (the latent score and
latent-neighbourhood evidence: the default, what ``quackae demo`` runs); the seed's latent
classifier alone (``--seed_row``: ``synth.seed_row`` per setting, its own autoencoder trained
until its validation loss stops improving, at the scale of the ``--seed_*`` flags, flagging at
its 0.5).
Columns: today's families, the variant families, real pages (``--real_pages``: the corpus of
``synth.real_pages`` served as one more archive, leave-page-out; else "not run"). A cell is mean
recall / worst fold recall / mean FPR (worst fold) / proposal coverage; targets: recall >= 0.9,
worst >= 0.75, FPR <= 0.02 (the worst fold is printed), coverage >= 0.9 with 0 benign matches.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from quackae.synth import evaluate, seed_row

#: (row, lexical score, latent input: None, "tokens" (``evaluate.token_latents``) or the
#: autoencoder's latents)
ROWS = (
    ("template + cluster only", False, None),
    ("+ lexical (no autoencoder)", True, None),
    ("+ token SVD in place of latents (no autoencoder)", True, "tokens"),
    ("+ latents (the default)", True, "autoencoder"),
)
NO_AE, TOKENS, LATENTS = (row[0] for row in ROWS[1:])
SEED_ROW = "the seed's latent classifier alone"


def autoencoder_line(ae: dict[str, Any]) -> str:
    """How the seed row's autoencoder trained, in one line."""
    last = ae["last_validation"].get("val_loss")
    return (
        f"autoencoder E={ae['embed_size']} H={ae['hidden_size']}: {ae['epochs']} epochs, stopped "
        f"by {ae['stopped']['by']}, last val_loss {last}, best val_loss_seed "
        f"{ae['best_val_loss_seed']}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--measurements", type=int, default=3000)
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--autoencoder_epochs", type=int, default=12, help="0: no latent row")
    p.add_argument(
        "--patience", type=int, default=3, help="autoencoder validations without a better val_loss"
    )
    p.add_argument("--no_variants", action="store_true", help="the default world only")
    p.add_argument(
        "--real_pages",
        action="store_true",
        help="add the real-page corpus as one more archive and score it as its own column",
    )
    p.add_argument(
        "--seed_row",
        nargs="*",
        default=[],
        choices=sorted(seed_row.SETTINGS),
        help="also score the seed's latent classifier with these settings (synth/seed_row.py)",
    )
    scale = seed_row.Scale()
    for name in ("max_epochs", "patience", "train_batches", "val_batches", "classifier_epochs"):
        p.add_argument(
            f"--seed_{name}",
            type=int,
            default=getattr(scale, name),
            help=f"the seed row's Scale.{name} (default %(default)s)",
        )
    p.add_argument("--out", type=Path, default=None, help="keep the outputs (default: temporary)")
    args = p.parse_args()
    print("command: python " + " ".join(sys.argv), flush=True)
    rows = [r for r in ROWS if args.autoencoder_epochs or r[2] != "autoencoder"]
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in rows}
    seed_runs: list[dict[str, Any]] = []
    seed_scale = seed_row.Scale(
        **{
            k: getattr(args, f"seed_{k}")
            for k in ("max_epochs", "patience", "train_batches", "val_batches", "classifier_epochs")
        }
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        base = args.out or Path(tmp)
        for seed in args.seeds:
            t0 = time.perf_counter()
            ae = (
                {"epochs": args.autoencoder_epochs, "patience": args.patience}
                if args.autoencoder_epochs
                else None
            )
            world = evaluate.make_world(
                base / f"seed{seed}",
                seed,
                args.measurements,
                ae,
                not args.no_variants,
                args.real_pages,
            )
            info = world.autoencoder or {}
            print(
                f"seed {seed}: {world.rf.table.num_rows} rows, world + autoencoder "
                f"{time.perf_counter() - t0:.0f}s; autoencoder: last val_loss "
                f"{info.get('last_val_loss')}, best {info.get('monitor')} "
                f"{info.get('best_score')}, epochs {info.get('epochs_run')} of "
                f"{info.get('max_epochs')}, stopped by {info.get('stopped_by')}",
                flush=True,
            )
            tokens = replace(world, latents=evaluate.token_latents(world.rf, seed))
            for name, lexical, latent in rows:
                t1 = time.perf_counter()
                r = evaluate.evaluate_world(
                    tokens if latent == "tokens" else world, args.folds, lexical, latent is not None
                )
                results[name].append(r)
                cells = evaluate.table_cells([r])
                print(
                    f"  {name}: {time.perf_counter() - t1:.0f}s; "
                    + "; ".join(f"{k}: {evaluate.render_cell(v)}" for k, v in cells.items()),
                    flush=True,
                )
            if args.seed_row:
                t1 = time.perf_counter()
                try:
                    runs = seed_row.run_seed_rows(
                        world, base / f"seed{seed}", args.folds, tuple(args.seed_row), seed_scale
                    )
                except FloatingPointError as e:  # the seed's own settings can diverge: say so
                    print(f"  {SEED_ROW}: not scored on seed {seed}: {e}", flush=True)
                    continue
                seed_runs.append(runs)
                for name, run in runs.items():
                    print(
                        f"  {SEED_ROW} ({name}): {time.perf_counter() - t1:.0f}s; "
                        + autoencoder_line(run["autoencoder"])
                        + "; "
                        + "; ".join(
                            f"{k}: {evaluate.render_cell(v)}"
                            for k, v in seed_row.table_cells([run]).items()
                        ),
                        flush=True,
                    )
        seed_summary = seed_row.summarise(seed_runs) if seed_runs else {}
    columns = [*evaluate.COLUMNS, evaluate.REAL_COLUMN]
    print()
    print(
        f"seeds {args.seeds}, {args.folds} reported folds each (+1 development fold), "
        f"{args.measurements} measurements per seed; cell = mean recall / worst fold recall / "
        "mean FPR (worst fold) / proposal coverage"
    )
    print("| detector | " + " | ".join(columns) + " |")
    print("| --- |" + " --- |" * len(columns))
    for name, _, _ in rows:
        cells = evaluate.table_cells(results[name])
        line = [evaluate.render_cell(cells[c]) for c in evaluate.COLUMNS] + [
            evaluate.render_cell(cells[evaluate.REAL_COLUMN])
            if evaluate.REAL_COLUMN in cells
            else "not run (--real_pages)"
        ]
        print(f"| {name} | " + " | ".join(line) + " |")
    if not seed_summary:
        print(f"| {SEED_ROW} | " + " | ".join(["not run (--seed_row)"] * len(columns)) + " |")
    for name, summary in seed_summary.items():
        cells = summary["cells"]
        print(
            f"| {SEED_ROW} ({name}, at its 0.5) | "
            + " | ".join(
                evaluate.render_cell(cells[c]) if c in cells else "not run (--real_pages)"
                for c in columns
            )
            + " |"
        )
    if seed_summary:
        print(f"seed row scale: {seed_scale}")
        print("\n".join(seed_row.render(seed_summary, seed_scale.target_fpr)))
    hits = {
        name: sum((f.get("proposals") or {}).get("benign_hits", 0) for s in rs for f in s["folds"])
        for name, rs in results.items()
    }
    print("proposals' matches on benign or expected pages: " + str(hits))
    if args.real_pages:
        for name, rs in results.items():
            fam = evaluate.summarise(rs)["family_recall"]
            kinds = evaluate.summarise(rs)["kind_fpr"]
            real = evaluate.REAL_COLUMNS[evaluate.REAL_COLUMN]
            missed = {k: v for k, v in fam.items() if k in real[0] and v < 0.75}
            flagged = {k: v for k, v in kinds.items() if k in real[1] and v > 0}
            print(
                f"{name}: real censors under 0.75 recall: "
                + (", ".join(f"{k} {v:.2f}" for k, v in missed.items()) or "none")
                + "; real benign kinds flagged: "
                + (", ".join(f"{k} {v:.3f}" for k, v in flagged.items()) or "none")
            )
        labelled = [r.get("real_labelled", 0) for r in next(iter(results.values()))]
        print(f"real rows a world signature had labelled (labels dropped), per seed: {labelled}")
    for base in (NO_AE, TOKENS) if LATENTS in results else ():
        for column in evaluate.COLUMNS:
            deltas = [
                (
                    evaluate.column_summary([a], *evaluate.COLUMNS[column])["recall"] or 0,
                    evaluate.column_summary([b], *evaluate.COLUMNS[column])["recall"] or 0,
                    evaluate.column_summary([a], *evaluate.COLUMNS[column])["fpr"] or 0,
                    evaluate.column_summary([b], *evaluate.COLUMNS[column])["fpr"] or 0,
                )
                for a, b in zip(results[base], results[LATENTS], strict=True)
            ]
            dr = [b - a for a, b, _, _ in deltas]
            df = [d - c for _, _, c, d in deltas]
            print(
                f"{column}: latents minus {base!r}, recall per seed "
                + ", ".join(f"{d:+.3f}" for d in dr)
                + f" (mean {np.mean(dr):+.3f}); FPR per seed "
                + ", ".join(f"{d:+.4f}" for d in df)
            )
    print(f"total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
