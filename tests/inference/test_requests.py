"""Generation requests are read against the corpus's labels: counts, organisms by common
name, plurals, longest labels first, and every word accounted for."""

import pytest

from c2s_jax.corpus.prompts.formatter import Templates
from c2s_jax.errors import InputError
from c2s_jax.inference.requests import CellRequest, condition_phrase, merged_labels, parse_request

LABELS = {
    "cell_type": ["CD8+ T cell", "fibroblast", "T", "CD4 Memory T", "B", "CD14+ Monocyte"],
    "tissue": ["kidney", "lung", "pancreas", "peripheral blood"],
    "organism": ["Homo sapiens", "Mus musculus"],
    "perturbation": ["IL-6", "IFN-beta", "control"],
}


@pytest.mark.parametrize(
    ("text", "count", "conditions"),
    [
        ("7 human kidney cells", 7, {"organism": "Homo sapiens", "tissue": "kidney"}),
        ("CD8+ T cells from pancreas", None, {"cell_type": "CD8+ T cell", "tissue": "pancreas"}),
        (
            "a fibroblast in lung after IL-6 stimulation",
            1,
            {"cell_type": "fibroblast", "tissue": "lung", "perturbation": "IL-6"},
        ),
        ("three CD4 memory T cells", 3, {"cell_type": "CD4 Memory T"}),  # not "T"
        ("B cells of mice", None, {"cell_type": "B", "organism": "Mus musculus"}),
        (
            "CD14+ monocytes treated with IFN-beta",
            None,
            {"cell_type": "CD14+ Monocyte", "perturbation": "IFN-beta"},
        ),
        ("Peripheral Blood.", None, {"tissue": "peripheral blood"}),
    ],
)
def test_requests_become_counts_and_corpus_labels(text, count, conditions):
    request = parse_request(text, LABELS)
    assert request == CellRequest(text, count, conditions)


def test_conditions_are_written_in_the_corpus_order_and_words():
    phrases = Templates.load().entry("conditional_generation")["conditions"]
    request = parse_request("human lung fibroblasts", LABELS)
    assert condition_phrase(request, phrases) == "of type fibroblast from lung of Homo sapiens"


def test_what_matches_nothing_is_named_with_the_closest_labels():
    with pytest.raises(
        InputError, match=r"could not match 'Kidny' \(did you mean tissue 'kidney'\?\)"
    ):
        parse_request("5 human Kidny cells", LABELS)
    with pytest.raises(InputError, match="names two cell types, 'B' and 'fibroblast'"):
        parse_request("B cells and fibroblasts", LABELS)
    with pytest.raises(InputError, match="names no cell type.*corpus knows cell type: CD8"):
        parse_request("some cells", LABELS)
    with pytest.raises(InputError, match="asks for 0 cells"):
        parse_request("0 B cells", LABELS)


def test_labels_merge_over_the_datasets_of_a_corpus():
    datasets = {"a": {"labels": {"tissue": ["lung"]}}, "b": {"labels": {"tissue": ["kidney"]}}}
    assert merged_labels(datasets) == {"tissue": ["kidney", "lung"]}
    assert merged_labels({"old": {}}) == {}
