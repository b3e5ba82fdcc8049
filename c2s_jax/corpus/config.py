"""Corpus configs: load an ml-collections `get_config()` file and check it into typed specs.

Every mistake a config can hold (unknown task, bad weights, unknown keys, impossible
ranges) is an InputError naming the config key, raised before any data is read.
"""

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path

import ml_collections

from c2s_jax.errors import InputError
from c2s_jax.sentences.embedded import is_embedded

TASKS = (
    "cell_type_annotation",
    "tissue_inference",
    "conditional_generation",
    "multi_cell_context",
    "spatial_neighborhood",
    "perturbation_response",
    "nl_interpretation",
    "language_modeling",
    "question_answering",
)
SPLITS = ("train", "validation", "test")
EMBEDDED_PBMC = "embedded:pbmc68k"


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One input dataset and where its fields live.

    Attributes:
      name: short unique name (recorded with every example as its source).
      path: .h5ad path, or `embedded:NAME` for a packaged dataset (`data.embedded`).
      weight: relative share of this dataset among those that can serve a task.
      layer, raw, gene_symbols_key: which matrix and symbols to read (as `c2s sentences`);
        sanitize_symbols replaces whitespace inside symbols with '_' (else an error).
      cell_type_key, tissue_key, disease_key, organism_key: obs columns (None: absent).
      organism: a constant organism when no obs column holds it.
      perturbation_key: obs column naming each cell's perturbation; control_label marks
        controls; perturbation_type (or perturbation_type_key) says drug / cytokine / gene
        knockout; dose_key and time_key are optional obs columns.
      batch_key: controls are paired within cell type and this column.
      group_keys: obs columns whose values group cells for multi-cell examples.
      spatial_key: obsm entry with [cells, 2+] coordinates (None: no spatial task).
      description_key: obs column with free text describing each cell's study;
        description_uns_key: the same for the whole dataset, from uns.
    """

    name: str
    path: str
    weight: float = 1.0
    layer: str | None = None
    raw: bool = False
    gene_symbols_key: str | None = None
    sanitize_symbols: bool = False
    cell_type_key: str | None = "cell_type"
    tissue_key: str | None = None
    disease_key: str | None = None
    organism_key: str | None = None
    organism: str | None = None
    perturbation_key: str | None = None
    control_label: str = "control"
    perturbation_type: str = "perturbation"
    perturbation_type_key: str | None = None
    dose_key: str | None = None
    time_key: str | None = None
    batch_key: str | None = None
    group_keys: tuple[str, ...] = ()
    spatial_key: str | None = None
    description_key: str | None = None
    description_uns_key: str | None = None

    def obs_keys(self) -> list[str]:
        """The obs columns this dataset's examples read."""
        keys = [
            self.cell_type_key,
            self.tissue_key,
            self.disease_key,
            self.organism_key,
            self.perturbation_key,
            self.perturbation_type_key,
            self.dose_key,
            self.time_key,
            self.batch_key,
            self.description_key,
            *self.group_keys,
        ]
        return list(dict.fromkeys(k for k in keys if k))


@dataclasses.dataclass(frozen=True)
class SplitSpec:
    """Train/validation/test assignment.

    Attributes:
      by: obs columns whose value combinations go whole into one split (e.g. donor, or
        cell type x perturbation for unseen-combination splits); () splits by cell.
      fractions: share of cells per split (sums to 1).
      held_out: obs value combinations whose cells all go to the test split, before the
        rest is split by `by` and `fractions` (e.g. ({'cell_type': 'CD14 Mono',
        'stim': 'STIM'},): stimulated monocytes never seen in training, as scGen and
        C2S-Scale evaluate perturbation response).
    """

    by: tuple[str, ...]
    fractions: dict[str, float]
    held_out: tuple[dict[str, str], ...] = ()

    def obs_keys(self) -> list[str]:
        """The obs columns the split reads."""
        return list(dict.fromkeys([*self.by, *(k for group in self.held_out for k in group)]))


