"""Autoregressive sampling: one batched prefill, then decoding over the KV cache.

Prompts are left-padded to a common length, so that every row's next token lands in the
same cache slot while each row keeps its own positions (padding has segment id 0 and is
never attended to). The whole decode loop is one ``jax.lax.while_loop`` inside one jitted
function: no Python runs per token, and the loop stops as soon as every row has ended
(EOS, its own token limit, or a constraint that finished the sentence).

Decoding is greedy when ``temperature`` is 0; otherwise the logits are divided by the
temperature and cut to the top-k tokens and to the smallest set whose probability reaches
top-p. The log-probability returned for each token is the model's own (unscaled,
unfiltered) ``log_softmax``, the quantity a trainer recomputes from the same parameters.

Shape letters: B rows, T prompt length, N new tokens, V vocabulary.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from c2s_jax import parallel
from c2s_jax.inference.gene_constraint import (
    ConstraintTables,
    allowed_tokens,
    initial_state,
    transition,
)
from c2s_jax.inference.prompt_tokens import encode_prompt, fit_prompts
from c2s_jax.models.parts import ModelParts, param_shardings, with_shardings

# Prompt lengths are padded up to a multiple of this, so that prompts of similar length
# share one compiled program.
PROMPT_BUCKET = 32


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """How tokens are chosen.

    Attributes:
      max_new_tokens: tokens to generate per request at most (EOS included).
      temperature: 0 for greedy decoding; otherwise logits are divided by it.
      top_k: keep the k most likely tokens (0 keeps all).
      top_p: keep the smallest set of tokens whose probability reaches p (1 keeps all).
      seed: seeds the random choices; the same seed and inputs give the same tokens.
    """

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclasses.dataclass(frozen=True)
class Completion:
    """One request's result.

    Attributes:
      tokens: [n] int32 generated token ids (EOS included when generated).
      logprobs: [n] float32 the model's log-probability of each token (natural log).
      text: the decoded text without EOS, cut before the first stop string.
      finish: 'eos', 'length' or 'stop' (a stop string).
    """

    tokens: np.ndarray
    logprobs: np.ndarray
    text: str
    finish: str


def filter_logits(
    logits_BV: jax.Array, temperature: jax.Array, top_k: jax.Array, top_p: jax.Array
) -> jax.Array:
    """Temperature-scaled logits with everything outside top-k and top-p set to -inf.

    ``top_k`` (0 = off) and ``top_p`` are traced scalars, so changing them does not
    recompile. The most likely token always survives.
    """
    scaled_BV = logits_BV.astype(jnp.float32) / jnp.maximum(temperature, 1e-6)
    sorted_BV = jnp.sort(scaled_BV, axis=-1)[:, ::-1]
    V = scaled_BV.shape[-1]
    k = jnp.where(top_k > 0, jnp.minimum(top_k, V), V)
    kth_B1 = jnp.take(sorted_BV, k - 1, axis=-1)[:, None]
    probs_BV = jax.nn.softmax(sorted_BV, axis=-1)
    # Probability mass strictly before each sorted token: a token is kept while the mass
    # before it is below top_p, which keeps the smallest set that reaches top_p.
    before_BV = jnp.cumsum(probs_BV, axis=-1) - probs_BV
    kept_BV = (before_BV < top_p) | (jnp.arange(V) == 0)
    pth_B1 = jnp.min(jnp.where(kept_BV, sorted_BV, jnp.inf), axis=-1, keepdims=True)
    threshold_B1 = jnp.maximum(kth_B1, pth_B1)
    return jnp.where(scaled_BV >= threshold_B1, scaled_BV, -jnp.inf)


def first_argmax(x_BV: jax.Array) -> jax.Array:
    """[B] int32: the first index of each row's maximum, as ``jnp.argmax``.

    A max followed by a masked min over indices: two plain reductions that XLA's CPU
    backend vectorizes, about twice as fast as the paired value/index reduction that
    ``argmax`` lowers to, and this runs once per generated token.
    """
    V = x_BV.shape[-1]
    max_B1 = jnp.max(x_BV, axis=-1, keepdims=True)
    index_BV = jnp.where(x_BV == max_B1, jnp.arange(V, dtype=jnp.int32), V)
    return jnp.min(index_BV, axis=-1)


def _choose(logits_BV, allowed_BV, greedy: bool, knobs, key):
    masked_BV = jnp.where(allowed_BV, logits_BV, -jnp.inf)
    if greedy:
        return first_argmax(masked_BV)
    filtered_BV = filter_logits(masked_BV, *knobs)
    return jax.random.categorical(key, filtered_BV, axis=-1).astype(jnp.int32)


def _generate(*args, mesh: Mesh | None, rules: parallel.Rules, **kwargs):
    """:func:`_decode` with its activations laid out by `rules` on `mesh`."""
    with parallel.activation_sharding(mesh, rules):
        return _decode(*args, **kwargs)


def _decode(
    params,
    frozen,
    prompt_BT,
    prompt_lengths_B,
    max_new_B,
    constrained_B,
    genes_B,
    knobs,
    key,
    tables: ConstraintTables | None,
    *,
    parts: ModelParts,
    greedy: bool,
    max_new: int,
):
    # Adapters merged and layers unstacked once, outside the decoding loop.
    model = parts.model(params, frozen).unstacked()
    decoder_graph, decoder_state = nnx.split(model)
    B, T = prompt_BT.shape
    eos = knobs[3]
    pad_B = T - prompt_lengths_B
    columns_BT = jnp.arange(T, dtype=jnp.int32)[None, :]
    positions_BT = jnp.maximum(columns_BT - pad_B[:, None], 0)
    segments_BT = (columns_BT >= pad_B[:, None]).astype(jnp.int32)
    cache = model.init_cache(B, T + max_new)
    logits_BTV, cache = model(
        prompt_BT, positions=positions_BT, segment_ids=segments_BT, cache=cache
    )
    V = logits_BTV.shape[-1]
    # Ids past the tokenizer's pieces (a vocabulary padded for sharding) are never written.
    known_BV = jnp.broadcast_to(jnp.arange(V) < knobs[4], (B, V))
    constraint = initial_state(tables, B, genes_B) if tables is not None else None

    def cond(carry):
        i, done_B = carry[0], carry[3]
        return (i < max_new) & ~jnp.all(done_B)

    def body(carry):
        i, logits_BV, cache, done_B, tokens_BN, logp_BN, constraint, key = carry
        key, draw = jax.random.split(key)
        if tables is None:
            allowed_BV = known_BV
        else:
            allowed_BV = jnp.where(
                constrained_B[:, None], allowed_tokens(tables, constraint), known_BV
            )
        token_B = _choose(logits_BV, allowed_BV, greedy, knobs[:3], draw)
        logp_B = jnp.take_along_axis(
            jax.nn.log_softmax(logits_BV, axis=-1), token_B[:, None], axis=-1
        )[:, 0]
        live_B = ~done_B
        tokens_BN = tokens_BN.at[:, i].set(jnp.where(live_B, token_B, 0))
        logp_BN = logp_BN.at[:, i].set(jnp.where(live_B, logp_B, 0.0))
        ended_B = (token_B == eos) | (i + 1 >= max_new_B)
        if tables is not None:
            constraint = transition(tables, constraint, token_B, live_B & constrained_B)
        done_B = done_B | ended_B
        positions_B1 = (prompt_lengths_B + i)[:, None]
        # nnx Variables may only be used at the trace level they were made at, so the
        # loop body rebuilds the parameter containers at its own level.
        step_model = nnx.merge(decoder_graph, jax.tree.map(lambda x: x, decoder_state))
        step_logits, cache = step_model(
            token_B[:, None],
            positions=positions_B1,
            segment_ids=jnp.ones_like(positions_B1),
            cache=cache,
        )
        return i + 1, step_logits[:, 0], cache, done_B, tokens_BN, logp_BN, constraint, key

    carry = (
        jnp.zeros((), jnp.int32),
        logits_BTV[:, -1],
        cache,
        max_new_B <= 0,
        jnp.zeros((B, max_new), jnp.int32),
        jnp.zeros((B, max_new), jnp.float32),
        constraint,
        key,
    )
    _, _, _, _, tokens_BN, logp_BN, _, _ = jax.lax.while_loop(cond, body, carry)
    return tokens_BN, logp_BN


class Sampler:
    """Generates continuations of token prompts with a model's parameters.

    Args:
      parts: the model's static side (graph and config; the frozen base under LoRA).
      params: the model's parameters (or its adapters under LoRA).
      eos_id: the token that ends a request.
      frozen: the frozen base parameters under LoRA, else None.
      mesh: the mesh to decode on; rows are split over its batch axes. None runs on the
        default device.
      rules: logical-axis rules, as in training. Decoding lays the weights out by
        :func:`c2s_jax.parallel.decode_rules` (tensor parallel over the training
        layout's FSDP axes too), so that no weight is gathered for each new token; the
        parameters given (and any later assigned to ``params``) are moved there once.
    """

    def __init__(
        self,
        parts: ModelParts,
        params: Any,
        eos_id: int,
        *,
        frozen: Any = None,
        mesh: Mesh | None = None,
        rules: parallel.Rules = (),
    ):
        self.parts = parts
        self.eos_id = int(eos_id)
        self.mesh = mesh
        self.rules = parallel.decode_rules(rules)
        self.frozen = self._placed(frozen)
        self.params = params
        # The graph is static; closing over it keeps it out of jit's hashed arguments.
        self._generate = jax.jit(
            functools.partial(_generate, parts=parts, mesh=mesh, rules=self.rules),
            static_argnames=("greedy", "max_new"),
        )

    @property
    def params(self) -> Any:
        """The parameters decoding uses (in the decoding layout)."""
        return self._params

    @params.setter
    def params(self, params: Any) -> None:
        self._params = self._placed(params)

    def _placed(self, tree: Any) -> Any:
        """``tree`` in the decoding layout (sharded ShapeDtypeStructs stay abstract)."""
        if tree is None or self.mesh is None:
            return tree
        shardings = param_shardings(tree, self.mesh, self.rules)
        if isinstance(jax.tree.leaves(tree)[0], jax.ShapeDtypeStruct):
            return with_shardings(tree, shardings)
        return jax.device_put(tree, shardings)

    def _row_multiple(self) -> int:
        if self.mesh is None:
            return 1
        return parallel.batch_shards(self.mesh, self.rules)

    def _rows_sharding(self, ndim: int) -> NamedSharding | None:
        """Rows over the mesh's batch axes (None without a mesh)."""
        if self.mesh is None:
            return None
        spec = parallel.logical_to_spec(("batch",) + (None,) * (ndim - 1), self.rules)
        return NamedSharding(self.mesh, spec)

    def _place(self, x: np.ndarray) -> jax.Array:
        sharding = self._rows_sharding(x.ndim)
        return jnp.asarray(x) if sharding is None else jax.device_put(x, sharding)

    def lower(self, rows: int, prompt_length: int, params: SamplingParams) -> jax.stages.Lowered:
        """The decoding program of :meth:`generate_tokens` for ``rows`` prompts of up to
        ``prompt_length`` tokens, lowered without running it or allocating its inputs.

        With the sampler's parameters given as sharded ShapeDtypeStructs on a TPU
        topology's mesh, ``.compile()`` of the result is the TPU compiler's own account of
        decoding on that slice.
        """
        rows = -(-rows // self._row_multiple()) * self._row_multiple()
        T = -(-prompt_length // PROMPT_BUCKET) * PROMPT_BUCKET

        def per_row(shape, dtype):
            return jax.ShapeDtypeStruct(shape, dtype, sharding=self._rows_sharding(len(shape)))

        scalars = (jnp.float32, jnp.int32, jnp.float32, jnp.int32, jnp.int32)
        return self._generate.lower(
            self.params,
            self.frozen,
            per_row((rows, T), jnp.int32),
            per_row((rows,), jnp.int32),
            per_row((rows,), jnp.int32),
            per_row((rows,), bool),
            per_row((rows,), jnp.int32),
            tuple(jax.ShapeDtypeStruct((), dtype) for dtype in scalars),
            jax.eval_shape(lambda: jax.random.key(0)),
            None,
            greedy=params.temperature == 0,
            max_new=params.max_new_tokens,
        )

    def generate_tokens(
        self,
        prompts: Sequence[np.ndarray],
        params: SamplingParams,
        *,
        max_new_tokens: Sequence[int] | None = None,
        tables: ConstraintTables | None = None,
        constrained: Sequence[bool] | None = None,
        num_genes: int | Sequence[int] | None = None,
        valid_tokens: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Generates for a batch of token prompts.

        Args:
          prompts: token id arrays (BOS included where the family uses one).
          params: sampling settings.
          max_new_tokens: per-request limits (each at most ``params.max_new_tokens``).
          tables: gene-vocabulary constraint tables (see :mod:`c2s_jax.inference.gene_constraint`).
          constrained: which requests the constraint applies to (default: all of them
            when ``tables`` is given).
          num_genes: genes each constrained request's sentence must hold, one count for
            all or one per request (0 = any number, the default). Fewer come back only
            when the trie's genes run out, or the token limit cuts the sentence (see
            :func:`c2s_jax.inference.gene_constraint.tokens_for_genes`).
          valid_tokens: only ids below this are written (the tokenizer's piece count when
            the model's vocabulary is padded beyond it); default: every id.

        Returns:
          (tokens [B, N] int32, logprobs [B, N] float32, lengths [B] int32): row b's
          tokens are ``tokens[b, :lengths[b]]``, EOS included when it was generated.
        """
        if not prompts:
            raise ValueError("no prompts given")
        B = len(prompts)
        lengths = np.array([len(p) for p in prompts], np.int32)
        if lengths.min() < 1:
            raise ValueError("every prompt needs at least one token (e.g. BOS)")
        limits = np.full(B, params.max_new_tokens, np.int32)
        if max_new_tokens is not None:
            limits = np.minimum(np.asarray(max_new_tokens, np.int32), params.max_new_tokens)
        flags = np.ones(B, bool) if constrained is None else np.asarray(constrained, bool)
        genes = np.broadcast_to(np.asarray(num_genes or 0, np.int32), (B,))
        rows = -(-B // self._row_multiple()) * self._row_multiple()
        T = -(-int(lengths.max()) // PROMPT_BUCKET) * PROMPT_BUCKET
        prompt_BT = np.zeros((rows, T), np.int32)
        for b, p in enumerate(prompts):
            prompt_BT[b, T - len(p) :] = p
        # Filler rows (to split evenly over devices) get one token and no budget.
        lengths = np.concatenate([lengths, np.ones(rows - B, np.int32)])
        limits = np.concatenate([limits, np.zeros(rows - B, np.int32)])
        flags = np.concatenate([flags, np.zeros(rows - B, bool)])
        genes = np.concatenate([genes, np.zeros(rows - B, np.int32)])
        knobs = (
            jnp.float32(params.temperature),
            jnp.int32(params.top_k),
            jnp.float32(params.top_p),
            jnp.int32(self.eos_id),
            jnp.int32(valid_tokens or np.iinfo(np.int32).max),
        )
        tokens_BN, logp_BN = self._generate(
            self.params,
            self.frozen,
            self._place(prompt_BT),
            self._place(lengths),
            self._place(limits),
            self._place(flags),
            self._place(genes),
            knobs,
            jax.random.key(params.seed),
            tables,
            greedy=params.temperature == 0,
            max_new=params.max_new_tokens,
        )
        tokens_BN, logp_BN = np.asarray(tokens_BN)[:B], np.asarray(logp_BN)[:B]
        return tokens_BN, logp_BN, _lengths(tokens_BN, limits[:B], self.eos_id)


def _lengths(tokens_BN: np.ndarray, limits_B: np.ndarray, eos_id: int) -> np.ndarray:
    """Generated tokens per row: through the first EOS, else the row's limit."""
    N = tokens_BN.shape[1]
    is_eos = tokens_BN == eos_id
    first_eos = np.where(is_eos.any(axis=1), is_eos.argmax(axis=1) + 1, N)
    return np.minimum(first_eos, limits_B).astype(np.int32)


def complete_texts(
    sampler: Sampler,
    tokenizer,
    prompts: Sequence[str],
    params: SamplingParams,
    *,
    stop: Sequence[str] = (),
    max_new_tokens: Sequence[int] | None = None,
    tables: ConstraintTables | None = None,
    constrained: Sequence[bool] | None = None,
    num_genes: int | Sequence[int] | None = None,
    max_prompt_tokens: int | None = None,
    truncate: bool = False,
) -> list[Completion]:
    """Generates a continuation of each text prompt.

    Prompts are encoded as the corpus encodes prompts (BOS where the tokenizer's family
    has one, then the text), so a model trained on the corpus continues with its answer.

    Args:
      sampler: the model.
      tokenizer: a :class:`~c2s_jax.corpus.tokenizer.Tokenizer`.
      prompts: prompt texts.
      params: sampling settings.
      stop: strings that end a completion; the text (and its tokens) are cut before the
        first one. Decoding itself runs on until EOS or the limit.
      max_new_tokens, tables, constrained, num_genes: as in
        :meth:`Sampler.generate_tokens`.
      max_prompt_tokens: the model's trained sequence length; a longer prompt is refused,
        or with `truncate` cut at its end (see `prompt_tokens.fit_prompts`).

    Returns:
      One :class:`Completion` per prompt, in order.
    """
    encoded = fit_prompts(
        [encode_prompt(tokenizer, p) for p in prompts], max_prompt_tokens, truncate
    )
    tokens_BN, logp_BN, lengths_B = sampler.generate_tokens(
        encoded,
        params,
        max_new_tokens=max_new_tokens,
        tables=tables,
        constrained=constrained,
        num_genes=num_genes,
        valid_tokens=tokenizer.vocab_size,
    )
    completions = []
    for tokens, logprobs, n in zip(tokens_BN, logp_BN, lengths_B, strict=True):
        tokens, logprobs = tokens[:n], logprobs[:n]
        ends_with_eos = n > 0 and tokens[-1] == tokenizer.eos_id
        body = tokens[:-1] if ends_with_eos else tokens
        text, cut = _cut_at_stop(tokenizer, body, stop)
        if cut is not None:
            completions.append(Completion(tokens[:cut], logprobs[:cut], text, "stop"))
        else:
            finish = "eos" if ends_with_eos else "length"
            completions.append(Completion(tokens, logprobs, text, finish))
    return completions


def _cut_at_stop(tokenizer, tokens: np.ndarray, stop: Sequence[str]) -> tuple[str, int | None]:
    """(text before the first stop string, tokens kept), or (full text, None)."""
    text = tokenizer.decode(tokens)
    hits = [text.find(s) for s in stop if s and s in text]
    if not hits:
        return text, None
    cut_text = text[: min(hits)]
    # The fewest tokens whose text reaches the stop string: they are kept, so that the
    # tokens still spell out at least the returned text.
    for n in range(len(tokens) + 1):
        if len(tokenizer.decode(tokens[:n])) > len(cut_text):
            return cut_text, n
    return cut_text, len(tokens)
