"""Prompts and answers as token ids, encoded the way the corpus writes them, and held to
the length the model was trained on.

A prompt longer than the model's training sequences is out of its experience (and, long
enough, out of memory: scoring 10,000 tokens on a model trained at 512 asks for tens of
GB), so it is refused by name, or with ``truncate`` cut at its end: the lowest-ranked genes
of a cell sentence go first, as the corpus builder cuts examples.
"""

import logging

import numpy as np

from c2s_jax.errors import InputError

log = logging.getLogger(__name__)


def encode_prompt(tokenizer, prompt: str) -> np.ndarray:
    """[T] int32 prompt tokens: BOS (where the family has one), then the text."""
    head = [] if tokenizer.bos_id is None else [tokenizer.bos_id]
    return np.asarray(head + (tokenizer.encode(prompt).tolist() if prompt else []), np.int32)


def encode_answer(tokenizer, text: str, prompt: str) -> np.ndarray:
    """[T] int32 answer tokens: after a space when a prompt precedes, closed by EOS."""
    body = tokenizer.encode((" " if prompt else "") + text).tolist()
    return np.asarray([*body, tokenizer.eos_id], np.int32)


def fit_prompts(
    prompts: list[np.ndarray],
    limit: int | None,
    truncate: bool,
    reserved: list[int] | None = None,
) -> list[np.ndarray]:
    """`prompts`, each fitting `limit` tokens together with its `reserved` tokens.

    Args:
      prompts: [n] prompt token arrays.
      limit: the model's trained sequence length (None: no limit known).
      truncate: cut a long prompt's end instead of refusing it.
      reserved: [n] tokens that follow each prompt and must fit too (a scored answer);
        zeros by default.

    Raises:
      InputError: a prompt does not fit and `truncate` is off, or its reserved tokens alone
        fill the limit.
    """
    if limit is None:
        return prompts
    reserved = reserved or [0] * len(prompts)
    fitted = []
    for number, (prompt, extra) in enumerate(zip(prompts, reserved, strict=True), 1):
        if len(prompt) + extra <= limit:
            fitted.append(prompt)
            continue
        answer = f" + {extra} of its answer" if extra else ""
        if not truncate or extra >= limit:
            raise InputError(
                f"request {number} has {len(prompt)} prompt tokens{answer}, over the "
                f"{limit}-token sequences the model was trained on; shorten it"
                + ("" if extra >= limit else " or pass --truncate to cut the prompt's end")
            )
        log.warning(
            "request %d: prompt cut from %d to %d tokens (--truncate)",
            number,
            len(prompt),
            limit - extra,
        )
        fitted.append(prompt[: limit - extra])
    return fitted
