"""AnnData -> cell sentences: each cell's expressed genes, by descending expression.

The conventions are C2S's, so released checkpoints read our sentences as their own: gene
symbols upper-cased, zero genes never appear, ties broken at random from a seed, and for
every cell without ties the order equals the cell2sentence package's `generate_sentences`
on the same normalized matrix.

Inputs stream in row chunks (memory bounded by `chunk_size`), from in-memory AnnData or
files of any format `c2s_jax.sentences.readers` reads, one or many. Counts are ranked as they
are (per-cell normalization and log1p are monotone, so they never change a cell's order);
normalization is applied to the sample of cells that the inverse fit uses, and the fit
travels with the sentences.
"""

import dataclasses
import logging
import os
import warnings
from collections.abc import Iterator, Sequence

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from c2s_jax.errors import InputError
from c2s_jax.sentences import inverse
from c2s_jax.sentences.embedded import is_embedded
from c2s_jax.sentences.expression_source import ExpressionSource, MatrixChoice
from c2s_jax.sentences.gene_symbols import DuplicatePolicy, GeneSymbols, gene_symbols
from c2s_jax.sentences.normalization import looks_like_counts
from c2s_jax.sentences.ranking import SentenceWriter, count_expressed, rank_genes
from c2s_jax.sentences.vocabulary import GeneVocabulary

log = logging.getLogger(__name__)

RESERVED_COLUMNS = ("cell_name", "cell_sentence", "sentence_length")
# Cell ordinals are salted with the input's position so two files never share tie-breaks.
_FILE_SALT_SHIFT = 40

DataInput = anndata.AnnData | str | os.PathLike


@dataclasses.dataclass(frozen=True)
class SentenceOptions:
    """How cells become sentences (the `c2s sentences` flags, as a value).

    Attributes:
      layer: read `layers[layer]` instead of X.
      raw: read `.raw.X` (and `.raw.var`) instead of X.
      gene_symbols_key: var column with gene symbols (e.g. when var_names are Ensembl IDs).
      duplicates: 'error' | 'sum' | 'first' for symbols that collide after upper-casing.
      sanitize_symbols: replace whitespace inside gene symbols with '_' (else an error).
      min_genes: drop cells with fewer expressed genes (scanpy's filter_cells).
      min_cells: drop genes expressed in fewer cells (scanpy's filter_genes), counted over
        the cells that pass `min_genes`.
      top_k: keep the first K genes of each sentence (None keeps all).
      seed: seed of the tie-break (and of the inverse-fit sample).
      normalize: True/False, or None to detect counts (normalize) vs normalized (as is).
      target_sum: counts per cell after normalize_total; None = median over cells (scanpy).
      chunk_size: cells per streamed chunk; bounds memory, never changes the result.
      fit_cells: cells sampled for the inverse fit.
      fit_max_rank: only ranks below this enter the fit (C2S: 999, i.e. log10(1+r) < 3).
    """

    layer: str | None = None
    raw: bool = False
    gene_symbols_key: str | None = None
    duplicates: DuplicatePolicy = "error"
    sanitize_symbols: bool = False
    min_genes: int = 0
    min_cells: int = 0
    top_k: int | None = None
    seed: int = 0
    normalize: bool | None = None
    target_sum: float | None = None
    chunk_size: int = 4096
    fit_cells: int = 1024
    fit_max_rank: int = inverse.DEFAULT_MAX_RANK

    def __post_init__(self):
        if self.top_k is not None and self.top_k < 1:
            raise InputError(f"top_k must be a positive number of genes, got {self.top_k}")
        if self.min_genes < 0 or self.min_cells < 0:
            raise InputError("min_genes and min_cells must be >= 0")
        if self.target_sum is not None and self.target_sum <= 0:
            raise InputError(f"target_sum must be positive, got {self.target_sum}")


