"""One dataset, ready for task sampling: obs fields, splits, groups, neighbors, and the
ranked genes of the cells an example asks for.

Task sampling reads only obs, per-cell sentence lengths and the vocabulary, which one
counting pass over the data gives (`CellIndex`); the ranked genes live in a `GeneStore`
that holds either every cell (evaluation, small data) or just the cells one batch of
examples uses, read in one pass over the data, so a corpus build's memory follows the
examples drawn, not the cells stored. Sentences keep every expressed gene (each example
then shows its own top-K), so questions such as "is gene X expressed" have exact answers.
"""

import contextlib
import dataclasses
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping

import anndata
import numpy as np
import pandas as pd

from c2s_jax.corpus.config import DatasetSpec, SplitSpec
from c2s_jax.corpus.perturbation import ControlPairs, pair_controls
from c2s_jax.corpus.splits import SPLIT_IDS, assign_splits
from c2s_jax.errors import InputError
from c2s_jax.sentences import inverse
from c2s_jax.sentences.cell_sentences import (
    DataInput,
    SentenceOptions,
    SentenceStats,
    SentenceStream,
)
from c2s_jax.sentences.embedded import is_embedded, load_embedded
from c2s_jax.sentences.expression_source import read_anndata
from c2s_jax.sentences.readers.detect import detect_format
from c2s_jax.sentences.sentence_table import SentenceTable, is_sentence_table
from c2s_jax.sentences.vocabulary import GeneVocabulary

# Fields a conditional-generation request may name, with the spec attribute of each column.
CONDITION_FIELDS = {
    "cell_type": "cell_type_key",
    "tissue": "tissue_key",
    "organism": "organism_key",
    "disease": "disease_key",
    "perturbation": "perturbation_key",
}


@dataclasses.dataclass(frozen=True)
class CellIndex:
    """A dataset's cells without their genes: what task sampling reads of every cell.

    Attributes:
      symbols: [S] gene symbols; gene ids index into it.
      cell_names: [cells] obs names.
      obs: the obs columns the tasks and the split read, one row per cell.
      vocabulary: symbols with their expressing-cell counts.
      stats: cells and genes kept, skipped and filtered.
      fit: the inverse-transform fit.
      target_sum: the normalize_total target of the fit.
      lengths: [cells] int64 genes in each cell's sentence.
      input_rows: [cells] int64 each cell's row in the input (empty cells are not cells).
    """

    symbols: np.ndarray
    cell_names: np.ndarray
    obs: pd.DataFrame
    vocabulary: GeneVocabulary
    stats: SentenceStats
    fit: inverse.InverseFit
    target_sum: float
    lengths: np.ndarray
    input_rows: np.ndarray

    def __len__(self) -> int:
        return len(self.cell_names)


class GeneStore:
    """Ranked gene ids of the cells held, by cell.

    While `recording()`, `genes(cell)` notes the cell and returns placeholder ids of the
    right length: task sampling decides on lengths only, so a recorded run draws the same
    cells as a real one, and tells which cells to `fetch` before it.

    Args:
      read: sorted input rows -> (gene_ids [total] int32, indptr [rows + 1]) of those
        rows, read again from the dataset (the same ranking on every read).
      index: the dataset's cells.
    """

    def __init__(self, read: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], index):
        self.read, self.index = read, index
        self._cells = np.zeros(0, np.int64)
        self._gene_ids = np.zeros(0, np.int32)
        self._indptr = np.zeros(1, np.int64)
        self._recorded: set[int] | None = None
        self.holds_all = False

    def genes(self, cell: int) -> np.ndarray:
        """[n] int32 gene ids of `cell`, most expressed first."""
        if self._recorded is not None:
            self._recorded.add(int(cell))
            # Distinct valid ids, as real genes are (a cell's genes are distinct).
            return np.arange(self.index.lengths[cell], dtype=np.int32)
        at = int(np.searchsorted(self._cells, cell))
        if at == len(self._cells) or self._cells[at] != cell:
            raise LookupError(f"cell {cell} was not fetched before use (GeneStore.fetch)")
        return self._gene_ids[self._indptr[at] : self._indptr[at + 1]]

    @contextlib.contextmanager
    def recording(self) -> Iterator[set[int]]:
        """Collects the cells asked for within the block (their genes are placeholders)."""
        self._recorded = set()
        try:
            yield self._recorded
        finally:
            self._recorded = None

    def fetch(self, cells: Iterable[int]) -> None:
        """Holds the genes of `cells` (only those), read in one pass over the dataset.

        Nothing is read when every one of them is held already (a store that holds every
        cell, or a fetch for a subset of the last one)."""
        cells = np.unique(np.fromiter(cells, np.int64))
        if self.holds_all or np.isin(cells, self._cells, assume_unique=True).all():
            return
        self._hold(cells, *self.read(self.index.input_rows[cells]))

    def hold_all(self, gene_ids: np.ndarray, indptr: np.ndarray) -> None:
        """Holds every cell's genes, as a full ranking pass gave them."""
        self._hold(np.arange(len(self.index), dtype=np.int64), gene_ids, indptr)
        self.holds_all = True

    def _hold(self, cells: np.ndarray, gene_ids: np.ndarray, indptr: np.ndarray) -> None:
        if len(indptr) != len(cells) + 1:
            raise RuntimeError(f"read {len(indptr) - 1} cells where {len(cells)} were asked for")
        self._cells, self._gene_ids, self._indptr = cells, gene_ids, indptr


