"""Cells from requests: corpus-style prompts, constrained sampling, expression back.

A request such as ``"7 CD8+ T cells from pancreas"`` is read against the labels of the
model's corpus (`cell_requests`) and becomes the corpus's own conditional-generation
prompt for each of its cells ("Generate one cell of type CD8+ T cell from pancreas. List
the top 100 genes ...") followed by the answer's opening ("Cell 1:"), so a model trained
on the corpus continues with exactly one cell sentence, of exactly the genes asked for
(the gene constraint holds it to the count). Sentences turn back into expression with
the corpus's inverse fit, and into an AnnData whose obs and var say what was asked for
and what came back.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections import Counter
from collections.abc import Sequence

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp
from flax import nnx
from tqdm.auto import tqdm

from c2s_jax.checkpoints.bundle import Bundle
from c2s_jax.corpus.prompts.formatter import Templates
from c2s_jax.inference.gene_constraint import distinct_genes, tables_for_tokenizer, tokens_for_genes
from c2s_jax.inference.requests import (
    FIELDS,
    CellRequest,
    condition_phrase,
    merged_labels,
    parse_request,
)
from c2s_jax.inference.sampler import Completion, Sampler, SamplingParams, complete_texts
from c2s_jax.models.parts import ModelParts
from c2s_jax.sentences.inverse import InverseFit, reconstruct, sentence_ranks

log = logging.getLogger(__name__)

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
      prompts: [n] the prompt each cell was generated from.
      conditions: [n] the labels read from each cell's request, field -> label (e.g.
        {'cell_type': 'CD14+ Monocyte'}); empty for raw prompts.
      num_genes: genes asked for per cell; None for raw prompts.
      short_reasons: [n] why a cell holds fewer than ``num_genes`` genes; '' when it
        holds them all.
    """

    requests: list[str]
    sentences: list[str]
    completions: list[Completion]
    prompts: list[str]
    conditions: list[dict[str, str]]
    num_genes: int | None
    short_reasons: list[str]


