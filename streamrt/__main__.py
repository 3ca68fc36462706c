"""``python -m streamrt``: the same command line as the ``streamrt`` console script."""

import sys

from streamrt.cli import main

sys.exit(main())