@dataclasses.dataclass
class DatasetCells:
    """A dataset with what the task builders ask of it.

    Attributes:
      spec: the dataset's config entry.
      sentences: its cells (obs, lengths, vocabulary, fit), without their genes.
      store: the ranked genes of the cells held (every expressed gene of each).
      fields: template field -> [cells] object array of str (None where missing).
      split: [cells] int8 split ids (splits.SPLIT_IDS).
      cells_by_split: split id -> [n] int64 cells.
      group_of_cell: [cells] int64 multi-cell group ids (all 0 without group_keys).
      neighbors: [cells, k] int64 nearest spatial neighbors (None without coordinates).
      controls: perturbation pairing (None without a perturbation column).
      description: the dataset's study description from uns (None if absent).
      expressed_symbols: [E] int32 ids of genes expressed in some cell.
    """

    spec: DatasetSpec
    sentences: CellIndex
    store: GeneStore
    fields: dict[str, np.ndarray]
    split: np.ndarray
    cells_by_split: dict[int, np.ndarray]
    group_of_cell: np.ndarray
    neighbors: np.ndarray | None
    controls: ControlPairs | None
    description: str | None
    expressed_symbols: np.ndarray
    _index: dict = dataclasses.field(default_factory=dict)

    def genes(self, cell: int) -> np.ndarray:
        """[n] int32 gene ids of a cell, most expressed first."""
        return self.store.genes(cell)

    def cells_with(self, split: int, field: str, value: str) -> np.ndarray:
        """[n] int64 cells of a split whose `field` equals `value` (sorted)."""
        return self.cells_matching(split, {field: value})

    def cells_matching(self, split: int, values: Mapping[str, str]) -> np.ndarray:
        """[n] int64 cells of a split whose fields equal all of `values` (sorted).

        Each combination of fields is indexed once per split, so a lookup costs the
        cells it returns, not the dataset.
        """
        fields = tuple(sorted(values))
        key = (split, fields)
        if key not in self._index:
            cells = self.cells_by_split[split]
            frame = pd.DataFrame({f: self.fields[f][cells] for f in fields})
            groups = frame.groupby(list(fields), sort=False, dropna=True).indices
            self._index[key] = {
                (v if isinstance(v, tuple) else (v,)): cells[np.asarray(rows)]
                for v, rows in groups.items()
            }
        wanted = tuple(values[f] for f in fields)
        return self._index[key].get(wanted, np.zeros(0, np.int64))

    def cells_of_group(self, split: int, group: int) -> np.ndarray:
        """[n] int64 cells of a split in multi-cell group `group` (sorted); the split's
        cells are ordered by group once, so a lookup costs the cells it returns."""
        key = ("groups", split)
        if key not in self._index:
            cells = self.cells_by_split[split]
            order = np.argsort(self.group_of_cell[cells], kind="stable")
            self._index[key] = (cells[order], self.group_of_cell[cells][order])
        cells, groups = self._index[key]
        first, stop = np.searchsorted(groups, [group, group + 1])
        return cells[first:stop]

    def labels(self, field: str) -> list[str]:
        """The distinct values of a field over all cells, sorted."""
        key = ("labels", field)
        if key not in self._index:
            self._index[key] = sorted({str(v) for v in pd.unique(self.fields[field]) if v})
        return self._index[key]


