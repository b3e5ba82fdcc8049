"""The local cache of things c2s can always rebuild: copies of model bundles read from
object stores, and compiled XLA programs.

Everything lives under ``$C2S_CACHE_DIR`` (default ``~/.cache/c2s_jax``); deleting it only
costs time.
"""

import os
from pathlib import Path

CACHE_ENV = "C2S_CACHE_DIR"
# JAX reads its persistent compilation cache folder from this variable when it is imported.
JAX_CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"


def cache_root() -> Path:
    """``$C2S_CACHE_DIR``, else ``~/.cache/c2s_jax``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "c2s_jax")


def enable_compilation_cache() -> None:
    """Keeps XLA's compiled programs under ``cache_root() / "xla"`` across runs, so a rerun
    (the same ``c2s generate`` or ``c2s train`` resumed after preemption) skips compiling
    what it compiled before. Programs that compile in under a second are not kept (JAX's
    default threshold).

    Sets ``JAX_COMPILATION_CACHE_DIR`` unless the user already chose a folder there, so it
    takes effect only when JAX has not been imported yet: the ``c2s`` command calls it
    before any command imports JAX.
    """
    os.environ.setdefault(JAX_CACHE_ENV, str(cache_root() / "xla"))