@dataclasses.dataclass(frozen=True)
class TokenizerSpec:
    """Which tokenizer turns text into ids.

    Attributes:
      path: a SentencePiece .model; None trains a gene-aware one into the output folder.
      family: 'gemma' (BOS + text + EOS), 'pythia' (text + EOS) or 'c2s' (as gemma).
      vocab_size: pieces of a tokenizer trained here (gene symbols included).
      pre_tokenized: build cell sentences from a gene -> token-ids table when it is
        equivalent to tokenizing the text (checked on `check_examples` examples).
      training_examples: corpus examples whose text trains the tokenizer.
    """

    path: str | None
    family: str
    vocab_size: int
    pre_tokenized: bool
    check_examples: int
    training_examples: int


@dataclasses.dataclass(frozen=True)
class CorpusSpec:
    """A checked corpus config (see configs/corpus/ for documented examples)."""

    seed: int
    datasets: tuple[DatasetSpec, ...]
    task_weights: dict[str, float]
    top_k: tuple[int, int]
    cells_per_example: tuple[int, int]
    generated_cells: tuple[int, int]
    tissue_cells: tuple[int, int]
    spatial_neighbors: int
    small_group_policy: str
    qa_options: int
    text_files: tuple[str, ...]
    split: SplitSpec
    examples: dict[str, int]
    examples_per_part: int
    seq_len: int
    tokenizer: TokenizerSpec
    config: dict
    # Cells read at once while counting cells and fetching genes: bounds memory, never
    # changes the corpus. Optional in configs.
    chunk_size: int = 4096

    def task_probabilities(self) -> dict[str, float]:
        """Tasks with positive weight, normalized to sum to 1."""
        total = sum(self.task_weights.values())
        return {t: w / total for t, w in self.task_weights.items() if w > 0}


