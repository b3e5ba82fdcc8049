"""The cells a model is evaluated on, exactly as its corpus saw them.

The corpus config travels in the model bundle, so the same datasets are read, ranked and
split with the same seed: held-out cells are the ones no training example used, and
their sentences are the ones the corpus would have written.
"""

from __future__ import annotations

import dataclasses

import anndata
import ml_collections
import numpy as np
import scipy.sparse as sp

from c2s_jax.checkpoints.bundle import Bundle
from c2s_jax.corpus.cells import DatasetCells, load_dataset, open_dataset
from c2s_jax.corpus.config import corpus_spec
from c2s_jax.corpus.splits import SPLIT_IDS
from c2s_jax.errors import InputError
from c2s_jax.sentences.gene_symbols import gene_symbols
from c2s_jax.sentences.inverse import InverseFit, reconstruct
from c2s_jax.sentences.sentence_table import is_sentence_table


@dataclasses.dataclass
class HeldOut:
    """One dataset of a model's corpus, with its expression.

    Attributes:
      cells: the dataset as the corpus builder holds it (sentences, fields, splits).
      expression: [cells, genes] csr matrix as stored (counts or normalized), rows in the
        order of ``cells``, columns in the order of ``cells.sentences.symbols``.
      fit: the corpus's inverse fit (rank -> log10(1 + normalized expression)).
    """

    cells: DatasetCells
    expression: sp.csr_matrix
    fit: InverseFit

    @property
    def symbols(self) -> np.ndarray:
        return self.cells.sentences.symbols

    def split_cells(self, *splits: str) -> np.ndarray:
        """[n] sorted cell indices of the named splits."""
        return np.sort(np.concatenate([self.cells.cells_by_split[SPLIT_IDS[s]] for s in splits]))

    def labels(self, field: str, cells: np.ndarray) -> np.ndarray:
        """[n] values of a field (e.g. 'cell_type') for cells; None where missing."""
        if field not in self.cells.fields:
            raise InputError(
                f"dataset '{self.cells.spec.name}' has no field '{field}'; name its obs column "
                f"in the corpus config's datasets[].{field}_key"
            )
        return self.cells.fields[field][cells]

    def sentence(self, cell: int, top_k: int | None = None) -> list[str]:
        """A cell's gene symbols, most expressed first (its first ``top_k``)."""
        genes = self.symbols[self.cells.genes(cell)]
        return [str(g) for g in (genes[:top_k] if top_k else genes)]

    def reconstructed(self, cells: np.ndarray, top_k: int) -> sp.csr_matrix:
        """[n, genes] what the cells' top-``top_k`` sentences say through the inverse fit:
        the representation generated cells have, so real and generated compare alike."""
        return self.expression_of([" ".join(self.sentence(c, top_k)) for c in cells])

    def expression_of(self, sentences: list[str]) -> sp.csr_matrix:
        """[n, genes] log10(1 + normalized) expression that sentences say through the fit."""
        return reconstruct(sentences, self.fit, self.symbols)[0]


def load_held_out(bundle: Bundle, dataset: str | None = None) -> HeldOut:
    """Re-reads the bundle's corpus dataset (``dataset`` names one of several)."""
    meta = bundle.dataset(dataset)
    config = ml_collections.ConfigDict(bundle.corpus["config"])
    spec = corpus_spec(config)
    name = dataset or next(iter(bundle.corpus["datasets"]))
    dataset_spec = next(d for d in spec.datasets if d.name == name)
    if is_sentence_table(dataset_spec.path):
        raise InputError(
            f"dataset '{name}' is the sentence table {dataset_spec.path}; evaluation compares "
            "expression, so it reads the matrix the table was written from"
        )
    cells = load_dataset(dataset_spec, spec.split, spec.seed, spec.spatial_neighbors)
    if list(map(str, cells.sentences.symbols)) != list(meta["genes"]):
        raise InputError(
            f"dataset '{name}' ({dataset_spec.path}) no longer has the genes the model's corpus "
            "had; evaluate on the data the corpus was built from"
        )
    source = open_dataset(dataset_spec)
    adata = source if isinstance(source, anndata.AnnData) else anndata.read_h5ad(source)
    matrix = _matrix(adata, dataset_spec)
    rows = cells.sentences.input_rows
    columns = _columns(adata, dataset_spec, cells.sentences.symbols)
    expression = sp.csr_matrix(matrix)[rows][:, columns]
    return HeldOut(cells, expression, InverseFit(**meta["inverse_fit"]))


def _matrix(adata: anndata.AnnData, spec) -> sp.spmatrix:
    if spec.layer:
        return adata.layers[spec.layer]
    return adata.raw.X if spec.raw else adata.X


def _columns(adata: anndata.AnnData, spec, symbols: np.ndarray) -> np.ndarray:
    """[S] the matrix column of each of the corpus's symbols, by the rule that made them."""
    var = adata.raw.var if spec.raw else adata.var
    mapping = gene_symbols(var, spec.path, spec.gene_symbols_key, "first", spec.sanitize_symbols)
    kept = np.flatnonzero(mapping.column_to_symbol >= 0)
    index = dict(zip(mapping.symbols[mapping.column_to_symbol[kept]], kept, strict=True))
    return np.array([index[str(s)] for s in symbols], np.int64)
