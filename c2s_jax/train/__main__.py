"""`python -m c2s_jax.train ...` is `c2s train ...`."""

import sys

from c2s_jax.cli import main

raise SystemExit(main(["train", *sys.argv[1:]], exit_at_failure=True))
