"""What the decoder families share: the stack of layers, how it runs (scanned or
unrolled, with a remat policy), and the language-model call around it.

Shape letters as in :mod:`c2s_jax.models.layers`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from c2s_jax.models.einsum import PROJECTION
from c2s_jax.models.layers import BTD, KVCache, TokenLayout, token_layout
from c2s_jax.parallel import constrain

REMAT_POLICIES: dict[str, Callable[..., bool] | None] = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    # Matmul outputs: the attention einsums, and the projections (whose custom gradient
    # hides their dot from the stock policy).
    "dots": jax.checkpoint_policies.save_from_both_policies(
        jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
        jax.checkpoint_policies.save_only_these_names(PROJECTION),
    ),
}


def stack_layers(
    make_layer: Callable[[nnx.Rngs], nnx.Module], num_layers: int, rngs: nnx.Rngs
) -> nnx.Module:
    """``num_layers`` independently initialised layers as one module whose parameters
    have a leading ``layers`` axis, ready for :func:`run_layers`."""

    @nnx.split_rngs(splits=num_layers)
    @nnx.vmap(in_axes=0, out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
    def make(layer_rngs: nnx.Rngs) -> nnx.Module:
        return make_layer(layer_rngs)

    return make(rngs)


def run_layers(
    stack: nnx.Module,
    x_BTD: jax.Array,
    windows_L: jax.Array,
    *,
    positions: jax.Array | None,
    segment_ids: jax.Array | None,
    cache: KVCache | None,
    remat: str,
    scan: bool = True,
) -> tuple[jax.Array, KVCache | None]:
    """Runs the stacked layers in order.

    Each layer is called as ``layer(x_BTD, layout, window, kv)`` with its slice of
    ``windows_L`` and of the cache, and returns ``(x_BTD, kv)``. ``positions`` and
    ``segment_ids`` are as in :func:`~c2s_jax.models.layers.token_layout`; ``remat``
    names a policy in :data:`REMAT_POLICIES`.

    Without a cache (training, scoring) the layers run under one traced body. With
    ``scan`` the compiled program loops over the layers, so compile time does not grow
    with depth. Without it XLA gets the layers unrolled: each layer's window becomes a
    constant and the backward pass reads activations directly instead of slicing them out
    of per-layer stacks, which makes a step of a small model markedly faster on a CPU at
    the price of compile time proportional to depth.

    With a cache (inference), or when ``stack`` is already an :class:`nnx.List` from
    :func:`unstack_layers`, the layers run one after another, each on its own parameters
    and cache buffers, which are then updated in place. Inside a decoding loop a scan
    would copy every layer's weights and cache in and out of the stacks on every step;
    unstacked once before the loop (see :meth:`DecoderLM.unstacked`), nothing is copied.

    Returns the output and the updated cache (None without one).
    """
    if remat not in REMAT_POLICIES:
        raise ValueError(f"unknown remat policy {remat!r}; choose from {list(REMAT_POLICIES)}")
    B, T, _ = x_BTD.shape
    layout, cache = token_layout(B, T, positions, segment_ids, cache)
    if cache is not None or isinstance(stack, nnx.List):
        layers = stack if isinstance(stack, nnx.List) else unstack_layers(stack)
        return _run_layer_list(layers, x_BTD, windows_L, layout, cache)

    def body(layer, x_BTD, window):
        return layer(constrain(x_BTD, BTD), layout, window, None)[0]

    if remat != "none":
        body = nnx.remat(body, policy=REMAT_POLICIES[remat], prevent_cse=False)
    scanned = nnx.scan(
        body, in_axes=(0, nnx.Carry, 0), out_axes=nnx.Carry, unroll=1 if scan else True
    )
    return scanned(stack, x_BTD, windows_L), None


def unstack_layers(stack: nnx.Module) -> nnx.List:
    """The layers of a :func:`stack_layers` stack as separate modules, each holding its own
    slice of the stacked parameters."""
    graphdef, state = nnx.split(stack)
    num_layers = jax.tree.leaves(state)[0].shape[0]
    return nnx.List(
        nnx.merge(graphdef, jax.tree.map(lambda a, i=i: a[i], state)) for i in range(num_layers)
    )


def _run_layer_list(
    layers: nnx.List,
    x_BTD: jax.Array,
    windows_L: jax.Array,
    layout: TokenLayout,
    cache: KVCache | None,
) -> tuple[jax.Array, KVCache | None]:
    """Runs separate layer modules one after another (inference: no remat), each with its
    own cache buffers."""
    new_k, new_v = [], []
    for index, layer in enumerate(layers):
        kv = None if cache is None else (cache.k[index], cache.v[index])
        x_BTD, kv = layer(x_BTD, layout, windows_L[index], kv)
        if kv is not None:
            new_k.append(kv[0])
            new_v.append(kv[1])
    if cache is not None:
        cache = dataclasses.replace(cache, k=tuple(new_k), v=tuple(new_v))
    return x_BTD, cache


class DecoderLM(nnx.Module):
    """A causal language model: embed, run the layer stack, normalise, project to logits.

    A family sets ``config`` (with ``layer_windows``, ``remat`` and ``scan_layers``),
    ``layers`` (from :func:`stack_layers`) and ``final_norm``, and defines
    ``embed_tokens(tokens_BT) -> x_BTD`` (compute dtype) and ``logits(x_BTD) -> logits_BTV``
    (float32, from the final-normed activations).
    """

    config: Any
    layers: nnx.Module
    final_norm: nnx.Module

    def unstacked(self) -> DecoderLM:
        """A model with the same parameters whose layers are separate modules
        (:func:`unstack_layers`): what a decoding loop should call, so that slicing the
        stacked parameters happens once, outside the loop."""
        model = nnx.merge(*nnx.split(self))
        model.layers = unstack_layers(self.layers)
        return model

    def init_cache(self, batch: int, max_len: int, dtype: str | None = None) -> KVCache:
        """An empty KV cache of ``max_len`` slots (default dtype: the compute dtype)."""
        return KVCache.init(self.config, batch, max_len, dtype)

    def hidden_states(
        self,
        tokens_BT: jax.Array,
        *,
        positions: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
        cache: KVCache | None = None,
    ) -> tuple[jax.Array, KVCache | None]:
        """The final-normed hidden states [B, T, D] (compute dtype) that the unembedding
        reads, and the updated cache (None without one). Arguments as in ``__call__``."""
        cfg = self.config
        x_BTD, cache = run_layers(
            self.layers,
            constrain(self.embed_tokens(tokens_BT), BTD),
            jnp.asarray(cfg.layer_windows, jnp.int32),
            positions=positions,
            segment_ids=segment_ids,
            cache=cache,
            remat=cfg.remat,
            scan=cfg.scan_layers,
        )
        return self.final_norm(x_BTD), cache

    def __call__(
        self,
        tokens_BT: jax.Array,
        *,
        positions: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
        cache: KVCache | None = None,
    ) -> jax.Array | tuple[jax.Array, KVCache]:
        """Logits [B, T, V] (float32) for int ``tokens_BT``.

        ``positions`` [B, T] and ``segment_ids`` [B, T] (0 = padding) describe packed or
        padded rows; tokens only attend within their segment. With ``cache`` the tokens
        continue the cached sequence and the result is ``(logits, updated_cache)``.
        """
        x_BTD, new_cache = self.hidden_states(
            tokens_BT, positions=positions, segment_ids=segment_ids, cache=cache
        )
        logits_BTV = constrain(self.logits(x_BTD), ("batch", "length", "vocab"))
        return logits_BTV if cache is None else (logits_BTV, new_cache)
