"""Rewards: hand-checked values, properties, independent references and the registry."""

import numpy as np
import pytest
import scipy.stats

from c2s_jax.corpus.prompts.formatter import GeneRun, Templates
from c2s_jax.errors import InputError
from c2s_jax.rl.rewards import (
    REWARDS,
    RewardTarget,
    answer_format,
    build_rewards,
    exact_match,
    gene_validity,
    normalize_answer,
    rank_overlap,
    score_completions,
    spearman_shared,
)

GENES = tuple(f"G{i}" for i in range(100))
VOCAB = frozenset([*GENES, "CD3D", "LYZ", "HLA-DRB1", "RP11-34P13.7"])


def _cell_target(genes=GENES) -> RewardTarget:
    return RewardTarget("perturbation_response", " ".join(genes) + ".", tuple(genes), VOCAB)


def _sentence(genes) -> str:
    return " ".join(genes) + "."


def _label_target(answer: str, task="cell_type_annotation", synonyms=None) -> RewardTarget:
    return RewardTarget(task, answer, synonyms=synonyms or {})


# ---- exact_match ---------------------------------------------------------------------------


def test_exact_match_normalizes_case_space_and_final_period():
    target = _label_target("CD14+ Monocyte.")
    assert exact_match("  cd14+   monocyte . ", target) == 1.0
    assert exact_match("CD14+ Monocyte", target) == 1.0
    assert exact_match("CD14+ Monocytes.", target) == 0.0
    assert exact_match("CD14+ Monocyte. It expresses LYZ.", target) == 0.0
    assert normalize_answer(" Dendritic\n cell. ") == "dendritic cell"


def test_exact_match_maps_synonyms_on_both_sides():
    synonyms = {"Classical monocyte": "CD14+ Monocyte", "CD14 Mono": "CD14+ Monocyte"}
    target = _label_target("classical monocyte.", synonyms=synonyms)
    assert exact_match("CD14 mono.", target) == 1.0
    assert exact_match("CD14+ monocyte.", target) == 1.0
    assert exact_match("B cell.", target) == 0.0


def test_exact_match_checks_question_answers_and_skips_cell_tasks():
    assert exact_match("Yes.", _label_target("yes.", "question_answering/is_expressed")) == 1.0
    assert exact_match("no.", _label_target("yes.", "question_answering/is_expressed")) == 0.0
    assert exact_match("cd3d.", _label_target("CD3D.", "question_answering/most_expressed")) == 1
    # Cell tasks have no label: the reward does not apply and scores 0.
    assert exact_match(_sentence(GENES), _cell_target()) == 0.0


# ---- rank_overlap ----------------------------------------------------------------------------


def _rank_overlap_by_sets(generated, reference) -> float:
    """The documented formula, prefix by prefix with sets."""
    K = len(reference)
    depth_overlap = [len(set(generated[:d]) & set(reference[:d])) / d for d in range(1, K + 1)]
    weights = 1.0 / np.arange(1, K + 1)
    return float(np.dot(depth_overlap, weights) / weights.sum())


def test_rank_overlap_hand_checked():
    target = _cell_target(("A", "B", "C"))
    harmonic = 1 + 1 / 2 + 1 / 3
    assert rank_overlap("A B C.", target) == pytest.approx(1.0)
    # Depth overlaps 0, 1, 1.
    assert rank_overlap("B A C.", target) == pytest.approx((1 / 2 + 1 / 3) / harmonic)
    # Depth overlaps 0, 1/2, 1.
    assert rank_overlap("C B A.", target) == pytest.approx((1 / 4 + 1 / 3) / harmonic)
    assert rank_overlap("X Y Z.", target) == 0.0
    assert rank_overlap("", target) == 0.0


def test_rank_overlap_is_one_for_the_true_order_low_reversed_and_1_over_h_for_random():
    target = _cell_target()
    assert rank_overlap(_sentence(GENES), target) == pytest.approx(1.0)
    # Extra genes after the reference's length do not count.
    assert rank_overlap(_sentence([*GENES, "CD3D"]), target) == pytest.approx(1.0)
    reversed_score = rank_overlap(_sentence(GENES[::-1]), target)
    assert 0.06 < reversed_score < 0.08
    rng = np.random.default_rng(0)
    shuffled = [rank_overlap(_sentence(rng.permutation(GENES)), target) for _ in range(200)]
    harmonic = np.sum(1.0 / np.arange(1, len(GENES) + 1))
    assert np.mean(shuffled) == pytest.approx(1 / harmonic, abs=0.02)
    assert reversed_score < min(shuffled) and max(shuffled) < 1.0


def test_rank_overlap_matches_the_set_formula_with_repeats_and_foreign_genes():
    rng = np.random.default_rng(1)
    pool = [*GENES[:30], "CD3D", "LYZ", "BAD1"]
    reference = tuple(GENES[:20])
    target = _cell_target(reference)
    for _ in range(100):
        generated = list(rng.choice(pool, size=rng.integers(0, 35)))
        got = rank_overlap(_sentence(generated), target)
        assert got == pytest.approx(_rank_overlap_by_sets(generated, reference), abs=1e-12)
        assert 0.0 <= got <= 1.0


