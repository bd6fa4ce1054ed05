"""The seed's controller under its own name: ``python -m quackae.ae_processor`` and ``main(args)``.

The code lives in ``quackae.model.controller`` (``main``) and ``quackae.cli.controller`` (the
parser and the command line); this module re-exports what its users call.
"""

import sys

from quackae.cli.controller import build_parser, cli
from quackae.model.controller import main

__all__ = ["build_parser", "cli", "main"]

if __name__ == "__main__":
    sys.exit(cli())
