"""`python -m c2s_jax` is the same as the `c2s` command."""

from c2s_jax.cli import console

console()
