"""Two-operand einsums whose products and gradients suit XLA's CPU matmuls.

XLA's CPU dot wants each operand's contracted axes together at one end (for its left
operand: innermost) and copies an operand transposed when they are not. The copy is
cheap when XLA makes it alone, but it is usually fused into the elementwise op that
produces the operand, and that loop then strides through memory. Differentiated as plain
einsums, every weight gradient puts the output gradient on the left, contracting its
outer (token) axes, so the [tokens, vocab] gradient of the unembedding, the [tokens,
hidden] one of an MLP and the [heads, queries, keys] one of the attention scores would
all be copied that way; left to itself XLA also multiplies the attention probabilities by
the values transposed. Such copies take a large share of a small model's training step.

Here, on the CPU, each product and gradient is contracted in the operand order that
copies the fewest elements, and a result that comes out in another axis order is
transposed on its own. Other platforms (the one :func:`c2s_jax.parallel.target_platform`
names while the step is traced) get a plain einsum and its gradient, which the TPU and GPU
compilers lay out themselves and the stock remat policies see as a dot.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from c2s_jax.parallel import target_platform

# The checkpoint name of every :func:`project` output.
PROJECTION = "projection"


def einsum(spec: str, a: jax.Array, b: jax.Array, out_dtype: jnp.dtype | None = None) -> jax.Array:
    """``jnp.einsum(spec, a, b, preferred_element_type=out_dtype)``, with the product and
    both gradients contracted for the CPU as the module describes."""
    if target_platform() != "cpu":
        return jnp.einsum(spec, a, b, preferred_element_type=out_dtype)
    return _einsum(spec, a, b, out_dtype)


def project(spec: str, x: jax.Array, w: jax.Array, out_dtype: jnp.dtype | None = None) -> jax.Array:
    """:func:`einsum` of activations ``x`` and a weight ``w``, named :data:`PROJECTION` so
    that the ``"dots"`` remat policy keeps its output like any other matmul's (the custom
    gradient hides the dot from the stock policy)."""
    return checkpoint_name(einsum(spec, x, w, out_dtype), PROJECTION)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 3))
def _einsum(spec, a, b, out_dtype):
    inputs, out = spec.split("->")
    a_axes, b_axes = inputs.split(",")
    return _contract(a, a_axes, b, b_axes, out, out_dtype)


def _einsum_fwd(spec, a, b, out_dtype):
    return _einsum(spec, a, b, out_dtype), (a, b)


def _einsum_bwd(spec, out_dtype, residuals, g):
    a, b = residuals
    inputs, out = spec.split("->")
    a_axes, b_axes = inputs.split(",")
    da = _contract(g, out, b, b_axes, a_axes)
    db = _contract(g, out, a, a_axes, b_axes)
    return da.astype(a.dtype), db.astype(b.dtype)


_einsum.defvjp(_einsum_fwd, _einsum_bwd)


def _contract(
    x: jax.Array,
    x_axes: str,
    y: jax.Array,
    y_axes: str,
    target: str,
    out_dtype: jnp.dtype | None = None,
) -> jax.Array:
    """``jnp.einsum(f"{x_axes},{y_axes}->{target}", x, y)`` as :func:`_contract_cpu` lays
    it out."""
    return _contract_cpu(x_axes, y_axes, target, out_dtype, x, y)


def _contract_cpu(x_axes, y_axes, target, out_dtype, x, y):
    """The contraction as one dot whose operands and result XLA need not copy.

    The dot's left operand must hold [batch, kept, contracted] axes and its right one
    [batch, contracted, kept] or [batch, kept, contracted]; its result comes as [batch,
    left kept, right kept]. Of the two operand orders, the one that moves fewer elements
    is used; operands and a result that are not already laid out so are transposed on
    their own, behind barriers that keep XLA from fusing the transposes into the loops
    that produce the operands or from turning a result transpose back into operand ones.
    """
    sizes = dict(zip(x_axes, x.shape, strict=True)) | dict(zip(y_axes, y.shape, strict=True))
    batch = "".join(c for c in target if c in x_axes and c in y_axes)
    contracted = {c for c in x_axes if c not in target}

    def kept(order: str, axes: str) -> str:
        return "".join(c for c in order if c in axes and c in target and c not in batch)

    def plan(lhs_axes: str, rhs_axes: str) -> tuple[int, str, str, str]:
        lhs_ok = _holds(lhs_axes, batch, contracted, inner_only=True)
        rhs_ok = _holds(rhs_axes, batch, contracted, inner_only=False)
        # The contracted axes in the order of an operand that stays as it is.
        summed = "".join(
            c for c in (rhs_axes if rhs_ok and not lhs_ok else lhs_axes) if c in contracted
        )
        lhs_layout = lhs_axes if lhs_ok else batch + kept(target, lhs_axes) + summed
        rhs_layout = rhs_axes if rhs_ok else batch + summed + kept(target, rhs_axes)
        order = batch + kept(lhs_layout, lhs_axes) + kept(rhs_layout, rhs_axes)
        moved = [
            axes
            for axes, ok in ((lhs_axes, lhs_ok), (rhs_axes, rhs_ok), (order, order == target))
            if not ok
        ]
        return sum(_size(axes, sizes) for axes in moved), lhs_layout, rhs_layout, order

    candidates = [
        (*plan(lhs_axes, rhs_axes), lhs, lhs_axes, rhs, rhs_axes)
        for lhs, lhs_axes, rhs, rhs_axes in ((x, x_axes, y, y_axes), (y, y_axes, x, x_axes))
    ]
    _, lhs_layout, rhs_layout, order, lhs, lhs_axes, rhs, rhs_axes = min(
        candidates, key=lambda candidate: candidate[0]
    )
    spec = f"{lhs_layout},{rhs_layout}->{order}"
    result = jnp.einsum(
        spec,
        _transposed(lhs, lhs_axes, lhs_layout),
        _transposed(rhs, rhs_axes, rhs_layout),
        preferred_element_type=out_dtype,
    )
    return _transposed(result, order, target)


def _holds(axes: str, batch: str, contracted: set[str], *, inner_only: bool) -> bool:
    """Whether ``axes`` are the batch axes, then the others with the contracted ones
    together at the inner end (or, unless ``inner_only``, at the outer end)."""
    rest = axes[len(batch) :]
    n = len(contracted)
    ends = [set(rest[len(rest) - n :])] + ([] if inner_only else [set(rest[:n])])
    return axes.startswith(batch) and contracted in ends


def _size(axes: str, sizes: dict[str, int]) -> int:
    return math.prod(sizes[c] for c in axes)


def _transposed(x: jax.Array, axes: str, layout: str) -> jax.Array:
    """``x`` (axes ``axes``) with axes ``layout``, as a transpose of its own."""
    if axes == layout:
        return x
    return jnp.einsum(f"{axes}->{layout}", jax.lax.optimization_barrier(x))
