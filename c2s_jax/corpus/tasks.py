"""Tasks and the mixture sampler: (split, example index) -> one rendered example.

Every example draws its own generator from (seed, split, index), so the corpus is the
same whatever order, part or process builds it, and an interrupted build resumes at any
example. The task comes from the config's weights; the dataset from the weights of the
datasets that can serve that task. A builder that cannot use the cell it drew (a missing
label, a group too small under the 'skip' policy) tries again with a fresh cell, and every
such miss is counted under a named reason.

Cells in one example always share its split. Perturbation examples are the one exception
by design: the control cell is an input, drawn from all controls of the same cell type
and batch, so that held-out cell type x perturbation combinations still have controls.
"""

import collections
import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from c2s_jax.corpus.cells import CONDITION_FIELDS, DatasetCells
from c2s_jax.corpus.config import CorpusSpec
from c2s_jax.corpus.prompts.formatter import GeneRun, MissingFieldError, Rendered, Templates
from c2s_jax.corpus.splits import SPLIT_IDS
from c2s_jax.errors import InputError

TEXT_SOURCE = "text"
# Tries per example before it is given up (each failed try is counted by reason).
MAX_TRIES = 16
QA_KINDS = ("most_expressed", "is_expressed", "cell_type_choice")


@dataclasses.dataclass(frozen=True)
class Example:
    """One corpus example before tokenization.

    Attributes:
      task: task name.
      source: dataset name ('text' for plain text).
      cell_ids: [n] int64 cells of the source dataset used (prompt cells, then answer).
      rendered: prompt and answer.
    """

    task: str
    source: str
    cell_ids: np.ndarray
    rendered: Rendered


class SkipDrawError(Exception):
    """A drawn cell cannot make this task's example; the reason is counted."""


# Which dataset fields each task needs; config keys are named in the error when absent.
def _supports(task: str, data: DatasetCells) -> bool:
    spec = data.spec
    return {
        "cell_type_annotation": "cell_type" in data.fields,
        "tissue_inference": "tissue" in data.fields,
        "conditional_generation": any(f in data.fields for f in CONDITION_FIELDS),
        "multi_cell_context": bool(spec.group_keys),
        "spatial_neighborhood": data.neighbors is not None,
        "perturbation_response": data.controls is not None and len(data.controls.perturbed) > 0,
        "nl_interpretation": "description" in data.fields or data.description is not None,
        "question_answering": True,
        "language_modeling": False,
    }[task]


_REQUIREMENT = {
    "cell_type_annotation": "a cell type column (datasets[].cell_type_key)",
    "tissue_inference": "a tissue column (datasets[].tissue_key)",
    "conditional_generation": "a cell type, tissue, organism, disease or perturbation column",
    "multi_cell_context": "group columns (datasets[].group_keys)",
    "spatial_neighborhood": "spatial coordinates (datasets[].spatial_key)",
    "perturbation_response": "perturbed cells with matching controls "
    "(datasets[].perturbation_key, control_label)",
    "nl_interpretation": "a description (datasets[].description_key or description_uns_key)",
    "language_modeling": "text (text_files, or a dataset description_uns_key)",
}


