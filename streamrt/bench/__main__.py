"""``python -m streamrt.bench SUITE ...``: the same as ``streamrt bench SUITE ...``."""

import sys

from streamrt.cli import main

sys.exit(main(["bench", *sys.argv[1:]]))