def test_repeating_a_gene_lowers_rank_overlap():
    target = _cell_target(("A", "B", "C", "D"))
    assert rank_overlap("A A B C.", target) < rank_overlap("A B C D.", target)


# ---- spearman_shared -------------------------------------------------------------------------


def test_spearman_matches_scipy_on_the_shared_genes():
    rng = np.random.default_rng(2)
    reference = tuple(GENES[:25])
    target = _cell_target(reference)
    pool = [*GENES[:40], "CD3D"]
    checked = 0
    for _ in range(100):
        generated = list(rng.choice(pool, size=rng.integers(0, 40)))
        first_position = {}
        for position, gene in enumerate(generated):
            first_position.setdefault(gene, position)
        shared = [g for g in reference if g in first_position]
        got = spearman_shared(_sentence(generated), target)
        if len(shared) < 3:
            assert got == 0.0
            continue
        want = scipy.stats.spearmanr(
            [reference.index(g) for g in shared], [first_position[g] for g in shared]
        ).statistic
        assert got == pytest.approx(want, abs=1e-12)
        checked += 1
    assert checked > 50


def test_spearman_extremes_and_too_few_shared_genes():
    target = _cell_target()
    assert spearman_shared(_sentence(GENES), target) == pytest.approx(1.0)
    assert spearman_shared(_sentence(GENES[::-1]), target) == pytest.approx(-1.0)
    assert spearman_shared("G0 G1 CD3D LYZ.", target) == 0.0
    assert spearman_shared("G2 G0 G1.", target) == pytest.approx(-0.5)


def test_cell_rewards_refuse_a_cell_target_without_genes():
    target = RewardTarget("perturbation_response", "G0 G1.", (), VOCAB)
    with pytest.raises(ValueError, match=r"rank_overlap needs .*target.genes"):
        rank_overlap("G0 G1.", target)
    with pytest.raises(ValueError, match=r"spearman_shared needs"):
        spearman_shared("G0 G1.", target)


# ---- gene_validity -------------------------------------------------------------------------


def test_gene_validity_penalizes_invalid_and_repeated_words_exactly():
    target = _cell_target()
    assert gene_validity("G0 G1 HLA-DRB1 RP11-34P13.7.", target) == 0.0
    # The second G0 repeats, FOO is unknown: 2 bad words of 4.
    assert gene_validity("G0 G0 FOO LYZ.", target) == -0.5
    # An unknown word that repeats is bad each time; lower case is not a vocabulary symbol.
    assert gene_validity("FOO FOO cd3d CD3D.", target) == -0.75
    assert gene_validity("", target) == -1.0
    assert gene_validity(".", target) == -1.0
    # Words after the sentence's period are not part of the cell.
    assert gene_validity("G0 G1. FOO FOO", target) == 0.0


def test_gene_validity_counts_repeats_within_each_cell_of_a_list():
    target = RewardTarget("conditional_generation", "Cell 1: G0.\nCell 2: G1.", (), VOCAB)
    assert gene_validity("Cell 1: G0 G1.\nCell 2: G0 G1.", target) == 0.0
    assert gene_validity("Cell 1: G0 G0.\nCell 2: G1 FOO.", target) == -0.5
    assert gene_validity("G0 G1.", target) == -1.0  # not a cell list: no cell parsed


def test_gene_validity_needs_a_vocabulary_and_skips_label_tasks():
    assert gene_validity("T cell.", _label_target("T cell.")) == 0.0
    with pytest.raises(ValueError, match="needs target.vocabulary"):
        gene_validity("G0.", RewardTarget("multi_cell_context", "G0.", ("G0",)))


# ---- format -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("CD3D LYZ HLA-DRB1 RP11-34P13.7.", 1.0),
        (" CD3D LYZ. ", 1.0),
        ("CD3D LYZ", 0.0),  # no final period
        ("CD3D  LYZ.", 0.0),  # double space
        ("CD3D lyz.", 0.0),  # lower case is not a cell sentence word
        ("CD3D LYZ..", 0.0),
        ("CD3D, LYZ.", 0.0),
        ("CD3D LYZ.\nCD3D.", 0.0),
        (".", 0.0),
    ],
)
def test_format_of_a_cell_sentence(completion, expected):
    assert answer_format(completion, _cell_target()) == expected


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("CD14+ Monocyte.", 1.0),
        ("naive thymus-derived CD4-positive, alpha-beta T cell.", 1.0),
        ("yes.", 1.0),
        ("T cell", 0.0),
        ("T cell..", 0.0),
        ("T cell.\nB cell.", 0.0),
        (".", 0.0),
        (_sentence(GENES[:20]), 0.0),  # a cell sentence is not a label
    ],
)
def test_format_of_a_label(completion, expected):
    assert answer_format(completion, _label_target("T cell.")) == expected


