"""How one HF tensor corresponds to one or more of our parameters.

A family converter lists one :class:`TensorRule` per HF tensor name (per-layer names carry
``{i}``); loading and exporting walk the same list, so the two directions cannot drift.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class TensorRule:
    """HF tensor ``hf_name`` of shape ``hf_shape`` <-> our parameters at paths ``ours``.

    ``to_ours`` splits/reshapes the HF array into one array per path in ``ours`` (without
    the layer axis); ``to_hf`` is its exact inverse. Per-layer rules apply to every index
    of the ``layers`` axis of the stacked parameters.
    """

    hf_name: str
    hf_shape: tuple[int, ...]
    ours: tuple[str, ...]
    to_ours: Callable[[np.ndarray], tuple[np.ndarray, ...]]
    to_hf: Callable[..., np.ndarray]
    per_layer: bool = False

    def hf_key(self, layer: int | None) -> str:
        return self.hf_name.format(i=layer) if self.per_layer else self.hf_name


def same(hf_name: str, shape: tuple[int, ...], ours: str, per_layer: bool = False) -> TensorRule:
    """A tensor stored identically on both sides (norm scales, biases, embeddings)."""
    return TensorRule(hf_name, shape, (ours,), lambda w: (w,), lambda w: w, per_layer)


def transposed(
    hf_name: str, shape: tuple[int, int], ours: str, per_layer: bool = False
) -> TensorRule:
    """A torch ``Linear`` weight [out, in] stored by us as [in, out]."""
    return TensorRule(hf_name, shape, (ours,), lambda w: (w.T,), lambda w: w.T, per_layer)


def heads_in(hf_name: str, d_model: int, heads: int, head_dim: int, ours: str) -> TensorRule:
    """Per-layer projection into heads: HF [heads*head_dim, D] <-> ours [D, heads, head_dim]."""
    return TensorRule(
        hf_name,
        (heads * head_dim, d_model),
        (ours,),
        lambda w: (w.T.reshape(d_model, heads, head_dim),),
        lambda w: w.reshape(d_model, heads * head_dim).T,
        per_layer=True,
    )


def heads_out(hf_name: str, d_model: int, heads: int, head_dim: int, ours: str) -> TensorRule:
    """Per-layer projection out of heads: HF [D, heads*head_dim] <-> ours [heads, head_dim, D]."""
    return TensorRule(
        hf_name,
        (d_model, heads * head_dim),
        (ours,),
        lambda w: (w.T.reshape(heads, head_dim, d_model),),
        lambda w: w.reshape(heads * head_dim, d_model).T,
        per_layer=True,
    )