def request_rows(
    bundle: Bundle, requests: Sequence[str | CellRequest], n_per_request: int, templates: Templates
) -> list[tuple[CellRequest, str]]:
    """(request, condition phrase) of every cell to generate.

    A request that names a count ("7 human kidney cells") gets that many cells, any other
    ``n_per_request``. Requests are read against the labels of the bundle's corpus; with
    none recorded, a request is taken as the condition phrase itself (a cell type unless
    it opens with "of", "from", "with" or "under").

    Raises:
      InputError: a request with words that match no label (see `parse_request`).
    """
    labels = merged_labels(bundle.corpus.get("datasets", {}))
    phrases = templates.entry("conditional_generation")["conditions"]
    rows = []
    for request in requests:
        if isinstance(request, str) and not labels:
            text = request.strip().rstrip(".")
            if text.lower().startswith(CONDITION_OPENERS):
                rows += [(CellRequest(request, None, {}), text)] * n_per_request
            else:
                unparsed = CellRequest(request, None, {"cell_type": text})
                rows += [(unparsed, f"of type {text}")] * n_per_request
            continue
        parsed = parse_request(request, labels) if isinstance(request, str) else request
        rows += [(parsed, condition_phrase(parsed, phrases))] * (parsed.count or n_per_request)
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
    requests: Sequence[str | CellRequest],
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

    With the constraint every cell holds exactly ``num_genes`` distinct genes of the
    bundle's gene list, unless the list has fewer; cells that come back short are named
    in a logged warning and in ``short_reasons``.

    Args:
      bundle: a trained model bundle.
      requests: descriptions ("7 CD8+ T cells from pancreas") or parsed requests, or full
        prompts with ``raw``.
      n_per_request: cells per request that names no count (rows sampled independently).
      params: sampling settings. With the constraint, ``max_new_tokens`` is raised to
        what ``num_genes`` of the longest genes take, so that no sentence is cut.
      num_genes: genes asked for in the prompt (and, with the constraint, written).
      constrain: allow only the bundle's genes, each at most once, exactly ``num_genes``.
      raw: send the requests as prompts verbatim.
      batch_size: rows per decode batch.
      progress: show a progress bar.
      truncate: cut prompts longer than the model's training sequences at their end
        instead of refusing them.
    """
    if num_genes < 1:
        raise ValueError(f"num_genes must be >= 1, got {num_genes}")
    graphdef, state = nnx.split(bundle.model)
    sampler = Sampler(ModelParts(graphdef, bundle.config), state, bundle.tokenizer.eos_id)
    templates = Templates.load()
    if raw:
        rows = [str(r) for r in requests for _ in range(n_per_request)]
        prompts, conditions = rows, [{} for _ in rows]
    else:
        pairs = request_rows(bundle, requests, n_per_request, templates)
        rows = [request.text for request, _ in pairs]
        conditions = [dict(request.conditions) for request, _ in pairs]
        prompts = [cell_prompt(phrase, num_genes, templates) for _, phrase in pairs]
    # Raw prompts ask for no count: their sentences may close after any gene.
    wanted = None if raw else num_genes
    tables = None
    if constrain:
        genes = bundle.dataset()["genes"]
        tables = tables_for_tokenizer(bundle.tokenizer, genes, bundle.config.vocab_size)
    if tables is not None and wanted is not None:
        needed = tokens_for_genes(tables, wanted)
        params = dataclasses.replace(params, max_new_tokens=max(params.max_new_tokens, needed))
    completions: list[Completion] = []
    for start in tqdm(range(0, len(prompts), batch_size), disable=not progress, unit="batch"):
        batch_params = dataclasses.replace(params, seed=params.seed + start)
        completions += complete_texts(
            sampler,
            bundle.tokenizer,
            prompts[start : start + batch_size],
            batch_params,
            tables=tables,
            num_genes=wanted,
            max_prompt_tokens=bundle.trained_length,
            truncate=truncate,
        )
    sentences = [sentence_of(c.text, cut_short=c.finish == "length") for c in completions]
    capacity = None if tables is None else distinct_genes(tables)
    reasons = [
        _short_reason(s, c, wanted, capacity, params.max_new_tokens)
        for s, c in zip(sentences, completions, strict=True)
    ]
    _warn_short(reasons, wanted)
    return GeneratedCells(rows, sentences, completions, prompts, conditions, wanted, reasons)


def _short_reason(
    sentence: str,
    completion: Completion,
    wanted: int | None,
    capacity: int | None,
    max_new_tokens: int,
) -> str:
    """Why a cell holds fewer genes than wanted ('' when it does not); ``capacity`` is
    how many genes the constraint offers (None without it)."""
    if wanted is None or len({w.upper() for w in sentence.split()}) >= wanted:
        return ""
    if completion.finish == "length":
        return f"the token limit ({max_new_tokens}) cut the sentence"
    if capacity is not None and capacity < wanted:
        return f"the model's gene list holds only {capacity} genes"
    if capacity is None:
        return "the model closed the sentence early (no gene constraint)"
    return "the model closed the sentence early"


def _warn_short(reasons: Sequence[str], wanted: int | None) -> None:
    for reason, count in Counter(r for r in reasons if r).items():
        log.warning(
            "%d of %d cells came back with fewer than the %d genes asked for: %s",
            count,
            len(reasons),
            wanted,
            reason,
        )


def cells_to_anndata(cells: GeneratedCells, bundle: Bundle) -> anndata.AnnData:
    """The generated cells as an AnnData, scanpy style.

    - ``X`` (csr float32): log10(1 + normalized expression) of each written gene,
      reconstructed from its rank by the corpus's inverse fit (intercept + slope *
      log10(1 + rank), clipped at 0, so a gene written past the rank where the line
      reaches 0 stays 0 here); ``uns['log1p'] = {'base': 10}`` tells scanpy the base.
    - ``layers['rank']`` (csr float32): each written gene's 1-based position in its
      cell's sentence (1 = most expressed), 0 where the cell did not write the gene.
    - ``var``: gene symbols as the index: the bundle's gene list, then any word a cell
      wrote that is not on it (only possible without the constraint); ``in_vocabulary``
      (bool) tells the two apart, ``n_cells`` counts the cells that wrote each gene.
    - ``obs``: ``request`` and the labels read from it (``cell_type``, ``tissue``, ...,
      as parsed), ``prompt``, ``cell_sentence``, ``n_genes`` (distinct genes written),
      ``n_genes_requested``, ``short`` and ``short_reason``, ``unknown_words`` (words
      not on the gene list) and ``finish`` (eos / length / stop).
    """
    dataset = bundle.dataset()
    fit = InverseFit(**dataset["inverse_fit"])
    genes = [str(g) for g in dataset["genes"]]
    known = {g.upper() for g in genes}
    written = [s.split() for s in cells.sentences]
    extra = list(dict.fromkeys(w.upper() for ws in written for w in ws if w.upper() not in known))
    symbols = genes + extra
    matrix, _ = reconstruct(cells.sentences, fit, symbols)
    ranks = _rank_matrix(written, symbols)
    index = [f"generated_{i}" for i in range(len(cells.sentences))]
    obs = pd.DataFrame({"request": cells.requests}, index=index)
    for field in FIELDS:
        values = [c.get(field) for c in cells.conditions]
        if any(v is not None for v in values):
            obs[field] = pd.Categorical(values)
    obs["prompt"] = cells.prompts
    obs["cell_sentence"] = cells.sentences
    obs["n_genes"] = np.diff(ranks.indptr).astype(np.int64)
    if cells.num_genes is not None:
        obs["n_genes_requested"] = cells.num_genes
        obs["short"] = [bool(r) for r in cells.short_reasons]
        obs["short_reason"] = cells.short_reasons
    obs["unknown_words"] = [sum(w.upper() not in known for w in ws) for ws in written]
    obs["finish"] = [c.finish for c in cells.completions]
    var = pd.DataFrame(
        {
            "in_vocabulary": np.arange(len(symbols)) < len(genes),
            "n_cells": np.bincount(ranks.indices, minlength=len(symbols)).astype(np.int64),
        },
        index=pd.Index(symbols),
    )
    adata = anndata.AnnData(X=matrix, obs=obs, var=var, layers={"rank": ranks})
    adata.uns["c2s_generation"] = {"model": str(bundle.path), "inverse_fit": dataset["inverse_fit"]}
    if cells.num_genes is not None:
        adata.uns["c2s_generation"]["num_genes"] = cells.num_genes
    # X is log10(1 + normalized expression): scanpy reads the base from here.
    adata.uns["log1p"] = {"base": 10}
    return adata


def _rank_matrix(sentences: Sequence[Sequence[str]], symbols: Sequence[str]) -> sp.csr_matrix:
    """[cells, symbols] csr float32: 1-based rank of each written gene (a repeated word
    takes the mean of its positions), 0 where not written."""
    symbol_index = {s.upper(): i for i, s in enumerate(symbols)}
    indptr, cols, vals = [0], [], []
    for words in sentences:
        ranks, _ = sentence_ranks(words, symbol_index)
        cols += list(ranks)
        vals += [r + 1 for r in ranks.values()]
        indptr.append(len(cols))
    matrix = sp.csr_matrix(
        (np.asarray(vals, np.float32), np.asarray(cols, np.int64), np.asarray(indptr)),
        shape=(len(sentences), len(symbols)),
    )
    matrix.sort_indices()
    return matrix
