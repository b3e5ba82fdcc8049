"""GRPO prompts and their reward targets, read from a built corpus; and their order.

A corpus record is ``[BOS] prompt answer EOS`` with the answer (and EOS) marked by its loss
mask. The prompt GRPO samples from is the record's tokens before the answer, exactly what
the model saw in training, and the reward target is the answer decoded back to text (with
its genes for single-cell answers and the dataset's gene symbols for gene validity).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from c2s_jax.corpus.records import data_source, read_metadata
from c2s_jax.corpus.tokenizer import Tokenizer
from c2s_jax.errors import InputError
from c2s_jax.rl.rewards import ANSWER_SHAPES, CELL_SENTENCE, RewardTarget, sentence_genes


@dataclasses.dataclass(frozen=True)
class Prompt:
    """One prompt to sample completions for.

    Attributes:
      tokens: [T] int32 prompt token ids (BOS included where the family uses one).
      target: what its completions are scored against.
    """

    tokens: np.ndarray
    target: RewardTarget


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def corpus_prompts(
    corpus_dir: str | Path,
    split: str,
    tasks: Sequence[str],
    tokenizer: Tokenizer,
    limit: int = 0,
) -> list[Prompt]:
    """The prompts of `split` whose task is one of `tasks`, in record order.

    Args:
      corpus_dir: a corpus written by `c2s corpus build`.
      split: 'train', 'validation' or 'test'.
      tasks: task names as in the corpus config (those with a verifiable answer).
      tokenizer: the corpus tokenizer (decodes the answers).
      limit: at most this many prompts (0: all of them).

    Raises:
      InputError: a task without a verifiable answer, or no record of these tasks.
    """
    unverifiable = [t for t in tasks if t not in ANSWER_SHAPES]
    if unverifiable:
        raise InputError(
            f"config.data.tasks: {unverifiable} have no verifiable answer; choose from "
            f"{sorted(ANSWER_SHAPES)}"
        )
    meta = read_metadata(corpus_dir)
    vocabularies = {name: frozenset(d["genes"]) for name, d in meta["datasets"].items()}
    source = data_source(corpus_dir, split)
    prompts = []
    for index in range(len(source)):
        record = source[index]
        task = _text(record["task"])
        if task not in tasks:
            continue
        prompts.append(_prompt(record, task, tokenizer, vocabularies))
        if limit and len(prompts) == limit:
            break
    if not prompts:
        raise InputError(
            f"{corpus_dir}: the '{split}' split has no example of {list(tasks)} (its task "
            f"counts: { {k: v for k, v in meta['counts'].items() if k.startswith(split)} }); "
            "choose other config.data.tasks or build the corpus with these tasks weighted"
        )
    return prompts


def _prompt(record: dict, task: str, tokenizer: Tokenizer, vocabularies: dict) -> Prompt:
    tokens = np.asarray(record["tokens"], np.int32)
    answer_start = int(np.argmax(np.asarray(record["loss_mask"]) > 0))
    answer = tokens[answer_start:]
    if answer.size and answer[-1] == tokenizer.eos_id:
        answer = answer[:-1]
    answer_text = tokenizer.decode(answer).strip()
    genes = ()
    if ANSWER_SHAPES[task] == CELL_SENTENCE:
        genes = tuple(sentence_genes(answer_text))
    vocabulary = vocabularies.get(_text(record["source"]), frozenset())
    target = RewardTarget(task, answer_text, genes, vocabulary)
    return Prompt(tokens[:answer_start], target)


class PromptOrder:
    """Which prompts each step uses: seeded permutations of the pool, one per epoch, read
    consecutively, so that every prompt comes once per epoch.

    Its position is the only state; `get_state`/`set_state` let checkpoints store it.

    Args:
      n_prompts: size of the prompt pool.
      per_step: prompts per step.
      seed: seeds the permutations.
    """

    def __init__(self, n_prompts: int, per_step: int, seed: int):
        if n_prompts < 1 or per_step < 1:
            raise ValueError(f"need prompts and prompts per step, got {n_prompts}, {per_step}")
        self.n_prompts = n_prompts
        self.per_step = per_step
        self.seed = seed
        self.position = 0

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n_prompts)

    def __next__(self) -> np.ndarray:
        """[per_step] int64 indices into the pool of the next step's prompts."""
        where = self.position + np.arange(self.per_step)
        epochs, offsets = np.divmod(where, self.n_prompts)
        orders = {int(e): self._permutation(int(e)) for e in np.unique(epochs)}
        indices = np.array([orders[int(e)][o] for e, o in zip(epochs, offsets, strict=True)])
        self.position += self.per_step
        return indices

    def get_state(self) -> dict:
        return {"position": self.position}

    def set_state(self, state: dict) -> None:
        self.position = int(state["position"])
