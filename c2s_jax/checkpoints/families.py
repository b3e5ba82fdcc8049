"""Which converter module handles a HF architecture or one of our configs."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from c2s_jax.checkpoints import hf_gemma2, hf_pythia
from c2s_jax.models.gemma2 import Gemma2Config
from c2s_jax.models.pythia import PythiaConfig

_BY_ARCHITECTURE = {m.ARCHITECTURE: m for m in (hf_gemma2, hf_pythia)}
_BY_CONFIG = {Gemma2Config: hf_gemma2, PythiaConfig: hf_pythia}


def for_hf_config(hf: dict[str, Any]) -> ModuleType:
    """The converter for a HF ``config.json`` dict, by its ``architectures`` entry."""
    archs = hf.get("architectures") or []
    for arch in archs:
        if arch in _BY_ARCHITECTURE:
            return _BY_ARCHITECTURE[arch]
    raise ValueError(
        f"unknown architecture {archs or hf.get('model_type')!r}; "
        f"supported: {sorted(_BY_ARCHITECTURE)}"
    )


def for_config(cfg: Any) -> ModuleType:
    """The converter for one of our model configs."""
    if type(cfg) not in _BY_CONFIG:
        raise TypeError(f"no HF converter for config type {type(cfg).__name__}")
    return _BY_CONFIG[type(cfg)]
