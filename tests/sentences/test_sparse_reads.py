"""Passes that want a few cells read only theirs, and get the same values as a full read."""

import anndata
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from c2s_jax.sentences.expression_source import ExpressionSource, MatrixChoice
from c2s_jax.sentences.readers.base import csr_pick, csr_rows


def _counts(n_cells=300, n_genes=40, seed=0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = rng.poisson(0.4, size=(n_cells, n_genes)).astype(np.float32)
    dense[7] = 0  # an empty cell among the wanted ones
    return sp.csr_matrix(dense)


@pytest.mark.parametrize("rows", [[0], [3, 4, 5, 9], [7, 8, 150, 151, 152, 299], []])
def test_picked_rows_equal_the_rows_of_a_full_read(rows):
    matrix = _counts()
    rows = np.asarray(rows, np.int64)
    parts = (matrix.data, matrix.indices, matrix.indptr)
    picked = csr_pick(*parts, matrix.shape, rows)
    assert picked.shape == (len(rows), matrix.shape[1])
    np.testing.assert_array_equal(picked.toarray(), matrix[rows].toarray())
    block = csr_rows(*parts, matrix.shape, 10, 60)
    np.testing.assert_array_equal(block.toarray(), matrix[10:60].toarray())


@pytest.mark.parametrize("on_disk", [True, False])
def test_chunks_of_a_few_wanted_cells_hold_exactly_those_cells(tmp_path, on_disk):
    matrix = _counts()
    adata = anndata.AnnData(matrix)
    adata.obs_names = [f"c{i}" for i in range(matrix.shape[0])]
    data = adata
    if on_disk:
        data = tmp_path / "cells.h5ad"
        adata.write_h5ad(data)
    wanted = np.array([2, 7, 64, 65, 200], np.int64)  # far apart: read cell by cell
    dense_wanted = np.arange(100, 200, dtype=np.int64)  # in runs: read as slices
    for only_rows in (wanted, dense_wanted):
        with ExpressionSource(data, MatrixChoice()) as source:
            seen = {}
            for rows, block in source.chunks(64, only_rows):
                assert block.shape == (len(rows), matrix.shape[1]) and len(rows) <= 64
                for row, values in zip(rows.tolist(), block.toarray(), strict=True):
                    seen[row] = values
        assert sorted(seen) == only_rows.tolist()
        for row in only_rows.tolist():
            np.testing.assert_array_equal(seen[row], matrix[row].toarray().ravel())


def test_obs_names_and_columns_of_scattered_rows_match_the_table(tmp_path):
    from c2s_jax.sentences.obs_table import DiskObsTable

    n = 500
    adata = anndata.AnnData(sp.csr_matrix((n, 3), dtype=np.float32))
    adata.obs_names = [f"cell{i}" for i in range(n)]
    adata.obs["kind"] = pd.Categorical([f"t{i % 3}" for i in range(n)])
    adata.obs["depth"] = np.arange(n, dtype=np.int64) * 10
    path = tmp_path / "obs.h5ad"
    adata.write_h5ad(path)
    with h5py.File(path, "r") as handle:
        table = DiskObsTable(handle["obs"])
        for rows in (np.array([3, 250, 499]), np.arange(10, 60)):  # point reads, a span
            np.testing.assert_array_equal(table.names(rows), adata.obs_names[rows])
            frame = table.frame(["kind", "depth"], rows)
            assert list(frame["kind"]) == list(adata.obs["kind"].iloc[rows])
            np.testing.assert_array_equal(frame["depth"], adata.obs["depth"].to_numpy()[rows])
