"""``quackae train|encode`` and ``python -m quackae.ae_processor``: the seed's controller flags.

The parser is ``quackae.model.config.build_parser`` made with this package's ``Parser`` (dashed
aliases); the run is ``quackae.model.controller.main``; user mistakes are one line on stderr.
"""

from __future__ import annotations

import argparse
import sys

from quackae.cli.args import Parser

SEED_PROG = "python -m quackae.ae_processor"


def build_parser(prog: str = SEED_PROG) -> argparse.ArgumentParser:
    """The controller's parser (``--help`` names ``prog``), taking ``--storage-path`` too."""
    from quackae.model.config import build_parser as controller_parser

    return controller_parser(prog, parser_class=Parser)


def _name(prog: str) -> str:
    """How errors name the command: ``quackae train``, or the seed's ``ae_processor``."""
    return "ae_processor" if prog == SEED_PROG else prog


def cli(argv: list[str] | None = None, prog: str = SEED_PROG) -> int:
    """Parse ``argv``, train or encode, and turn user errors into one line (exit 2)."""
    from quackae.model.config import from_namespace

    args = from_namespace(build_parser(prog).parse_args(argv))  # --help exits here, before
    from quackae.model import controller  # pyarrow, numpy and torch are imported

    try:
        controller.main(args)
    except controller.user_errors() as e:
        print(f"{_name(prog)}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"{_name(prog)}: interrupted; rerun with --resume (training) or the same command "
            "(--encode)",
            file=sys.stderr,
        )
        return 130
    return 0
