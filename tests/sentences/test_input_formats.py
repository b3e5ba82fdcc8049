"""Every accepted input layout gives the same cell sentences as the same matrix in a
current .h5ad: legacy h5ad (anndata 0.6), dense and CSC X, layers and .raw, zarr (local
and in a bucket), 10x .h5 (Cell Ranger 2 and 3) and matrix.mtx folders, loom. The 10x,
mtx and loom files are written here with their documented schemas, and scanpy's and
anndata's own readers confirm that they read as intended."""

import os

import anndata
import h5py
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

from c2s_jax.cli import main
from c2s_jax.errors import InputError
from c2s_jax.sentences.cell_sentences import cell_sentences
from tests.conftest import make_counts
from tests.support.format_writers import (
    write_10x_h5_v2,
    write_10x_h5_v3,
    write_legacy_h5ad,
    write_loom,
    write_mtx,
)

OPTIONS = {"chunk_size": 7, "min_cells": 2, "top_k": 20}


@pytest.fixture(scope="module")
def counts() -> anndata.AnnData:
    adata = make_counts(n_cells=45, n_genes=30, seed=3)
    adata.obs["cell_type"] = pd.Categorical(np.array(["T", "B", "NK"])[np.arange(45) % 3])
    adata.obs_names = [f"AAAC{i:04d}-1" for i in range(45)]
    adata.var["gene_ids"] = [f"ENSG{j:011d}" for j in range(30)]
    return adata


def _sentences(path, **extra) -> list[str]:
    return cell_sentences(path, **OPTIONS, **extra).sentences()


def _reference(counts, tmp_path) -> list[str]:
    counts.write_h5ad(tmp_path / "reference.h5ad")
    return _sentences(tmp_path / "reference.h5ad")


def test_anndata_layouts_give_the_same_sentences(counts, tmp_path):
    expected = _reference(counts, tmp_path)
    write_legacy_h5ad(counts, tmp_path / "legacy.h5ad")
    assert anndata.read_h5ad(tmp_path / "legacy.h5ad").shape == counts.shape  # anndata reads it
    assert _sentences(tmp_path / "legacy.h5ad") == expected

    dense = counts.copy()
    dense.X = counts.X.toarray()
    dense.write_h5ad(tmp_path / "dense.h5ad")
    assert _sentences(tmp_path / "dense.h5ad") == expected

    csc = counts.copy()
    csc.X = sp.csc_matrix(counts.X)
    csc.write_h5ad(tmp_path / "csc.h5ad")
    with pytest.warns(UserWarning, match="column-major"):
        assert _sentences(tmp_path / "csc.h5ad") == expected

    layered = counts.copy()
    layered.layers["counts"] = counts.X.copy()
    layered.X = sp.csr_matrix(counts.shape, dtype=np.float32)
    layered.raw = counts.copy()
    layered.write_h5ad(tmp_path / "layered.h5ad")
    assert _sentences(tmp_path / "layered.h5ad", layer="counts") == expected
    assert _sentences(tmp_path / "layered.h5ad", raw=True) == expected

    counts.write_zarr(tmp_path / "cells.zarr")
    assert _sentences(tmp_path / "cells.zarr") == expected
    # obs columns come along from zarr as from h5ad
    assert (
        cell_sentences(tmp_path / "cells.zarr", ["cell_type"], **OPTIONS).obs["cell_type"].tolist()
        == cell_sentences(tmp_path / "reference.h5ad", ["cell_type"], **OPTIONS)
        .obs["cell_type"]
        .tolist()
    )


def test_a_zarr_store_in_a_bucket_streams(counts, tmp_path, bucket_root):
    expected = _reference(counts, tmp_path)
    counts.write_zarr(bucket_root / "b" / "atlas.zarr")
    assert _sentences("gs://b/atlas.zarr") == expected


def test_10x_h5_files_give_the_same_sentences(counts, tmp_path):
    expected = _reference(counts, tmp_path)
    write_10x_h5_v3(counts, tmp_path / "v3.h5")
    write_10x_h5_v2(counts, tmp_path / "v2.h5")
    for name in ("v3.h5", "v2.h5"):
        scanpy_view = sc.read_10x_h5(tmp_path / name)  # the files are what scanpy expects
        np.testing.assert_array_equal(scanpy_view.X.toarray(), counts.X.toarray())
        assert _sentences(tmp_path / name) == expected, name


