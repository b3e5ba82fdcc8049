"""Per-cell predictions of an evaluation as an AnnData (``predictions.h5ad``), in scanpy's
conventions: one row per evaluated held-out cell named as in the dataset, obs columns with
the truth, each method's prediction, whether it was right and its score, X the expression
the baselines read, var the genes with whether the model's corpus ever wrote them.

Open it with ``anndata.read_h5ad`` and go on with scanpy, e.g.
``sc.pl.pca(adata, color=["cell_type", "cell_type_pred_generation"])``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp

from c2s_jax.corpus.splits import SPLIT_IDS
from c2s_jax.evaluate.annotation import TARGET_SUM, log_normalized
from c2s_jax.evaluate.embedders import pca_embedder
from c2s_jax.evaluate.held_out import HeldOut
from c2s_jax.sentences.normalization import looks_like_counts
from c2s_jax.storage.atomic import atomic_path

PCA_COMPONENTS = 50


def join_tables(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Per-task tables (index: cell index) side by side, one row per cell that any of them
    holds, sorted by cell; a cell a task did not evaluate has missing values there."""
    joined = pd.DataFrame(index=pd.Index([], dtype=np.int64))
    for table in tables:
        joined = joined.join(table, how="outer")
    return joined.sort_index()


def predictions_adata(
    held: HeldOut, table: pd.DataFrame, vocabulary: Mapping[str, int], notes: Mapping
) -> anndata.AnnData:
    """The evaluated cells with their predictions.

    Args:
      held: the held-out data the table's cell indices point into.
      table: one row per evaluated cell (index: cell index in ``held``), the columns of
        every task (see :func:`join_tables`).
      vocabulary: {symbol: cells of the model's corpus expressing it} (the corpus
        metadata's ``vocabulary``).
      notes: written to ``uns['c2s_eval']`` beside the description of X (e.g. the method
        names behind the column suffixes).

    Returns:
      AnnData [cells, genes]: X float32 CSR log10(1 + normalized) expression (``uns['log1p']
      = {'base': 10}``); obs ``split`` and the table's columns (labels as categoricals,
      right/wrong as booleans, missing where a task skipped the cell); var
      ``in_model_vocabulary`` and ``n_cells_in_corpus``; obsm ``X_pca`` with ``uns['pca']``
      and varm ``PCs`` when there are at least 3 cells.
    """
    cells = table.index.to_numpy(np.int64)
    stored = held.expression[cells]
    counts = looks_like_counts(stored.data, "expression")
    x = log_normalized(stored, "expression")
    obs = _scanpy_columns(table)
    split_names = {v: k for k, v in SPLIT_IDS.items()}
    obs.insert(
        0,
        "split",
        pd.Categorical([split_names[int(s)] for s in held.cells.split[cells]], list(SPLIT_IDS)),
    )
    obs.index = pd.Index(held.cells.sentences.cell_names(cells))
    symbols = [str(s) for s in held.symbols]
    in_corpus = np.array([vocabulary.get(s, 0) for s in symbols], np.int64)
    var = pd.DataFrame(
        {"in_model_vocabulary": in_corpus > 0, "n_cells_in_corpus": in_corpus},
        index=pd.Index(symbols),
    )
    adata = anndata.AnnData(X=x, obs=obs, var=var)
    adata.uns["log1p"] = {"base": 10}
    described = (
        f"log10(1 + counts scaled to {TARGET_SUM:g} per cell)"
        if counts
        else "as stored (already normalized; read as log10(1 + normalized expression))"
    )
    adata.uns["c2s_eval"] = {
        "X": f"{described}: what the expression baselines read",
        "in_model_vocabulary": "the gene is expressed in at least one cell of the model's "
        "corpus, so it appears in the cell sentences the model learned from",
        **notes,
    }
    if len(cells) >= 3:
        _add_pca(adata)
    return adata


def write_predictions(path: str | Path, adata: anndata.AnnData) -> None:
    """Writes ``adata`` to ``path`` (.h5ad) in one step: a reader never sees half a file."""
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)


def _scanpy_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Columns as scanpy keeps them: text as categoricals, right/wrong as (nullable)
    booleans, numbers as float64."""
    obs = pd.DataFrame(index=table.index)
    for name, column in table.items():
        present = column.dropna()
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            obs[name] = column.astype(np.float64)
        elif len(present) and all(isinstance(v, bool | np.bool_) for v in present):
            obs[name] = column.astype("boolean")
        else:
            obs[name] = pd.Categorical([None if pd.isna(v) else str(v) for v in column])
    return obs


def _add_pca(adata: anndata.AnnData) -> None:
    """obsm['X_pca'], varm['PCs'] and uns['pca'] of X, as ``sc.pp.pca`` names them."""
    x = sp.csr_matrix(adata.X, dtype=np.float64)
    n_components = min(PCA_COMPONENTS, x.shape[0] - 1, x.shape[1])
    pca = pca_embedder(x, n_components=n_components, seed=0)
    adata.obsm["X_pca"] = pca(x).astype(np.float32)
    adata.varm["PCs"] = pca.components_KG.T.astype(np.float32)
    adata.uns["pca"] = {
        "variance": pca.explained_variance_K,
        "variance_ratio": pca.explained_variance_ratio_K,
        "params": {"zero_center": True, "n_comps": n_components},
    }
