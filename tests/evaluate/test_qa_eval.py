"""Question answering questions on the held-out cells of the shared pbmc68k model: built
in the corpus's format, with the right answer by construction."""

import re
import string

import numpy as np
import pytest

from c2s_jax.checkpoints.bundle import load_bundle
from c2s_jax.corpus.prompts.formatter import Templates
from c2s_jax.evaluate.annotation_eval import evaluated_cells
from c2s_jax.evaluate.held_out import load_held_out
from c2s_jax.evaluate.qa_eval import build_questions, corpus_qa, question_kinds
from tests.support.trained_model import pbmc_workdir

TOP_K = 30


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(pbmc_workdir())


@pytest.fixture(scope="module")
def held(bundle):
    return load_held_out(bundle)


@pytest.fixture(scope="module")
def cells(held):
    return evaluated_cells(held, ("test",), 0, 0)


def _sentence(held, cell: int, top_k: int | None = None) -> list[str]:
    return held.sentence(cell, top_k)


def _is_a_wording(prompt: str, kind: str) -> bool:
    """Whether the prompt is one of the corpus's wordings of `kind` with its fields filled."""
    wordings = Templates.load().entry(f"question_answering/{kind}")["prompts"]
    patterns = [
        "".join(
            re.escape(literal) + ("" if field is None else ".+?")
            for literal, field, _, _ in string.Formatter().parse(wording)
        )
        for wording in wordings
    ]
    return any(re.fullmatch(pattern, prompt, re.DOTALL) for pattern in patterns)


def test_the_corpus_offers_its_options(bundle, held):
    weight, options = corpus_qa(bundle)
    assert weight == 2.0 and options == 4  # configs/corpus/pbmc68k_multitask.py, defaults
    assert question_kinds(held) == ["most_expressed", "is_expressed", "cell_type_choice"]


def test_most_expressed_answer_ranks_first_among_its_options(held, cells):
    questions = build_questions(held, "most_expressed", cells, TOP_K, 4, seed=0)
    assert [q.cell for q in questions] == list(cells)
    for q in questions:
        sentence = _sentence(held, q.cell, TOP_K)
        assert len(q.options) == 4 and len(set(q.options)) == 4
        assert set(q.options) <= set(sentence)
        assert q.answer == min(q.options, key=sentence.index)
        assert f"{', '.join(q.options)}" in q.prompt and " ".join(sentence) in q.prompt
        assert _is_a_wording(q.prompt, "most_expressed")
    # the answer is not always the first option shown
    assert len({q.options.index(q.answer) for q in questions}) > 1


def test_is_expressed_asks_about_shown_genes_and_unexpressed_ones(held, cells):
    questions = build_questions(held, "is_expressed", cells, TOP_K, 4, seed=0)
    answers = [q.answer for q in questions]
    assert set(answers) == {"yes", "no"} and 0.3 < answers.count("yes") / len(answers) < 0.7
    for q in questions:
        assert q.options == ("yes", "no")
        if q.answer == "yes":
            assert q.gene in _sentence(held, q.cell, TOP_K)
        else:
            assert q.gene not in _sentence(held, q.cell)
            assert q.gene in set(held.symbols[held.cells.expressed_symbols])
        assert f" {q.gene} " in f" {q.prompt.split(chr(10))[-1]} ".replace("?", " ")
        assert _is_a_wording(q.prompt, "is_expressed")


def test_cell_type_choice_offers_the_true_type_among_others(held, cells):
    questions = build_questions(held, "cell_type_choice", cells, TOP_K, 4, seed=0)
    types = set(held.cells.labels("cell_type"))
    for q in questions:
        assert q.answer == held.labels("cell_type", np.array([q.cell]))[0]
        assert q.answer in q.options and len(set(q.options)) == 4 and set(q.options) <= types
        assert _is_a_wording(q.prompt, "cell_type_choice")


def test_questions_follow_the_seed(held, cells):
    first = build_questions(held, "is_expressed", cells, TOP_K, 4, seed=0)
    assert first == build_questions(held, "is_expressed", cells, TOP_K, 4, seed=0)
    assert first != build_questions(held, "is_expressed", cells, TOP_K, 4, seed=1)
