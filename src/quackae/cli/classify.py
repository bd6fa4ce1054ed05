"""``quackae classify train|predict``: the latent classifier (``quackae.classify.classifier``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_classify_arguments(subparsers: argparse._SubParsersAction) -> None:
    """``quackae classify train|predict``."""
    from quackae.classify.calibration import CALIBRATIONS

    p = subparsers.add_parser(
        "classify",
        help="train the latent classifier or score embeddings with it",
        description="Classify autoencoder latents: censored or not.",
    )
    sub = p.add_subparsers(dest="classify_command", required=True, metavar="ACTION")
    t = sub.add_parser("train", help="fit on labelled (--filtered) embeddings; writes metrics.json")
    t.add_argument(
        "--embeddings", type=Path, required=True, metavar="DIR", help="embeddings dir (--filtered)"
    )
    t.add_argument(
        "--storage_path",
        type=Path,
        required=True,
        metavar="DIR",
        help="checkpoints, logs, metrics.json",
    )
    t.add_argument("--max_epochs", type=int, default=20, help="epochs (default %(default)s)")
    t.add_argument(
        "--learning_rate",
        type=float,
        default=1e-3,
        help="AdamW learning rate (default %(default)s)",
    )
    t.add_argument("--batch_size", type=int, default=256, help="batch size (default %(default)s)")
    t.add_argument(
        "--seed", type=int, default=0, help="split and initialisation seed (default %(default)s)"
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
        "--embeddings", type=Path, required=True, metavar="DIR", help="embeddings dir (--evaluate)"
    )
    r.add_argument(
        "--checkpoint_path", type=Path, required=True, metavar="CKPT", help="classifier checkpoint"
    )
    r.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    r.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="candidate threshold (default: the one `classify train` chose, from metrics.json "
        "beside the checkpoint, else 0.5)",
    )
    r.set_defaults(func=_run_predict)


def _run_train(args: argparse.Namespace) -> int:
    from quackae.classify.classifier import METRICS_FILE, train_classifier

    try:
        m = train_classifier(
            args.embeddings,
            args.storage_path,
            max_epochs=args.max_epochs,
            lr=args.learning_rate,
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
    from quackae.classify.classifier import predict, trained_metrics, trained_threshold
    from quackae.report.markdown import REPORT_MD, write_report

    try:
        threshold = (
            args.threshold
            if args.threshold is not None
            else trained_threshold(args.checkpoint_path)
        )
        s = predict(args.embeddings, args.checkpoint_path, args.out, threshold=threshold)
        write_report(args.out, threshold=threshold, metrics=trained_metrics(args.checkpoint_path))
    except ValueError as e:
        print(f"quackae classify predict: error: {e}", file=sys.stderr)
        return 2
    print(
        f"predict: {s['candidates']} of {s['rows']} rows score >= {s['threshold']}; "
        f"report {Path(args.out) / REPORT_MD}"
    )
    if not s["complete"]:
        print(
            "predict: warning: the embeddings directory is not complete (encode still running or "
            "killed)"
        )
    if s["baseline"] is None:
        print(f"predict: no baseline probabilities ({s['baseline_missing_reason']})")
    return 0