def load_dataset(
    spec: DatasetSpec,
    split_spec: SplitSpec,
    seed: int,
    neighbors: int,
    all_genes: bool = True,
    chunk_size: int = 4096,
) -> DatasetCells:
    """Reads a dataset's cells and assigns their splits.

    Args:
      spec: the dataset's config entry.
      split_spec: how cells are split.
      seed: corpus seed (tie-breaks and split order).
      neighbors: spatial neighbors per cell (when the dataset has coordinates).
      all_genes: rank every cell and hold all genes; False only counts them, and the
        genes of the cells examples use are fetched later (`GeneStore.fetch`).
      chunk_size: cells read at once (memory, never the result).
    """
    if is_sentence_table(spec.path):
        adata = spec.path
        sentences, store = _table_cells(spec, split_spec, chunk_size)
    else:
        if not is_embedded(spec.path):
            try:
                detect_format(spec.path)
            except InputError as err:
                raise InputError(
                    f"config key 'datasets.{spec.name}.path': {err}, or a sentence table "
                    "written by `c2s sentences` (.parquet with its .meta.json)"
                ) from None
        adata = open_dataset(spec)
        sentences, store = _matrix_cells(adata, spec, split_spec, seed, all_genes, chunk_size)
    obs = sentences.obs
    fields = {}
    for field, attribute in {**CONDITION_FIELDS, "description": "description_key"}.items():
        column = getattr(spec, attribute)
        if column:
            fields[field] = _text_column(obs[column])
    if "organism" not in fields and spec.organism:
        fields["organism"] = np.full(len(sentences), spec.organism, object)
    for field, column in (("dose", spec.dose_key), ("time", spec.time_key)):
        if column:
            fields[field] = _text_column(obs[column])
    if spec.perturbation_type_key:
        fields["perturbation_type"] = _text_column(obs[spec.perturbation_type_key])
    elif spec.perturbation_key:
        fields["perturbation_type"] = np.full(len(sentences), spec.perturbation_type, object)
    split = assign_splits(
        obs, split_spec.by, split_spec.fractions, seed, spec.name, split_spec.held_out
    )
    if spec.group_keys:
        group_of_cell = obs.groupby(list(spec.group_keys), sort=True, observed=True, dropna=False)
        group_of_cell = group_of_cell.ngroup().to_numpy().astype(np.int64)
    else:
        group_of_cell = np.zeros(len(sentences), np.int64)
    controls = None
    if spec.perturbation_key:
        values = obs[spec.perturbation_key].astype(str)
        if not (values == spec.control_label).any():
            shown = ", ".join(sorted(values.unique())[:10])
            raise InputError(
                f"{spec.path}: no cell has {spec.perturbation_key} = '{spec.control_label}' "
                f"(config key datasets.{spec.name}.control_label; values: {shown}); name the "
                "control label, since a perturbation task pairs each cell with controls"
            )
        controls = pair_controls(
            obs[spec.perturbation_key],
            spec.control_label,
            obs[spec.cell_type_key] if spec.cell_type_key else None,
            obs[spec.batch_key] if spec.batch_key else None,
        )
    counts = np.asarray(sentences.vocabulary.cell_counts)
    symbol_index = {s: i for i, s in enumerate(sentences.symbols)}
    expressed = [
        symbol_index[s] for s, c in zip(sentences.vocabulary.symbols, counts, strict=True) if c > 0
    ]
    return DatasetCells(
        spec=spec,
        sentences=sentences,
        store=store,
        fields=fields,
        split=split,
        cells_by_split={i: np.flatnonzero(split == i) for i in SPLIT_IDS.values()},
        group_of_cell=group_of_cell,
        neighbors=_neighbors(adata, spec, sentences, neighbors) if spec.spatial_key else None,
        controls=controls,
        description=_uns_description(adata, spec),
        expressed_symbols=np.asarray(expressed, np.int32),
    )


def _obs_keys(spec: DatasetSpec, split_spec: SplitSpec) -> list[str]:
    return list(dict.fromkeys([*spec.obs_keys(), *split_spec.obs_keys()]))


