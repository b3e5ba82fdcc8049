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
from pandas.api.types import union_categoricals

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
from c2s_jax.sentences.expression_source import ExpressionSource, MatrixChoice, read_anndata
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
      obs: the obs columns the tasks and the split read, one row per cell.
      vocabulary: symbols with their expressing-cell counts.
      stats: cells and genes kept, skipped and filtered.
      fit: the inverse-transform fit.
      target_sum: the normalize_total target of the fit.
      lengths: [cells] int32 genes in each cell's sentence.
      input_rows: [cells] int64 each cell's row in the input (empty cells are not cells).
      read_names: sorted input rows -> [n] their obs names, read from the input: names are
        wanted for a few cells or once in order, so an atlas's index does not hold them.
    """

    symbols: np.ndarray
    obs: pd.DataFrame
    vocabulary: GeneVocabulary
    stats: SentenceStats
    fit: inverse.InverseFit
    target_sum: float
    lengths: np.ndarray
    input_rows: np.ndarray
    read_names: Callable[[np.ndarray], np.ndarray]

    def __len__(self) -> int:
        return len(self.lengths)

    def cell_names(self, cells: np.ndarray) -> np.ndarray:
        """[n] str obs names of `cells` (indices into this index, any order)."""
        rows = self.input_rows[np.asarray(cells, np.int64)]
        order = np.argsort(rows, kind="stable")
        names = np.empty(len(rows), object)
        names[order] = np.asarray(self.read_names(rows[order]), object)
        return names.astype(str)


# What DatasetCells._only_value gives for a field with several values in a split.
_VARIES = object()


class Labels:
    """[cells] text values of one obs field, held as small integer codes into the distinct
    values: one or two bytes per cell, where an object array takes eight plus a pointer
    chase per value, which at millions of cells is most of a corpus build's memory.

    Indexing reads like the object array it replaces: one cell gives its str (None where
    missing); an array of cells gives an [n] object array.

    Attributes:
      codes: [cells] signed ints; -1 marks a missing value.
      texts: [distinct + 1] object: the distinct values, then None (which code -1 takes).
    """

    def __init__(self, codes: np.ndarray, texts: np.ndarray):
        self.codes, self.texts = codes, texts

    @classmethod
    def from_column(cls, column: pd.Series) -> "Labels":
        """The labels of an obs column (any dtype; values become str)."""
        if isinstance(column.dtype, pd.CategoricalDtype):  # its codes already (no copy)
            codes, uniques = column.cat.codes.to_numpy(), column.cat.categories
        else:
            codes, uniques = pd.factorize(column, use_na_sentinel=True)
        texts = np.array([str(v) for v in uniques] + [None], object)
        return cls(codes.astype(np.min_scalar_type(-len(texts)), copy=False), texts)

    @classmethod
    def constant(cls, n_cells: int, text: str) -> "Labels":
        """`text` for every one of `n_cells` cells."""
        return cls(np.zeros(n_cells, np.int8), np.array([text, None], object))

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, cells):
        return self.texts[self.codes[cells]]

    def distinct(self) -> list[str]:
        """The values some cell has (missing left out), in the order of their codes."""
        seen = np.bincount(self.codes + 1, minlength=len(self.texts))[1:] > 0
        return [str(t) for t, present in zip(self.texts[:-1], seen, strict=False) if present]


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
      fields: template field -> the [cells] labels of that field (None where missing).
      split: [cells] int8 split ids (splits.SPLIT_IDS).
      cells_by_split: split id -> [n] int64 cells.
      group_of_cell: [cells] int32 multi-cell group ids (all 0 without group_keys).
      neighbors: [cells, k] int64 nearest spatial neighbors (None without coordinates).
      controls: perturbation pairing (None without a perturbation column).
      description: the dataset's study description from uns (None if absent).
      expressed_symbols: [E] int32 ids of genes expressed in some cell.
    """

    spec: DatasetSpec
    sentences: CellIndex
    store: GeneStore
    fields: dict[str, Labels]
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

        A field with one value over the whole split (an atlas of one organism) does not
        divide it, so it costs nothing; the cells are grouped by the other fields once
        per split, so a lookup costs the cells it returns, not the dataset.
        """
        varying = []
        for field in sorted(values):
            only = self._only_value(split, field)
            if only is _VARIES:
                varying.append(field)
            elif only != values[field]:
                return np.zeros(0, np.int64)
        if not varying:
            return self.cells_by_split[split]
        cells, spans = self._grouped(split, tuple(varying))
        first, stop = spans.get(tuple(values[f] for f in varying), (0, 0))
        return cells[first:stop]

    def _only_value(self, split: int, field: str):
        """The value every cell of the split has in `field` (None: all missing), or
        _VARIES."""
        key = ("only", split, field)
        if key not in self._index:
            codes = self.fields[field].codes[self.cells_by_split[split]]
            same = len(codes) > 0 and codes.min() == codes.max()
            self._index[key] = self.fields[field].texts[codes[0]] if same else _VARIES
        return self._index[key]

    def _grouped(self, split: int, fields: tuple[str, ...]):
        """(the split's cells ordered by their values of `fields`, then by cell; value
        tuple -> (first, stop) of its cells in that order), built once per split."""
        key = ("grouped", split, fields)
        if key not in self._index:
            cells = self.cells_by_split[split]
            labels = [self.fields[f] for f in fields]
            # One int64 per cell: the fields' codes (missing -1 shifted to 0) in mixed radix.
            combined = np.zeros(len(cells), np.int64)
            for label in labels:
                combined *= len(label.texts)
                combined += label.codes[cells] + 1
            order = np.argsort(combined, kind="stable")
            combined = combined[order]
            starts = np.flatnonzero(np.diff(combined, prepend=-1))
            stops = np.append(starts[1:], len(combined))
            spans = {}
            for first, stop in zip(starts.tolist(), stops.tolist(), strict=True):
                value, texts = int(combined[first]), []
                for label in reversed(labels):
                    value, code = divmod(value, len(label.texts))
                    texts.append(label.texts[code - 1])
                if None not in texts:  # a cell missing any field matches no request
                    spans[tuple(reversed(texts))] = (first, stop)
            self._index[key] = (cells[order], spans)
        return self._index[key]

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
            self._index[key] = sorted(v for v in self.fields[field].distinct() if v)
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
            fields[field] = Labels.from_column(obs[column])
    if "organism" not in fields and spec.organism:
        fields["organism"] = Labels.constant(len(sentences), spec.organism)
    for field, column in (("dose", spec.dose_key), ("time", spec.time_key)):
        if column:
            fields[field] = Labels.from_column(obs[column])
    if spec.perturbation_type_key:
        fields["perturbation_type"] = Labels.from_column(obs[spec.perturbation_type_key])
    elif spec.perturbation_key:
        fields["perturbation_type"] = Labels.constant(len(sentences), spec.perturbation_type)
    split = assign_splits(
        obs, split_spec.by, split_spec.fractions, seed, spec.name, split_spec.held_out
    )
    if spec.group_keys:
        group_of_cell = obs.groupby(list(spec.group_keys), sort=True, observed=True, dropna=False)
        group_of_cell = group_of_cell.ngroup().to_numpy().astype(np.int32)
    else:
        group_of_cell = np.zeros(len(sentences), np.int32)
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
            [adata],
            options,
            _obs_keys(spec, split_spec),
            progress=False,
            rank=all_genes,
            names=False,
        )
        cells = _IndexParts()
        gene_ids: list[np.ndarray] = []
        symbols = np.zeros(0, str)
        for chunk in stream:  # each chunk is compacted and dropped as it comes
            symbols = chunk.symbols
            cells.add(chunk.obs, np.diff(chunk.indptr), chunk.rows)
            if all_genes:
                gene_ids.append(chunk.gene_ids)
    index = cells.index(
        symbols=symbols,
        vocabulary=stream.vocabulary,
        stats=stream.stats,
        fit=stream.inverse_fit(),
        target_sum=stream.target_sum(),
        read_names=_names_reader(adata, spec),
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
        indptr = np.zeros(len(index) + 1, np.int64)
        np.cumsum(index.lengths, out=indptr[1:])
        store.hold_all(np.concatenate(gene_ids) if gene_ids else np.zeros(0, np.int32), indptr)
    return index, store


def _names_reader(adata: DataInput, spec: DatasetSpec) -> Callable[[np.ndarray], np.ndarray]:
    """Sorted input rows -> their obs names, read from the input when asked."""
    if isinstance(adata, anndata.AnnData):
        return lambda rows: np.asarray(adata.obs_names[rows]).astype(str)

    def read(rows: np.ndarray) -> np.ndarray:
        with ExpressionSource(adata, MatrixChoice(spec.layer, spec.raw)) as source:
            return source.obs.names(rows)

    return read


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
    cells = _IndexParts()
    first = 0
    for obs, lengths in table.scan(_obs_keys(spec, split_spec), chunk_size):
        cells.add(obs, lengths, np.arange(first, first + len(lengths)))
        first += len(lengths)
    index = cells.index(
        symbols=table.symbols,
        vocabulary=table.vocabulary,
        stats=table.stats,
        fit=table.fit,
        target_sum=table.target_sum,
        read_names=table.names,
    )
    return index, GeneStore(table.genes, index)


class _IndexParts:
    """A CellIndex's per-cell columns, gathered chunk by chunk in compact form (text obs
    columns as categoricals, lengths as int32), so the chunks themselves need not be kept
    until the end."""

    def __init__(self):
        self.frames: list[pd.DataFrame] = []
        self.lengths: list[np.ndarray] = []
        self.rows: list[np.ndarray] = []

    def add(self, obs: pd.DataFrame, lengths, rows) -> None:
        """One chunk's [n] obs rows, sentence lengths and input rows."""
        if not all(_is_compact(obs[c]) for c in obs.columns):
            obs = obs.apply(lambda c: c if _is_compact(c) else c.astype("category"))
        self.frames.append(obs)
        self.lengths.append(np.asarray(lengths, np.int32))
        self.rows.append(np.asarray(rows, np.int64))

    def index(self, **facts) -> CellIndex:
        """The CellIndex of every chunk added, with the dataset-wide `facts`."""
        return CellIndex(
            obs=_joined_obs(self.frames),
            lengths=_joined(self.lengths, np.zeros(0, np.int32)),
            input_rows=_joined(self.rows, np.zeros(0, np.int64)),
            **facts,
        )