@dataclasses.dataclass
class SentenceStats:
    """What happened to the input's cells and genes (summed over inputs)."""

    n_cells_in: int = 0
    n_cells_out: int = 0
    n_cells_empty: int = 0
    n_cells_below_min_genes: int = 0
    n_genes_in: int = 0
    n_genes_kept: int = 0
    normalized_input: bool = False

    def add(self, other: "SentenceStats") -> None:
        """Accumulates another input's counts into this one."""
        for field in ("n_cells_in", "n_cells_out", "n_cells_empty", "n_cells_below_min_genes"):
            setattr(self, field, getattr(self, field) + getattr(other, field))
        self.n_genes_in += other.n_genes_in
        self.n_genes_kept += other.n_genes_kept
        self.normalized_input = self.normalized_input or other.normalized_input


@dataclasses.dataclass(frozen=True)
class SentenceChunk:
    """Ranked sentences of consecutive kept cells of one input.

    Attributes:
      gene_ids: [total] int32 symbol indices into `symbols`; cell i is
        gene_ids[indptr[i]:indptr[i + 1]]. None when the stream only counts genes
        (``rank=False``); indptr then still gives each cell's sentence length.
      indptr: [cells + 1] int64.
      cell_names: [cells] obs names; None when the stream does not read them
        (``names=False``).
      obs: the requested obs columns of these cells.
      symbols: [S] the input's symbols.
      rows: [cells] int64 row of each cell in its input.
    """

    gene_ids: np.ndarray | None
    indptr: np.ndarray
    cell_names: np.ndarray | None
    obs: pd.DataFrame
    symbols: np.ndarray
    rows: np.ndarray


class _FitSample:
    """A uniform sample of cells for the inverse fit, drawn in one pass.

    Every cell gets a hash of (seed, identity); the sample is the `size` cells with the
    smallest hashes seen so far (a bottom-k sample), so it is uniform over all inputs and
    independent of chunking. Values stay raw until the normalization target is known.
    """

    def __init__(self, size: int, seed: int):
        self.size = size
        self.seed = seed
        self.hashes = np.zeros(0)
        self.values: list[np.ndarray] = []
        self.totals = np.zeros(0)
        self.normalized_input = False

    def offer(self, kept: sp.csr_matrix, totals: np.ndarray, ordinals: np.ndarray) -> None:
        """Considers the rows of a chunk; keeps each row's positive values sorted descending."""
        hashes = _hash_unit(ordinals, self.seed)
        pooled = np.concatenate([self.hashes, hashes])
        # Only rows that make the pooled bottom-k are sorted, so a chunk costs ~k sorts at most.
        threshold = (
            np.partition(pooled, self.size - 1)[self.size - 1] if len(pooled) > self.size else 1.0
        )
        rows = np.flatnonzero(hashes <= threshold)
        if rows.size == 0:
            return
        new_values = []
        for row in rows:
            values = kept.data[kept.indptr[row] : kept.indptr[row + 1]].astype(np.float64)
            new_values.append(-np.sort(-values))
        hashes_all = np.concatenate([self.hashes, hashes[rows]])
        values_all = self.values + new_values
        totals_all = np.concatenate([self.totals, totals[rows]])
        keep = np.argsort(hashes_all, kind="stable")[: self.size]
        self.hashes, self.totals = hashes_all[keep], totals_all[keep]
        self.values = [values_all[i] for i in keep]


