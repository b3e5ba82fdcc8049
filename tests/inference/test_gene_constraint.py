"""Constrained decoding writes only known genes, each at most once, then closes."""

import numpy as np
import pytest

from c2s_jax.inference.gene_constraint import build_tables, distinct_genes, tokens_for_genes
from c2s_jax.inference.sampler import Sampler, SamplingParams
from tests.inference.helpers import VOCAB, tiny_parts

EOS, PERIOD = 1, 2
# Like SentencePiece pieces: a gene starts with a "space" token (10..99) and continues with
# other tokens (100..199), so a sentence splits into genes at its start tokens.
START, CONTINUE = range(10, 100), range(100, 200)


def random_genes(n, seed):
    rng = np.random.default_rng(seed)
    genes = set()
    while len(genes) < n:
        start = int(rng.choice(START[:12]))  # few start tokens: many shared prefixes
        rest = rng.choice(CONTINUE[:6], size=rng.integers(0, 3)).tolist()
        genes.add((start, *rest))
    return [np.array(g, np.int32) for g in sorted(genes)]


def split_genes(tokens):
    """Gene token tuples of a generated sentence, and what came after the genes."""
    genes, tail = [], []
    for t in tokens:
        if t in START:
            genes.append([t])
        elif t in CONTINUE and genes and not tail:
            genes[-1].append(t)
        else:
            tail.append(t)
    return [tuple(g) for g in genes], tail


@pytest.fixture(scope="module")
def sampler():
    return Sampler(*tiny_parts("pythia_tiny", seed=3), eos_id=EOS)


def test_sampled_sentences_hold_only_known_unrepeated_genes(sampler):
    genes = random_genes(40, seed=0)
    tables = build_tables(genes, VOCAB, [PERIOD], EOS)
    known = {tuple(g.tolist()) for g in genes}
    prompts = [np.array([7, 8, 9], np.int32)] * 6
    hot = SamplingParams(max_new_tokens=48, temperature=3.0, seed=1)
    tokens, _, lengths = sampler.generate_tokens(prompts, hot, tables=tables)
    prefixes = {g[:i] for g in known for i in range(1, len(g) + 1)}
    for row, n in zip(tokens, lengths, strict=True):
        written, tail = split_genes(row[:n].tolist())
        assert written, "a sentence starts with a gene"
        if n == hot.max_new_tokens and not tail:
            # Cut by the length limit: the last gene may be unfinished.
            assert written[-1] in prefixes
            written = written[:-1]
        assert set(written) <= known
        assert len(set(written)) == len(written), f"repeated gene in {written}"
        assert tail in ([], [PERIOD, EOS], [EOS]), tail


def test_a_small_vocabulary_is_used_up_then_the_sentence_closes(sampler):
    genes = [np.array(g, np.int32) for g in ([10], [10, 100], [10, 100, 101], [11, 100])]
    tables = build_tables(genes, VOCAB, [PERIOD], EOS)
    prompts = [np.array([5, 6], np.int32)] * 3
    for seed in range(3):
        params = SamplingParams(max_new_tokens=20, temperature=2.0, seed=seed)
        tokens, _, lengths = sampler.generate_tokens(prompts, params, tables=tables)
        for row, n in zip(tokens, lengths, strict=True):
            written, tail = split_genes(row[:n].tolist())
            assert len(set(written)) == len(written)
            assert tail in ([PERIOD, EOS], [EOS])
            assert n < 20


def test_unconstrained_rows_are_left_alone(sampler):
    genes = random_genes(10, seed=2)
    tables = build_tables(genes, VOCAB, [PERIOD], EOS)
    prompts = [np.array([7, 8, 9], np.int32)] * 2
    greedy = SamplingParams(max_new_tokens=8)
    free = sampler.generate_tokens(prompts, greedy)[0]
    mixed = sampler.generate_tokens(prompts, greedy, tables=tables, constrained=[False, True])[0]
    np.testing.assert_array_equal(mixed[0], free[0])
    assert set(split_genes(mixed[1].tolist())[0]) <= {tuple(g.tolist()) for g in genes}


def test_bad_gene_tokens_are_reported():
    with pytest.raises(ValueError, match="gene 1: token 600"):
        build_tables([np.array([3]), np.array([600])], VOCAB, [PERIOD], EOS)
    with pytest.raises(ValueError, match="gene 0 has no tokens"):
        build_tables([np.array([], np.int32)], VOCAB, [PERIOD], EOS)


@pytest.mark.parametrize("wanted", [1, 3, 7])
def test_rows_write_exactly_the_genes_they_want(sampler, wanted):
    genes = random_genes(40, seed=4)
    tables = build_tables(genes, VOCAB, [PERIOD], EOS)
    known = {tuple(g.tolist()) for g in genes}
    prompts = [np.array([7, 8, 9], np.int32)] * 6
    # Hot sampling closes early and runs on unless the constraint holds it to the count.
    hot = SamplingParams(max_new_tokens=tokens_for_genes(tables, 7), temperature=3.0, seed=5)
    tokens, _, lengths = sampler.generate_tokens(prompts, hot, tables=tables, num_genes=wanted)
    for row, n in zip(tokens, lengths, strict=True):
        written, tail = split_genes(row[:n].tolist())
        assert len(written) == wanted and len(set(written)) == wanted, written
        assert set(written) <= known
        assert tail in ([PERIOD, EOS], [EOS]), tail


def test_without_a_count_hot_rows_vary_in_length(sampler):
    """The control for the test above: the same sampling, free to close, varies."""
    tables = build_tables(random_genes(40, seed=4), VOCAB, [PERIOD], EOS)
    prompts = [np.array([7, 8, 9], np.int32)] * 6
    hot = SamplingParams(max_new_tokens=tokens_for_genes(tables, 7), temperature=3.0, seed=5)
    tokens, _, lengths = sampler.generate_tokens(prompts, hot, tables=tables)
    counts = {len(split_genes(row[:n].tolist())[0]) for row, n in zip(tokens, lengths, strict=True)}
    assert counts != {3}


def test_each_row_has_its_own_count_and_a_used_up_vocabulary_closes_short(sampler):
    genes = [np.array(g, np.int32) for g in ([10], [10, 100], [10, 100, 101], [11, 100])]
    tables = build_tables(genes, VOCAB, [PERIOD], EOS)
    assert distinct_genes(tables) == 4 and tokens_for_genes(tables, 2) == 3 + 2 + 2
    prompts = [np.array([5, 6], np.int32)] * 4
    params = SamplingParams(max_new_tokens=20, temperature=2.0, seed=1)
    tokens, _, lengths = sampler.generate_tokens(
        prompts, params, tables=tables, num_genes=[1, 2, 4, 9]
    )
    written = [split_genes(row[:n].tolist())[0] for row, n in zip(tokens, lengths, strict=True)]
    assert [len(set(w)) for w in written] == [1, 2, 4, 4]
    assert all(n < 20 for n in lengths)
