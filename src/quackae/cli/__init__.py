"""The ``quackae`` command: a thin layer over the stage functions that tests call directly."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from quackae.cli.args import Parser, subparsers
from quackae.ingest import limits


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
        "auto: the one running here); --storage_path must be reachable from every node "
        "(default: none, --workers processes on this machine)",
    )
    p.add_argument(
        "--allow_open_cluster",
        action="store_true",
        help="with --ray_address: join a cluster that is not on this machine even if it needs "
        "no token (anyone who reaches it can run code there); an open cluster is always reported",
    )
    p.add_argument(
        "--max_tokens",
        type=int,
        default=limits.DEFAULT_MAX_TOKENS,
        metavar="N",
        help="truncate each sequence to N tokens, keeping the head (default %(default)s)",
    )
    p.add_argument(
        "--tokenizer",
        type=Path,
        metavar="PATH",
        help="use this tokenizer.json (e.g. another dataset's) instead of training one "
        f"(default: train one on the sources' first {limits.TOKENIZER_SAMPLE:,} tries; at least "
        f"{limits.MIN_TOKENIZER_TEXTS} are needed)",
    )
    p.add_argument(
        "--vocab_size",
        type=int,
        default=limits.DEFAULT_VOCAB,
        metavar="N",
        help="BPE vocabulary size when training a tokenizer (default %(default)s)",
    )
    p.add_argument(
        "--mmdb",
        type=Path,
        metavar="PATH",
        help="MaxMind country database file for v1 vantage points (default: the offline table "
        "shipped with iptocc)",
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
    from quackae.io.folders import input_file, input_folder

    skip_pandas_probe()

    if args.workers < 1:
        raise FlattenError("--workers must be at least 1")
    if args.signatures is not None:
        input_folder(args.signatures, "--signatures", "the folder holding the signature files")
    if args.mmdb is not None:
        input_file(args.mmdb, "--mmdb", "a MaxMind .mmdb country database file")
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
        allow_open_cluster=args.allow_open_cluster,
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
    from quackae.io import storage
    from quackae.io.folders import input_folder

    if not storage.is_uri(args.path):
        input_folder(args.path, "", "a dataset or embeddings folder")

    problems = verify(args.path) if args.verify else None
    info = inspect(args.path, skip_damaged=bool(problems))
    if problems is not None:
        info["verify"] = {"ok": not problems, "problems": problems}
    print(json.dumps(info, indent=1) if args.json else render(info))
    return 1 if problems else 0


CONTROLLER_COMMANDS = {
    "train": ([], "train QuackAutoEncoder (the seed's ae_processor; --help lists its flags)"),
    "encode": (
        ["--encode"],
        "write latent features with a trained checkpoint (ae_processor --encode)",
    ),
}


def _add_controller(sub: argparse._SubParsersAction) -> None:
    for name, (extra, text) in CONTROLLER_COMMANDS.items():
        p = sub.add_parser(name, help=text, add_help=False, description=text)
        p.add_argument("controller_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        p.set_defaults(
            func=lambda a, name=name, extra=extra: _run_controller(name, extra + a.controller_args)
        )


def _run_controller(name: str, argv: list[str]) -> int:
    """``quackae train|encode ARGS``: the seed's controller, its help naming this command."""
    from quackae.cli.controller import cli

    return cli(argv, prog=f"quackae {name}")


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


def _add_report(sub: argparse._SubParsersAction) -> None:
    from quackae.cli.report import add_report_arguments

    add_report_arguments(sub)


def _add_export(sub: argparse._SubParsersAction) -> None:
    from quackae.cli.export import add_export_arguments

    add_export_arguments(sub)


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
    "report": _add_report,
    "export": _add_export,
    "plot": _add_plot,
    "demo": _add_demo,
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``quackae`` parser: every subcommand, or only ``command``'s when it is known."""
    parser = Parser(
        prog="quackae",
        description="Learn latent features of Censored Planet Hyperquack measurements and find "
        "censorship the blockpage fingerprints miss.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = subparsers(parser, "command", "COMMAND")
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


def command_name(args: argparse.Namespace) -> str:
    """``quackae detect predict``: the command and action a message speaks for."""
    action = getattr(args, f"{args.command}_command", None)
    return " ".join(["quackae", args.command, *([action] if action else [])])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and of ``python -m quackae``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in CONTROLLER_COMMANDS and argv[0] == command:  # the controller parses its flags
        return _run_controller(command, CONTROLLER_COMMANDS[command][0] + argv[1:])
    args = build_parser(command).parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # libraries' INFO records stop at our handler
        handler.setLevel(level)
    name = command_name(args)
    try:
        return int(args.func(args) or 0)
    except user_errors() as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted; rerun the same command to resume", file=sys.stderr)
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