def _matrix_cells(
    adata: DataInput,
    spec: DatasetSpec,
    split_spec: SplitSpec,
    seed: int,
    all_genes: bool,
    chunk_size: int,
) -> tuple[CellIndex, GeneStore]:
    """An expression matrix's cells: counted (or ranked) in one streamed pass."""
    options = SentenceOptions(
        seed=seed,
        layer=spec.layer,
        raw=spec.raw,
        gene_symbols_key=spec.gene_symbols_key,
        sanitize_symbols=spec.sanitize_symbols,
        chunk_size=chunk_size,
    )
    with warnings.catch_warnings():
        if is_embedded(spec.path):
            # Packaged datasets hold cells in rows, however many genes they keep.
            warnings.filterwarnings("ignore", message=".*may be transposed", category=UserWarning)
        stream = SentenceStream(
            [adata], options, _obs_keys(spec, split_spec), progress=False, rank=all_genes
        )
        chunks = list(stream)
    index = CellIndex(
        symbols=chunks[0].symbols if chunks else np.zeros(0, str),
        cell_names=_joined(chunks, "cell_names", np.zeros(0, str)),
        obs=pd.concat([c.obs for c in chunks], ignore_index=True) if chunks else pd.DataFrame(),
        vocabulary=stream.vocabulary,
        stats=stream.stats,
        fit=stream.inverse_fit(),
        target_sum=stream.target_sum(),
        lengths=_chunk_lengths(chunks),
        input_rows=_joined(chunks, "rows", np.zeros(0, np.int64)),
    )
    # Later reads know the input's scale and have warned about its shape already.
    fetch_options = dataclasses.replace(options, normalize=not index.stats.normalized_input)

    def read(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        stream = SentenceStream([adata], fetch_options, progress=False, only_rows=rows)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*may be transposed", category=UserWarning)
            return _ranked(list(stream))

    store = GeneStore(read, index)
    if all_genes:
        store.hold_all(*_ranked(chunks))
    return index, store


def _table_cells(
    spec: DatasetSpec, split_spec: SplitSpec, chunk_size: int
) -> tuple[CellIndex, GeneStore]:
    """A `c2s sentences` table's cells: obs and lengths in one pass; genes on demand."""
    for name in ("layer", "gene_symbols_key", "spatial_key", "description_uns_key"):
        if getattr(spec, name) or spec.raw:
            raise InputError(
                f"config key 'datasets.{spec.name}.{'raw' if spec.raw else name}' applies to "
                f"expression files; {spec.path} is a sentence table (its cells are ranked "
                "already, without coordinates or uns)"
            )
    table = SentenceTable(spec.path)
    names, frames, lengths = [], [], []
    for batch_names, obs, batch_lengths in table.scan(_obs_keys(spec, split_spec), chunk_size):
        names.append(batch_names)
        frames.append(obs)
        lengths.append(batch_lengths)
    index = CellIndex(
        symbols=table.symbols,
        cell_names=np.concatenate(names) if names else np.zeros(0, str),
        obs=pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(),
        vocabulary=table.vocabulary,
        stats=table.stats,
        fit=table.fit,
        target_sum=table.target_sum,
        lengths=np.concatenate(lengths) if lengths else np.zeros(0, np.int64),
        input_rows=np.arange(sum(len(n) for n in names), dtype=np.int64),
    )
    return index, GeneStore(table.genes, index)


def _joined(chunks: list, name: str, empty: np.ndarray) -> np.ndarray:
    return np.concatenate([getattr(c, name) for c in chunks]) if chunks else empty


def _chunk_lengths(chunks: list) -> np.ndarray:
    lengths = [np.diff(c.indptr) for c in chunks]
    return np.concatenate(lengths).astype(np.int64) if lengths else np.zeros(0, np.int64)


def _ranked(chunks: list) -> tuple[np.ndarray, np.ndarray]:
    """(gene_ids, indptr) of ranked chunks, joined."""
    indptr = np.zeros(1 + sum(len(c.cell_names) for c in chunks), np.int64)
    np.cumsum(_chunk_lengths(chunks), out=indptr[1:])
    gene_ids = _joined(chunks, "gene_ids", np.zeros(0, np.int32))
    return gene_ids, indptr


def open_dataset(spec: DatasetSpec) -> anndata.AnnData | str:
    """The dataset's AnnData (embedded, or backed when obsm/uns are needed), else its path."""
    if is_embedded(spec.path):
        return load_embedded(spec.path)
    if spec.spatial_key or spec.description_uns_key:
        return read_anndata(spec.path, backed="r")
    return spec.path


def _text_column(column: pd.Series) -> np.ndarray:
    """[cells] object array of str, None where the value is missing.

    Distinct values are converted once, so a column of millions of cells with a handful of
    labels costs a take, not a Python loop."""
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    texts = np.array([str(v) for v in uniques] + [None], object)
    return texts[codes]  # code -1 (missing) takes the trailing None


def _neighbors(adata, spec: DatasetSpec, sentences: CellIndex, k: int) -> np.ndarray:
    """[cells, k] the k nearest cells in space (by obsm coordinates), nearest first."""
    from scipy.spatial import cKDTree

    if isinstance(adata, str) or spec.spatial_key not in adata.obsm:
        raise InputError(
            f"{spec.path}: obsm has no '{spec.spatial_key}' (config key "
            f"datasets.{spec.name}.spatial_key); name the coordinates entry or set it to None"
        )
    rows = adata.obs_names.get_indexer(sentences.cell_names)
    coords = np.asarray(adata.obsm[spec.spatial_key])[rows, :2].astype(np.float64)
    k = min(k, len(coords) - 1)
    _, nearest = cKDTree(coords).query(coords, k=k + 1)
    return np.asarray(nearest[:, 1:], np.int64)


def _uns_description(adata, spec: DatasetSpec) -> str | None:
    if not spec.description_uns_key:
        return None
    uns: Mapping = {} if isinstance(adata, str) else adata.uns
    if spec.description_uns_key not in uns:
        raise InputError(
            f"{spec.path}: uns has no '{spec.description_uns_key}' (config key "
            f"datasets.{spec.name}.description_uns_key)"
        )
    return str(uns[spec.description_uns_key])