def test_format_of_a_description_needs_a_sentence_end():
    target = RewardTarget("nl_interpretation", "A study of blood cells.")
    assert answer_format("PBMCs from a healthy donor!", target) == 1.0
    assert answer_format("PBMCs from a healthy donor", target) == 0.0
    assert answer_format("   ", target) == 0.0


# ---- targets from rendered examples ----------------------------------------------------------

SYMBOLS = np.array(["CD74", "FTL", "LYZ", "CD3D", "MS4A1", "HLA-DRB1"])


def _rendered(name, fields):
    return Templates.load().render(name, fields, np.random.default_rng(0))


def test_reference_answers_score_perfectly_on_every_applicable_reward():
    vocab = frozenset(SYMBOLS)
    fields = {
        "organism": "human",
        "cell_type": "T cell",
        "num_genes": 4,
        "cell_sentence": GeneRun(np.array([0, 1, 2]), SYMBOLS),
        "perturbed_sentence": GeneRun(np.array([2, 5, 1, 3]), SYMBOLS),
        "perturbation_phrase": "CRISPRi knockdown of CD3D",
    }
    target = RewardTarget.from_rendered(
        "perturbation_response", _rendered("perturbation_response", fields), vocab
    )
    assert target.genes == ("LYZ", "HLA-DRB1", "FTL", "CD3D")
    assert target.answer == "LYZ HLA-DRB1 FTL CD3D."
    scores = build_rewards(list(REWARDS)).score([target.answer], [target])[0]
    # exact_match does not apply to a cell; the rest score their best.
    np.testing.assert_allclose(scores, [0.0, 1.0, 1.0, 0.0, 1.0])

    label = RewardTarget.from_rendered(
        "question_answering/cell_type_choice",
        _rendered("question_answering/cell_type_choice", {**fields, "options": "B cell, T cell"}),
    )
    assert (label.answer, label.genes) == ("T cell.", ())
    assert exact_match(label.answer, label) == answer_format(label.answer, label) == 1.0


def test_cell_list_format_follows_the_template_and_the_reference_count():
    runs = [GeneRun(np.array(ids), SYMBOLS) for ids in ([0, 1], [2, 3], [4, 5])]
    fields = dict(num_cells=3, conditions="of type T cell", num_genes=2)
    rendered = _rendered("conditional_generation", {**fields, "cell_sentences": runs})
    target = RewardTarget.from_rendered("conditional_generation", rendered, frozenset(SYMBOLS))
    assert target.genes == ()  # several cells: no single true cell to rank against
    assert answer_format(target.answer, target) == 1.0
    assert gene_validity(target.answer, target) == 0.0
    lines = target.answer.split("\n")
    assert answer_format("\n".join(lines[:2]), target) == 0.0  # one cell too few
    assert answer_format("\n".join([lines[0], lines[2], lines[1]]), target) == 0.0  # numbering
    assert answer_format(target.answer.replace("Cell 2: ", ""), target) == 0.0
    assert rank_overlap(target.answer, target) == spearman_shared(target.answer, target) == 0.0


def test_target_refuses_a_task_without_a_verifiable_answer():
    with pytest.raises(ValueError, match="no verifiable answer shape for task 'language_modeling'"):
        RewardTarget("language_modeling", "Some text.")


# ---- registry and batch scoring -------------------------------------------------------------


def test_build_rewards_names_the_unknown_reward_and_the_valid_ones():
    valid = "valid rewards: exact_match, rank_overlap, spearman_shared, gene_validity, format"
    with pytest.raises(InputError, match=f"unknown reward 'exactmatch'; {valid}"):
        build_rewards(["format", "exactmatch"])
    with pytest.raises(InputError, match="2 reward weights for 1 rewards"):
        build_rewards(["format"], [1.0, 2.0])
    with pytest.raises(InputError, match="more than once: format"):
        build_rewards(["format", "format"])
    with pytest.raises(InputError, match="finite"):
        build_rewards(["format"], [float("nan")])


def test_score_completions_fills_one_column_per_reward_and_total_weights_them():
    rewards = build_rewards(["exact_match", "format", "rank_overlap"], [2.0, 0.5, 1.0])
    label, cell = _label_target("B cell."), _cell_target(("A", "B", "C"))
    completions = ["b cell", "B cell.", "B A C.", "B A C"]
    scores = rewards.score(completions, [label, label, cell, cell])
    overlap = (1 / 2 + 1 / 3) / (1 + 1 / 2 + 1 / 3)
    want = [[1, 0, 0], [1, 1, 0], [0, 1, overlap], [0, 0, overlap]]
    np.testing.assert_allclose(scores, want)
    np.testing.assert_allclose(rewards.total(scores), [2.0, 2.5, 0.5 + overlap, overlap])
    assert score_completions([], [], rewards.fns).shape == (0, 3)
    with pytest.raises(ValueError, match="2 completions but 1 targets"):
        score_completions(["a", "b"], [label], rewards.fns)
