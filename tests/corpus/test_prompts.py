"""Prompt templates: coverage of every task, C2S-compatible fields, and rendering."""

import re

import numpy as np
import pytest

from c2s_jax.corpus.config import TASKS
from c2s_jax.corpus.prompts.formatter import GeneRun, MissingFieldError, Templates
from c2s_jax.errors import InputError

SYMBOLS = np.array(["CD74", "FTL", "LYZ", "CD3D", "MS4A1"])


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates.load()


def _template_names(templates: Templates) -> list[str]:
    names = []
    for task in TASKS:
        entry = templates.entry(task)
        if "prompts" in entry:
            names.append(task)
        else:
            names += [f"{task}/{kind}" for kind in entry]
    return names


def test_every_task_has_wordings_and_answers_end_with_a_period(templates):
    for name in _template_names(templates):
        entry = templates.entry(name)
        if name != "language_modeling":
            assert len(entry["prompts"]) >= 10, name
            assert len(set(entry["prompts"])) == len(entry["prompts"]), name
        answer = entry["answer"]
        # Answers are a field that the builder ends with a period, or end with one themselves.
        assert answer.endswith(".") or answer in ("{cell_sentences}", "{description}", "{text}")


def test_annotation_prompt_uses_released_c2s_fields(templates):
    fields = templates.fields("cell_type_annotation")
    # {genes} is num_genes with its noun ('1 gene', '100 genes').
    assert {"genes", "organism", "cell_sentence", "cell_type"} <= fields
    assert "tissue" in templates.fields("tissue_inference")


def test_render_keeps_cell_sentences_as_gene_ids(templates):
    run = GeneRun(np.array([2, 0, 1]), SYMBOLS)
    fields = {"cell_sentence": run, "num_genes": 3, "organism": "Homo sapiens", "cell_type": "B"}
    rendered = templates.render("cell_type_annotation", fields, np.random.default_rng(0))
    assert any(isinstance(p, GeneRun) for p in rendered.prompt)
    assert "LYZ CD74 FTL" in rendered.prompt_text()
    assert rendered.answer_text() == "B."
    assert rendered.text() == f"{rendered.prompt_text()} B."


def test_cell_lists_are_numbered_and_each_cell_ends_with_a_period(templates):
    runs = [GeneRun(np.array([0, 1]), SYMBOLS), GeneRun(np.array([3]), SYMBOLS)]
    rendered = templates.render(
        "conditional_generation",
        {
            "cell_sentences": runs,
            "num_cells": 2,
            "conditions": "of type T",
            "num_genes": 2,
        },
        np.random.default_rng(0),
    )
    assert rendered.answer_text() == "Cell 1: CD74 FTL.\nCell 2: CD3D."


def test_wordings_vary_with_the_generator(templates):
    fields = {
        "cell_sentence": GeneRun(np.array([0]), SYMBOLS),
        "num_genes": 1,
        "organism": "Homo sapiens",
        "cell_type": "B",
    }
    prompts = {
        templates.render("cell_type_annotation", fields, np.random.default_rng(s)).prompt_text()
        for s in range(200)
    }
    assert len(prompts) == len(templates.entry("cell_type_annotation")["prompts"])


def test_missing_field_names_the_template(templates):
    with pytest.raises(MissingFieldError) as err:
        templates.render("tissue_inference", {"organism": "x"}, np.random.default_rng(0))
    assert err.value.template_name.startswith("tissue_inference[")


def test_unknown_template_is_an_input_error(templates):
    with pytest.raises(InputError, match="no entry 'nonexistent'"):
        templates.entry("nonexistent")


class _Wording:
    """Stands in for the generator: always picks wording `index`."""

    def __init__(self, index: int):
        self.index = index

    def integers(self, _: int) -> int:
        return self.index


# Number agreement, spacing and capitals that a rendered prompt must never show.
_MISTAKES = {
    "a plural after one": re.compile(r"\b(?:one|1) (?:cells|genes)\b"),
    "a singular after a number": re.compile(r"\b(?:[2-9]|\d\d+) (?:cell|gene)\b"),
    "a plural verb before one": re.compile(r"\bare the (?:top )?1\b|\b1 most\b"),
    "verb agreement": re.compile(r"\bcells is\b|\bcell are\b|\bthis cells\b|\bthese cell\b"),
    "doubled or stray spaces": re.compile(r"  | [,.?:;]"),
    "doubled punctuation": re.compile(r"[.?!:][.?!]"),
    "a sentence opening in lower case": re.compile(r"(?:^|[.?!] |\n)[a-z]"),
}


@pytest.mark.parametrize("num_cells", [1, 3])
@pytest.mark.parametrize("num_genes", [1, 100])
def test_every_wording_reads_right_for_one_or_many(templates, num_cells, num_genes):
    run = GeneRun(np.arange(min(num_genes, len(SYMBOLS))), SYMBOLS)
    fields = {
        "cell_sentence": run,
        "cell_sentences": [run] * num_cells,
        "num_cells": num_cells,
        "num_genes": num_genes,
        "organism": "Homo sapiens",
        "cell_type": "CD4+ T cells",  # a plural label
        "tissue": "peripheral blood",
        "conditions": "of type CD4+ T cells from lung",
        "group": "cell type CD4+ T cells",
        "perturbation_phrase": "cytokine IFN-beta after 6 h",
        "perturbed_sentence": run,
        "description": "PBMCs of eight donors, with and without interferon-beta.",
        "options": "CD74, FTL, LYZ",
        "gene": "LYZ",
        "yes_no": "yes",
        "text": "Plain text.",
    }
    for name in _template_names(templates):
        for index in range(len(templates.entry(name)["prompts"])):
            rendered = templates.render(name, fields, _Wording(index))
            text = rendered.text()
            for mistake, pattern in _MISTAKES.items():
                # Answers are labels as the data spells them ('peripheral blood.').
                found = pattern.search(
                    text if "lower case" not in mistake else rendered.prompt_text()
                )
                assert not found, f"{name}[{index}] {mistake}: {found.group()!r} in {text!r}"
            if num_cells == 1:  # words for several cells
                words = re.findall(r"\b(?:each|them|they|their|these|both|all)\b", text)
                assert not words, f"{name}[{index}] says {words} of one cell: {text!r}"
