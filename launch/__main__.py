"""`python -m launch ...` (from the repository root): see launch/cli.py."""

import sys

from launch.cli import main

raise SystemExit(main(sys.argv[1:]))
