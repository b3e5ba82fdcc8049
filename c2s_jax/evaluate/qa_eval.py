"""Question answering on held-out cells, per question kind, beside chance.

Each evaluated cell is asked one question of every kind the corpus asks
(:data:`c2s_jax.corpus.tasks.QA_KINDS`), built the way the corpus builds them: the same
templates, the corpus's number of options, the same rule for the right answer.

- most_expressed: ``qa_options`` genes of the cell's top-K sentence; the answer is the
  one ranked first. Chance: 1 / options.
- is_expressed: a gene of the sentence ("yes") or one expressed elsewhere in the dataset
  but not in this cell ("no"), half each. Chance: 1/2.
- cell_type_choice: the cell's type among ``qa_options - 1`` other types of the dataset.
  Chance: 1 / options.

The model answers twice: greedy generation (its first line, normalized as annotation
labels are, must equal the answer) and ranking the question's own options by likelihood.
"""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np
import pandas as pd
from flax import nnx

from c2s_jax.checkpoints.bundle import Bundle
from c2s_jax.corpus.config import corpus_spec
from c2s_jax.corpus.prompts.formatter import Templates
from c2s_jax.corpus.tasks import QA_KINDS
from c2s_jax.evaluate.annotation import correct_answers
from c2s_jax.evaluate.annotation_eval import answer_label, cell_fields, evaluated_cells
from c2s_jax.evaluate.confidence import accuracy_with_interval, reliability_notes
from c2s_jax.evaluate.held_out import HeldOut
from c2s_jax.evaluate.predictions import join_tables
from c2s_jax.inference.sampler import Sampler, SamplingParams, complete_texts
from c2s_jax.inference.scoring import Scorer, rank_candidates
from c2s_jax.models.parts import ModelParts

YES_NO = ("yes", "no")


@dataclasses.dataclass(frozen=True)
class Question:
    """One question about one cell.

    Attributes:
      cell: the cell's index in the held-out data.
      prompt: the question as the model reads it.
      answer: the right answer, without the answer's final period.
      options: the answers it chooses among (the options shown, or yes and no).
      gene: the gene asked about (is_expressed), else None.
    """

    cell: int
    prompt: str
    answer: str
    options: tuple[str, ...]
    gene: str | None = None


def build_questions(
    held: HeldOut, kind: str, cells: np.ndarray, top_k: int, n_options: int, seed: int
) -> list[Question]:
    """One ``kind`` question per cell, drawn with ``seed`` (cells that cannot carry one,
    e.g. a sentence of one gene for most_expressed, are left out).

    Args:
      held: the held-out data.
      kind: one of QA_KINDS.
      cells: [n] cell indices.
      top_k: genes of the sentence shown in the question.
      n_options: the corpus's ``qa_options``.
      seed: draws the options, the yes/no side and the wording.
    """
    templates = Templates.load()
    rng = np.random.default_rng([seed, QA_KINDS.index(kind)])
    symbols = held.symbols
    questions = []
    for cell in cells:
        fields = cell_fields(held, int(cell), top_k)
        genes = fields["cell_sentence"].gene_ids
        if kind == "most_expressed":
            if len(genes) < 2:
                continue
            ranks = np.sort(rng.choice(len(genes), min(n_options, len(genes)), replace=False))
            options = [str(g) for g in rng.permutation(symbols[genes[ranks]])]
            fields.update(options=", ".join(options), gene=str(symbols[genes[ranks[0]]]))
        elif kind == "is_expressed":
            unexpressed = np.setdiff1d(held.cells.expressed_symbols, held.cells.genes(cell))
            if rng.random() < 0.5 or len(unexpressed) == 0:
                gene, answer = symbols[genes[rng.integers(len(genes))]], "yes"
            else:
                gene, answer = symbols[unexpressed[rng.integers(len(unexpressed))]], "no"
            fields.update(gene=str(gene), yes_no=answer)
            options = list(YES_NO)
        else:
            true_type = fields.get("cell_type")
            others = [t for t in held.cells.labels("cell_type") if t != true_type]
            if true_type is None or not others:
                continue
            wrong = rng.choice(others, size=min(n_options - 1, len(others)), replace=False)
            options = [str(t) for t in rng.permutation([true_type, *wrong])]
            fields.update(options=", ".join(options))
        rendered = templates.render(f"question_answering/{kind}", fields, rng)
        answer = rendered.answer_text().removesuffix(".")
        asked = fields["gene"] if kind == "is_expressed" else None
        questions.append(Question(int(cell), rendered.prompt_text(), answer, tuple(options), asked))
    return questions


