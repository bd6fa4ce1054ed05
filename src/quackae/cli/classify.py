"""``quackae classify train|predict``: the latent classifier (``quackae.classify.classifier``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quackae.cli.args import subparsers as add_actions

#: ``quackae.classify.calibration.CALIBRATIONS``, spelled here so ``--help`` imports no numpy
#: (tests/test_cli_help.py checks that the two agree).
CALIBRATIONS = ("novel-kind", "validation", "none")


def add_classify_arguments(subparsers: argparse._SubParsersAction) -> None:
    """``quackae classify train|predict``."""
    from quackae.classify.recipes import RECIPES

    p = subparsers.add_parser(
        "classify",
        help="train the latent classifier or score embeddings with it",
        description="Classify autoencoder latents: censored or not.",
    )
    sub = add_actions(p, "classify_command", "ACTION")
    t = sub.add_parser("train", help="fit on labelled (--filtered) embeddings; writes metrics.json")
    t.add_argument(
        "--embeddings",
        type=Path,
        required=True,
        metavar="DIR",
        help="embeddings folder of labelled rows (`quackae encode --filtered`)",
    )
    t.add_argument(
        "--storage_path",
        type=Path,
        required=True,
        metavar="DIR",
        help="folder for checkpoints, logs, metrics.json (new, empty or an earlier classify "
        "train's)",
    )
    t.add_argument(
        "--recipe",
        choices=tuple(RECIPES),
        default="quackae",
        help="every setting at once: quackae = today's head; seed = the seed's latent_processor "
        "as published (LeakyReLU 0.1, AdamW 1e-1 cosine to 1e-3, early stopping at val_loss 0.05 "
        "or patience 10, top 3 and last, random 70/20/10 split, batch 4, threshold 0.5); "
        "seed_jobs = the seed's job script (lr 1e-6 cosine to 1e-7 over 10 epochs, 8 workers x "
        "batch 8 as one batch of 64). A flag given below replaces the recipe's value "
        "(default %(default)s)",
    )

    def shown(field: str) -> str:
        return "default: the recipe's: " + ", ".join(
            f"{name} {getattr(r, field)}" for name, r in RECIPES.items()
        )

    t.add_argument("--max_epochs", type=int, default=None, help=f"epochs ({shown('max_epochs')})")
    t.add_argument(
        "--l_rate",
        type=float,
        default=None,
        help=f"AdamW learning rate ({shown('learning_rate')})",
    )
    t.add_argument(
        "--l_rate_min",
        type=float,
        default=None,
        help=f"the cosine schedule's final learning rate ({shown('learning_rate_min')})",
    )
    t.add_argument(
        "--l_rate_max_epoch",
        type=int,
        default=None,
        help="the cosine schedule's length in epochs; -1 = --max_epochs (the seed's -1 swings "
        f"every epoch; 1 gives that swing) ({shown('lr_max_epochs')})",
    )
    t.add_argument(
        "--batch_size", type=int, default=None, help=f"batch size ({shown('batch_size')})"
    )
    t.deprecate("--learning_rate", "--l_rate")
    t.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the 70/15/15 train/validation/test split of the labelled latents and of "
        "the weights (default %(default)s); the autoencoder splits 70/10/20 as the seed did, the "
        "classifier keeps a larger validation split because it also calibrates the threshold",
    )
    t.add_argument(
        "--threshold",
        type=float,
        default=None,
        help=f"lowest decision threshold; calibration may raise it ({shown('threshold')})",
    )
    t.add_argument(
        "--calibration",
        choices=CALIBRATIONS,
        default=None,
        help="how each model's threshold is raised to meet --target_fpr on labelled rows: "
        "novel-kind = on the "
        "validation split and on every kind of benign page held out of training in turn (the "
        "undetermined "
        "rows' benign pages are kinds no signature knows); validation = on the validation split "
        "only; "
        f"none = keep --threshold ({shown('calibration')})",
    )
    t.add_argument(
        "--target_fpr",
        type=float,
        default=0.01,
        help="false-positive rate the calibrated threshold allows (default %(default)s)",
    )
    t.add_argument(
        "--weight_decay",
        type=float,
        default=None,
        help=f"AdamW weight decay ({shown('weight_decay')})",
    )
    t.add_argument(
        "--input_dropout",
        type=float,
        default=None,
        help=f"dropout on the standardised latents while training ({shown('input_dropout')})",
    )
    t.add_argument(
        "--input_noise",
        type=float,
        default=None,
        help="Gaussian noise (in standard deviations) added to the standardised latents while "
        f"training ({shown('input_noise')})",
    )
    t.add_argument(
        "--patience",
        type=int,
        default=None,
        help="stop after this many epochs without a better validation loss (None: never; "
        f"{shown('patience')})",
    )
    t.set_defaults(func=_run_train)
    r = sub.add_parser("predict", help="score every embedding; writes shards and report.md/json")
    r.add_argument(
        "--embeddings",
        type=Path,
        required=True,
        metavar="DIR",
        help="embeddings folder to score (`quackae encode --evaluate`)",
    )
    r.add_argument(
        "--checkpoint_path",
        type=Path,
        required=True,
        metavar="CKPT",
        help="classifier checkpoint (classifier-*.ckpt of `quackae classify train`)",
    )
    r.add_argument(
        "--storage_path",
        type=Path,
        required=True,
        metavar="DIR",
        help="folder for the scored shards and report.md (new, empty or an earlier predict's)",
    )
    r.deprecate("--out", "--storage_path")
    r.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="candidate threshold (default: the one `classify train` chose, from metrics.json "
        "beside the checkpoint, else 0.5)",
    )
    r.set_defaults(func=_run_predict)


def _run_train(args: argparse.Namespace) -> int:
    from quackae.io.folders import claim_output, input_folder

    input_folder(args.embeddings, "--embeddings", "an embeddings folder of `quackae encode`")
    from quackae.classify.classifier import METRICS_FILE, train_classifier  # torch, Lightning

    claim_output(
        args.storage_path, "--storage_path", "quackae classify train", proof=(METRICS_FILE,)
    )
    try:
        m = train_classifier(
            args.embeddings,
            args.storage_path,
            max_epochs=args.max_epochs,
            lr=args.l_rate,
            batch_size=args.batch_size,
            seed=args.seed,
            threshold=args.threshold,
            weight_decay=args.weight_decay,
            input_dropout=args.input_dropout,
            input_noise=args.input_noise,
            patience=args.patience,
            target_fpr=args.target_fpr,
            calibration=args.calibration,
            recipe_name=args.recipe,
            lr_min=args.l_rate_min,
            lr_max_epochs=args.l_rate_max_epoch,
        )
    except ValueError as e:
        print(f"quackae classify train: error: {e}", file=sys.stderr)
        return 2
    c = m["classifier"]
    print(
        f"classify: held-out accuracy {c['accuracy']} F1 {c['f1']} ROC-AUC {c['roc_auc']} on "
        f"{c['n']} rows"
    )
    base = m["baseline"].get("threshold")
    print(
        f"classify: threshold {m['threshold']:.4f} ({m['threshold_rule']['calibration']} "
        "calibration); "
        f"baseline threshold {'n/a' if base is None else f'{base:.4f}'}"
    )
    sm = m["seed_metrics"]
    at = sm["recall_at_fpr"]
    print(
        f"classify: the seed's metrics ({m['recipe']['name']} recipe, {m['test_weights']} "
        f"weights, stopped by {m['stopped']} after {m['epochs']} epochs): accuracy "
        f"{sm['accuracy']}, F1 as its torchmetrics (micro over both classes) {sm['f1_seed']}, "
        f"binary F1 of the censored class {sm['f1_censored']}, recall {at['recall']} at FPR "
        f"{at['fpr']} (threshold set for FPR <= {at['target_fpr']} on validation)"
    )
    print(f"classify: {m['verdict']}")
    print(
        f"classify: checkpoint {m['checkpoint']}; metrics {Path(args.storage_path) / METRICS_FILE}"
    )
    return 0


def _run_predict(args: argparse.Namespace) -> int:
    from quackae.io.folders import claim_output, input_file, input_folder

    input_folder(args.embeddings, "--embeddings", "an embeddings folder of `quackae encode`")
    input_file(
        args.checkpoint_path,
        "--checkpoint_path",
        "a classifier-*.ckpt written by `quackae classify train`",
    )
    from quackae.classify.classifier import predict, trained_metrics, trained_threshold
    from quackae.report.markdown import REPORT_MD, write_report

    claim_output(
        args.storage_path, "--storage_path", "quackae classify predict", proof=(REPORT_MD,)
    )
    try:
        threshold = (
            args.threshold
            if args.threshold is not None
            else trained_threshold(args.checkpoint_path)
        )
        s = predict(args.embeddings, args.checkpoint_path, args.storage_path, threshold=threshold)
        write_report(
            args.storage_path, threshold=threshold, metrics=trained_metrics(args.checkpoint_path)
        )
    except ValueError as e:
        print(f"quackae classify predict: error: {e}", file=sys.stderr)
        return 2
    print(
        f"predict: {s['candidates']} of {s['rows']} rows score >= {s['threshold']}; "
        f"report {Path(args.storage_path) / REPORT_MD}"
    )
    if not s["complete"]:
        print(
            "predict: warning: the embeddings directory is not complete (encode still running or "
            "killed)"
        )
    if s["baseline"] is None:
        print(f"predict: no baseline probabilities ({s['baseline_missing_reason']})")
    return 0