class _CountsMedian:
    """Exact median of per-cell total counts in memory bounded by the largest total.

    Totals of counts are whole numbers, so a histogram over them gives the median without
    keeping one number per cell (an atlas has tens of millions of cells). Totals above
    2**24 counts, far beyond any real cell, share the last bin.
    """

    _LAST_BIN = 2**24

    def __init__(self):
        self._histogram = np.zeros(0, np.int64)

    def add(self, totals: np.ndarray) -> None:
        """Counts per-cell totals (whole numbers > 0)."""
        bins = np.minimum(np.rint(totals), self._LAST_BIN).astype(np.int64)
        counts = np.bincount(bins)
        if len(counts) > len(self._histogram):
            self._histogram = np.pad(self._histogram, (0, len(counts) - len(self._histogram)))
        self._histogram[: len(counts)] += counts

    def median(self) -> float:
        """The median total (mean of the two middle ones for an even count); 1 if none."""
        cumulative = np.cumsum(self._histogram)
        n = int(cumulative[-1]) if len(cumulative) else 0
        if n == 0:
            return 1.0
        low = np.searchsorted(cumulative, (n - 1) // 2 + 1)
        high = np.searchsorted(cumulative, n // 2 + 1)
        return (low + high) / 2.0


class SentenceStream:
    """Streams one or more inputs as ranked sentence chunks, and gathers what the whole
    run knows only at its end: vocabulary, statistics, normalization target and the
    inverse-transform fit.

    Args:
      inputs: AnnData objects or input paths (any format of `c2s_jax.sentences.readers`),
        processed in order.
      options: see `SentenceOptions`.
      obs_keys: obs columns carried along with each cell.
      progress: show a progress bar over cells.
      rank: rank each cell's genes; False only counts them (every statistic, the
        vocabulary and the fit are the same, at a fraction of the time).
      only_rows: sorted, distinct input rows to yield (one input only); only their cells
        are read, and the statistics then cover only those. Each cell's ranking is a
        function of its own row, so it is the same as in a full pass.
      names: read the cells' obs names; a pass that needs none (a corpus build's count of
        an atlas, where decoding names is a quarter of the time) leaves them None.
    """

    def __init__(
        self,
        inputs: Sequence[DataInput],
        options: SentenceOptions | None = None,
        obs_keys: Sequence[str] = (),
        progress: bool = True,
        rank: bool = True,
        only_rows: np.ndarray | None = None,
        names: bool = True,
    ):
        if only_rows is not None and len(inputs) != 1:
            raise ValueError("only_rows selects rows of a single input")
        if not inputs:
            raise InputError("no input given: pass at least one AnnData or input path")
        clash = [k for k in obs_keys if k in RESERVED_COLUMNS]
        if clash:
            raise InputError(
                f"obs columns {clash} clash with the output columns {RESERVED_COLUMNS}"
            )
        options = options or SentenceOptions()
        self.inputs = list(inputs)
        self.options = options
        self.obs_keys = list(obs_keys)
        self.progress = progress
        self.rank = rank
        self.only_rows = None if only_rows is None else np.asarray(only_rows, np.int64)
        self.names = names
        self.stats = SentenceStats()
        self.vocabulary = GeneVocabulary((), ())
        self._totals = _CountsMedian()
        self._fit_sample = _FitSample(options.fit_cells, options.seed)

    def __iter__(self) -> Iterator[SentenceChunk]:
        for file_index, data in enumerate(self.inputs):
            with ExpressionSource(data, MatrixChoice(self.options.layer, self.options.raw)) as src:
                yield from self._stream_source(src, file_index)

    def target_sum(self) -> float:
        """The normalize_total target: the option, or the median kept-cell total (scanpy)."""
        if self.options.target_sum is not None:
            return float(self.options.target_sum)
        return self._totals.median()

    def inverse_fit(self) -> inverse.InverseFit:
        """Fits expression ~ a + b*log10(1+rank) on the sampled cells (after iteration)."""
        target = self.target_sum()
        per_cell = []
        for values, total in zip(self._fit_sample.values, self._fit_sample.totals, strict=True):
            if not self._fit_sample.normalized_input:
                values = np.log10(1.0 + values / total * target)
            per_cell.append(values)
        return inverse.fit_inverse(per_cell, max_rank=self.options.fit_max_rank)

    def _stream_source(self, src: ExpressionSource, file_index: int) -> Iterator[SentenceChunk]:
        opts = self.options
        # Packaged datasets are known to hold cells in rows, however many genes they keep.
        if src.n_genes > src.n_cells and not is_embedded(src.name):
            warnings.warn(
                f"{src.where}: more genes ({src.n_genes}) than cells ({src.n_cells}); the matrix "
                "may be transposed (cells must be rows)",
                stacklevel=2,
            )
        src.check_obs_columns(self.obs_keys)
        symbols = gene_symbols(
            src.var, src.where, opts.gene_symbols_key, opts.duplicates, opts.sanitize_symbols
        )
        stats = SentenceStats(n_cells_in=src.n_cells, n_genes_in=src.n_genes)
        keep_gene = self._kept_genes(src, symbols)
        stats.n_genes_kept = int(keep_gene.sum())
        every_gene_kept = stats.n_genes_kept == len(keep_gene)
        cell_counts = np.zeros(len(symbols.symbols), np.int64)
        salt = np.uint64(file_index) << np.uint64(_FILE_SALT_SHIFT)
        normalized_input: bool | None = None
        bar = tqdm(
            total=src.n_cells,
            unit="cell",
            desc=os.path.basename(src.name),
            disable=not self.progress,
            leave=False,
        )
        for block_rows, block in src.chunks(opts.chunk_size, self.only_rows):
            block = symbols.to_symbol_space(block)
            if normalized_input is None:
                normalized_input = self._is_normalized(block, src.where)
                stats.normalized_input = normalized_input
            expressed = count_expressed(block.data, block.indptr)
            passes = expressed >= max(opts.min_genes, 1)
            stats.n_cells_empty += int((expressed == 0).sum())
            stats.n_cells_below_min_genes += int(((expressed > 0) & ~passes).sum())
            rows = np.flatnonzero(passes)
            kept = block if len(rows) == block.shape[0] else block[rows]
            if not (every_gene_kept and expressed.sum() == block.nnz):
                kept = _gene_filtered(kept, keep_gene)
            if self.rank:
                cell_keys = salt | block_rows[rows].astype(np.uint64)
                gene_ids, indptr = rank_genes(kept, cell_keys, opts.seed, keep_gene, opts.top_k)
            else:
                gene_ids, indptr = None, _sentence_bounds(kept, opts.top_k)
            nonempty = np.diff(indptr) > 0
            stats.n_cells_empty += int((~nonempty).sum())
            if not nonempty.all():
                rows, kept = rows[nonempty], kept[nonempty]
                gene_ids, indptr = _drop_empty(gene_ids, indptr, nonempty)
            cell_counts += np.bincount(kept.indices, minlength=len(cell_counts))
            # Every kept row has entries here, so reduceat's segments are all non-empty.
            totals = (
                np.add.reduceat(kept.data, kept.indptr[:-1], dtype=np.float64)
                if len(rows)
                else np.zeros(0)
            )
            if not normalized_input:
                self._totals.add(totals)
            self._fit_sample.offer(kept, totals, salt | block_rows[rows].astype(np.uint64))
            stats.n_cells_out += len(rows)
            bar.update(block.shape[0])
            yield SentenceChunk(
                gene_ids=gene_ids,
                indptr=indptr,
                cell_names=src.obs.names(block_rows[rows]) if self.names else None,
                obs=src.obs.frame(self.obs_keys, block_rows[rows]),
                symbols=symbols.symbols,
                rows=block_rows[rows],
            )
        bar.close()
        self._fit_sample.normalized_input |= bool(normalized_input)
        self.stats.add(stats)
        self.vocabulary = self.vocabulary.merge(
            GeneVocabulary.from_counts(symbols.symbols[keep_gene], cell_counts[keep_gene])
        )
        log.info("%s: %d of %d cells became sentences", src.where, stats.n_cells_out, src.n_cells)

    def _is_normalized(self, block: sp.csr_matrix, where: str) -> bool:
        if self.options.normalize is not None:
            return not self.options.normalize
        return not looks_like_counts(block.data, where)

    def _kept_genes(self, src: ExpressionSource, symbols: GeneSymbols) -> np.ndarray:
        """[S] bool: genes expressed in >= min_cells of the cells passing min_genes."""
        n_symbols = len(symbols.symbols)
        if self.options.min_cells <= 0:
            return np.ones(n_symbols, bool)
        n_cells = np.zeros(n_symbols, np.int64)
        for _, block in src.chunks(self.options.chunk_size):
            block = symbols.to_symbol_space(block)
            passes = count_expressed(block.data, block.indptr) >= max(self.options.min_genes, 1)
            expressed = block[np.flatnonzero(passes)]
            n_cells += np.bincount(expressed.indices[expressed.data > 0], minlength=n_symbols)
        return n_cells >= self.options.min_cells


def _gene_filtered(block: sp.csr_matrix, keep_gene: np.ndarray) -> sp.csr_matrix:
    """Removes the entries of dropped genes and explicit zeros."""
    keep = keep_gene[block.indices] & (block.data > 0)
    counts = np.concatenate([[0], np.cumsum(keep)])
    indptr = counts[block.indptr]
    return sp.csr_matrix((block.data[keep], block.indices[keep], indptr), shape=block.shape)


def _sentence_bounds(kept: sp.csr_matrix, top_k: int | None) -> np.ndarray:
    """[cells + 1] the indptr a ranking of `kept` would give (at most `top_k` genes per
    cell), without ranking. `kept` holds only positive entries of kept genes."""
    lengths = np.diff(kept.indptr)
    if top_k is not None:
        lengths = np.minimum(lengths, top_k)
    indptr = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=indptr[1:])
    return indptr


def _drop_empty(gene_ids: np.ndarray | None, indptr: np.ndarray, nonempty: np.ndarray):
    lengths = np.diff(indptr)[nonempty]
    new_indptr = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=new_indptr[1:])
    return gene_ids, new_indptr


