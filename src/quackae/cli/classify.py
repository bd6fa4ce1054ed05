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
    t.add_argument("--max_epochs", type=int, default=20, help="epochs (default %(default)s)")
    t.add_argument(
        "--l_rate",
        type=float,
        default=1e-3,
        help="AdamW learning rate (default %(default)s; the autoencoder's is the seed's 0.1)",
    )
    t.deprecate("--learning_rate", "--l_rate")
    t.add_argument("--batch_size", type=int, default=256, help="batch size (default %(default)s)")
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
        default=0.5,
        help="lowest decision threshold; calibration may raise it (default %(default)s)",
    )
    t.add_argument(
        "--calibration",
        choices=CALIBRATIONS,
        default="novel-kind",
        help="how each model's threshold is raised to meet --target_fpr on labelled rows: "
        "novel-kind = on the "
        "validation split and on every kind of benign page held out of training in turn (the "
        "undetermined "
        "rows' benign pages are kinds no signature knows); validation = on the validation split "
        "only; "
        "none = keep --threshold (default %(default)s)",
    )
    t.add_argument(
        "--target_fpr",
        type=float,
        default=0.01,
        help="false-positive rate the calibrated threshold allows (default %(default)s)",
    )
    t.add_argument(
        "--weight_decay", type=float, default=1e-2, help="AdamW weight decay (default %(default)s)"
    )
    t.add_argument(
        "--input_dropout",
        type=float,
        default=0.0,
        help="dropout on the standardised latents while training (default %(default)s)",
    )
    t.add_argument(
        "--input_noise",
        type=float,
        default=0.0,
        help="Gaussian noise (in standard deviations) added to the standardised latents while "
        "training (default %(default)s)",
    )
    t.add_argument(
        "--patience",
        type=int,
        default=None,
        help="stop after this many epochs without a better validation loss (default: never)",
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
