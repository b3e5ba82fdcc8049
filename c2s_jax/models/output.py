"""The output layer: hidden states -> vocabulary logits, and the two numbers per token that
every loss needs from them, computed without the [B, T, V] float32 logits ever existing.

A language model's losses (cross-entropy, z-loss, GRPO's log-probabilities, scoring) read
only the logit of each target and the log-normalizer of each position. :func:`target_scores`
computes both a chunk of positions at a time and recomputes each chunk's logits in the
backward pass, so at most one ``[B, chunk, V]`` block of logits is held: for Gemma-2's
256,000-word vocabulary at 8,192 tokens that is the difference between a few GiB and tens
of GiB per chip.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from c2s_jax.models.einsum import project
from c2s_jax.parallel import constrain


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Unembedding:
    """The output projection of a model: ``softcap(einsum(spec, x, weight))`` in float32.

    Attributes:
      weight: [V, D] (tied to the input embedding) or [D, V].
      spec: the einsum from ``btd`` and the weight's axes to ``btv``.
      axes: the weight's logical axes while it is used: the vocabulary keeps its sharding,
        the model dimension is gathered (None).
      softcap: the final-logit softcap, or None.
      dtype: the compute dtype the weight is cast to.
    """

    weight: jax.Array
    spec: str = dataclasses.field(metadata=dict(static=True))
    axes: tuple[str | None, ...] = dataclasses.field(metadata=dict(static=True))
    softcap: float | None = dataclasses.field(metadata=dict(static=True))
    dtype: str = dataclasses.field(metadata=dict(static=True))

    def __call__(self, x_BTD: jax.Array) -> jax.Array:
        """float32 logits [B, T, V] of hidden states [B, T, D]."""
        logits_BTV = project(self.spec, x_BTD, self.weight.astype(self.dtype), jnp.float32)
        if self.softcap is not None:
            logits_BTV = self.softcap * jnp.tanh(logits_BTV / self.softcap)
        return constrain(logits_BTV, ("batch", "length", "vocab"))

    def gathered(self) -> Unembedding:
        """The same layer with its weight cast and laid out for use (model dimension
        gathered once, not in every chunk)."""
        weight = constrain(self.weight.astype(self.dtype), self.axes)
        return dataclasses.replace(self, weight=weight)


def chunk_length(length: int, chunk: int) -> int:
    """The largest divisor of ``length`` that is at most ``chunk`` (>= 1)."""
    return next(c for c in range(max(min(chunk, length), 1), 0, -1) if length % c == 0)


def target_scores(
    x_BTD: jax.Array, unembedding: Unembedding, targets_BT: jax.Array, chunk: int
) -> tuple[jax.Array, jax.Array]:
    """(target logit [B, T], log-normalizer [B, T]), float32, of final hidden states.

    The logits are formed ``chunk`` positions at a time (the largest divisor of T not above
    it) inside a loop whose body is rematerialized: the backward pass recomputes a chunk's
    logits from its hidden states instead of keeping them. ``log_softmax`` of the target is
    ``target - log_normalizer``; cross-entropy is its negative.
    """
    B, T, _ = x_BTD.shape
    c = chunk_length(T, chunk)
    unembedding = unembedding.gathered()

    def scores(x_BCD, targets_BC):
        logits_BCV = unembedding(x_BCD)
        target_BC = jnp.take_along_axis(logits_BCV, targets_BC[..., None], axis=-1)[..., 0]
        return target_BC, jax.nn.logsumexp(logits_BCV, axis=-1)

    if c == T:
        return scores(x_BTD, targets_BT)
    x_NBCD = x_BTD.reshape(B, T // c, c, -1).swapaxes(0, 1)
    targets_NBC = targets_BT.reshape(B, T // c, c).swapaxes(0, 1)
    chunked = jax.checkpoint(scores, prevent_cse=False)
    target_NBC, log_norm_NBC = jax.lax.map(lambda pair: chunked(*pair), (x_NBCD, targets_NBC))
    return (
        target_NBC.swapaxes(0, 1).reshape(B, T),
        log_norm_NBC.swapaxes(0, 1).reshape(B, T),
    )
