"""Cell types of a user's own cells, predicted by a C2S model: the cell2sentence package's
main use (`predict_cell_types_of_data`), batched on the KV-cache sampler.

Each cell becomes its cell sentence (the same options as `c2s sentences`) inside a cell
type prompt, either our corpus's wording or cell2sentence's released one (so the public
C2S models get the prompt they were trained on). The model answers by greedy generation,
or ranks the given labels by likelihood.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import anndata
import numpy as np
import pandas as pd
from flax import nnx
from tqdm.auto import tqdm

from c2s_jax.checkpoints.bundle import Bundle
from c2s_jax.corpus.prompts.formatter import GeneRun, Templates
from c2s_jax.errors import InputError
from c2s_jax.inference.sampler import Sampler, SamplingParams, complete_texts
from c2s_jax.models.parts import ModelParts
from c2s_jax.sentences.cell_sentences import cell_sentences

PROMPT_STYLES = ("c2s", "cell2sentence")
# cell2sentence 1.2's first cell type prediction prompt (prompts/
# single_cell_cell_type_prediction_prompts.json), on which its released models were trained.
CELL2SENTENCE_PROMPT = (
    "The following is a list of {num_genes} gene names ordered by descending expression "
    "level in a {organism} cell. Your task is to give the cell type which this cell belongs "
    "to based on its gene expression.\nCell sentence: {cell_sentence}.\nThe cell type "
    "corresponding to these genes is:"
)


@dataclasses.dataclass(frozen=True)
class AnnotationOptions:
    """How cells are written and asked about.

    Attributes:
      top_k: genes per cell sentence.
      prompt_style: 'c2s' (our corpus's wordings, drawn with `seed`) or 'cell2sentence'.
      organism: the organism the prompt names.
      labels: rank these labels by likelihood instead of generating an answer.
      max_new_tokens: the longest generated answer.
      batch_size: cells per batch.
      truncate: cut prompts longer than the model's training sequences.
      seed: tie-breaks in the sentences and the c2s wording draw.
      sentence_options: other `SentenceOptions` fields (layer, raw, gene_symbols_key, ...).
    """

    top_k: int = 200
    prompt_style: str = "c2s"
    organism: str = "Homo sapiens"
    labels: tuple[str, ...] = ()
    max_new_tokens: int = 24
    batch_size: int = 16
    truncate: bool = False
    seed: int = 0
    sentence_options: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.prompt_style not in PROMPT_STYLES:
            raise InputError(
                f"--prompt-style must be one of {PROMPT_STYLES}, got {self.prompt_style!r}"
            )
        for name in ("top_k", "max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be >= 1")


def cell_type_prompts(
    sentences: Sequence[np.ndarray], symbols: np.ndarray, options: AnnotationOptions
) -> list[str]:
    """One cell type prompt per cell.

    Args:
      sentences: [cells] arrays of gene indices into `symbols`, highest expression first.
      symbols: [genes] gene symbols.
      options: prompt style, organism, top_k, seed.
    """
    if options.prompt_style == "cell2sentence":
        return [
            CELL2SENTENCE_PROMPT.format(
                num_genes=len(genes[: options.top_k]),
                organism=options.organism,
                cell_sentence=" ".join(symbols[genes[: options.top_k]]),
            )
            for genes in sentences
        ]
    templates = Templates.load()
    rng = np.random.default_rng(options.seed)
    prompts = []
    for genes in sentences:
        run = GeneRun(np.asarray(genes[: options.top_k]), symbols)
        fields = {
            "cell_sentence": run,
            "num_genes": len(run.gene_ids),
            "organism": options.organism,
            "cell_type": "",  # the answer's field: not part of the prompt
        }
        prompts.append(templates.render("cell_type_annotation", fields, rng).prompt_text())
    return prompts


def answer_label(text: str) -> str:
    """The label in a completion: its first line, without the closing period."""
    return text.strip().split("\n")[0].strip().removesuffix(".")


def _check_known_genes(symbols: np.ndarray, bundle: Bundle, name: str) -> None:
    """Refuses an input none of whose genes the model's corpus had (var_names that are
    Ensembl IDs, say), before any prompt is written. Models without a corpus (released
    checkpoints) are not checked."""
    if not bundle.corpus.get("datasets"):
        return
    known = {g for meta in bundle.corpus["datasets"].values() for g in meta["genes"]}
    if not known.isdisjoint(map(str, symbols)):
        return
    shown = ", ".join(map(str, symbols[:3]))
    raise InputError(
        f"{name}: none of its {len(symbols)} gene symbols ({shown}, ...) is a gene the model "
        "knows; if var_names are not symbols (Ensembl IDs, say), name the var column that "
        "holds them with --gene-symbols COLUMN"
    )


def annotate_cells(
    data, bundle: Bundle, options: AnnotationOptions, progress: bool = True, name: str = "input"
) -> pd.DataFrame:
    """Predicted cell types of every cell of `data` (AnnData or an input path), `name`
    in messages.

    Returns:
      [cells] DataFrame indexed by cell name: `prediction`, `score` (log-likelihood of the
      answer: the generated tokens', or the best label's), and `prompt_tokens`. Cells with
      no expressed gene get no row.
    """
    cells = cell_sentences(data, top_k=options.top_k, seed=options.seed, **options.sentence_options)
    _check_known_genes(cells.symbols, bundle, name)
    sentences = [cells.gene_ids[cells.indptr[i] : cells.indptr[i + 1]] for i in range(len(cells))]
    prompts = cell_type_prompts(sentences, np.asarray(cells.symbols), options)
    graphdef, state = nnx.split(bundle.model)
    parts = ModelParts(graphdef, bundle.config)
    predictions, scores = [], []
    batches = range(0, len(prompts), options.batch_size)
    if options.labels:
        from c2s_jax.inference.scoring import Scorer, rank_candidates

        scorer = Scorer(parts, state)
        candidates = [f"{label}." for label in options.labels]
        for start in tqdm(batches, disable=not progress, unit="batch"):
            batch = prompts[start : start + options.batch_size]
            values, best = rank_candidates(
                scorer,
                bundle.tokenizer,
                batch,
                [candidates] * len(batch),
                max_length=bundle.trained_length,
                truncate=options.truncate,
            )
            predictions += [options.labels[i] for i in best]
            scores += [float(v[i]) for v, i in zip(values, best, strict=True)]
    else:
        sampler = Sampler(parts, state, bundle.tokenizer.eos_id)
        greedy = SamplingParams(max_new_tokens=options.max_new_tokens)
        for start in tqdm(batches, disable=not progress, unit="batch"):
            answers = complete_texts(
                sampler,
                bundle.tokenizer,
                prompts[start : start + options.batch_size],
                greedy,
                max_prompt_tokens=bundle.trained_length,
                truncate=options.truncate,
            )
            predictions += [answer_label(a.text) for a in answers]
            scores += [float(a.logprobs.sum()) for a in answers]
    return pd.DataFrame(
        {
            "prediction": predictions,
            "score": scores,
            "prompt_tokens": [len(bundle.tokenizer.encode(p)) for p in prompts],
        },
        index=pd.Index(np.asarray(cells.cell_names).astype(str)),
    )


def write_annotations(
    adata: anndata.AnnData, out: str | os.PathLike, table: pd.DataFrame, obs_key: str
) -> None:
    """`adata` with `table` in obs as OBS_KEY, OBS_KEY_score and OBS_KEY_prompt_tokens
    (cells without a row get none), written atomically to `out`."""
    from c2s_jax.storage.atomic import atomic_path

    adata = adata.copy()
    names = adata.obs_names.astype(str)
    found = table.reindex(names)
    adata.obs[obs_key] = pd.Categorical(found["prediction"].to_numpy())
    adata.obs[f"{obs_key}_score"] = found["score"].to_numpy(np.float64)
    adata.obs[f"{obs_key}_prompt_tokens"] = found["prompt_tokens"].fillna(0).to_numpy(np.int64)
    with atomic_path(out) as tmp:
        adata.write_h5ad(tmp)