class ExampleFactory:
    """Draws examples of the configured mixture.

    Args:
      spec: the checked corpus config.
      datasets: the loaded datasets, in config order.
      templates: prompt templates.
    """

    def __init__(self, spec: CorpusSpec, datasets: Sequence[DatasetCells], templates: Templates):
        self.spec = spec
        self.datasets = list(datasets)
        self.templates = templates
        probabilities = spec.task_probabilities()
        self.tasks = list(probabilities)
        self.task_p = np.array(list(probabilities.values()))
        self.texts, self.text_split = self._texts()
        self._eligible = {}
        for task in self.tasks:
            if task == "language_modeling":
                if not self.texts:
                    raise InputError(f"task '{task}' needs {_REQUIREMENT[task]}")
                continue
            eligible = [i for i, d in enumerate(self.datasets) if _supports(task, d)]
            if not eligible:
                raise InputError(
                    f"task '{task}' has weight {spec.task_weights[task]:g} but no dataset "
                    f"provides {_REQUIREMENT.get(task, 'what it needs')}; add it or set "
                    f"tasks.{task} to 0"
                )
            weights = np.array([self.datasets[i].spec.weight for i in eligible])
            self._eligible[task] = (eligible, weights / weights.sum())
        self._builders: dict[str, Callable] = {
            "cell_type_annotation": self._cell_type_annotation,
            "tissue_inference": self._tissue_inference,
            "conditional_generation": self._conditional_generation,
            "multi_cell_context": self._multi_cell_context,
            "spatial_neighborhood": self._spatial_neighborhood,
            "perturbation_response": self._perturbation_response,
            "nl_interpretation": self._nl_interpretation,
            "question_answering": self._question_answering,
        }

    def fetch_genes(self, keys: Iterable[tuple[str, int]]) -> None:
        """Reads the genes of every cell that examples `keys` ((split, index) pairs) use,
        one pass per dataset, replacing the genes held before (stores that hold every
        cell keep them). Cells are found by drawing the examples with placeholder genes.
        """
        with contextlib.ExitStack() as stack:
            recorded = [stack.enter_context(d.store.recording()) for d in self.datasets]
            for split, index in keys:
                self.example(split, index)
        for data, cells in zip(self.datasets, recorded, strict=True):
            data.store.fetch(cells)

    def task_of(self, split: str, index: int) -> str:
        """The task that example `index` of `split` draws (the mixture sample alone)."""
        rng = np.random.default_rng([self.spec.seed, SPLIT_IDS[split], index, 0])
        return self.tasks[int(rng.choice(len(self.tasks), p=self.task_p))]

    def example(
        self, split: str, index: int, context_cap: int | None = None
    ) -> tuple[Example | None, collections.Counter]:
        """Example `index` of `split`, or None when no try succeeded.

        Args:
          split: 'train', 'validation' or 'test'.
          index: example number within the split.
          context_cap: at most this many genes per prompt cell (used to fit seq_len).

        Returns:
          (example or None, counts of failed tries by reason).
        """
        task = self.task_of(split, index)
        split_id = SPLIT_IDS[split]
        misses = collections.Counter()
        for attempt in range(MAX_TRIES):
            rng = np.random.default_rng([self.spec.seed, split_id, index, 1 + attempt])
            try:
                if task == "language_modeling":
                    return self._language_modeling(split_id, rng), misses
                eligible, weights = self._eligible[task]
                data = self.datasets[eligible[int(rng.choice(len(eligible), p=weights))]]
                if len(data.cells_by_split[split_id]) == 0:
                    raise SkipDrawError(f"{data.spec.name}: no {split} cells")
                cells, fields, name = self._builders[task](data, split_id, rng, context_cap)
                rendered = self._render(name, fields, rng, data)
                return Example(task, data.spec.name, np.asarray(cells, np.int64), rendered), misses
            except SkipDrawError as skip:
                misses[f"{task}: {skip}"] += 1
        misses[f"{task}: gave up after {MAX_TRIES} tries"] += 1
        return None, misses

    # ---- shared pieces -------------------------------------------------------------------

    def _render(self, name: str, fields: dict, rng, data: DatasetCells) -> Rendered:
        try:
            return self.templates.render(name, fields, rng)
        except MissingFieldError as missing:
            raise InputError(
                f"template '{missing.template_name}' needs field '{missing.field}', which "
                f"dataset '{data.spec.name}' ({data.spec.path}) does not provide; name its obs "
                f"column in datasets[].{missing.field}_key (or set tasks.{name.split('/')[0]} "
                "to 0)"
            ) from None

    def _top_k(self, rng) -> int:
        low, high = self.spec.top_k
        return int(rng.integers(low, high + 1))

    def _run(self, data: DatasetCells, cell: int, k: int) -> GeneRun:
        return GeneRun(data.genes(cell)[:k], data.sentences.symbols)

    def _anchor(self, data: DatasetCells, split: int, rng, *needed: str) -> int:
        """A random cell of the split with a value in each `needed` field it has.

        A field the dataset lacks altogether is left to the template, which then names it
        in an InputError: that is a config mistake, not an unlucky draw.
        """
        cells = data.cells_by_split[split]
        cell = int(cells[rng.integers(len(cells))])
        for field in needed:
            if field in data.fields and data.fields[field][cell] is None:
                raise SkipDrawError(f"cell without {field}")
        return cell

    def _common_fields(self, data: DatasetCells, cell: int) -> dict:
        fields = {}
        for field in ("organism", "cell_type", "tissue", "disease"):
            if field in data.fields and data.fields[field][cell] is not None:
                fields[field] = data.fields[field][cell]
        return fields

    def _cell_list_fields(self, data: DatasetCells, anchor: int, cells: list[int], k: int):
        """Fields of a prompt listing `cells` (top k genes each), labeled by `anchor`."""
        fields = self._common_fields(data, anchor)
        fields.update(
            cell_sentences=[self._run(data, c, k) for c in cells], num_cells=len(cells), num_genes=k
        )
        return fields

    def _pick_cells(self, pool: np.ndarray, n: int, first: int, rng) -> list[int]:
        """`first` and then up to n - 1 other cells of `pool` (sorted), in random order.

        Positions are drawn among the pool's other cells without building them, so the
        cost follows n, not the pool (a cell type of an atlas holds millions of cells).
        """
        at = int(np.searchsorted(pool, first))
        holds_first = at < len(pool) and pool[at] == first
        n_others = len(pool) - int(holds_first)
        drawn = rng.choice(n_others, size=min(n - 1, n_others), replace=False)
        if holds_first:
            drawn = drawn + (drawn >= at)
        return [first, *(int(c) for c in pool[drawn])]

    def _context_k(self, rng, cap: int | None) -> int:
        """Genes shown per prompt cell: the drawn top-K, at most `cap`."""
        k = self._top_k(rng)
        return k if cap is None else min(k, cap)

    # ---- tasks ----------------------------------------------------------------------------

    def _cell_type_annotation(self, data, split, rng, cap):
        cell = self._anchor(data, split, rng, "cell_type", "organism")
        run = self._run(data, cell, self._context_k(rng, cap))
        fields = self._common_fields(data, cell)
        fields.update(cell_sentence=run, num_genes=len(run.gene_ids))
        return [cell], fields, "cell_type_annotation"

    def _tissue_inference(self, data, split, rng, cap):
        cell = self._anchor(data, split, rng, "tissue", "organism")
        low, high = self.spec.tissue_cells
        pool = data.cells_with(split, "tissue", data.fields["tissue"][cell])
        cells = self._pick_cells(pool, int(rng.integers(low, high + 1)), cell, rng)
        fields = self._cell_list_fields(data, cell, cells, self._context_k(rng, cap))
        return cells, fields, "tissue_inference"

    def _conditional_generation(self, data, split, rng, cap):
        cell = self._anchor(data, split, rng)
        present = [f for f in CONDITION_FIELDS if f in data.fields and data.fields[f][cell]]
        if not present:
            raise SkipDrawError("cell without any condition field")
        chosen = [f for f in present if rng.random() < 0.5] or [present[rng.integers(len(present))]]
        pool = data.cells_matching(split, {f: data.fields[f][cell] for f in chosen})
        low, high = self.spec.generated_cells
        cells = self._pick_cells(pool, int(rng.integers(low, high + 1)), cell, rng)
        k = self._top_k(rng)
        phrases = self.templates.entry("conditional_generation")["conditions"]
        conditions = " ".join(
            phrases[f].format(**{f: data.fields[f][cell]}) for f in CONDITION_FIELDS if f in chosen
        )
        fields = {
            "num_cells": len(cells),
            "conditions": conditions,
            "num_genes": k,
            "cell_sentences": [self._run(data, c, k) for c in cells],
        }
        return cells, fields, "conditional_generation"

    def _multi_cell_context(self, data, split, rng, cap):
        cell = self._anchor(data, split, rng, "organism")
        pool = data.cells_of_group(split, int(data.group_of_cell[cell]))
        low, high = self.spec.cells_per_example
        wanted = int(rng.integers(low, high + 1))
        if len(pool) < wanted:
            # 'shrink' takes the whole group (it needs a context cell and an answer cell).
            if self.spec.small_group_policy == "skip":
                raise SkipDrawError(f"group smaller than {wanted} cells")
            if len(pool) < 2:
                raise SkipDrawError("group of a single cell")
            wanted = len(pool)
        cells = self._pick_cells(pool, wanted, cell, rng)
        k = self._top_k(rng)
        context_k = k if cap is None else min(k, cap)
        obs = data.sentences.obs
        group_text = " and ".join(
            f"{_column_words(data.spec, key)} {obs[key].iloc[cell]}" for key in data.spec.group_keys
        )
        fields = self._common_fields(data, cell)
        fields.update(
            cell_sentences=[self._run(data, c, context_k) for c in cells[1:]],
            cell_sentence=self._run(data, cells[0], k),
            num_cells=len(cells) - 1,
            group=group_text,
            num_genes=k,
        )
        return [*cells[1:], cells[0]], fields, "multi_cell_context"

    def _spatial_neighborhood(self, data, split, rng, cap):
        cell = self._anchor(data, split, rng, "organism")
        near = data.neighbors[cell]
        near = near[data.split[near] == split]
        if len(near) == 0:
            raise SkipDrawError("no spatial neighbor in the same split")
        target = int(near[rng.integers(len(near))])
        rest = near[near != target]
        shown = rng.choice(rest, size=int(rng.integers(0, len(rest) + 1)), replace=False)
        context = [cell, *(int(c) for c in shown)]
        k = self._top_k(rng)
        context_k = k if cap is None else min(k, cap)
        fields = self._common_fields(data, cell)
        fields.update(
            cell_sentences=[self._run(data, c, context_k) for c in context],
            cell_sentence=self._run(data, target, k),
            num_cells=len(context),
            num_genes=k,
        )
        return [*context, target], fields, "spatial_neighborhood"

    def _perturbation_response(self, data, split, rng, cap):
        pairs = data.controls
        perturbed = pairs.perturbed[data.split[pairs.perturbed] == split]
        if len(perturbed) == 0:
            raise SkipDrawError("no perturbed cell with a control in this split")
        cell = int(perturbed[rng.integers(len(perturbed))])
        control = pairs.draw_control(cell, rng)
        k = self._top_k(rng)
        phrases = self.templates.entry("perturbation_response")
        phrase = phrases["perturbation_phrase"].format(
            perturbation_type=data.fields["perturbation_type"][cell],
            perturbation=data.fields["perturbation"][cell],
        )
        for extra in ("dose", "time"):
            if extra in data.fields and data.fields[extra][cell] is not None:
                phrase += phrases[extra].format(**{extra: data.fields[extra][cell]})
        fields = self._common_fields(data, cell)
        fields.update(
            cell_sentence=self._run(data, control, k if cap is None else min(k, cap)),
            perturbed_sentence=self._run(data, cell, k),
            perturbation_phrase=phrase,
            num_genes=k,
        )
        return [control, cell], fields, "perturbation_response"

    def _nl_interpretation(self, data, split, rng, cap):
        cell = self._anchor(data, split, rng, "organism")
        per_cell = data.fields.get("description")
        description = per_cell[cell] if per_cell is not None else data.description
        if not description:
            raise SkipDrawError("cell without description")
        pool = (
            data.cells_with(split, "description", description)
            if per_cell is not None
            else data.cells_by_split[split]
        )
        low, high = self.spec.generated_cells
        cells = self._pick_cells(pool, int(rng.integers(low, high + 1)), cell, rng)
        fields = self._cell_list_fields(data, cell, cells, self._context_k(rng, cap))
        fields["description"] = _sentence_end(description)
        return cells, fields, "nl_interpretation"

    def _question_answering(self, data, split, rng, cap):
        kinds = [k for k in QA_KINDS if k != "cell_type_choice" or "cell_type" in data.fields]
        kind = kinds[int(rng.integers(len(kinds)))]
        cell = self._anchor(data, split, rng, "organism")
        run = self._run(data, cell, self._context_k(rng, cap))
        fields = self._common_fields(data, cell)
        fields.update(cell_sentence=run, num_genes=len(run.gene_ids))
        symbols = data.sentences.symbols
        n_options = self.spec.qa_options
        if kind == "most_expressed":
            if len(run.gene_ids) < 2:
                raise SkipDrawError("cell with fewer than 2 genes")
            ranks = np.sort(rng.choice(len(run.gene_ids), min(n_options, len(run.gene_ids)), False))
            options = rng.permutation(symbols[run.gene_ids[ranks]])
            fields.update(options=", ".join(options), gene=symbols[run.gene_ids[ranks[0]]])
        elif kind == "is_expressed":
            if rng.random() < 0.5:
                gene, answer = symbols[run.gene_ids[rng.integers(len(run.gene_ids))]], "yes"
            else:
                gene, answer = self._unexpressed_gene(data, cell, rng), "no"
            fields.update(gene=gene, yes_no=answer)
        else:
            true_type = data.fields["cell_type"][cell]
            if true_type is None:
                raise SkipDrawError("cell without cell_type")
            others = [t for t in data.labels("cell_type") if t != true_type]
            if not others:
                raise SkipDrawError("only one cell type in the dataset")
            wrong = rng.choice(others, size=min(n_options - 1, len(others)), replace=False)
            fields.update(options=", ".join(rng.permutation([true_type, *wrong])))
        return [cell], fields, f"question_answering/{kind}"

    def _unexpressed_gene(self, data: DatasetCells, cell: int, rng) -> str:
        """A gene expressed in the dataset but not in `cell`, drawn uniformly.

        Whether one exists, and what the draw consumes of `rng`, depend on the cell's
        sentence length alone (its genes are a subset of the expressed ones), so a run
        that records cells without their genes draws the same (`GeneStore.recording`).
        """
        genes = data.genes(cell)
        n_candidates = len(data.expressed_symbols) - len(genes)
        if n_candidates <= 0:
            raise SkipDrawError("cell expressing every gene: no unexpressed gene to ask about")
        pick = int(rng.integers(n_candidates))
        candidates = np.setdiff1d(data.expressed_symbols, genes, assume_unique=True)
        return str(data.sentences.symbols[candidates[pick]])

    def _language_modeling(self, split: int, rng) -> Example:
        paragraphs = np.flatnonzero(self.text_split == split)
        if len(paragraphs) == 0:
            raise SkipDrawError("no text paragraphs in this split")
        paragraph = int(paragraphs[rng.integers(len(paragraphs))])
        rendered = self.templates.render("language_modeling", {"text": self.texts[paragraph]}, rng)
        return Example("language_modeling", TEXT_SOURCE, np.array([paragraph]), rendered)

    def _texts(self) -> tuple[list[str], np.ndarray]:
        """Paragraphs of the text files and dataset descriptions, and their splits."""
        texts = []
        for path in self.spec.text_files:
            try:
                content = Path(path).read_text(encoding="utf-8")
            except OSError as err:
                raise InputError(f"config key 'text_files': cannot read {path} ({err})") from None
            texts.extend(p.strip() for p in content.split("\n\n") if p.strip())
        texts.extend(d.description for d in self.datasets if d.description)
        if not texts:
            return [], np.zeros(0, np.int8)
        fractions = self.spec.split.fractions
        # Too few paragraphs for every split is not an error for text: they go where they fall.
        order = np.random.default_rng([self.spec.seed, 7]).permutation(len(texts))
        bounds = np.cumsum([fractions[s] for s in SPLIT_IDS]) * len(texts)
        split = np.minimum(np.searchsorted(bounds, np.arange(len(texts)) + 0.5), 2)
        splits = np.empty(len(texts), np.int8)
        splits[order] = split
        return texts, splits


def _column_words(spec, column: str) -> str:
    """How a prompt names an obs column: by the field it holds ('seurat_annotations' is
    'cell type'), else by its own name with spaces."""
    roles = {
        spec.cell_type_key: "cell type",
        spec.tissue_key: "tissue",
        spec.disease_key: "disease",
        spec.perturbation_key: "perturbation",
        spec.batch_key: "batch",
    }
    return roles.get(column) or column.replace("_", " ")


def _sentence_end(text: str) -> str:
    """The text ending with a period (answers always end with one)."""
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else f"{text}."
