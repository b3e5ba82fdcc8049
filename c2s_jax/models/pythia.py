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

from c2s_jax.models import layers


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

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @property
    def num_kv_heads(self) -> int:
        return self.num_heads

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.rotary_pct)


class PythiaBlock(nnx.Module):
    """One GPT-NeoX layer with parallel attention and MLP residual branches."""

    def __init__(self, cfg: PythiaConfig, *, rngs: nnx.Rngs):
        dtype, param_dtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
        norm = dict(eps=cfg.norm_eps, param_dtype=param_dtype, rngs=rngs)
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
            init_std=cfg.init_std,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.mlp_norm = layers.LayerNorm(cfg.d_model, **norm)
        self.mlp = layers.GeluMLP(
            cfg.d_model,
            cfg.mlp_dim,
            init_std=cfg.init_std,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )

    def __call__(self, x_BTD, layout, window, kv):
        attn_BTD, kv = self.attn(self.attn_norm(x_BTD), layout, window, kv)
        return x_BTD + attn_BTD + self.mlp(self.mlp_norm(x_BTD)), kv


class Pythia(nnx.Module):
    """Pythia causal language model. ``model(tokens_BT)`` returns float32 logits [B, T, V]."""

    def __init__(self, cfg: PythiaConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        param_dtype = jnp.dtype(cfg.param_dtype)
        normal = nnx.initializers.normal(cfg.init_std)
        V, D = cfg.vocab_size, cfg.d_model
        self.embed = layers.param(rngs, normal, (V, D), ("vocab", "embed"), param_dtype)
        self.layers = layers.stack_layers(lambda r: PythiaBlock(cfg, rngs=r), cfg.num_layers, rngs)
        self.final_norm = layers.LayerNorm(D, eps=cfg.norm_eps, param_dtype=param_dtype, rngs=rngs)
        self.unembed = layers.param(rngs, normal, (D, V), ("embed", "vocab"), param_dtype)

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
        x_BTD = jnp.take(self.embed[...], tokens_BT, axis=0).astype(dtype)
        x_BTD, cache = layers.run_layers(
            self.layers,
            x_BTD,
            jnp.zeros((cfg.num_layers,), jnp.int32),
            positions=positions,
            segment_ids=segment_ids,
            cache=cache,
            remat=cfg.remat,
        )
        x_BTD = self.final_norm(x_BTD)
        logits_BTV = jnp.einsum(
            "btd,dv->btv",
            x_BTD,
            self.unembed[...].astype(dtype),
            preferred_element_type=jnp.float32,
        )
        return logits_BTV if cache is None else (logits_BTV, cache)
