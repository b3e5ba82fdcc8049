"""Gradient accumulation: a batch's rows split into microbatches, and a function's results
summed over them in one scanned loop.

Microbatch i holds rows i, i + n, i + 2n, ...: each device's share of the batch splits
evenly over the microbatches, so no rows move between devices. (Contiguous blocks of rows
would put a whole microbatch on a fraction of the devices.)
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def split_rows(tree: Any, n: int) -> Any:
    """Leaves [B, ...] -> [n, B / n, ...] as the module describes.

    Raises:
      ValueError: B is not a multiple of n.
    """

    def split(x):
        if x.shape[0] % n:
            raise ValueError(f"a batch of {x.shape[0]} rows does not split into {n} microbatches")
        return x.reshape(x.shape[0] // n, n, *x.shape[1:]).swapaxes(0, 1)

    return jax.tree.map(split, tree)


def merge_rows(tree: Any) -> Any:
    """The inverse of :func:`split_rows`: leaves [n, B / n, ...] -> [B, ...]."""
    return jax.tree.map(lambda x: x.swapaxes(0, 1).reshape(-1, *x.shape[2:]), tree)


def accumulate(fn: Callable[[Any], tuple[Any, Any]], rows: Any, n: int) -> tuple[Any, Any]:
    """Runs ``fn`` on each of ``n`` microbatches of ``rows`` (leaves [B, ...]).

    ``fn(part) -> (summed, per_row)``: ``summed`` (any tree, e.g. gradients and loss sums)
    is added up over the microbatches; ``per_row`` (leaves [B / n, ...], or None) is put
    back in the order of ``rows``. With ``n == 1`` this is ``fn(rows)``.
    """
    if n == 1:
        return fn(rows)
    micro = split_rows(rows, n)
    # The first microbatch outside the loop gives the loop's carry its structure.
    total, first = fn(jax.tree.map(lambda x: x[0], micro))

    def step(carry, part):
        summed, per_row = fn(part)
        return jax.tree.map(jnp.add, carry, summed), per_row

    total, rest = jax.lax.scan(step, total, jax.tree.map(lambda x: x[1:], micro))
    per_row = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)
    return total, merge_rows(per_row)