def _is_compact(column: pd.Series) -> bool:
    """A categorical, number or boolean column (text columns become categoricals)."""
    return isinstance(column.dtype, pd.CategoricalDtype) or column.dtype.kind in "biuf"


def _joined_obs(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The chunks' obs as one frame; a categorical column stays categorical (its
    categories united) where a plain concat of differing categories gives objects."""
    if not frames:
        return pd.DataFrame()
    joined = {}
    for column in frames[0].columns:
        parts = [f[column] for f in frames]
        if all(isinstance(p.dtype, pd.CategoricalDtype) for p in parts):
            joined[column] = pd.Series(union_categoricals(parts, ignore_order=True))
        else:
            joined[column] = pd.concat(parts, ignore_index=True)
    return pd.DataFrame(joined, columns=frames[0].columns)


def _joined(parts: list[np.ndarray], empty: np.ndarray) -> np.ndarray:
    return np.concatenate(parts) if parts else empty


def _ranked(chunks: list) -> tuple[np.ndarray, np.ndarray]:
    """(gene_ids, indptr) of ranked chunks, joined."""
    lengths = _joined([np.diff(c.indptr) for c in chunks], np.zeros(0, np.int64))
    indptr = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=indptr[1:])
    return _joined([c.gene_ids for c in chunks], np.zeros(0, np.int32)), indptr


def open_dataset(spec: DatasetSpec) -> anndata.AnnData | str:
    """The dataset's AnnData (embedded, or backed when obsm/uns are needed), else its path."""
    if is_embedded(spec.path):
        return load_embedded(spec.path)
    if spec.spatial_key or spec.description_uns_key:
        return read_anndata(spec.path, backed="r")
    return spec.path


def _neighbors(adata, spec: DatasetSpec, sentences: CellIndex, k: int) -> np.ndarray:
    """[cells, k] the k nearest cells in space (by obsm coordinates), nearest first."""
    from scipy.spatial import cKDTree

    if isinstance(adata, str) or spec.spatial_key not in adata.obsm:
        raise InputError(
            f"{spec.path}: obsm has no '{spec.spatial_key}' (config key "
            f"datasets.{spec.name}.spatial_key); name the coordinates entry or set it to None"
        )
    rows = sentences.input_rows
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
