"""Inputs written with their formats' documented schemas (anndata 0.6's h5ad, Cell Ranger
2 and 3 .h5, Cell Ranger matrix.mtx folders, loompy's loom), from an AnnData of counts
whose var holds `gene_ids`: for the format tests and the reader benchmark."""

import gzip
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp


def write_legacy_h5ad(counts, path: Path) -> None:
    """The layout of anndata 0.6: obs/var compound datasets, X an h5sparse group."""
    X = sp.csr_matrix(counts.X)
    with h5py.File(path, "w") as f:
        group = f.create_group("X")
        group.attrs["h5sparse_format"] = "csr"
        group.attrs["h5sparse_shape"] = X.shape
        group["data"], group["indices"], group["indptr"] = X.data, X.indices, X.indptr
        text = h5py.string_dtype()
        obs = np.zeros(counts.n_obs, dtype=[("index", text)])
        obs["index"] = counts.obs_names.to_numpy()
        var = np.zeros(counts.n_vars, dtype=[("index", text)])
        var["index"] = counts.var_names.to_numpy()
        f["obs"], f["var"] = obs, var


def write_10x_h5_v3(counts, path: Path, extra_feature: bool = True) -> None:
    """Cell Ranger 3+: /matrix with CSC genes x barcodes and /matrix/features."""
    genes_by_cells = sp.csc_matrix(sp.csr_matrix(counts.X, dtype=np.int32).T)
    ids, names = counts.var["gene_ids"].to_numpy(), counts.var_names.to_numpy()
    kinds = np.array(["Gene Expression"] * counts.n_vars, dtype=object)
    if extra_feature:  # an antibody capture feature, which gex_only drops
        genes_by_cells = sp.csc_matrix(sp.vstack([genes_by_cells, np.ones((1, counts.n_obs))]))
        ids, names = np.append(ids, "CD3_TotalSeqB"), np.append(names, "CD3")
        kinds = np.append(kinds, "Antibody Capture")
    with h5py.File(path, "w") as f:
        m = f.create_group("matrix")
        _write_matrix(m, genes_by_cells, counts.obs_names)
        features = m.create_group("features")
        features["id"] = ids.astype("S")
        features["name"] = names.astype("S")
        features["feature_type"] = kinds.astype("S")
        features["genome"] = np.array(["GRCh38"] * len(ids), dtype="S")
        features["_all_tag_keys"] = np.array([b"genome"])


def write_10x_h5_v2(counts, path: Path) -> None:
    """Cell Ranger 2: one group per genome with genes and gene_names."""
    genes_by_cells = sp.csc_matrix(sp.csr_matrix(counts.X, dtype=np.int32).T)
    with h5py.File(path, "w") as f:
        g = f.create_group("GRCh38")
        _write_matrix(g, genes_by_cells, counts.obs_names)
        g["genes"] = counts.var["gene_ids"].to_numpy().astype("S")
        g["gene_names"] = counts.var_names.to_numpy().astype("S")


def _write_matrix(group: h5py.Group, genes_by_cells: sp.csc_matrix, barcodes) -> None:
    """The CSC arrays, shape and barcodes every Cell Ranger version writes."""
    group["barcodes"] = barcodes.to_numpy().astype("S")
    group["data"] = genes_by_cells.data.astype(np.int32)
    group["indices"] = genes_by_cells.indices.astype(np.int64)
    group["indptr"] = genes_by_cells.indptr.astype(np.int64)
    group["shape"] = np.array(genes_by_cells.shape, np.int32)


def write_mtx(counts, folder: Path, version: int, shuffled: bool = False) -> None:
    """Cell Ranger 3 (gzipped, features.tsv with types) or 2 (plain, genes.tsv); entries
    ordered by cell as Cell Ranger writes them, or `shuffled`."""
    folder.mkdir()
    genes_by_cells = sp.coo_matrix(sp.csr_matrix(counts.X, dtype=np.int64).T)
    order = np.lexsort((genes_by_cells.row, genes_by_cells.col))
    if shuffled:
        order = np.random.default_rng(0).permutation(order)
    entries = pd.DataFrame(
        {
            "gene": genes_by_cells.row[order] + 1,
            "cell": genes_by_cells.col[order] + 1,
            "value": genes_by_cells.data[order],
        }
    )
    header = (
        "%%MatrixMarket matrix coordinate integer general\n%metadata_json: {}\n"
        f"{counts.n_vars} {counts.n_obs} {len(entries)}\n"
    )
    genes = pd.DataFrame({"id": counts.var["gene_ids"].to_numpy(), "name": counts.var_names})
    if version == 3:
        genes["type"] = "Gene Expression"
    suffix = ".gz" if version == 3 else ""
    opener = gzip.open if version == 3 else open
    with opener(folder / f"matrix.mtx{suffix}", "wt") as stream:
        stream.write(header)
        entries.to_csv(stream, sep=" ", header=False, index=False)
    with opener(folder / ("features.tsv.gz" if version == 3 else "genes.tsv"), "wt") as stream:
        genes.to_csv(stream, sep="\t", header=False, index=False)
    with opener(folder / f"barcodes.tsv{suffix}", "wt") as stream:
        stream.write("\n".join(counts.obs_names) + "\n")


def write_loom(counts, path: Path, gene_attribute: str = "Gene") -> None:
    """loompy's layout: /matrix genes x cells, /row_attrs, /col_attrs, /layers."""
    with h5py.File(path, "w") as f:
        matrix = counts.X.toarray().T.astype(np.float32)
        chunks = tuple(min(64, n) for n in matrix.shape)  # loompy's chunk shape
        f.create_dataset("matrix", data=matrix, chunks=chunks)
        rows, cols = f.create_group("row_attrs"), f.create_group("col_attrs")
        rows[gene_attribute] = counts.var_names.to_numpy().astype("S")
        rows["Accession"] = counts.var["gene_ids"].to_numpy().astype("S")
        cols["CellID"] = counts.obs_names.to_numpy().astype("S")
        cols["cell_type"] = counts.obs["cell_type"].astype(str).to_numpy().astype("S")
        f.create_group("layers")
        f.create_group("row_graphs")
        f.create_group("col_graphs")
