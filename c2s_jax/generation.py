"""Cells from requests: corpus-style prompts, constrained sampling, expression back.

A request such as ``"7 CD8+ T cells from pancreas"`` is read against the labels of the
model's corpus (`cell_requests`) and becomes the corpus's own conditional-generation
prompt for each of its cells ("Generate one cell of type CD8+ T cell from pancreas. List
the top 100 genes ...") followed by the answer's opening ("Cell 1:"), so a model trained
on the corpus continues with exactly one cell sentence. Sentences turn back into
expression with the corpus's inverse fit.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import anndata
import numpy as np
import pandas as pd
from flax import nnx
from tqdm.auto import tqdm

from c2s_jax.cell_requests import CellRequest, condition_phrase, merged_labels, parse_request
from c2s_jax.data.inverse import InverseFit, reconstruct
from c2s_jax.data.prompts.formatter import Templates
from c2s_jax.gene_constraint import tables_for_tokenizer
from c2s_jax.model_bundle import Bundle
from c2s_jax.sample import Completion, Sampler, SamplingParams, complete_texts
from c2s_jax.train.state import ModelParts

# Words that already start a condition phrase of the corpus templates ("of type X",
# "from Y", "with Z", "under P"). A corpus built before labels were recorded cannot read
# requests: a request without one of these is taken as a cell type.
CONDITION_OPENERS = ("of ", "from ", "with ", "under ")


@dataclasses.dataclass(frozen=True)
class GeneratedCells:
    """Cells generated for requests.

    Attributes:
      requests: [n] the request of each cell.
      sentences: [n] the cell sentences (space-separated gene symbols).
      completions: [n] the raw completions (text, tokens, log-probs, finish reason).
    """

    requests: list[str]
    sentences: list[str]
    completions: list[Completion]


def request_rows(
    bundle: Bundle, requests: Sequence[str | CellRequest], n_per_request: int, templates: Templates
) -> list[tuple[str, str]]:
    """(request text, condition phrase) of every cell to generate.

    A request that names a count ("7 human kidney cells") gets that many cells, any other
    ``n_per_request``. Requests are read against the labels of the bundle's corpus.

    Raises:
      InputError: a request with words that match no label (see `parse_request`).
    """
    labels = merged_labels(bundle.corpus.get("datasets", {}))
    phrases = templates.entry("conditional_generation")["conditions"]
    rows = []
    for request in requests:
        if isinstance(request, str) and not labels:
            text = request.strip().rstrip(".")
            conditions = text if text.lower().startswith(CONDITION_OPENERS) else f"of type {text}"
            rows += [(request, conditions)] * n_per_request
            continue
        parsed = parse_request(request, labels) if isinstance(request, str) else request
        rows += [(parsed.text, condition_phrase(parsed, phrases))] * (parsed.count or n_per_request)
    return rows


def cell_prompt(conditions: str, num_genes: int, templates: Templates | None = None) -> str:
    """The corpus prompt asking for one cell with ``conditions`` ("of type B from
    kidney"), with the answer's opening, ready for the model to write the genes."""
    templates = templates or Templates.load()
    wording = templates.entry("conditional_generation")["prompts"][0]
    fields = templates.count_fields(dict(num_cells=1, conditions=conditions, num_genes=num_genes))
    prompt = wording.format(**fields)
    opening = templates.table["cell_list"]["item"].split("{cell_sentence}")[0]
    return f"{prompt} {opening.format(index=1).rstrip()}"


_CLOSING_PERIOD = re.compile(r"\.\s")


def sentence_of(text: str, cut_short: bool = False) -> str:
    """The cell sentence in a completion: the words before the closing period.

    Args:
      text: the completion's text.
      cut_short: the completion hit its token limit before closing the sentence; its last
        word may then be part of a gene that takes several tokens, and is dropped.
    """
    # The closing period ends the text or precedes a space; a period inside a symbol
    # (CTD-3138B18.5) is part of the gene.
    parts = _CLOSING_PERIOD.split(text.strip(), maxsplit=1)
    closed = len(parts) > 1 or text.strip().endswith(".")
    words = parts[0].removesuffix(".").split()
    if cut_short and not closed and words:
        words = words[:-1]
    return " ".join(words)


def generate_cells(
    bundle: Bundle,
    requests: Sequence[str],
    n_per_request: int,
    params: SamplingParams,
    *,
    num_genes: int = 100,
    constrain: bool = True,
    raw: bool = False,
    batch_size: int = 32,
    progress: bool = True,
    truncate: bool = False,
) -> GeneratedCells:
    """Samples ``n_per_request`` cells per request.

    Args:
      bundle: a trained model bundle.
      requests: descriptions ("7 CD8+ T cells from pancreas") or parsed requests, or full
        prompts with ``raw``.
      n_per_request: cells per request that names no count (rows sampled independently).
      params: sampling settings (``max_new_tokens`` should cover ``num_genes`` genes).
      num_genes: genes asked for in the prompt.
      constrain: allow only the bundle's genes, each at most once.
      raw: send the requests as prompts verbatim.
      batch_size: rows per decode batch.
      progress: show a progress bar.
      truncate: cut prompts longer than the model's training sequences at their end
        instead of refusing them.
    """
    graphdef, state = nnx.split(bundle.model)
    sampler = Sampler(ModelParts(graphdef, bundle.config), state, bundle.tokenizer.eos_id)
    templates = Templates.load()
    if raw:
        rows = [str(r) for r in requests for _ in range(n_per_request)]
        prompts = rows
    else:
        pairs = request_rows(bundle, requests, n_per_request, templates)
        rows = [text for text, _ in pairs]
        prompts = [cell_prompt(conditions, num_genes, templates) for _, conditions in pairs]
    tables = None
    if constrain:
        genes = bundle.dataset()["genes"]
        tables = tables_for_tokenizer(bundle.tokenizer, genes, bundle.config.vocab_size)
    completions: list[Completion] = []
    for start in tqdm(range(0, len(prompts), batch_size), disable=not progress, unit="batch"):
        batch_params = dataclasses.replace(params, seed=params.seed + start)
        completions += complete_texts(
            sampler,
            bundle.tokenizer,
            prompts[start : start + batch_size],
            batch_params,
            tables=tables,
            max_prompt_tokens=bundle.trained_length,
            truncate=truncate,
        )
    sentences = [sentence_of(c.text, cut_short=c.finish == "length") for c in completions]
    return GeneratedCells(rows, sentences, completions)


def cells_to_anndata(cells: GeneratedCells, bundle: Bundle) -> anndata.AnnData:
    """Reconstructed log10(1 + normalized) expression over the bundle's genes, with the
    request, sentence and finish reason of each cell in obs."""
    dataset = bundle.dataset()
    fit = InverseFit(**dataset["inverse_fit"])
    genes = dataset["genes"]
    matrix, unknown = reconstruct(cells.sentences, fit, genes)
    n_words = np.array([len(s.split()) for s in cells.sentences])
    obs = pd.DataFrame(
        {
            "request": cells.requests,
            "cell_sentence": cells.sentences,
            "n_genes": n_words,
            "unknown_words": unknown,
            "finish": [c.finish for c in cells.completions],
        },
        index=[f"generated_{i}" for i in range(len(cells.sentences))],
    )
    adata = anndata.AnnData(X=matrix, obs=obs, var=pd.DataFrame(index=pd.Index(genes)))
    adata.uns["c2s_generation"] = {"model": str(bundle.path), "inverse_fit": dataset["inverse_fit"]}
    # X is log10(1 + normalized expression): scanpy reads the base from here.
    adata.uns["log1p"] = {"base": 10}
    return adata
