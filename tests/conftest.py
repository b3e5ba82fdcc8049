"""Shared fixtures: the embedded pbmc68k counts, small synthetic AnnData, and a stand-in
Cloud Storage bucket.

The bucket: `etils.epath` serves gs:// URLs from a local folder and refuses what Cloud
Storage cannot do (append to an object, rename), so any code that relies on either fails
here as it would on a real bucket.
"""

import importlib
import os
from pathlib import Path

import anndata
import fsspec
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from etils import epath
from fsspec.implementations.local import LocalFileSystem

from c2s_jax.sentences.embedded import pbmc68k_counts

# The suite compiles hundreds of small programs whose run time is negligible; LLVM's
# optimization of the generated code (not XLA's own graph passes) was a fifth of the
# suite's time and decides no test. Benchmarks and users keep XLA's default level.
SUITE_XLA_FLAGS = "--xla_backend_optimization_level=0"


def pytest_configure(config):
    """Sets the suite's XLA flags before any test starts XLA; the subprocesses that tests
    start inherit them (see tests/support/virtual_devices.py). Tests run on the CPU: with the TPU
    compiler (libtpu) installed, JAX would first try to start a TPU that is not there;
    compiling for a TPU topology works all the same. The suite runs in parallel worker
    processes (pytest-xdist, `-n` in pyproject.toml), and libtpu admits one process at a
    time unless told that several only compile."""
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {SUITE_XLA_FLAGS}".strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")


@pytest.fixture(scope="session")
def pbmc_counts() -> anndata.AnnData:
    """pbmc68k_reduced as raw counts (700 cells x 765 genes)."""
    return pbmc68k_counts()


def make_counts(
    n_cells: int = 60, n_genes: int = 40, seed: int = 0, density: float = 0.4, max_count: int = 6
) -> anndata.AnnData:
    """A small random count matrix with many ties (counts are small integers)."""
    rng = np.random.default_rng(seed)
    dense = rng.integers(1, max_count + 1, (n_cells, n_genes)) * (
        rng.random((n_cells, n_genes)) < density
    )
    obs = pd.DataFrame(
        {
            "cell_type": rng.choice(["T cell", "B cell", "NK cell"], n_cells),
            "donor": rng.choice(["d1", "d2"], n_cells),
        },
        index=[f"cell{i}" for i in range(n_cells)],
    )
    var = pd.DataFrame(index=[f"Gene{j}" for j in range(n_genes)])
    return anndata.AnnData(X=sp.csr_matrix(dense.astype(np.float32)), obs=obs, var=var)


@pytest.fixture
def small_counts() -> anndata.AnnData:
    return make_counts()


GS = "gs://"


class UnsupportedByCloudStorageError(OSError):
    """An operation that Cloud Storage does not offer."""


@pytest.fixture
def bucket_root(tmp_path):
    """gs://NAME/KEY is served from bucket_root/NAME/KEY for the length of a test."""
    root = tmp_path / "gcs"

    def in_bucket(path):
        return os.fspath(path).startswith(GS)

    def local(path):
        return str(root / os.fspath(path).removeprefix(GS)) if in_bucket(path) else path

    def remote(path):
        text = os.fspath(path)
        inside = text.startswith(f"{root}{os.sep}")
        return GS + Path(text).relative_to(root).as_posix() if inside else text

    def open_object(original, path, mode):
        if in_bucket(path):
            if "a" in mode or "+" in mode:
                raise UnsupportedByCloudStorageError(f"{path}: objects cannot be appended to")
            if "w" in mode:  # objects need no parent folders
                Path(local(path)).parent.mkdir(parents=True, exist_ok=True)
        return original(local(path), mode)

    def refuse_rename(original, path, dst, *args, **kwargs):
        if in_bucket(path) or in_bucket(dst):
            raise UnsupportedByCloudStorageError(f"{path} -> {dst}: objects cannot be renamed")
        return original(path, dst, *args, **kwargs)

    def mapped(original, path, *args, **kwargs):
        return original(local(path), *args, **kwargs)

    def glob(original, pattern):
        return [remote(p) for p in original(local(pattern))]

    def walk(original, top, **kwargs):
        for folder, dirs, files in original(local(top), **kwargs):
            yield remote(folder), dirs, files

    def copy(original, path, dst, **kwargs):
        return original(local(path), local(dst), **kwargs)

    class BucketFileSystem(LocalFileSystem):
        """fsspec's gs:// (what code that needs more than epath, such as exclusive
        creation, uses), served from the same folder."""

        protocol = "gs"

        @classmethod
        def _strip_protocol(cls, path):
            return local(path) if in_bucket(path) else LocalFileSystem._strip_protocol(path)

        def _open(self, path, mode="rb", **kwargs):
            if "w" in mode or "x" in mode:  # objects need no parent folders
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            return super()._open(path, mode, **kwargs)

    # fsspec keeps registered classes in a private dict; its public API can add, not remove.
    implementations = importlib.import_module("fsspec.registry")._registry
    registered = implementations.get("gs")
    fsspec.register_implementation("gs", BucketFileSystem, clobber=True)

    with epath.testing.mock_epath(
        open=open_object,
        rename=refuse_rename,
        replace=refuse_rename,
        glob=glob,
        walk=walk,
        copy=copy,
        **{
            name: mapped
            for name in (
                "exists",
                "isdir",
                "listdir",
                "makedirs",
                "mkdir",
                "remove",
                "rmtree",
                "stat",
            )
        },
    ):
        try:
            yield root
        finally:
            implementations.pop("gs", None)
            if registered is not None:
                fsspec.register_implementation("gs", registered, clobber=True)