def _hash_unit(ordinals: np.ndarray, seed: int) -> np.ndarray:
    """Uniform [0, 1) numbers from (seed, ordinal) with a splitmix64-style mix."""
    with np.errstate(over="ignore"):
        z = ordinals.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(seed)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


@dataclasses.dataclass(frozen=True)
class CellSentences:
    """Cell sentences held in memory (for one AnnData or a few files).

    Attributes:
      symbols: [S] the vocabulary's symbols; gene ids index into it.
      gene_ids: [total] int32, cell i's genes are gene_ids[indptr[i]:indptr[i + 1]].
      indptr: [cells + 1] int64.
      cell_names: [cells] obs names.
      obs: requested obs columns, one row per cell.
      vocabulary: symbols with their expressing-cell counts.
      stats: cells and genes kept, skipped and filtered.
      fit: the inverse-transform fit.
      target_sum: the normalize_total target used for the fit.
    """

    symbols: np.ndarray
    gene_ids: np.ndarray
    indptr: np.ndarray
    cell_names: np.ndarray
    obs: pd.DataFrame
    vocabulary: GeneVocabulary
    stats: SentenceStats
    fit: inverse.InverseFit
    target_sum: float

    def __len__(self) -> int:
        return len(self.cell_names)

    def genes(self, i: int) -> np.ndarray:
        """[n] the ranked symbols of cell i."""
        return self.symbols[self.gene_ids[self.indptr[i] : self.indptr[i + 1]]]

    def sentences(self) -> list[str]:
        """All sentences as space-joined strings."""
        text, offsets = SentenceWriter(self.symbols).text_buffers(self.gene_ids, self.indptr)
        raw = text.tobytes()
        return [raw[offsets[i] : offsets[i + 1]].decode() for i in range(len(self))]


