"""Bad input gets one clear error naming the file and field; nothing half-written."""

import anndata
import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from c2s_jax.errors import InputError
from c2s_jax.sentences.cell_sentences import SentenceOptions, cell_sentences
from c2s_jax.sentences.sentence_files import metadata_path, write_sentences
from tests.conftest import make_counts


def test_missing_file_and_not_an_h5ad(tmp_path):
    with pytest.raises(InputError, match=r"nope\.h5ad: no such file"):
        cell_sentences(tmp_path / "nope.h5ad")
    text = tmp_path / "cells.h5ad"
    text.write_text("cell,gene\n")
    with pytest.raises(InputError, match=r"cells\.h5ad: not an \.h5ad"):
        cell_sentences(text)
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["something"] = np.zeros(3)
    with pytest.raises(InputError, match=r"plain\.h5: no X matrix"):
        cell_sentences(plain)


@pytest.mark.parametrize(
    ("value", "what"),
    [(-1.0, "negative"), (np.nan, "NaN or infinite"), (np.inf, "NaN or infinite")],
)
def test_bad_values_name_the_file_field_and_cell(tmp_path, value, what):
    adata = make_counts(n_cells=10)
    X = adata.X.toarray()
    X[7, 3] = value
    adata.layers["counts"] = sp.csr_matrix(X)
    path = tmp_path / "bad.h5ad"
    adata.write_h5ad(path)
    with pytest.raises(InputError, match=rf"bad\.h5ad: layers/counts has {what}.*'cell7'"):
        cell_sentences(path, layer="counts")


def test_unknown_obs_column_layer_and_raw(tmp_path, small_counts):
    path = tmp_path / "c.h5ad"
    small_counts.write_h5ad(path)
    with pytest.raises(InputError, match=r"c\.h5ad: obs has no column \['celltype'\].*cell_type"):
        cell_sentences(path, obs_keys=["celltype"])
    with pytest.raises(InputError, match=r"no layer 'counts' \(available: none\)"):
        cell_sentences(path, layer="counts")
    with pytest.raises(InputError, match="has no .raw"):
        cell_sentences(path, raw=True)
    with pytest.raises(InputError, match="either a layer"):
        cell_sentences(path, raw=True, layer="counts")


def test_a_column_major_matrix_in_memory_is_converted(small_counts):
    # On disk it streams with a warning of its cost (tests/sentences/test_input_formats.py).
    adata = small_counts.copy()
    adata.X = sp.csc_matrix(adata.X)
    assert len(cell_sentences(adata)) == small_counts.n_obs


def test_empty_cells_are_skipped_and_counted(small_counts):
    adata = small_counts.copy()
    X = adata.X.toarray()
    X[[2, 5]] = 0
    adata.X = sp.csr_matrix(X)
    cs = cell_sentences(adata)
    assert cs.stats.n_cells_empty == 2
    assert "cell2" not in cs.cell_names and len(cs) == adata.n_obs - 2


def test_more_genes_than_cells_warns():
    with pytest.warns(UserWarning, match="more genes .* than cells .* transposed"):
        cell_sentences(make_counts(n_cells=5, n_genes=40))


def test_bad_options_are_refused():
    with pytest.raises(InputError, match="top_k"):
        SentenceOptions(top_k=0)
    with pytest.raises(InputError, match="duplicates must be one of"):
        cell_sentences(make_counts(), duplicates="merge")
    with pytest.raises(InputError, match="clash with the output columns"):
        cell_sentences(make_counts(), obs_keys=["cell_sentence"])


def test_interrupted_write_leaves_nothing_behind(tmp_path, small_counts, monkeypatch):
    out = tmp_path / "out.parquet"
    calls = {"n": 0}
    import c2s_jax.sentences.sentence_files as files

    real = files._chunk_table

    def failing(chunk):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(chunk)

    monkeypatch.setattr(files, "_chunk_table", failing)
    with pytest.raises(KeyboardInterrupt):
        write_sentences([small_counts], out, SentenceOptions(chunk_size=10), progress=False)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(files, "_chunk_table", real)
    write_sentences([small_counts], out, SentenceOptions(chunk_size=10), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.meta.json", "out.parquet"]
    assert metadata_path(out).exists()


def test_anndata_without_cells_is_reported(tmp_path):
    adata = anndata.AnnData(X=sp.csr_matrix((3, 2), dtype=np.float32))
    adata.var_names = ["A", "B"]
    with pytest.raises(InputError, match="no cells to write"):
        write_sentences([adata], tmp_path / "never.parquet", progress=False)
    assert list(tmp_path.iterdir()) == []
