"""Every command's --help: no torch, Lightning or Ray imported, every default shown, one spelling.

Nothing is timed here (benchmarks/help_speed.py prints the times); the imports are what makes
``--help`` slow, so a fresh process checks that none of them happens.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from quackae.cli import ADDERS, build_parser
from quackae.cli.args import Parser
from quackae.cli.controller import build_parser as controller_parser

HEAVY = ("torch", "lightning", "ray", "pytorch_lightning")
HELPS = [
    [],
    *([name] for name in ADDERS),
    ["classify", "train"],
    ["classify", "predict"],
    ["detect", "train"],
    ["detect", "predict"],
]

_PROBE = """
import json, sys
from quackae.cli import main
from quackae.cli.controller import cli
heavy = {}
for argv in json.loads(sys.argv[1]):
    try:
        main([*argv, "--help"])
    except SystemExit:
        pass
    heavy[" ".join(argv) or "quackae"] = sorted(m for m in HEAVY if m in sys.modules)
try:
    cli(["--help"])  # python -m quackae.ae_processor --help
except SystemExit:
    pass
heavy["ae_processor"] = sorted(m for m in HEAVY if m in sys.modules)
print(json.dumps(heavy), file=sys.stderr)
"""


def test_help_of_every_command_imports_no_torch_lightning_or_ray() -> None:
    """In one fresh process, after each --help in turn, none of the heavy packages is loaded."""
    code = f"HEAVY = {HEAVY!r}\n{_PROBE}"
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(HELPS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    heavy = json.loads(done.stderr.strip().splitlines()[-1])
    assert set(heavy) == {" ".join(h) or "quackae" for h in HELPS} | {"ae_processor"}
    assert all(not mods for mods in heavy.values()), heavy
    assert "usage: quackae" in done.stdout and "usage: quackae detect predict" in done.stdout


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """A parser and every subcommand parser below it."""
    out = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                out += _parsers(sub)
    return out


def _undocumented_defaults(parser: argparse.ArgumentParser) -> list[str]:
    """Options whose default differs from "not given" and whose help does not show it."""
    silent = (argparse._StoreTrueAction, argparse._HelpAction, argparse._SubParsersAction)
    missing = []
    for action in parser._actions:
        if isinstance(action, silent) or not action.option_strings or action.required:
            continue
        if action.help == argparse.SUPPRESS or action.default == argparse.SUPPRESS:
            continue
        if "default" not in (action.help or ""):
            missing.append(f"{parser.prog} {action.option_strings[0]}")
    return missing


def test_every_help_shows_every_default() -> None:
    parsers = _parsers(build_parser()) + [controller_parser("quackae train")]
    missing = [m for p in parsers for m in _undocumented_defaults(p)]
    assert not missing, missing
    assert len(parsers) >= 13  # every command, both actions of classify and detect, the controller


def test_train_help_names_quackae_train() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "quackae", "train", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.startswith("usage: quackae train ")
    assert "--max_epochs INT" in done.stdout and "default: 20 unless --max_steps" in done.stdout


def test_help_spellings_agree_with_the_modules_they_avoid_importing() -> None:
    """The choices and file names spelled in the CLI (to keep --help and checks light) agree."""
    from quackae import synth as generator
    from quackae.classify.calibration import CALIBRATIONS
    from quackae.cli import classify, detect, evaluate, synth
    from quackae.detect import detector, pipeline
    from quackae.ingest import limits, tokens
    from quackae.synth import evaluate as evaluation

    assert synth.FORMATS == generator.FORMATS and synth.SCANS == generator.SCANS
    assert classify.CALIBRATIONS == CALIBRATIONS
    assert (detect.MODEL_FILE, detect.SUMMARY_FILE) == (detector.MODEL_FILE, pipeline.SUMMARY_FILE)
    assert evaluate.RESULT_FILE == evaluation.RESULT_FILE
    assert (limits.DEFAULT_VOCAB, limits.DEFAULT_MAX_TOKENS) == (
        tokens.DEFAULT_VOCAB,
        tokens.DEFAULT_MAX_TOKENS,
    )


@pytest.mark.parametrize(
    ("argv", "dest", "value"),
    [
        (["flatten", "--source", "a", "--storage-path", "ds"], "storage_path", "ds"),
        (["flatten", "--source", "a", "--storage_path", "ds", "--max-tokens=64"], "max_tokens", 64),
        (["detect", "predict", "--data-dir", "d", "--checkpoint-path", "m", "--storage-path", "o"],
         "checkpoint_path", "m"),
    ],
)  # fmt: skip
def test_dashed_spellings_are_aliases(argv: list[str], dest: str, value: object) -> None:
    args = build_parser(argv[0]).parse_args(argv)
    assert str(getattr(args, dest)) == str(value)


def test_controller_takes_dashed_spellings_too() -> None:
    args = controller_parser().parse_args(["--storage-path", "x", "--max-epochs", "3"])
    assert (args.storage_path, args.max_epochs) == ("x", 3)


@pytest.mark.parametrize(
    ("argv", "old", "new", "dest"),
    [
        (["classify", "train", "--embeddings", "e", "--storage_path", "s", "--learning_rate",
          "0.5"], "--learning_rate", "--l_rate", "l_rate"),
        (["classify", "predict", "--embeddings", "e", "--checkpoint_path", "c", "--out", "o"],
         "--out", "--storage_path", "storage_path"),
        (["detect", "predict", "--data_dir", "d", "--model", "m", "--storage_path", "o"],
         "--model", "--checkpoint_path", "checkpoint_path"),
        (["evaluate", "--out", "o"], "--out", "--storage_path", "storage_path"),
        (["demo", "--out", "o"], "--out", "--storage_path", "storage_path"),
        (["demo", "--epochs", "2"], "--epochs", "--autoencoder_epochs", "autoencoder_epochs"),
        (["synth", "--out", "o"], "--out", "--storage_path", "storage_path"),
    ],
)  # fmt: skip
def test_old_spellings_work_with_one_deprecation_line(
    argv: list[str], old: str, new: str, dest: str, capsys
) -> None:
    parser = build_parser(argv[0])
    args = parser.parse_args(argv)
    assert getattr(args, dest) is not None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{old} is deprecated; use {new}" in err[0]
    shown = parser._chosen(args).format_help()
    assert new in shown and f"{old} " not in shown  # hidden from --help


def test_a_mistake_is_one_line_naming_the_likely_flag(capsys) -> None:
    parser = build_parser("flatten")
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["flatten", "--source", "a", "--storage_pth", "x"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean --storage_path?" in err[0]
    assert isinstance(parser, Parser)
