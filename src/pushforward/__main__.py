"""``python -m pushforward``: the command line (see :mod:`pushforward.cli`)."""

import sys

from .cli.main import main

if __name__ == "__main__":
    sys.exit(main())
