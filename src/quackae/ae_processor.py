"""The seed's controller under its own name: ``python -m quackae.ae_processor`` and ``main(args)``.

The code lives in ``quackae.model.controller``; this module re-exports what its users call.
"""

import sys

from quackae.model.controller import build_parser, cli, main

__all__ = ["build_parser", "cli", "main"]

if __name__ == "__main__":
    sys.exit(cli())
