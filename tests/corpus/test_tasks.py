"""Task mixture, example builders, splits, perturbation pairing and spatial neighbors."""

import collections
import functools
import re

import numpy as np
import pytest

from c2s_jax.corpus.cells import load_dataset
from c2s_jax.corpus.config import corpus_spec
from c2s_jax.corpus.prompts.formatter import GeneRun, Templates
from c2s_jax.corpus.splits import SPLIT_IDS, assign_splits
from c2s_jax.corpus.tasks import ExampleFactory
from c2s_jax.errors import InputError
from tests.support.corpus_helpers import (
    SHIFTED_GENE,
    perturb_dataset,
    perturb_seq_adata,
    scratch_dir,
    small_config,
    spatial_adata,
)

ALL_OFF = {f"tasks.{t}": 0.0 for t in small_config().tasks}


def _factory(config):
    spec = corpus_spec(config)
    datasets = [_load(d, spec) for d in spec.datasets]
    return ExampleFactory(spec, datasets, Templates.load())


_LOADED = {}


def _load(dataset_spec, spec):
    """Loads each (dataset, split rule, seed) once per test process."""
    key = (dataset_spec, repr(spec.split), spec.seed, spec.spatial_neighbors)
    if key not in _LOADED:
        _LOADED[key] = load_dataset(dataset_spec, spec.split, spec.seed, spec.spatial_neighbors)
    return _LOADED[key]


def _only(task: str, **overrides):
    return small_config(**{**ALL_OFF, f"tasks.{task}": 1.0, **overrides})


@functools.cache
def _perturb_path():
    path = scratch_dir() / "perturb.h5ad"
    perturb_seq_adata().write_h5ad(path)
    return str(path)


@functools.cache
def _spatial_path():
    path = scratch_dir() / "spatial.h5ad"
    spatial_adata().write_h5ad(path)
    return str(path)


def _perturb_config(**overrides):
    config = _only("perturbation_response", **overrides)
    config.datasets = [perturb_dataset(_perturb_path())]
    return config


def _spatial_config(task: str):
    config = _only(task, **{"split.by": ("donor",)})
    config.split.fractions = dict(train=0.5, validation=0.5, test=0.0)
    config.datasets = [
        dict(
            name="cortex",
            path=_spatial_path(),
            cell_type_key="cell_type",
            organism_key="organism",
            spatial_key="spatial",
            description_uns_key="description",
        )
    ]
    return config


def test_tasks_follow_their_weights():
    factory = _factory(small_config())
    n = 4000
    drawn = collections.Counter(factory.task_of("train", i) for i in range(n))
    for task, p in zip(factory.tasks, factory.task_p, strict=True):
        # 4 standard deviations of a binomial share: fails only on a real bias.
        assert abs(drawn[task] / n - p) < 4 * np.sqrt(p * (1 - p) / n), task


def test_examples_are_deterministic_and_depend_on_the_seed():
    first = _factory(small_config())
    again = _factory(small_config())
    other = _factory(small_config(seed=1))
    texts = [first.example("train", i)[0].rendered.text() for i in range(20)]
    assert texts == [again.example("train", i)[0].rendered.text() for i in range(20)]
    assert texts != [other.example("train", i)[0].rendered.text() for i in range(20)]


def test_every_example_stays_in_its_split():
    factory = _factory(small_config())
    split_of = factory.datasets[0].split
    for split, split_id in SPLIT_IDS.items():
        for i in range(60):
            example, _ = factory.example(split, i)
            assert (split_of[example.cell_ids] == split_id).all()


def test_unknown_task_and_bad_weights_are_input_errors():
    with pytest.raises(InputError, match="unknown tasks"):
        corpus_spec(small_config(**{"tasks.cell_typing": 1.0}))
    with pytest.raises(InputError, match="weights sum to 0"):
        corpus_spec(small_config(**ALL_OFF))
    with pytest.raises(InputError, match="tasks.tissue_inference"):
        corpus_spec(small_config(**{"tasks.tissue_inference": -1.0}))


def test_task_without_its_data_names_the_config_key():
    with pytest.raises(InputError, match="spatial_neighborhood.*spatial_key"):
        _factory(small_config(**{"tasks.spatial_neighborhood": 1.0}))


def test_a_control_label_that_no_cell_has_is_named():
    config = _perturb_config()
    config.datasets[0]["control_label"] = "ctrl"
    with pytest.raises(
        InputError, match=r"perturbation = 'ctrl' .*control_label; values: .*control"
    ):
        _factory(config)


def test_template_field_missing_from_the_data_names_template_and_column():
    config = _only("cell_type_annotation")
    config.datasets[0]["organism_key"] = None
    factory = _factory(config)
    with pytest.raises(InputError, match=r"template 'cell_type_annotation\[\d\]'.*organism"):
        factory.example("train", 0)


def test_grouped_splits_do_not_leak_groups():
    obs = perturb_seq_adata().obs
    splits = assign_splits(
        obs,
        ("cell_type", "perturbation"),
        {"train": 0.5, "validation": 0.25, "test": 0.25},
        seed=0,
        where="perturb",
    )
    combos = obs.cell_type + "/" + obs.perturbation
    for combo in combos.unique():
        assert len(np.unique(splits[combos.to_numpy() == combo])) == 1
    assert set(np.unique(splits)) == {0, 1, 2}


