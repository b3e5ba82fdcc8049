"""What the decoder families share: the stack of layers, how it runs (scanned or
unrolled, with a remat policy), and the language-model call around it.

Shape letters as in :mod:`c2s_jax.models.layers`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
from flax import nnx

from c2s_jax.models.einsum import PROJECTION
from c2s_jax.models.layers import BTD, KVCache, TokenLayout, token_layout
from c2s_jax.models.output import target_scores
from c2s_jax.parallel import constrain, pin_gradient

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
    windows: tuple[int, ...],
    *,
    positions: jax.Array | None,
    segment_ids: jax.Array | None,
    cache: KVCache | None,
    remat: str,
    scan: bool = True,
) -> tuple[jax.Array, KVCache | None]:
    """Runs the stacked layers in order.

    Each layer is called as ``layer(x_BTD, layout, window, kv)`` with its own (static)
    entry of ``windows`` and its slice of the cache, and returns ``(x_BTD, kv)``.
    ``positions`` and ``segment_ids`` are as in
    :func:`~c2s_jax.models.layers.token_layout`; ``remat`` names a policy in
    :data:`REMAT_POLICIES`, applied to each layer.

    Without a cache (training, scoring), with ``scan``, the compiled program loops over
    blocks of layers, so compile time does not grow with depth. A block is one period of
    the window pattern (Gemma-2: a sliding layer, then a global one), so every layer
    inside it keeps its window as a constant and attention can skip what the window
    excludes. Without ``scan`` XLA gets the layers unrolled and the backward pass reads
    activations directly instead of slicing them out of per-layer stacks, which makes a
    step of a small model markedly faster on a CPU at the price of compile time
    proportional to depth.

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
        return _run_layer_list(layers, x_BTD, windows, layout, cache)

    graphdef, state = nnx.split(stack)
    # Each weight's logical axes without the stack's leading `layers` axis.
    axes = jax.tree.map(
        lambda spec: tuple(spec)[1:],
        nnx.get_partition_spec(state),
        is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec),
    )

    def layer(params, x_BTD, window):
        # Gradients land on each weight's own shards; the layer's containers are rebuilt
        # here, at the trace level of the loop body.
        params = jax.tree.map(pin_gradient, params, axes)
        return nnx.merge(graphdef, params)(constrain(x_BTD, BTD), layout, window, None)[0]

    if remat != "none":
        layer = jax.checkpoint(
            layer, policy=REMAT_POLICIES[remat], prevent_cse=False, static_argnums=(2,)
        )
    if not scan:
        for index, window in enumerate(windows):
            x_BTD = layer(jax.tree.map(lambda a, i=index: a[i], state), x_BTD, window)
        return x_BTD, None
    period = window_period(windows)
    blocks = jax.tree.map(lambda a: a.reshape(-1, period, *a.shape[1:]), state)

    def block(x_BTD, params):
        for offset in range(period):
            x_BTD = layer(jax.tree.map(lambda a, j=offset: a[j], params), x_BTD, windows[offset])
        return x_BTD, None

    return jax.lax.scan(block, x_BTD, blocks)[0], None


def window_period(windows: tuple[int, ...]) -> int:
    """The shortest p dividing the depth such that layer i's window is layer (i mod p)'s."""
    L = len(windows)
    return next(
        p
        for p in range(1, L + 1)
        if L % p == 0 and all(w == windows[i % p] for i, w in enumerate(windows))
    )


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
    windows: tuple[int, ...],
    layout: TokenLayout,
    cache: KVCache | None,
) -> tuple[jax.Array, KVCache | None]:
    """Runs separate layer modules one after another (inference: no remat), each with its
    own cache buffers."""
    new_k, new_v = [], []
    for index, layer in enumerate(layers):
        kv = None if cache is None else (cache.k[index], cache.v[index])
        x_BTD, kv = layer(x_BTD, layout, windows[index], kv)
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
    ``embed_tokens(tokens_BT) -> x_BTD`` (compute dtype) and ``unembedding()``, its output
    layer (:class:`~c2s_jax.models.output.Unembedding`) over final-normed activations.
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
            cfg.layer_windows,
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
        logits_BTV = self.logits(x_BTD)
        return logits_BTV if cache is None else (logits_BTV, new_cache)

    def logits(self, x_BTD: jax.Array) -> jax.Array:
        """float32 logits [B, T, V] of final-normed hidden states [B, T, D]."""
        return self.unembedding()(x_BTD)

    def target_scores(
        self,
        tokens_BT: jax.Array,
        targets_BT: jax.Array,
        *,
        positions: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """(logit of each of ``targets_BT`` [B, T], log-normalizer [B, T]), float32, after
        ``tokens_BT``, without the whole [B, T, V] logits (see
        :func:`c2s_jax.models.output.target_scores`; ``config.logits_chunk`` positions at
        a time). The target's log-probability is their difference."""
        x_BTD, _ = self.hidden_states(tokens_BT, positions=positions, segment_ids=segment_ids)
        return target_scores(x_BTD, self.unembedding(), targets_BT, self.config.logits_chunk)
