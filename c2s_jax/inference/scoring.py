"""Likelihoods under a model: per-token log-probabilities of texts after prompts, and
zero-shot classification that ranks candidate answers by their log-probability.

Texts are scored the way the corpus writes answers: after the prompt, with a leading
space, and closed by EOS, so a candidate that is only the start of a longer answer does
not win for being short.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from c2s_jax.checkpoints.bundle import Bundle
from c2s_jax.inference.prompt_tokens import encode_answer, encode_prompt, fit_prompts
from c2s_jax.models.parts import ModelParts

# Row lengths are padded to a multiple of this so similar lengths share a compilation.
LENGTH_BUCKET = 64


@dataclasses.dataclass(frozen=True)
class ScoredText:
    """A text's likelihood after its prompt.

    Attributes:
      tokens: [n] the text's token ids (EOS last when scored with one).
      logprobs: [n] natural-log probability of each token given everything before it.
    """

    tokens: np.ndarray
    logprobs: np.ndarray

    @property
    def total(self) -> float:
        return float(self.logprobs.sum())

    @property
    def mean(self) -> float:
        return float(self.logprobs.mean()) if self.logprobs.size else 0.0


def _forward_logprobs(parts: ModelParts, params, tokens_BT, segments_BT):
    model = parts.model(params)
    target_BT, log_norm_BT = model.target_scores(
        tokens_BT[:, :-1], tokens_BT[:, 1:], segment_ids=segments_BT[:, :-1]
    )
    return target_BT - log_norm_BT


class Scorer:
    """Scores token sequences with a model.

    Args:
      parts: the model's graph and config.
      params: its parameters.
    """

    def __init__(self, parts: ModelParts, params):
        self.params = params
        self._logprobs = jax.jit(functools.partial(_forward_logprobs, parts))

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> Scorer:
        graphdef, state = nnx.split(bundle.model)
        return cls(ModelParts(graphdef, bundle.config), state)

    def score_tokens(
        self, prompts: Sequence[np.ndarray], texts: Sequence[np.ndarray], batch_size: int = 16
    ) -> list[ScoredText]:
        """Log-probabilities of ``texts[i]`` tokens after ``prompts[i]`` tokens.

        Args:
          prompts: [n_i] token ids each (at least one, e.g. BOS).
          texts: [m_i] token ids each.
          batch_size: rows per forward pass.
        """
        results = []
        for start in range(0, len(prompts), batch_size):
            rows = [
                np.concatenate([p, t]).astype(np.int32)
                for p, t in zip(
                    prompts[start : start + batch_size],
                    texts[start : start + batch_size],
                    strict=True,
                )
            ]
            T = -(-max(len(r) for r in rows) // LENGTH_BUCKET) * LENGTH_BUCKET + 1
            tokens = np.zeros((batch_size, T), np.int32)
            segments = np.zeros((batch_size, T), np.int32)
            for b, row in enumerate(rows):
                tokens[b, : len(row)], segments[b, : len(row)] = row, 1
            logp = np.asarray(
                self._logprobs(self.params, jnp.asarray(tokens), jnp.asarray(segments))
            )
            for b, (prompt, text) in enumerate(
                zip(
                    prompts[start : start + batch_size],
                    texts[start : start + batch_size],
                    strict=True,
                )
            ):
                first = len(prompt) - 1  # logp[:, t] scores token t + 1
                results.append(ScoredText(np.asarray(text), logp[b, first : first + len(text)]))
        return results


def score_texts(
    scorer: Scorer,
    tokenizer,
    prompts: Sequence[str],
    texts: Sequence[str],
    max_length: int | None = None,
    truncate: bool = False,
) -> list[ScoredText]:
    """Log-likelihood of each text (closed by EOS) after its prompt.

    Args:
      max_length: the model's trained sequence length; a longer prompt + text is refused,
        or with `truncate` its prompt cut (see `prompt_tokens.fit_prompts`).
    """
    encoded_texts = [encode_answer(tokenizer, t, p) for t, p in zip(texts, prompts, strict=True)]
    encoded_prompts = fit_prompts(
        [encode_prompt(tokenizer, p) for p in prompts],
        max_length,
        truncate,
        reserved=[len(t) for t in encoded_texts],
    )
    return scorer.score_tokens(encoded_prompts, encoded_texts)


def rank_candidates(
    scorer: Scorer,
    tokenizer,
    prompts: Sequence[str],
    candidates: Sequence[Sequence[str]],
    length_normalize: bool = False,
    max_length: int | None = None,
    truncate: bool = False,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Zero-shot classification: each prompt's candidates ranked by log-likelihood.

    Args:
      prompts: [n] prompts.
      candidates: [n][k_i] candidate answers each, written as the answer would be
        (e.g. "CD14+ Monocyte.").
      length_normalize: rank by mean per-token log-prob instead of the total.
      max_length, truncate: as in `score_texts`.

    Returns:
      (scores: [n] arrays [k_i] of the candidates' scores, best: [n] index of the best).
    """
    flat_prompts = [p for p, cands in zip(prompts, candidates, strict=True) for _ in cands]
    flat_texts = [c for cands in candidates for c in cands]
    scored = score_texts(scorer, tokenizer, flat_prompts, flat_texts, max_length, truncate)
    values = np.array([s.mean if length_normalize else s.total for s in scored])
    scores, start = [], 0
    for cands in candidates:
        scores.append(values[start : start + len(cands)])
        start += len(cands)
    return scores, np.array([int(np.argmax(s)) for s in scores])
