"""``python -m quackae``."""

import sys

from quackae.cli import main

sys.exit(main())
