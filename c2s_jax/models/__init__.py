"""Decoder-only language models (Gemma-2, Pythia) in Flax NNX."""

from c2s_jax.models.gemma2 import Gemma2, Gemma2Config
from c2s_jax.models.layers import KVCache
from c2s_jax.models.pythia import Pythia, PythiaConfig
from c2s_jax.models.registry import CONFIGS, build_model, count_params, get_config

__all__ = [
    "CONFIGS",
    "Gemma2",
    "Gemma2Config",
    "KVCache",
    "Pythia",
    "PythiaConfig",
    "build_model",
    "count_params",
    "get_config",
]
