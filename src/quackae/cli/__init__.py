"""The ``quackae`` command: a thin layer over the stage functions that tests call directly."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from quackae.ingest import tokens


def _add_flatten(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "flatten",
        help="ingest raw Hyperquack archives into a labelled, tokenized dataset directory",
        description="Stream raw Censored Planet Hyperquack sources (.tar, .tar.gz/.tgz, .json, "
        ".jsonl, optionally .gz, or directories of them) into a dataset directory: one row per "
        "non-control try, labelled with blockpage signatures, tokenized, stored as Parquet "
        "shards. Appending to an existing directory adds only what is new; a killed run "
        "resumes where it stopped when rerun.",
    )
    p.add_argument(
        "--source",
        nargs="+",
        required=True,
        metavar="PATH",
        help="files or directories to ingest, or object-store URIs (gs://BUCKET/PREFIX, "
        "s3://..., globs such as gs://B/P/CP_Quack-http-*.tar.gz) streamed without a local "
        "copy",
    )
    p.add_argument(
        "--storage_path",
        required=True,
        metavar="DIR",
        help="dataset directory (created or appended to), or an object-store URI (gs://..., "
        "s3://...)",
    )
    p.add_argument(
        "--labeled",
        action="store_true",
        help="keep only rows labelled censored (1) or uncensored (-1)",
    )
    p.add_argument(
        "--anomalies",
        action="store_true",
        help="keep only tries of anomalous measurements that did not match the template",
    )
    p.add_argument(
        "--signatures",
        type=Path,
        metavar="DIR",
        help="folder with blockpage_signatures.json and false_positive_signatures.json (Censored "
        "Planet's format, e.g. their published files, or DIR/signatures of quackae synth); "
        "default: a small set of well-known real blockpages (docs/signatures.md)",
    )
    p.add_argument(
        "--label_rule",
        choices=("full", "seed_body"),
        default="full",
        help="text the signatures are matched against: full = status line, headers and body "
        "(Censored Planet analysis's rule: some blockpages are known only by a header or status "
        "line); seed_body = the received body only, and only when not empty, as the seed "
        "project's cp_flatten.py, to rebuild its labels (default %(default)s; recorded in the "
        "dataset, appends must use the same)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="worker processes parsing chunks of lines, also of one big archive, while this "
        "process reads and commits (default 1)",
    )
    p.add_argument(
        "--ray_address",
        metavar="ADDR",
        help="run the chunks as Ray tasks (1 CPU each) on the cluster at ADDR (HOST:PORT, or "
        "auto: the one running here); --storage_path must be reachable from every node",
    )
    p.add_argument(
        "--max_tokens",
        type=int,
        default=tokens.DEFAULT_MAX_TOKENS,
        metavar="N",
        help="truncate each sequence to N tokens, keeping the head (default %(default)s)",
    )
    p.add_argument(
        "--tokenizer",
        type=Path,
        metavar="PATH",
        help="use this tokenizer.json (e.g. another dataset's) instead of training one",
    )
    p.add_argument(
        "--vocab_size",
        type=int,
        default=tokens.DEFAULT_VOCAB,
        metavar="N",
        help="BPE vocabulary size when training a tokenizer (default %(default)s)",
    )
    p.add_argument(
        "--mmdb",
        type=Path,
        metavar="PATH",
        help="MaxMind country database for v1 vantage points (default: the offline table shipped "
        "with iptocc)",
    )
    p.add_argument(
        "--chunk_lines",
        type=int,
        default=5_000,
        metavar="N",
        help="input lines per committed shard: the most a killed run redoes (default %(default)s)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_flatten)


def _run_flatten(args: argparse.Namespace) -> int:
    from quackae.ingest.fanout import skip_pandas_probe
    from quackae.ingest.flatten import FlattenError, Options, flatten

    skip_pandas_probe()

    if args.workers < 1:
        raise FlattenError("--workers must be at least 1")
    for flag, path in (("--signatures", args.signatures), ("--mmdb", args.mmdb)):
        if path is not None and not path.exists():
            raise FlattenError(f"{flag} {path}: no such file or directory")
    options = Options(
        labeled=args.labeled,
        anomalies=args.anomalies,
        signatures=args.signatures,
        max_tokens=args.max_tokens,
        mmdb=args.mmdb,
        chunk_lines=max(args.chunk_lines, 1),
        label_rule=args.label_rule,
    )
    summary = flatten(
        args.source,
        args.storage_path,
        options,
        workers=args.workers,
        ray_address=args.ray_address,
        tokenizer=args.tokenizer,
        vocab_size=args.vocab_size,
        progress=not args.quiet,
    )
    print("\n".join(summary.lines_text(args.storage_path)))
    return 1 if summary.failed_sources else 0


def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="summarise a dataset or embeddings directory",
        description="Counts per label, scan and country, top fingerprints and outcomes, token "
        "length percentiles (datasets) or embedding dimension (embeddings).",
    )
    p.add_argument(
        "path",
        metavar="DIR",
        help="a dataset or embeddings directory, local or an object-store URI (gs://..., s3://...)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--verify",
        action="store_true",
        help="also read every shard in full and report damaged files (exit 1 if any)",
    )
    p.set_defaults(func=_run_inspect)


def _run_inspect(args: argparse.Namespace) -> int:
    from quackae.dataset.inspection import inspect, render, verify

    problems = verify(args.path) if args.verify else None
    info = inspect(args.path, skip_damaged=bool(problems))
    if problems is not None:
        info["verify"] = {"ok": not problems, "problems": problems}
    print(json.dumps(info, indent=1) if args.json else render(info))
    return 1 if problems else 0


def _add_controller(sub: argparse._SubParsersAction) -> None:
    for name, extra, text in (
        ("train", [], "train QuackAutoEncoder (the seed's ae_processor; --help lists its flags)"),
        (
            "encode",
            ["--encode"],
            "write latent features with a trained checkpoint (ae_processor --encode)",
        ),
    ):
        p = sub.add_parser(name, help=text, add_help=False, description=text)
        p.add_argument("controller_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        p.set_defaults(func=lambda a, extra=extra: _run_controller(extra + a.controller_args))


def _run_controller(argv: list[str]) -> int:
    from quackae.model import controller as ae_processor

    return ae_processor.cli(argv)


def _add_synth(sub: argparse._SubParsersAction) -> None:
    from quackae.cli.synth import add_synth_arguments

    add_synth_arguments(sub)


def _add_classify(sub: argparse._SubParsersAction) -> None:
    from quackae.cli.classify import add_classify_arguments

    add_classify_arguments(sub)


def _add_plot(sub: argparse._SubParsersAction) -> None:
    from quackae.cli.plot import add_plot_arguments

    add_plot_arguments(sub)


def _add_detect(sub: argparse._SubParsersAction) -> None:
    from quackae.cli.detect import add_detect_arguments

    add_detect_arguments(sub)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    from quackae.cli.evaluate import add_evaluate_arguments

    add_evaluate_arguments(sub)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    from quackae.cli.demo import add_demo_arguments

    add_demo_arguments(sub)


# command name -> the function adding its parser; a run builds only the one it needs, so
# `quackae flatten` does not pay for importing torch.
ADDERS: dict[str, Callable[[argparse._SubParsersAction], None]] = {
    "synth": _add_synth,
    "flatten": _add_flatten,
    "inspect": _add_inspect,
    "train": _add_controller,
    "encode": _add_controller,
    "classify": _add_classify,
    "detect": _add_detect,
    "evaluate": _add_evaluate,
    "plot": _add_plot,
    "demo": _add_demo,
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``quackae`` parser: every subcommand, or only ``command``'s when it is known."""
    parser = argparse.ArgumentParser(
        prog="quackae",
        description="Learn latent features of Censored Planet Hyperquack measurements and find "
        "censorship the blockpage fingerprints miss.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    adders = [ADDERS[command]] if command in ADDERS else list(dict.fromkeys(ADDERS.values()))
    for add in adders:
        add(sub)
    return parser


def user_errors() -> tuple[type[Exception], ...]:
    """Exceptions that mean a user mistake: printed as one line, never a traceback."""
    from quackae.dataset.store import StoreError
    from quackae.ingest.flatten import FlattenError
    from quackae.ingest.sources import SourceError
    from quackae.io.storage import StorageError

    return (FlattenError, SourceError, StorageError, StoreError)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and of ``python -m quackae``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in ("train", "encode") and argv[0] == command:  # the controller parses its own flags
        return _run_controller((["--encode"] if command == "encode" else []) + argv[1:])
    args = build_parser(command).parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # libraries' INFO records stop at our handler
        handler.setLevel(level)
    try:
        return int(args.func(args) or 0)
    except user_errors() as e:
        print(f"quackae {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"quackae {args.command}: interrupted; rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
    except BrokenPipeError:  # `quackae inspect DIR | head`: the reader left, which is fine
        _silence_stdout()
        return 0


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
