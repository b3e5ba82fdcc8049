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

from c2s_jax.models import layers


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

    @property
    def layer_windows(self) -> tuple[int, ...]:
        """Per-layer attention window: ``sliding_window`` on even layers, 0 (global) on odd."""
        return tuple(self.sliding_window if i % 2 == 0 else 0 for i in range(self.num_layers))


class Gemma2Block(nnx.Module):
    """One decoder layer: normed attention and normed GeGLU, each with a post-norm."""

    def __init__(self, cfg: Gemma2Config, *, rngs: nnx.Rngs):
        dtype, param_dtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
        norm = dict(eps=cfg.norm_eps, param_dtype=param_dtype, rngs=rngs)
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
            init_std=cfg.init_std,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.post_attn_norm = layers.RMSNorm(cfg.d_model, **norm)
        self.pre_mlp_norm = layers.RMSNorm(cfg.d_model, **norm)
        self.mlp = layers.GeGLU(
            cfg.d_model,
            cfg.mlp_dim,
            init_std=cfg.init_std,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.post_mlp_norm = layers.RMSNorm(cfg.d_model, **norm)

    def __call__(self, x_BTD, layout, window, kv):
        h_BTD, kv = self.attn(self.pre_attn_norm(x_BTD), layout, window, kv)
        x_BTD = x_BTD + self.post_attn_norm(h_BTD)
        x_BTD = x_BTD + self.post_mlp_norm(self.mlp(self.pre_mlp_norm(x_BTD)))
        return x_BTD, kv


class Gemma2(nnx.Module):
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
        self.layers = layers.stack_layers(lambda r: Gemma2Block(cfg, rngs=r), cfg.num_layers, rngs)
        self.final_norm = layers.RMSNorm(
            cfg.d_model, eps=cfg.norm_eps, param_dtype=param_dtype, rngs=rngs
        )

    def init_cache(self, batch: int, max_len: int, dtype: str | None = None) -> layers.KVCache:
        """An empty KV cache of ``max_len`` slots (default dtype: the compute dtype)."""
        return layers.KVCache.init(self.config, batch, max_len, dtype)

    def __call__(
        self,
        tokens_BT: jax.Array,
        *,
        positions: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
        cache: layers.KVCache | None = None,
    ) -> jax.Array | tuple[jax.Array, layers.KVCache]:
        """Logits [B, T, V] (float32) for int ``tokens_BT``.

        ``positions`` [B, T] and ``segment_ids`` [B, T] (0 = padding) describe packed or
        padded rows; tokens only attend within their segment. With ``cache`` the tokens
        continue the cached sequence and the result is ``(logits, updated_cache)``.
        """
        cfg = self.config
        dtype = jnp.dtype(cfg.dtype)
        # The multiplier is rounded to the activation dtype before use, as in the reference.
        scale = jnp.asarray(cfg.d_model**0.5, dtype)
        x_BTD = jnp.take(self.embed[...], tokens_BT, axis=0).astype(dtype) * scale
        x_BTD, cache = layers.run_layers(
            self.layers,
            x_BTD,
            jnp.asarray(cfg.layer_windows, jnp.int32),
            positions=positions,
            segment_ids=segment_ids,
            cache=cache,
            remat=cfg.remat,
        )
        x_BTD = self.final_norm(x_BTD)
        logits_BTV = jnp.einsum(
            "btd,vd->btv",
            x_BTD,
            self.embed[...].astype(dtype),
            preferred_element_type=jnp.float32,
        )
        logits_BTV = layers.softcap(logits_BTV, cfg.final_logit_softcap)
        return logits_BTV if cache is None else (logits_BTV, cache)