def test_a_split_without_cells_is_an_input_error():
    obs = perturb_seq_adata().obs
    with pytest.raises(InputError, match="split 'test' is empty"):
        assign_splits(obs, ("batch",), {"train": 0.6, "validation": 0.2, "test": 0.2}, 0, "x")


@pytest.mark.parametrize("policy", ["shrink", "skip"])
def test_small_groups_follow_the_policy(policy):
    # Groups of pbmc68k cell types in the validation split are small (a few to ~20 cells).
    config = _only("multi_cell_context", small_group_policy=policy, cells_per_example=(30, 30))
    factory = _factory(config)
    sizes, misses = [], collections.Counter()
    for i in range(40):
        example, missed = factory.example("validation", i)
        misses.update(missed)
        if example is not None:
            sizes.append(len(example.cell_ids))
    if policy == "shrink":
        assert sizes and max(sizes) < 30
        assert not any("smaller than" in k for k in misses)
    else:
        assert not sizes and any("group smaller than 30" in k for k in misses)


def test_perturbation_pairs_control_of_same_type_and_batch_and_answers_shifted_gene():
    factory = _factory(_perturb_config())
    data = factory.datasets[0]
    obs = data.sentences.obs
    for i in range(30):
        example, _ = factory.example("train", i)
        control, perturbed = example.cell_ids
        assert obs.perturbation.iloc[control] == "control"
        for key in ("cell_type", "batch"):
            assert obs[key].iloc[control] == obs[key].iloc[perturbed]
        name = obs.perturbation.iloc[perturbed]
        answer = example.rendered.answer_text()
        assert f"knockout of {name}" in example.rendered.prompt_text()
        if name in SHIFTED_GENE:
            assert answer.split()[0] == SHIFTED_GENE[name]
        if name == "DRUG_X":
            assert "at dose 10 uM" in example.rendered.prompt_text()


def test_unseen_combination_split_holds_out_cell_type_perturbation_pairs():
    config = _perturb_config(**{"split.by": ("cell_type", "perturbation")})
    factory = _factory(config)
    obs = factory.datasets[0].sentences.obs
    seen = {}
    for split in ("train", "validation", "test"):
        combos = set()
        for i in range(40):
            example, _ = factory.example(split, i)
            if example is not None:
                combos.add(tuple(obs.iloc[example.cell_ids[1]][["cell_type", "perturbation"]]))
        seen[split] = combos
    assert seen["train"].isdisjoint(seen["test"]) and seen["train"].isdisjoint(seen["validation"])


def test_spatial_examples_use_neighbors_from_the_same_split():
    factory = _factory(_spatial_config("spatial_neighborhood"))
    data = factory.datasets[0]
    coords = spatial_adata().obsm["spatial"]
    for i in range(30):
        example, _ = factory.example("train", i)
        anchor, target = example.cell_ids[0], example.cell_ids[-1]
        assert (data.split[example.cell_ids] == 0).all()
        # Neighbors on the grid lie within a few steps of the anchor.
        assert np.abs(coords[anchor] - coords[target]).max() <= 2
        assert example.rendered.answer_text().endswith(".")


def test_descriptions_feed_interpretation_and_language_modeling():
    factory = _factory(_spatial_config("nl_interpretation"))
    example, _ = factory.example("train", 0)
    assert example.rendered.answer_text() == spatial_adata().uns["description"] + "."
    text_file = scratch_dir() / "bio.txt"
    text_file.write_text("Cells divide.\n\nGenes are transcribed.\n\nProteins fold.\n\nRNA decays.")
    config = _spatial_config("language_modeling")
    config.text_files = (str(text_file),)
    factory = _factory(config)
    example, _ = factory.example("train", 0)
    assert example.rendered.prompt == () and example.source == "text"


def test_question_answers_are_exact():
    factory = _factory(_only("question_answering"))
    data = factory.datasets[0]
    symbols = data.sentences.symbols
    kinds = collections.Counter()
    for i in range(80):
        example, _ = factory.example("train", i)
        cell = example.cell_ids[0]
        answer = example.rendered.answer_text()[:-1]
        ranked = list(symbols[data.genes(cell)])
        # The question follows the cell sentence in every wording; the genes it names are
        # the gene asked about or the options.
        parts = example.rendered.prompt
        last_run = max(i for i, part in enumerate(parts) if isinstance(part, GeneRun))
        question = "".join(str(part) for part in parts[last_run + 1 :])
        words = (w.rstrip(".") for w in re.split(r"[\s,:?]+", question))
        named = [w for w in words if w in set(symbols)]
        if answer in ("yes", "no"):
            kinds["is_expressed"] += 1
            assert len(named) == 1 and answer == ("yes" if named[0] in ranked else "no")
        elif answer in set(symbols):
            kinds["most_expressed"] += 1
            assert len(named) >= 2 and answer == min(named, key=ranked.index)
        else:
            kinds["cell_type_choice"] += 1
            assert answer == data.fields["cell_type"][cell]
    assert len(kinds) == 3
