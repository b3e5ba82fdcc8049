"""Gemma-2 decoder (all sizes from :class:`Gemma2Config`).

Per layer: x += post_norm(attn(pre_norm(x))); x += post_norm(geglu(pre_norm(x))). Attention
uses grouped key/value heads, queries scaled by query_pre_attn_scalar**-0.5, logits
softcapped at 50 before masking, and a sliding window on even layers (global on odd).
Embeddings are tied, inputs are multiplied by sqrt(d_model), and the final logits are
softcapped at 30.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from c2s_jax.models import decoder, layers
from c2s_jax.models.output import Unembedding


@dataclasses.dataclass(frozen=True)
class Gemma2Config:
    """Gemma-2 hyperparameters; defaults are those shared by every released size."""

    vocab_size: int
    d_model: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    mlp_dim: int
    query_pre_attn_scalar: float
    sliding_window: int = 4096
    attn_logit_softcap: float | None = 50.0
    final_logit_softcap: float | None = 30.0
    rope_base: float = 10_000.0
    norm_eps: float = 1e-6
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
    def layer_windows(self) -> tuple[int, ...]:
        """Per-layer attention window: ``sliding_window`` on even layers, 0 (global) on odd."""
        return tuple(self.sliding_window if i % 2 == 0 else 0 for i in range(self.num_layers))


class Gemma2Block(nnx.Module):
    """One decoder layer: normed attention and normed GeGLU, each with a post-norm."""

    def __init__(self, cfg: Gemma2Config, *, rngs: nnx.Rngs):
        param_dtype = jnp.dtype(cfg.param_dtype)
        norm = dict(eps=cfg.norm_eps, param_dtype=param_dtype, rngs=rngs)
        weights = dict(
            init_std=cfg.init_std, dtype=jnp.dtype(cfg.dtype), param_dtype=param_dtype, rngs=rngs
        )
        self.pre_attn_norm = layers.RMSNorm(cfg.d_model, **norm)
        self.attn = layers.Attention(
            d_model=cfg.d_model,
            num_heads=cfg.num_heads,
            num_kv_heads=cfg.num_kv_heads,
            head_dim=cfg.head_dim,
            query_scale=cfg.query_pre_attn_scalar**-0.5,
            rotary_dim=cfg.head_dim,
            rope_base=cfg.rope_base,
            logit_softcap=cfg.attn_logit_softcap,
            use_bias=False,
            attention=cfg.attention,
            **weights,
        )
        self.post_attn_norm = layers.RMSNorm(cfg.d_model, **norm)
        self.pre_mlp_norm = layers.RMSNorm(cfg.d_model, **norm)
        self.mlp = layers.GeGLU(cfg.d_model, cfg.mlp_dim, **weights)
        self.post_mlp_norm = layers.RMSNorm(cfg.d_model, **norm)

    def __call__(self, x_BTD, layout, window, kv):
        h_BTD, kv = self.attn(self.pre_attn_norm(x_BTD), layout, window, kv)
        x_BTD = x_BTD + self.post_attn_norm(h_BTD)
        x_BTD = x_BTD + self.post_mlp_norm(self.mlp(self.pre_mlp_norm(x_BTD)))
        return x_BTD, kv


class Gemma2(decoder.DecoderLM):
    """Gemma-2 causal language model. ``model(tokens_BT)`` returns float32 logits [B, T, V]."""

    def __init__(self, cfg: Gemma2Config, *, rngs: nnx.Rngs):
        self.config = cfg
        param_dtype = jnp.dtype(cfg.param_dtype)
        self.embed = layers.param(
            rngs,
            nnx.initializers.normal(cfg.init_std),
            (cfg.vocab_size, cfg.d_model),
            ("vocab", "embed"),
            param_dtype,
        )
        self.layers = decoder.stack_layers(lambda r: Gemma2Block(cfg, rngs=r), cfg.num_layers, rngs)
        self.final_norm = layers.RMSNorm(
            cfg.d_model, eps=cfg.norm_eps, param_dtype=param_dtype, rngs=rngs
        )

    def embed_tokens(self, tokens_BT: jax.Array) -> jax.Array:
        dtype = jnp.dtype(self.config.dtype)
        # The multiplier is rounded to the activation dtype before use, as in the reference.
        scale = jnp.asarray(self.config.d_model**0.5, dtype)
        return layers.embed_lookup(self.embed[...], tokens_BT, dtype) * scale

    def unembedding(self) -> Unembedding:
        # Tied: the input embedding, read as [V, D].
        cfg = self.config
        return Unembedding(
            self.embed[...], "btd,vd->btv", ("vocab", None), cfg.final_logit_softcap, cfg.dtype
        )
