"""One dataset, ready for task sampling: sentences, obs fields, splits, groups, neighbors.

Cell sentences keep every expressed gene (each example then shows its own top-K), so
questions such as "is gene X expressed" have exact answers.
"""

import dataclasses
import warnings
from collections.abc import Mapping

import anndata
import numpy as np
import pandas as pd

from c2s_jax.data.cell_sentences import CellSentences, cell_sentences
from c2s_jax.data.corpus_config import DatasetSpec, SplitSpec
from c2s_jax.data.embedded import is_embedded, load_embedded
from c2s_jax.data.expression_source import read_anndata
from c2s_jax.data.perturbation import ControlPairs, pair_controls
from c2s_jax.data.splits import SPLIT_IDS, assign_splits
from c2s_jax.errors import InputError

# Fields a conditional-generation request may name, with the spec attribute of each column.
CONDITION_FIELDS = {
    "cell_type": "cell_type_key",
    "tissue": "tissue_key",
    "organism": "organism_key",
    "disease": "disease_key",
    "perturbation": "perturbation_key",
}


@dataclasses.dataclass
class DatasetCells:
    """A dataset in memory with what the task builders ask of it.

    Attributes:
      spec: the dataset's config entry.
      sentences: all cells' ranked genes (every expressed gene).
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
    sentences: CellSentences
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
        s = self.sentences
        return s.gene_ids[s.indptr[cell] : s.indptr[cell + 1]]

    def cells_with(self, split: int, field: str, value: str) -> np.ndarray:
        """[n] int64 cells of a split whose `field` equals `value` (sorted)."""
        key = (split, field)
        if key not in self._index:
            cells = self.cells_by_split[split]
            values = pd.Series(self.fields[field][cells])
            self._index[key] = {
                v: cells[np.asarray(rows)] for v, rows in values.groupby(values).indices.items()
            }
        return self._index[key].get(value, np.zeros(0, np.int64))


def load_dataset(spec: DatasetSpec, split_spec: SplitSpec, seed: int, neighbors: int):
    """Reads a dataset, ranks its cells and assigns their splits.

    Args:
      spec: the dataset's config entry.
      split_spec: how cells are split.
      seed: corpus seed (tie-breaks and split order).
      neighbors: spatial neighbors per cell (when the dataset has coordinates).
    """
    adata = open_dataset(spec)
    with warnings.catch_warnings():
        if is_embedded(spec.path):
            # Packaged datasets hold cells in rows, however many genes they keep.
            warnings.filterwarnings("ignore", message=".*may be transposed", category=UserWarning)
        sentences = cell_sentences(
            adata,
            obs_keys=list(dict.fromkeys([*spec.obs_keys(), *split_spec.obs_keys()])),
            seed=seed,
            layer=spec.layer,
            raw=spec.raw,
            gene_symbols_key=spec.gene_symbols_key,
            sanitize_symbols=spec.sanitize_symbols,
        )
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
        fields=fields,
        split=split,
        cells_by_split={i: np.flatnonzero(split == i) for i in SPLIT_IDS.values()},
        group_of_cell=group_of_cell,
        neighbors=_neighbors(adata, spec, sentences, neighbors) if spec.spatial_key else None,
        controls=controls,
        description=_uns_description(adata, spec),
        expressed_symbols=np.asarray(expressed, np.int32),
    )


def open_dataset(spec: DatasetSpec) -> anndata.AnnData | str:
    """The dataset's AnnData (embedded, or backed when obsm/uns are needed), else its path."""
    if is_embedded(spec.path):
        return load_embedded(spec.path)
    if spec.spatial_key or spec.description_uns_key:
        return read_anndata(spec.path, backed="r")
    return spec.path


def _text_column(column: pd.Series) -> np.ndarray:
    """[cells] object array of str, None where the value is missing."""
    values = column.astype(object).to_numpy()
    missing = pd.isna(values)
    return np.array([None if m else str(v) for v, m in zip(values, missing, strict=True)], object)


def _neighbors(adata, spec: DatasetSpec, sentences: CellSentences, k: int) -> np.ndarray:
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