def test_10x_mtx_folders_give_the_same_sentences(counts, tmp_path):
    expected = _reference(counts, tmp_path)
    write_mtx(counts, tmp_path / "v3", version=3)
    write_mtx(counts, tmp_path / "v2", version=2)
    for name in ("v3", "v2"):
        scanpy_view = sc.read_10x_mtx(tmp_path / name)
        np.testing.assert_array_equal(scanpy_view.X.toarray(), counts.X.toarray())
        assert _sentences(tmp_path / name) == expected, name
    write_mtx(counts, tmp_path / "shuffled", version=3, shuffled=True)
    with pytest.warns(UserWarning, match="not ordered by cell"):
        assert _sentences(tmp_path / "shuffled") == expected


def test_loom_files_give_the_same_sentences_and_obs(counts, tmp_path):
    expected = _reference(counts, tmp_path)
    write_loom(counts, tmp_path / "cells.loom")
    got = cell_sentences(tmp_path / "cells.loom", ["cell_type"], **OPTIONS)
    assert got.sentences() == expected
    assert (
        got.obs["cell_type"].tolist()
        == cell_sentences(tmp_path / "reference.h5ad", ["cell_type"], **OPTIONS)
        .obs["cell_type"]
        .astype(str)
        .tolist()
    )


def test_c2s_sentences_takes_formats_mixed_in_one_call(counts, tmp_path):
    _reference(counts, tmp_path)
    write_10x_h5_v3(counts, tmp_path / "v3.h5")
    write_loom(counts, tmp_path / "cells.loom")
    # An h5ad named .h5 and a loom named .h5ad: content decides, not the extension.
    os.rename(tmp_path / "cells.loom", tmp_path / "misnamed.h5ad")
    out = tmp_path / "all.parquet"
    inputs = [str(tmp_path / n) for n in ("reference.h5ad", "v3.h5", "misnamed.h5ad")]
    assert main(["sentences", *inputs, str(out), "--top-k", "20", "--no-progress"]) == 0
    table = pd.read_parquet(out)
    assert len(table) == 3 * counts.n_obs
    # Ties are broken per input file, so the parts hold the same genes per cell.
    first, second, third = (
        [sorted(s.split()) for s in part] for part in np.split(table["cell_sentence"].to_numpy(), 3)
    )
    assert first == second == third


def test_inputs_missing_what_they_need_are_named(counts, tmp_path):
    (tmp_path / "notes.h5ad").write_text("not data\n")
    with pytest.raises(InputError, match=r"notes\.h5ad: not an \.h5ad \(HDF5\) file nor any"):
        cell_sentences(tmp_path / "notes.h5ad")
    write_mtx(counts, tmp_path / "tenx", version=3)
    (tmp_path / "tenx" / "barcodes.tsv.gz").unlink()
    with pytest.raises(InputError, match=r"tenx: a 10x matrix folder needs barcodes\.tsv\.gz"):
        cell_sentences(tmp_path / "tenx")
    write_mtx(counts, tmp_path / "nofeatures", version=3)
    (tmp_path / "nofeatures" / "features.tsv.gz").unlink()
    with pytest.raises(InputError, match="needs features.tsv.gz or genes.tsv.gz"):
        cell_sentences(tmp_path / "nofeatures")
    write_loom(counts, tmp_path / "genes.loom", gene_attribute="Symbol")
    with pytest.raises(InputError, match=r"genes\.loom: row_attrs has no 'Gene' column"):
        cell_sentences(tmp_path / "genes.loom")
    counts.write_zarr(tmp_path / "nox.zarr")
    import shutil

    shutil.rmtree(tmp_path / "nox.zarr" / "X")
    with pytest.raises(InputError, match=r"nox\.zarr: no X matrix"):
        cell_sentences(tmp_path / "nox.zarr")
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(InputError, match="neither a zarr store nor a 10x"):
        cell_sentences(tmp_path / "empty_folder")


def test_a_corpus_built_from_a_loom_file_equals_the_one_from_the_same_cells_in_memory(
    pbmc_counts,
):
    from c2s_jax.corpus.config import corpus_spec
    from c2s_jax.corpus.records import build_corpus
    from tests.support.corpus_helpers import pbmc_corpus, scratch_dir, shard_digests, small_config

    folder = scratch_dir()
    loom = pbmc_counts.copy()
    loom.var["gene_ids"] = loom.var_names
    write_loom(loom, folder / "pbmc.loom")
    with h5py.File(folder / "pbmc.loom", "a") as f:
        for key in ("tissue", "organism"):
            f["col_attrs"][key] = pbmc_counts.obs[key].astype(str).to_numpy().astype("S")
    config = small_config()
    config.datasets = [{**config.datasets[0], "path": str(folder / "pbmc.loom")}]
    build_corpus(corpus_spec(config), folder / "corpus", progress=False)
    assert shard_digests(folder / "corpus") == shard_digests(pbmc_corpus())
