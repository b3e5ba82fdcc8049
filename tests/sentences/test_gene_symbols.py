"""Upper-casing, duplicates and Ensembl IDs."""

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from c2s_jax.errors import InputError
from c2s_jax.sentences.cell_sentences import cell_sentences
from c2s_jax.sentences.gene_symbols import gene_symbols


def _adata(var_names, X, **var_columns):
    adata = anndata.AnnData(
        X=sp.csr_matrix(np.asarray(X, np.float32)), var=pd.DataFrame(var_columns, index=var_names)
    )
    adata.obs_names = [f"c{i}" for i in range(adata.n_obs)]
    return adata


def test_symbols_are_upper_cased():
    cs = cell_sentences(_adata(["Cd3e", "ms4a1", "GNLY"], [[3, 2, 1]]))
    assert list(cs.genes(0)) == ["CD3E", "MS4A1", "GNLY"]


@pytest.mark.parametrize("names", [["CD3E", "Cd3e", "GNLY"], ["CD3E", "CD3E", "GNLY"]])
def test_duplicates_are_an_error_listing_them(names):
    adata = _adata(names, [[1, 2, 3]])
    with pytest.raises(InputError, match=r"CD3E: .*(Cd3e|CD3E).*--duplicates"):
        cell_sentences(adata)


def test_duplicates_sum_adds_columns_and_first_keeps_the_first():
    adata = _adata(["Cd3e", "GNLY", "CD3E"], [[1, 3, 4], [2, 0, 0]])
    summed = cell_sentences(adata, duplicates="sum")
    assert list(summed.genes(0)) == ["CD3E", "GNLY"]  # 1 + 4 = 5 > 3
    assert summed.vocabulary.as_dict() == {"CD3E": 2, "GNLY": 1}
    first = cell_sentences(adata, duplicates="first")
    assert list(first.genes(0)) == ["GNLY", "CD3E"]  # the first CD3E column holds 1
    assert list(first.genes(1)) == ["CD3E"]


def test_ensembl_ids_map_through_a_symbol_column():
    ids = ["ENSG00000198851", "ENSG00000105374", "ENSG00000115523"]
    adata = _adata(ids, [[1, 5, 3]], feature_name=["CD3E", "nkg7", "GNLY"])
    assert list(cell_sentences(adata, gene_symbols_key="feature_name").genes(0)) == [
        "NKG7",
        "GNLY",
        "CD3E",
    ]
    with pytest.raises(InputError, match="Ensembl IDs.*--gene-symbols.*feature_name"):
        cell_sentences(adata)
    with pytest.raises(InputError, match="no column 'symbol'.*feature_name"):
        cell_sentences(adata, gene_symbols_key="symbol")


def test_missing_symbols_are_left_out_and_numbers_are_refused():
    adata = _adata(["a", "b", "c"], [[1, 2, 3]], sym=["CD3E", None, "GNLY"])
    assert list(cell_sentences(adata, gene_symbols_key="sym").genes(0)) == ["GNLY", "CD3E"]
    with pytest.raises(InputError, match="plain numbers"):
        cell_sentences(_adata(["0", "1", "2"], [[1, 2, 3]]))


def test_vocabulary_follows_var_order():
    symbols = gene_symbols(pd.DataFrame(index=["b", "A", "c", "B"]), "t", duplicates="first")
    assert list(symbols.symbols) == ["B", "A", "C"]
    assert list(symbols.column_to_symbol) == [0, 1, 2, -1]


def test_whitespace_inside_a_symbol_is_an_error_listing_them_or_becomes_underscores():
    adata = _adata(["HLA DRA", "CD3E", "MT\tCO1", " GNLY "], [[4, 3, 2, 1]])
    with pytest.raises(InputError, match=r"2 gene symbols hold whitespace.*'HLA DRA'.*sanitize"):
        cell_sentences(adata)
    # Leading and trailing whitespace is only trimmed.
    cs = cell_sentences(adata, sanitize_symbols=True)
    assert list(cs.genes(0)) == ["HLA_DRA", "CD3E", "MT_CO1", "GNLY"]
    assert cs.sentences()[0].split() == ["HLA_DRA", "CD3E", "MT_CO1", "GNLY"]


def test_a_matrix_without_genes_says_so():
    with pytest.raises(InputError, match=r"data.h5ad: has no genes \(var is empty\)"):
        gene_symbols(pd.DataFrame(index=pd.Index([], dtype=str)), "data.h5ad")