def default_corpus_config() -> ml_collections.ConfigDict:
    """Every corpus config key at its default; a config file sets its datasets and task
    weights (all 0 here) and changes what else differs (configs/corpus/)."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.datasets = []
    config.tasks = dict.fromkeys(TASKS, 0.0)
    config.top_k = (100, 200)
    config.cells_per_example = (5, 20)
    config.generated_cells = (1, 3)
    config.tissue_cells = (1, 5)
    config.spatial_neighbors = 6
    config.small_group_policy = "shrink"
    config.qa_options = 4
    config.text_files = ()
    config.split = dict(by=(), fractions=dict(train=0.8, validation=0.1, test=0.1))
    config.examples = dict(train=4000, validation=400, test=400)
    config.examples_per_part = 2000
    config.seq_len = 8192
    config.tokenizer = dict(
        path=None,
        family="c2s",
        vocab_size=2000,
        pre_tokenized=True,
        check_examples=64,
        training_examples=2000,
    )
    return config


def corpus_spec(config: ml_collections.ConfigDict) -> CorpusSpec:
    """Checks a corpus config and returns it typed."""
    raw = config.to_dict()
    known = {f.name for f in dataclasses.fields(CorpusSpec)} - {"config", "task_weights"}
    unknown = set(raw) - known - {"tasks"}
    if unknown:
        raise InputError(f"corpus config has unknown keys {sorted(unknown)}")
    datasets = tuple(_dataset_spec(i, d) for i, d in enumerate(raw.get("datasets", ())))
    if not datasets:
        raise InputError("config key 'datasets' is empty: list at least one dataset")
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise InputError(f"config key 'datasets': names must be unique, got {names}")
    examples = dict(raw["examples"])
    if set(examples) - set(SPLITS) or any(int(n) < 0 for n in examples.values()):
        raise InputError(f"config key 'examples' must map {SPLITS} to counts >= 0")
    tokenizer = raw["tokenizer"]
    if tokenizer["family"] not in ("gemma", "pythia", "c2s"):
        raise InputError("config key 'tokenizer.family' must be 'gemma', 'pythia' or 'c2s'")
    policy = raw["small_group_policy"]
    if policy not in ("shrink", "skip"):
        raise InputError("config key 'small_group_policy' must be 'shrink' or 'skip'")
    return CorpusSpec(
        seed=int(raw["seed"]),
        datasets=datasets,
        task_weights=_task_weights(raw["tasks"]),
        top_k=_int_range(raw["top_k"], "top_k", low=1),
        cells_per_example=_int_range(raw["cells_per_example"], "cells_per_example", low=2),
        generated_cells=_int_range(raw["generated_cells"], "generated_cells", low=1),
        tissue_cells=_int_range(raw["tissue_cells"], "tissue_cells", low=1),
        spatial_neighbors=_positive(raw["spatial_neighbors"], "spatial_neighbors"),
        small_group_policy=policy,
        qa_options=_positive(raw["qa_options"], "qa_options"),
        text_files=tuple(raw.get("text_files", ())),
        split=_split_spec(raw["split"]),
        examples={s: int(examples.get(s, 0)) for s in SPLITS},
        examples_per_part=_positive(raw["examples_per_part"], "examples_per_part"),
        seq_len=_positive(raw["seq_len"], "seq_len"),
        tokenizer=TokenizerSpec(
            path=tokenizer["path"],
            family=tokenizer["family"],
            vocab_size=_positive(tokenizer["vocab_size"], "tokenizer.vocab_size"),
            pre_tokenized=bool(tokenizer["pre_tokenized"]),
            check_examples=_positive(tokenizer["check_examples"], "tokenizer.check_examples"),
            training_examples=_positive(
                tokenizer["training_examples"], "tokenizer.training_examples"
            ),
        ),
        config=raw,
        chunk_size=_positive(raw.get("chunk_size", 4096), "chunk_size"),
    )


def _task_weights(tasks: Mapping[str, float]) -> dict[str, float]:
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise InputError(f"config key 'tasks' names unknown tasks {unknown}; known: {TASKS}")
    weights = {}
    for name, weight in tasks.items():
        if not isinstance(weight, int | float) or not math.isfinite(weight) or weight < 0:
            raise InputError(f"config key 'tasks.{name}': weight must be a number >= 0")
        weights[name] = float(weight)
    if sum(weights.values()) <= 0:
        raise InputError("config key 'tasks': weights sum to 0; give some task a positive weight")
    return weights


def _dataset_spec(index: int, entry: Mapping) -> DatasetSpec:
    fields = {f.name for f in dataclasses.fields(DatasetSpec)}
    unknown = sorted(set(entry) - fields)
    if unknown:
        raise InputError(f"config key 'datasets[{index}]' has unknown keys {unknown}")
    if "name" not in entry or "path" not in entry:
        raise InputError(f"config key 'datasets[{index}]' needs 'name' and 'path'")
    values = dict(entry)
    values["group_keys"] = tuple(values.get("group_keys", ()))
    spec = DatasetSpec(**values)
    if spec.weight <= 0 or not math.isfinite(spec.weight):
        raise InputError(f"config key 'datasets[{index}].weight' must be a positive number")
    if not is_embedded(spec.path) and not Path(spec.path).is_file():
        raise InputError(f"config key 'datasets[{index}].path': {spec.path} does not exist")
    return spec


def _split_spec(split: Mapping) -> SplitSpec:
    fractions = {s: float(split["fractions"].get(s, 0.0)) for s in SPLITS}
    unknown = set(split["fractions"]) - set(SPLITS)
    if unknown or any(f < 0 for f in fractions.values()):
        raise InputError(f"config key 'split.fractions' must map {SPLITS} to shares >= 0")
    if not math.isclose(sum(fractions.values()), 1.0, abs_tol=1e-6):
        raise InputError(
            f"config key 'split.fractions' must sum to 1, got {sum(fractions.values()):.4f}"
        )
    unknown_keys = set(split) - {"by", "fractions", "held_out"}
    if unknown_keys:
        raise InputError(f"config key 'split' has unknown keys {sorted(unknown_keys)}")
    held_out = tuple(split.get("held_out", ()))
    for index, group in enumerate(held_out):
        if not isinstance(group, Mapping) or not group:
            raise InputError(
                f"config key 'split.held_out[{index}]' must map obs columns to values, e.g. "
                "{'cell_type': 'CD14 Mono', 'stim': 'STIM'}"
            )
    return SplitSpec(
        by=tuple(split.get("by", ())),
        fractions=fractions,
        held_out=tuple({str(k): str(v) for k, v in group.items()} for group in held_out),
    )


def _int_range(value, key: str, low: int) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) for v in pair) or pair[0] > pair[1]:
        raise InputError(f"config key '{key}' must be an integer or a (min, max) pair")
    if pair[0] < low:
        raise InputError(f"config key '{key}' must be at least {low}, got {pair[0]}")
    return int(pair[0]), int(pair[1])


def _positive(value, key: str) -> int:
    if not isinstance(value, int) or value < 1:
        raise InputError(f"config key '{key}' must be a positive integer, got {value!r}")
    return value
