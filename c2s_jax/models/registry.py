"""Model names -> configs, and building a model from a config.

The released sizes match the published checkpoints (Gemma-2 vocab 256000 as in HF;
Pythia vocab padded to 50304). The ``gemma2_*``/``pythia_*`` ladders below the released
sizes are for scaling sweeps and tests.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
from flax import nnx

from c2s_jax.models.gemma2 import Gemma2, Gemma2Config
from c2s_jax.models.pythia import Pythia, PythiaConfig

ModelConfig = Gemma2Config | PythiaConfig
Model = Gemma2 | Pythia
# Family names as stored beside saved parameters.
FAMILIES: dict[str, type[ModelConfig]] = {"gemma2": Gemma2Config, "pythia": PythiaConfig}

_GEMMA2_VOCAB = 256_000
_PYTHIA_VOCAB = 50_304


def _gemma2(d_model, num_layers, num_heads, num_kv_heads, head_dim, mlp_dim, qpas, vocab):
    return Gemma2Config(
        vocab_size=vocab,
        d_model=d_model,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
        mlp_dim=mlp_dim,
        query_pre_attn_scalar=qpas,
    )


def _pythia(d_model, num_layers, num_heads, vocab=_PYTHIA_VOCAB):
    return PythiaConfig(
        vocab_size=vocab,
        d_model=d_model,
        num_layers=num_layers,
        num_heads=num_heads,
        mlp_dim=4 * d_model,
    )


CONFIGS: dict[str, ModelConfig] = {
    # Released Gemma-2 sizes.
    "gemma2_2b": _gemma2(2304, 26, 8, 4, 256, 9216, 256, _GEMMA2_VOCAB),
    "gemma2_9b": _gemma2(3584, 42, 16, 8, 256, 14336, 256, _GEMMA2_VOCAB),
    "gemma2_27b": _gemma2(4608, 46, 32, 16, 128, 36864, 144, _GEMMA2_VOCAB),
    # Gemma-2-shaped ladder (Gemma tokenizer vocab) for scaling sweeps.
    "gemma2_xs": _gemma2(256, 4, 4, 2, 64, 1024, 64, _GEMMA2_VOCAB),
    "gemma2_s": _gemma2(512, 8, 8, 4, 64, 2048, 64, _GEMMA2_VOCAB),
    "gemma2_m": _gemma2(768, 12, 12, 6, 64, 3072, 64, _GEMMA2_VOCAB),
    "gemma2_l": _gemma2(1024, 16, 8, 4, 128, 4096, 128, _GEMMA2_VOCAB),
    # Smoke-test size: small vocab, compiles in seconds on a CPU.
    "gemma2_tiny": _gemma2(64, 2, 4, 2, 16, 128, 16, 512),
    # Released Pythia sizes.
    "pythia_70m": _pythia(512, 6, 8),
    "pythia_160m": _pythia(768, 12, 12),
    "pythia_410m": _pythia(1024, 24, 16),
    "pythia_1b": _pythia(2048, 16, 8),
    "pythia_tiny": _pythia(64, 2, 4, vocab=512),
}


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """The config registered as ``name`` with ``overrides`` (field=value) applied."""
    if name not in CONFIGS:
        raise KeyError(f"unknown model {name!r}; known: {sorted(CONFIGS)}")
    return dataclasses.replace(CONFIGS[name], **overrides)


def build_model(cfg: ModelConfig, *, rngs: nnx.Rngs) -> Model:
    """A randomly initialised model of the family ``cfg`` describes."""
    if isinstance(cfg, Gemma2Config):
        return Gemma2(cfg, rngs=rngs)
    if isinstance(cfg, PythiaConfig):
        return Pythia(cfg, rngs=rngs)
    raise TypeError(f"no model family for config type {type(cfg).__name__}")


def abstract_model(cfg: ModelConfig) -> Model:
    """The model with ShapeDtypeStruct leaves: shapes, dtypes and axis names, no memory."""
    return nnx.eval_shape(lambda: build_model(cfg, rngs=nnx.Rngs(0)))


def count_params(cfg: ModelConfig) -> int:
    """Number of parameters of ``cfg``, from shapes alone."""
    state = nnx.state(abstract_model(cfg), nnx.Param)
    return sum(leaf.size for leaf in jax.tree.leaves(state))


def config_to_dict(cfg: ModelConfig) -> dict[str, Any]:
    """``{"family": name, **fields}``: a JSON-ready description that rebuilds ``cfg``."""
    family = next((name for name, kind in FAMILIES.items() if isinstance(cfg, kind)), None)
    if family is None:
        raise TypeError(f"no model family for config type {type(cfg).__name__}")
    return {"family": family, **dataclasses.asdict(cfg)}


def config_from_dict(fields: dict[str, Any]) -> ModelConfig:
    """The config :func:`config_to_dict` described.

    Raises:
      ValueError: an unknown family, or fields that family's config does not have.
    """
    fields = dict(fields)
    family = fields.pop("family", None)
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {sorted(FAMILIES)}")
    kind = FAMILIES[family]
    unknown = set(fields) - {f.name for f in dataclasses.fields(kind)}
    if unknown:
        raise ValueError(f"{family} configs have no fields {sorted(unknown)}")
    try:
        return kind(**fields)
    except TypeError as err:  # a required field is missing
        raise ValueError(f"{family} config: {err}") from None