def question_kinds(held: HeldOut) -> list[str]:
    """The kinds the corpus asks of this dataset (cell type choice needs two types)."""
    types = held.cells.labels("cell_type") if "cell_type" in held.cells.fields else []
    return [k for k in QA_KINDS if k != "cell_type_choice" or len(types) > 1]


def corpus_qa(bundle: Bundle) -> tuple[float, int]:
    """(weight of question answering in the model's corpus, options per multiple-choice
    question it offered)."""
    spec = corpus_spec(ml_collections.ConfigDict(bundle.corpus["config"]))
    return spec.task_weights.get("question_answering", 0.0), spec.qa_options


def evaluate_question_answering(
    bundle: Bundle, held: HeldOut, cfg: ml_collections.ConfigDict, progress: bool = True
) -> tuple[dict, pd.DataFrame]:
    """QA accuracy per question kind, for generation and likelihood ranking, beside chance.

    Args:
      bundle: the model.
      held: its held-out data.
      cfg: ``question_answering`` settings: splits, top_k, max_cells, max_new_tokens,
        batch_size, seed.

    Returns:
      (results, predictions). results: {kind: {"n_questions", "n_options", "chance",
      "notes", "methods": {method: {"accuracy", "ci95", "n_correct"}}, "examples"}}.
      predictions: one row per evaluated cell (index: cell index in ``held``), per kind
      ``qa_{kind}_answer``, ``qa_{kind}_options`` (comma-separated), the gene asked about
      ``qa_is_expressed_gene`` and, per method
      (generation, likelihood), ``qa_{kind}_pred_{method}`` and
      ``qa_{kind}_correct_{method}``; ``qa_{kind}_score_likelihood`` is the chosen
      option's log-likelihood (natural log).
    """
    graphdef, state = nnx.split(bundle.model)
    parts = ModelParts(graphdef, bundle.config)
    sampler = Sampler(parts, state, bundle.tokenizer.eos_id)
    scorer = Scorer(parts, state)
    _, n_options = corpus_qa(bundle)
    cells = evaluated_cells(held, cfg.splits, cfg.max_cells, cfg.seed)
    greedy = SamplingParams(max_new_tokens=cfg.max_new_tokens)
    results, tables = {}, []
    for kind in question_kinds(held):
        questions = build_questions(held, kind, cells, cfg.top_k, n_options, cfg.seed)
        if not questions:
            continue
        prompts = [q.prompt for q in questions]
        answers = []
        for start in range(0, len(prompts), cfg.batch_size):
            batch = prompts[start : start + cfg.batch_size]
            answers += complete_texts(sampler, bundle.tokenizer, batch, greedy)
        scores, best = rank_candidates(
            scorer, bundle.tokenizer, prompts, [[f"{o}." for o in q.options] for q in questions]
        )
        truth = [q.answer for q in questions]
        predicted = {
            "generation": [answer_label(a.text) for a in answers],
            "likelihood": [q.options[b] for q, b in zip(questions, best, strict=True)],
        }
        prefix = f"qa_{kind}"
        frame = pd.DataFrame(
            {
                f"{prefix}_answer": truth,
                f"{prefix}_options": [", ".join(q.options) for q in questions],
            },
            index=pd.Index([q.cell for q in questions], dtype=np.int64),
        )
        if kind == "is_expressed":
            frame[f"{prefix}_gene"] = [q.gene for q in questions]
        methods = {}
        for method, labels in predicted.items():
            correct = correct_answers(labels, truth)
            frame[f"{prefix}_pred_{method}"] = labels
            frame[f"{prefix}_correct_{method}"] = correct
            methods[f"model ({method})"] = accuracy_with_interval(correct)
        frame[f"{prefix}_score_likelihood"] = [
            float(s[b]) for s, b in zip(scores, best, strict=True)
        ]
        tables.append(frame)
        results[kind] = {
            "n_questions": len(questions),
            "n_options": max(len(q.options) for q in questions),
            "chance": float(np.mean([1 / len(q.options) for q in questions])),
            "notes": reliability_notes(truth),
            "methods": methods,
            "examples": [
                {"answer": t, "model": a.text} for t, a in zip(truth[:3], answers[:3], strict=True)
            ],
        }
    return results, join_tables(tables)
