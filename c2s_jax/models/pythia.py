"""Pythia (GPT-NeoX) decoder (all sizes from :class:`PythiaConfig`).

Per layer, attention and MLP read the same input through their own LayerNorms and are
added in parallel: x + attn(ln1(x)) + mlp(ln2(x)). Rotary positions cover only the first
``rotary_pct`` of each head; the output embedding is separate from the input one.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from c2s_jax.models import decoder, layers
from c2s_jax.models.output import Unembedding


@dataclasses.dataclass(frozen=True)
class PythiaConfig:
    """GPT-NeoX hyperparameters as used by the Pythia suite."""

    vocab_size: int
    d_model: int
    num_layers: int
    num_heads: int
    mlp_dim: int
    rotary_pct: float = 0.25
    rope_base: float = 10_000.0
    norm_eps: float = 1e-5
    init_std: float = 0.02
    dtype: str = "bfloat16"
    param_dtype: str = "float32"
    remat: str = "none"
    # False unrolls the layers: faster steps for small models, compile time grows with depth.
    scan_layers: bool = True
    # How full sequences are attended: 'auto' (splash on a TPU, dot elsewhere), 'dot' or
    # 'splash' (see c2s_jax.models.layers.Attention).
    attention: str = "auto"
    # Positions whose [B, chunk, V] float32 logits a loss forms at a time (the largest
    # divisor of the length not above it; see c2s_jax.models.output.target_scores).
    logits_chunk: int = 512

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @property
    def num_kv_heads(self) -> int:
        return self.num_heads

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.rotary_pct)

    @property
    def layer_windows(self) -> tuple[int, ...]:
        """Per-layer attention window: 0 (global) everywhere."""
        return (0,) * self.num_layers


class PythiaBlock(nnx.Module):
    """One GPT-NeoX layer with parallel attention and MLP residual branches."""

    def __init__(self, cfg: PythiaConfig, *, rngs: nnx.Rngs):
        param_dtype = jnp.dtype(cfg.param_dtype)
        norm = dict(eps=cfg.norm_eps, param_dtype=param_dtype, rngs=rngs)
        weights = dict(
            init_std=cfg.init_std, dtype=jnp.dtype(cfg.dtype), param_dtype=param_dtype, rngs=rngs
        )
        self.attn_norm = layers.LayerNorm(cfg.d_model, **norm)
        self.attn = layers.Attention(
            d_model=cfg.d_model,
            num_heads=cfg.num_heads,
            num_kv_heads=cfg.num_heads,
            head_dim=cfg.head_dim,
            query_scale=cfg.head_dim**-0.5,
            rotary_dim=cfg.rotary_dim,
            rope_base=cfg.rope_base,
            logit_softcap=None,
            use_bias=True,
            attention=cfg.attention,
            **weights,
        )
        self.mlp_norm = layers.LayerNorm(cfg.d_model, **norm)
        self.mlp = layers.GeluMLP(cfg.d_model, cfg.mlp_dim, **weights)

    def __call__(self, x_BTD, layout, window, kv):
        attn_BTD, kv = self.attn(self.attn_norm(x_BTD), layout, window, kv)
        return x_BTD + attn_BTD + self.mlp(self.mlp_norm(x_BTD)), kv


class Pythia(decoder.DecoderLM):
    """Pythia causal language model. ``model(tokens_BT)`` returns float32 logits [B, T, V]."""

    def __init__(self, cfg: PythiaConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        param_dtype = jnp.dtype(cfg.param_dtype)
        normal = nnx.initializers.normal(cfg.init_std)
        V, D = cfg.vocab_size, cfg.d_model
        self.embed = layers.param(rngs, normal, (V, D), ("vocab", "embed"), param_dtype)
        self.layers = decoder.stack_layers(lambda r: PythiaBlock(cfg, rngs=r), cfg.num_layers, rngs)
        self.final_norm = layers.LayerNorm(D, eps=cfg.norm_eps, param_dtype=param_dtype, rngs=rngs)
        self.unembed = layers.param(rngs, normal, (D, V), ("embed", "vocab"), param_dtype)

    def embed_tokens(self, tokens_BT: jax.Array) -> jax.Array:
        return layers.embed_lookup(self.embed[...], tokens_BT, jnp.dtype(self.config.dtype))

    def unembedding(self) -> Unembedding:
        return Unembedding(
            self.unembed[...], "btd,dv->btv", (None, "vocab"), None, self.config.dtype
        )
