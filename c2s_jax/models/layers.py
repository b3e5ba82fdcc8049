"""Building blocks shared by the decoder families: norms, rotary embeddings, masked
attention over a KV cache and feed-forward layers.

Shape letters: B batch, T query length, S key length (the cache length when decoding),
D d_model, N query heads, K key/value heads, G query heads per key/value head, H head_dim,
F feed-forward width, V vocabulary, L layers.

Every parameter carries logical axis names (``embed``, ``mlp``, ``heads``, ``kv_heads``,
``head_dim``, ``vocab``; the layer stack adds ``layers``). They are metadata only:
creating a model never needs a mesh, and whoever places the parameters maps the names to
mesh axes. Activations are pinned by logical names too (:func:`c2s_jax.parallel.constrain`,
a no-op unless a step traces the model inside ``parallel.activation_sharding``): rows over
``batch``, heads and hidden units like their weights, and the model dimension replicated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from c2s_jax import parallel
from c2s_jax.models import splash
from c2s_jax.models.einsum import einsum, project
from c2s_jax.parallel import constrain

Initializer = Callable[..., jax.Array]

# A finite stand-in for -inf: a query whose keys are all masked (padding) then gets a
# uniform softmax instead of NaNs that would poison gradients through the whole batch.
_MASKED_LOGIT = float(jnp.finfo(jnp.float32).min)

# Logical axes of the activations every layer passes on, [B, T, D], and of feed-forward
# hidden units, [B, T, F].
BTD = ("batch", "length", None)
BTF = ("batch", "length", "mlp")


def param(
    rngs: nnx.Rngs,
    init: Initializer,
    shape: tuple[int, ...],
    axes: tuple[str, ...],
    dtype: jnp.dtype,
) -> nnx.Param:
    """A parameter of ``shape`` initialised by ``init`` and tagged with logical ``axes``."""
    # eager_sharding=False keeps the names as metadata so the model builds without a mesh.
    return nnx.Param(init(rngs.params(), shape, dtype), out_sharding=axes, eager_sharding=False)


def softcap(x: jax.Array, cap: float | None) -> jax.Array:
    """``cap * tanh(x / cap)``: bounds ``x`` to (-cap, cap); identity when ``cap`` is None."""
    if cap is None:
        return x
    return cap * jnp.tanh(x / cap)


def embed_lookup(table_VD: jax.Array, tokens_BT: jax.Array, dtype: jnp.dtype) -> jax.Array:
    """[B, T, D] rows of ``table_VD`` for int ``tokens_BT``, cast to ``dtype``.

    While a step is traced under :func:`c2s_jax.parallel.activation_sharding` with the
    table's model dimension split over mesh axes that also split the batch (FSDP), the
    table is never gathered: each device gathers the token ids of the devices it shares
    those axes with, looks them all up in its own slice of the model dimension (and of the
    vocabulary, summing over the vocabulary's axes), and one all-to-all hands every device
    the full embeddings of its own rows. Other layouts leave the gather to XLA.
    """
    active = parallel.active_sharding()
    if active is None:
        return jnp.take(table_VD, tokens_BT, axis=0).astype(dtype)
    mesh, rules = active
    table_spec = parallel.fitted_spec(
        parallel.logical_to_spec(("vocab", "embed"), rules), table_VD.shape, mesh.shape
    )
    tokens_spec = parallel.fitted_spec(
        parallel.logical_to_spec(("batch", "length"), rules), tokens_BT.shape, mesh.shape
    )
    vocab_axes, embed_axes, batch_axes = (
        parallel.spec_axes(table_spec[0]),
        parallel.spec_axes(table_spec[1]),
        parallel.spec_axes(tokens_spec[0]),
    )
    # Rows must be split over the embedding's axes last (minor), in the same order, so that
    # gathering over those axes yields contiguous blocks of rows.
    if (
        parallel.spec_axes(tokens_spec[1])
        or batch_axes[len(batch_axes) - len(embed_axes) :] != embed_axes
    ):
        return constrain(jnp.take(table_VD, tokens_BT, axis=0).astype(dtype), BTD)

    def local(table_vd, tokens_bt):
        if embed_axes:
            tokens_bt = jax.lax.all_gather(tokens_bt, embed_axes, axis=0, tiled=True)
        if vocab_axes:
            first = jax.lax.axis_index(vocab_axes) * table_vd.shape[0]
            ids_bt = tokens_bt - first
            held_bt = (ids_bt >= 0) & (ids_bt < table_vd.shape[0])
            rows_btd = jnp.take(table_vd, jnp.clip(ids_bt, 0, table_vd.shape[0] - 1), axis=0)
            rows_btd = jax.lax.psum(jnp.where(held_bt[..., None], rows_btd, 0), vocab_axes)
        else:
            rows_btd = jnp.take(table_vd, tokens_bt, axis=0)
        rows_btd = rows_btd.astype(dtype)
        if embed_axes:
            rows_btd = jax.lax.all_to_all(
                rows_btd, embed_axes, split_axis=0, concat_axis=2, tiled=True
            )
        return rows_btd

    return jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(table_spec, tokens_spec),
        out_specs=jax.sharding.PartitionSpec(tokens_spec[0], None, None),
    )(table_VD, tokens_BT)


class RMSNorm(nnx.Module):
    """``x * rsqrt(mean(x^2) + eps) * (1 + scale)``, computed in float32.

    The scale starts at zero, so a fresh norm is a plain RMS normalisation.
    """

    def __init__(self, dim: int, *, eps: float = 1e-6, param_dtype: jnp.dtype, rngs: nnx.Rngs):
        self.scale = param(rngs, nnx.initializers.zeros, (dim,), ("embed",), param_dtype)
        self.eps = eps

    def __call__(self, x_BTD: jax.Array) -> jax.Array:
        x = x_BTD.astype(jnp.float32)
        y = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + self.eps)
        return (y * (1.0 + self.scale[...].astype(jnp.float32))).astype(x_BTD.dtype)


class LayerNorm(nnx.Module):
    """LayerNorm with a learned scale and bias, computed in float32."""

    def __init__(self, dim: int, *, eps: float = 1e-5, param_dtype: jnp.dtype, rngs: nnx.Rngs):
        self.scale = param(rngs, nnx.initializers.ones, (dim,), ("embed",), param_dtype)
        self.bias = param(rngs, nnx.initializers.zeros, (dim,), ("embed",), param_dtype)
        self.eps = eps

    def __call__(self, x_BTD: jax.Array) -> jax.Array:
        x = x_BTD.astype(jnp.float32)
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        y = (x - mean) * jax.lax.rsqrt(var + self.eps)
        y = y * self.scale[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)
        return y.astype(x_BTD.dtype)


def apply_rope(
    x_BTNH: jax.Array, positions_BT: jax.Array, *, base: float, rotary_dim: int
) -> jax.Array:
    """Rotates the first ``rotary_dim`` features of each head by angle ``position * freq``.

    The rotated block is split in halves (feature i pairs with i + rotary_dim/2), the
    convention of HF ``rotate_half``; features past ``rotary_dim`` pass through unchanged
    (GPT-NeoX's partial rotary).
    """
    half = rotary_dim // 2
    inv_freq_R = 1.0 / base ** (jnp.arange(0, rotary_dim, 2, dtype=jnp.float32) / rotary_dim)
    angle_BTR = positions_BT[..., None].astype(jnp.float32) * inv_freq_R
    sin_BT1R = jnp.sin(angle_BTR)[:, :, None, :]
    cos_BT1R = jnp.cos(angle_BTR)[:, :, None, :]
    x = x_BTNH.astype(jnp.float32)
    x1, x2, rest = x[..., :half], x[..., half:rotary_dim], x[..., rotary_dim:]
    rotated = [x1 * cos_BT1R - x2 * sin_BT1R, x2 * cos_BT1R + x1 * sin_BT1R, rest]
    return jnp.concatenate(rotated, axis=-1).astype(x_BTNH.dtype)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class KVCache:
    """Keys and values of every layer for ``S`` slots, plus where each slot sits.

    Slots ``[0, end)`` are filled; empty slots have segment id 0 and so are never
    attended to by real tokens. Sliding-window layers keep all ``S`` slots and hide the
    old ones through the mask. Writing past ``S`` is not detected (XLA clamps the write):
    size the cache for prompt plus generated tokens.

    Each layer owns its own buffers, laid out key/value head before slot, so a decoding
    step writes the new slots in place and the attention products read the buffers as
    they are: no per-layer slice or transpose of the whole cache is materialized.
    """

    k: tuple[jax.Array, ...]  # L x [B, K, S, H]
    v: tuple[jax.Array, ...]  # L x [B, K, S, H]
    positions: jax.Array  # [B, S] int32
    segment_ids: jax.Array  # [B, S] int32, 0 = empty or padding
    end: jax.Array  # [] int32, number of filled slots

    @classmethod
    def init(cls, cfg: Any, batch: int, max_len: int, dtype: str | None = None) -> KVCache:
        """An empty cache of ``max_len`` slots per row for a model config ``cfg`` (any
        with ``num_layers``, ``num_kv_heads``, ``head_dim``); default dtype: ``cfg.dtype``."""
        kv_shape = (batch, cfg.num_kv_heads, max_len, cfg.head_dim)
        kv_dtype = jnp.dtype(dtype or cfg.dtype)

        def buffers() -> tuple[jax.Array, ...]:
            return tuple(jnp.zeros(kv_shape, kv_dtype) for _ in range(cfg.num_layers))

        return cls(
            k=buffers(),
            v=buffers(),
            positions=jnp.zeros((batch, max_len), jnp.int32),
            segment_ids=jnp.zeros((batch, max_len), jnp.int32),
            end=jnp.zeros((), jnp.int32),
        )


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TokenLayout:
    """Where the queries and the keys they may see sit: positions and segment ids.

    Without a cache the keys are the queries themselves. ``cache_index`` is the cache slot
    the first query's key and value are written to.
    """

    q_positions: jax.Array  # [B, T] int32
    q_segment_ids: jax.Array  # [B, T] int32
    k_positions: jax.Array  # [B, S] int32
    k_segment_ids: jax.Array  # [B, S] int32
    cache_index: jax.Array  # [] int32


def token_layout(
    B: int,
    T: int,
    positions_BT: jax.Array | None,
    segment_ids_BT: jax.Array | None,
    cache: KVCache | None,
) -> tuple[TokenLayout, KVCache | None]:
    """Fills in default positions/segments and records the new tokens' slots in the cache.

    Defaults: one segment per row (id 1) and positions counting from 0, or from the
    cache's ``end`` when decoding. Segment id 0 marks padding.
    """
    if segment_ids_BT is None:
        segment_ids_BT = jnp.ones((B, T), jnp.int32)
    start = jnp.zeros((), jnp.int32) if cache is None else cache.end
    if positions_BT is None:
        positions_BT = jnp.broadcast_to(start + jnp.arange(T, dtype=jnp.int32), (B, T))
    positions_BT = positions_BT.astype(jnp.int32)
    segment_ids_BT = segment_ids_BT.astype(jnp.int32)
    if cache is None:
        return TokenLayout(positions_BT, segment_ids_BT, positions_BT, segment_ids_BT, start), None
    k_positions_BS = jax.lax.dynamic_update_slice(cache.positions, positions_BT, (0, start))
    k_segment_ids_BS = jax.lax.dynamic_update_slice(cache.segment_ids, segment_ids_BT, (0, start))
    layout = TokenLayout(positions_BT, segment_ids_BT, k_positions_BS, k_segment_ids_BS, start)
    cache = dataclasses.replace(
        cache, positions=k_positions_BS, segment_ids=k_segment_ids_BS, end=start + T
    )
    return layout, cache


def attention_mask(layout: TokenLayout, window: jax.Array | int) -> jax.Array:
    """[B, T, S] bool: same segment, key not after the query, and within ``window``.

    ``window`` <= 0 means global attention; otherwise a query at position p sees keys at
    positions p - window + 1 .. p.
    """
    q_pos_BT1 = layout.q_positions[:, :, None]
    k_pos_B1S = layout.k_positions[:, None, :]
    same_segment = layout.q_segment_ids[:, :, None] == layout.k_segment_ids[:, None, :]
    causal = k_pos_B1S <= q_pos_BT1
    in_window = (window <= 0) | (q_pos_BT1 - k_pos_B1S < window)
    return same_segment & causal & in_window


ATTENTION_IMPLEMENTATIONS = ("auto", "dot", "splash")


class Attention(nnx.Module):
    """Multi-head attention with grouped key/value heads, rotary positions, an optional
    logit softcap, sliding windows and segment masks, reading and writing a KV cache.

    ``attention`` picks how a full sequence (training, scoring) is attended: 'dot' forms
    the scores with einsums and masks them (the path decoding with a cache always takes);
    'splash' runs the blocked TPU kernel of :mod:`c2s_jax.models.splash` (in interpret
    mode off a TPU); 'auto' takes splash on a TPU when the sequence length and head size
    suit it, dot elsewhere.
    """

    def __init__(
        self,
        *,
        d_model: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        query_scale: float,
        rotary_dim: int,
        rope_base: float,
        logit_softcap: float | None,
        use_bias: bool,
        init_std: float,
        dtype: jnp.dtype,
        param_dtype: jnp.dtype,
        rngs: nnx.Rngs,
        attention: str = "auto",
    ):
        if attention not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(
                f"attention must be one of {ATTENTION_IMPLEMENTATIONS}, not {attention!r}"
            )
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads={num_heads} is not a multiple of {num_kv_heads=}")
        D, N, K, H = d_model, num_heads, num_kv_heads, head_dim
        normal = nnx.initializers.normal(init_std)
        zeros = nnx.initializers.zeros
        self.wq = param(rngs, normal, (D, N, H), ("embed", "heads", "head_dim"), param_dtype)
        self.wk = param(rngs, normal, (D, K, H), ("embed", "kv_heads", "head_dim"), param_dtype)
        self.wv = param(rngs, normal, (D, K, H), ("embed", "kv_heads", "head_dim"), param_dtype)
        self.wo = param(rngs, normal, (N, H, D), ("heads", "head_dim", "embed"), param_dtype)
        if use_bias:
            self.bq = param(rngs, zeros, (N, H), ("heads", "head_dim"), param_dtype)
            self.bk = param(rngs, zeros, (K, H), ("kv_heads", "head_dim"), param_dtype)
            self.bv = param(rngs, zeros, (K, H), ("kv_heads", "head_dim"), param_dtype)
            self.bo = param(rngs, zeros, (D,), ("embed",), param_dtype)
        self.use_bias = use_bias
        self.query_scale = query_scale
        self.rotary_dim = rotary_dim
        self.rope_base = rope_base
        self.logit_softcap = logit_softcap
        self.dtype = dtype
        self.attention = attention

    def _uses_splash(self, length: int, head_dim: int) -> bool:
        if self.attention == "dot":
            return False
        if self.attention == "splash":
            if splash.block_size(length) is None:
                raise ValueError(
                    f"splash attention needs a sequence length divisible by 128, not {length}"
                )
            return True
        return parallel.target_platform() == "tpu" and splash.supported(length, head_dim)

    def _project(self, x_BTD: jax.Array, w: nnx.Param, b_name: str, heads: str) -> jax.Array:
        y = project("btd,dnh->btnh", x_BTD, w[...].astype(self.dtype))
        if self.use_bias:
            y = y + getattr(self, b_name)[...].astype(self.dtype)
        return constrain(y, ("batch", "length", heads, None))

    def __call__(
        self,
        x_BTD: jax.Array,
        layout: TokenLayout,
        window: jax.Array | int,
        kv: tuple[jax.Array, jax.Array] | None,
    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array] | None]:
        """Attends ``x_BTD`` to itself, or to the cache ``kv`` = (k_BKSH, v_BKSH) after
        writing the new keys/values at ``layout.cache_index``. Returns (y_BTD, kv)."""
        B, T, _ = x_BTD.shape
        x_BTD = x_BTD.astype(self.dtype)
        rope = dict(base=self.rope_base, rotary_dim=self.rotary_dim)
        q_BTNH = self._project(x_BTD, self.wq, "bq", "heads")
        q_BTNH = apply_rope(q_BTNH, layout.q_positions, **rope)
        k_BTKH = self._project(x_BTD, self.wk, "bk", "kv_heads")
        k_BTKH = apply_rope(k_BTKH, layout.q_positions, **rope)
        v_BTKH = self._project(x_BTD, self.wv, "bv", "kv_heads")
        if kv is None:
            # Training and scoring: the keys are the new tokens, as projected.
            key_axes, k_keys, v_keys = "bskh", k_BTKH, v_BTKH
        else:
            # The cache is kept head before slot: the new slots are written in place and
            # the products below read the whole cache without transposing it.
            at = (0, 0, layout.cache_index, 0)
            kv = tuple(
                constrain(
                    jax.lax.dynamic_update_slice(
                        old, new.transpose(0, 2, 1, 3).astype(old.dtype), at
                    ),
                    ("batch", "kv_heads", None, None),
                )
                for old, new in zip(kv, (k_BTKH, v_BTKH), strict=True)
            )
            key_axes, k_keys, v_keys = "bksh", kv[0], kv[1]
        k_keys, v_keys = k_keys.astype(self.dtype), v_keys.astype(self.dtype)

        if kv is None and self._uses_splash(T, q_BTNH.shape[-1]):
            out_BTNH = splash.splash_attention(
                (q_BTNH * self.query_scale).astype(self.dtype),
                k_keys,
                v_keys,
                layout.q_segment_ids,
                window=window,
                softcap=self.logit_softcap,
            )
            return self._output(out_BTNH), kv
        K = k_BTKH.shape[2]
        q_BTKGH = q_BTNH.reshape(B, T, K, -1, q_BTNH.shape[-1])
        logits_BKGTS = einsum(f"btkgh,{key_axes}->bkgts", q_BTKGH, k_keys, jnp.float32)
        logits_BKGTS = constrain(logits_BKGTS, ("batch", "kv_heads", None, "length", None))
        logits_BKGTS = softcap(logits_BKGTS * self.query_scale, self.logit_softcap)
        mask_B11TS = attention_mask(layout, window)[:, None, None]
        logits_BKGTS = jnp.where(mask_B11TS, logits_BKGTS, _MASKED_LOGIT)
        probs_BKGTS = jax.nn.softmax(logits_BKGTS, axis=-1).astype(self.dtype)
        out_BTKGH = einsum(f"bkgts,{key_axes}->btkgh", probs_BKGTS, v_keys)
        return self._output(out_BTKGH.reshape(q_BTNH.shape)), kv

    def _output(self, out_BTNH: jax.Array) -> jax.Array:
        """The heads' outputs projected back to the model dimension."""
        out_BTNH = constrain(out_BTNH, ("batch", "length", "heads", None))
        y_BTD = project("btnh,nhd->btd", out_BTNH, self.wo[...].astype(self.dtype))
        if self.use_bias:
            y_BTD = y_BTD + self.bo[...].astype(self.dtype)
        return constrain(y_BTD, BTD)


class GeGLU(nnx.Module):
    """``down(gelu_tanh(gate(x)) * up(x))`` without biases (Gemma)."""

    def __init__(
        self,
        d_model: int,
        hidden: int,
        *,
        init_std: float,
        dtype: jnp.dtype,
        param_dtype: jnp.dtype,
        rngs: nnx.Rngs,
    ):
        normal = nnx.initializers.normal(init_std)
        self.w_gate = param(rngs, normal, (d_model, hidden), ("embed", "mlp"), param_dtype)
        self.w_up = param(rngs, normal, (d_model, hidden), ("embed", "mlp"), param_dtype)
        self.w_down = param(rngs, normal, (hidden, d_model), ("mlp", "embed"), param_dtype)
        self.dtype = dtype

    def __call__(self, x_BTD: jax.Array) -> jax.Array:
        x_BTD = x_BTD.astype(self.dtype)
        gate_BTF = project("btd,df->btf", x_BTD, self.w_gate[...].astype(self.dtype))
        up_BTF = project("btd,df->btf", x_BTD, self.w_up[...].astype(self.dtype))
        h_BTF = constrain(jax.nn.gelu(gate_BTF, approximate=True) * up_BTF, BTF)
        return constrain(project("btf,fd->btd", h_BTF, self.w_down[...].astype(self.dtype)), BTD)


class GeluMLP(nnx.Module):
    """``out(gelu(in(x)))`` with biases and exact (erf) GELU (GPT-NeoX)."""

    def __init__(
        self,
        d_model: int,
        hidden: int,
        *,
        init_std: float,
        dtype: jnp.dtype,
        param_dtype: jnp.dtype,
        rngs: nnx.Rngs,
    ):
        normal = nnx.initializers.normal(init_std)
        zeros = nnx.initializers.zeros
        self.w_in = param(rngs, normal, (d_model, hidden), ("embed", "mlp"), param_dtype)
        self.b_in = param(rngs, zeros, (hidden,), ("mlp",), param_dtype)
        self.w_out = param(rngs, normal, (hidden, d_model), ("mlp", "embed"), param_dtype)
        self.b_out = param(rngs, zeros, (d_model,), ("embed",), param_dtype)
        self.dtype = dtype

    def __call__(self, x_BTD: jax.Array) -> jax.Array:
        x_BTD = x_BTD.astype(self.dtype)
        h_BTF = project("btd,df->btf", x_BTD, self.w_in[...].astype(self.dtype))
        h_BTF = jax.nn.gelu(h_BTF + self.b_in[...].astype(self.dtype), approximate=False)
        h_BTF = constrain(h_BTF, BTF)
        y_BTD = project("btf,fd->btd", h_BTF, self.w_out[...].astype(self.dtype))
        return constrain(y_BTD + self.b_out[...].astype(self.dtype), BTD)