def cell_sentences(
    data: DataInput,
    obs_keys: Sequence[str] = (),
    progress: bool = False,
    **options,
) -> CellSentences:
    """Cell sentences of one AnnData (or .h5ad path), in memory.

    Args:
      data: AnnData or an input path (any format of `c2s_jax.sentences.readers`).
      obs_keys: obs columns to carry along.
      progress: show a progress bar.
      **options: any `SentenceOptions` field (top_k=, seed=, layer=, raw=, min_genes=, ...).

    Returns:
      `CellSentences`; with several inputs, or atlas-sized ones, stream with
      `SentenceStream` (or `c2s sentences`) instead.
    """
    stream = SentenceStream([data], SentenceOptions(**options), obs_keys, progress)
    chunks = list(stream)
    symbols = chunks[0].symbols if chunks else np.zeros(0, str)
    lengths = np.concatenate([np.diff(c.indptr) for c in chunks]) if chunks else np.zeros(0, int)
    indptr = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=indptr[1:])
    return CellSentences(
        symbols=symbols,
        gene_ids=np.concatenate([c.gene_ids for c in chunks]) if chunks else np.zeros(0, np.int32),
        indptr=indptr,
        cell_names=np.concatenate([c.cell_names for c in chunks]) if chunks else np.zeros(0, str),
        obs=pd.concat([c.obs for c in chunks], ignore_index=True) if chunks else pd.DataFrame(),
        vocabulary=stream.vocabulary,
        stats=stream.stats,
        fit=stream.inverse_fit(),
        target_sum=stream.target_sum(),
    )
