"""Splash attention: the blocked Pallas kernel that training and scoring use on a TPU.

The kernel (``jax.experimental.pallas.ops.tpu.splash_attention``) walks the score matrix
in blocks and skips every block its mask rules out, so a causal layer computes about half
the blocks and a sliding-window layer only those within the window; scores never exist
as a whole ``[T, S]`` array. Segment ids keep packed examples apart, and the logit softcap
is applied inside the kernel. Masks follow token indices: a segment's positions must count
up by one from its start, as packing and right-padding lay them out.

On a CPU the same kernel runs in Pallas interpret mode (for tests: slow, exact). Under
:func:`c2s_jax.parallel.activation_sharding` the kernel runs in a ``shard_map`` over the
batch and head axes, since a Pallas call is not partitioned by XLA.

XLA's cost analysis does not see inside the kernel, so each call carries the FLOPs of the
blocks its masks compute in its name scope (``attention_kernel_flops[...]``), which
:mod:`c2s_jax.plan.hlo_stats` reads back from the compiled program.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from jax.experimental.pallas.ops.tpu import splash_attention as splash
from jax.sharding import PartitionSpec

from c2s_jax import parallel

# Score-matrix tiles: the largest of these that divides the sequence length.
BLOCK_SIZES = (512, 256, 128)
# Multiply-adds x 2 per (query, key, head feature) of a computed block: forward QK^T and
# PV; the fused backward recomputes QK^T and forms dP, dV, dK and dQ.
FLOPS_PER_ENTRY = {"fwd": 4, "dkv": 10}


def block_size(length: int) -> int | None:
    """The tile the kernel uses for sequences of ``length``, or None when none divides."""
    return next((b for b in BLOCK_SIZES if length % b == 0), None)


@functools.lru_cache(maxsize=64)
def _kernel(length: int, heads: int, window: int, softcap: float | None, interpret: bool):
    """The kernel for one example's ``heads`` query heads over ``length`` tokens: causal,
    and within ``window`` keys when it is positive."""
    if window > 0:
        mask = splash.LocalMask((length, length), window_size=(window - 1, 0), offset=0)
    else:
        mask = splash.CausalMask((length, length))
    block = block_size(length)
    sizes = splash.BlockSizes(
        block_q=block,
        block_kv=block,
        block_kv_compute=block,
        block_q_dkv=block,
        block_kv_dkv=block,
        block_kv_dkv_compute=block,
        use_fused_bwd_kernel=True,
    )
    # The mask's block tables are constants, whichever trace first asks for the kernel.
    with jax.ensure_compile_time_eval():
        return splash.make_splash_mha(
            splash.MultiHeadMask([mask] * heads),
            block_sizes=sizes,
            attn_logits_soft_cap=softcap,
            head_shards=1,
            q_seq_shards=1,
            interpret=interpret,
        )


def computed_entries(kernel, heads: int, phase: str) -> int:
    """(query, key) pairs, summed over heads, in the blocks one call's ``phase`` ('fwd' or
    'dkv') computes: every block its mask does not rule out entirely."""
    info = kernel.fwd_mask_info if phase == "fwd" else kernel.dkv_mask_info
    sizes = kernel.kwargs["block_sizes"]
    block_q, block_kv = (
        (sizes.block_q, sizes.block_kv)
        if phase == "fwd"
        else (sizes.block_q_dkv, sizes.block_kv_dkv)
    )
    block_mask = np.asarray(info.block_mask)
    per_head_rows = heads // block_mask.shape[0]
    return int(np.count_nonzero(block_mask)) * per_head_rows * block_q * block_kv


def splash_attention(
    q_BTNH: jax.Array,
    k_BTKH: jax.Array,
    v_BTKH: jax.Array,
    segment_ids_BT: jax.Array,
    *,
    window: int,
    softcap: float | None,
) -> jax.Array:
    """Causal attention of (already scaled) queries over keys and values, within each
    segment and within ``window`` keys when it is positive; [B, T, N, H] out.

    Query heads are grouped over the K key/value heads (N = G x K) as in the dot path.
    """
    platform = parallel.target_platform()
    interpret = platform != "tpu"
    q_BNTH = q_BTNH.transpose(0, 2, 1, 3)
    k_BKTH = k_BTKH.transpose(0, 2, 1, 3)
    v_BKTH = v_BTKH.transpose(0, 2, 1, 3)

    def local(q_bnth, k_bkth, v_bkth, segments_bt):
        b, n, t, h = q_bnth.shape
        kernel = _kernel(t, n, int(window), softcap, interpret)
        fwd, dkv = (
            b * computed_entries(kernel, n, phase) * FLOPS_PER_ENTRY[phase] * h
            for phase in ("fwd", "dkv")
        )
        with jax.named_scope(f"attention_kernel_flops[fwd={fwd},dkv={dkv}]"):
            attend = jax.vmap(lambda q, k, v, s: kernel(q, k, v, splash.SegmentIds(s, s)))
            return attend(q_bnth, k_bkth, v_bkth, segments_bt)

    active = parallel.active_sharding()
    if active is None:
        out_BNTH = local(q_BNTH, k_BKTH, v_BKTH, segment_ids_BT)
    else:
        mesh, rules = active
        q_spec, k_spec, segments_spec = _specs(mesh, rules, q_BNTH.shape, k_BKTH.shape)
        out_BNTH = jax.shard_map(
            local,
            mesh=mesh,
            in_specs=(q_spec, k_spec, k_spec, segments_spec),
            out_specs=q_spec,
            check_vma=False,
        )(q_BNTH, k_BKTH, v_BKTH, segment_ids_BT)
    return out_BNTH.transpose(0, 2, 1, 3)


def _specs(mesh, rules, q_shape, k_shape) -> tuple[PartitionSpec, PartitionSpec, PartitionSpec]:
    """Shard-map specs of queries [B, N, T, H], keys/values [B, K, T, H] and segment ids
    [B, T]: rows over the batch axes, heads over the head axes when query and key/value
    heads split alike (so that each device keeps whole groups), else heads whole."""
    q_spec = parallel.fitted_spec(
        parallel.logical_to_spec(("batch", "heads", None, None), rules), q_shape, mesh.shape
    )
    k_spec = parallel.fitted_spec(
        parallel.logical_to_spec(("batch", "kv_heads", None, None), rules), k_shape, mesh.shape
    )
    if q_spec[1] != k_spec[1]:
        q_spec = PartitionSpec(q_spec[0], None, None, None)
        k_spec = PartitionSpec(k_spec[0], None, None, None)
    return q_spec, k_spec, PartitionSpec(q_spec[0], None)


def supported(length: int, head_dim: int) -> bool:
    """Whether the kernel takes sequences of ``length`` with heads of ``head_dim``."""
    return block_size(length) is not None and head_dim % 128 == 0
