"""The sampler against the model's full forward pass, and its sampling rules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from c2s_jax.inference.sampler import Sampler, SamplingParams, filter_logits, first_argmax
from tests.inference.helpers import VOCAB, tiny_parts

EOS = 1


# Every call below uses 3 rows, prompts of at most 32 tokens and 6 new tokens, so that one
# compiled program per family (and per greedy/sampled mode) serves all tests.
ROWS, NEW = 3, 6


@pytest.fixture(scope="module", params=["gemma2_tiny", "pythia_tiny"])
def parts_params(request):
    return tiny_parts(request.param)


@pytest.fixture(scope="module")
def gemma_sampler():
    return Sampler(*tiny_parts("gemma2_tiny"), eos_id=EOS)


def full_forward_logprobs(parts, params, tokens):
    """log_softmax of the next-token logits at every position of one unpadded row."""
    model = nnx.merge(parts.graphdef, params)
    return jax.nn.log_softmax(model(jnp.asarray(tokens)[None])[0], axis=-1)


def prompts(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(2, VOCAB, n).astype(np.int32) for n in lengths]


def test_greedy_decode_equals_argmax_of_full_forward(parts_params):
    parts, params = parts_params
    # An EOS no row will pick first, so that every row runs the full length.
    sampler = Sampler(parts, params, eos_id=EOS)
    batch = prompts([3, 9, 6])
    tokens, logprobs, lengths = sampler.generate_tokens(batch, SamplingParams(max_new_tokens=NEW))
    for row, prompt in enumerate(batch):
        n = lengths[row]
        generated = tokens[row, :n]
        full = full_forward_logprobs(parts, params, np.concatenate([prompt, generated]))
        steps = full[len(prompt) - 1 : len(prompt) - 1 + n]
        np.testing.assert_array_equal(generated, np.argmax(steps, axis=-1))
        expected = np.take_along_axis(np.asarray(steps), generated[:, None], axis=-1)[:, 0]
        np.testing.assert_allclose(logprobs[row, :n], expected, atol=2e-4)


def test_rows_do_not_depend_on_their_neighbours(gemma_sampler):
    batch = prompts([4, 11, 7], seed=1)
    greedy = SamplingParams(max_new_tokens=NEW)
    together = gemma_sampler.generate_tokens(batch, greedy)[0]
    shuffled = gemma_sampler.generate_tokens([batch[2], batch[0], batch[0]], greedy)[0]
    np.testing.assert_array_equal(together[[2, 0, 0]], shuffled)


def test_per_request_limits_and_eos_end_rows(gemma_sampler):
    batch = prompts([5, 5, 5])
    greedy = SamplingParams(max_new_tokens=NEW)
    free = gemma_sampler.generate_tokens(batch, greedy)[0]
    # Make row 0's third greedy token the EOS: the row must end right there.
    eos = int(free[0, 2])
    first_eos = int(np.argmax(free[0] == eos)) + 1
    gemma_sampler.eos_id = eos
    try:
        tokens, logprobs, lengths = gemma_sampler.generate_tokens(
            batch, greedy, max_new_tokens=[NEW, 2, NEW]
        )
    finally:
        gemma_sampler.eos_id = EOS
    assert lengths[0] == first_eos and np.all(tokens[0, first_eos:] == 0)
    row1_eos = np.flatnonzero(free[1] == eos)
    assert lengths[1] == min(2, row1_eos[0] + 1 if row1_eos.size else NEW)
    assert np.all(tokens[1, 2:] == 0)
    assert np.all(logprobs[1, 2:] == 0)


def test_sampling_is_seeded_and_top_k_1_is_greedy(gemma_sampler):
    batch = prompts([4] * ROWS, seed=3)
    hot = SamplingParams(max_new_tokens=NEW, temperature=5.0, seed=7)
    a = gemma_sampler.generate_tokens(batch, hot)[0]
    b = gemma_sampler.generate_tokens(batch, hot)[0]
    c = gemma_sampler.generate_tokens(batch, SamplingParams(NEW, temperature=5.0, seed=8))[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    greedy = gemma_sampler.generate_tokens(batch, SamplingParams(max_new_tokens=NEW))[0]
    top1 = gemma_sampler.generate_tokens(batch, SamplingParams(NEW, temperature=5.0, top_k=1))[0]
    np.testing.assert_array_equal(top1, greedy)


def test_filter_logits_keeps_top_k_and_smallest_top_p_set():
    logits = jnp.log(jnp.array([[0.5, 0.05, 0.3, 0.15]]))
    keep = lambda k, p: np.isfinite(np.asarray(filter_logits(logits, 1.0, k, p)))[0]  # noqa: E731
    np.testing.assert_array_equal(keep(2, 1.0), [True, False, True, False])
    np.testing.assert_array_equal(keep(0, 0.5), [True, False, False, False])
    np.testing.assert_array_equal(keep(0, 0.8), [True, False, True, False])
    np.testing.assert_array_equal(keep(0, 0.81), [True, False, True, True])
    np.testing.assert_array_equal(keep(0, 1.0), [True, True, True, True])
    np.testing.assert_array_equal(keep(1, 0.99), [True, False, False, False])


def test_top_p_sampling_frequencies_match_the_renormalized_distribution():
    logits = jnp.log(jnp.array([0.5, 0.05, 0.3, 0.15]))
    filtered = filter_logits(jnp.tile(logits, (20000, 1)), 1.0, 0, 0.8)
    draws = np.asarray(jax.random.categorical(jax.random.key(0), filtered, axis=-1))
    freq = np.bincount(draws, minlength=4) / draws.size
    np.testing.assert_allclose(freq, [0.5 / 0.8, 0, 0.3 / 0.8, 0], atol=0.015)


@pytest.mark.parametrize(
    "bad", [dict(max_new_tokens=0), dict(temperature=-1), dict(top_k=-2), dict(top_p=0.0)]
)
def test_bad_sampling_params_are_named(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        SamplingParams(**bad)


def test_ids_past_the_tokenizer_are_never_written(gemma_sampler):
    batch = prompts([4] * ROWS, seed=4)
    hot = SamplingParams(NEW, temperature=50.0, seed=1)
    free = gemma_sampler.generate_tokens(batch, hot)[0]
    limited = gemma_sampler.generate_tokens(batch, hot, valid_tokens=40)[0]
    assert free.max() >= 40 and limited.max() < 40


def test_first_argmax_is_numpy_argmax_with_ties_and_masked_rows():
    rng = np.random.default_rng(0)
    logits = rng.integers(0, 4, (64, 50)).astype(np.float32)  # many ties per row
    logits[3] = -np.inf  # a row with every token masked
    logits[5, ::7] = np.inf
    np.testing.assert_array_equal(first_argmax(jnp.asarray(logits)), np.argmax(logits, axis=-1))
