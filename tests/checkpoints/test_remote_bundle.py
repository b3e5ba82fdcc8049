"""Bundles in object stores: `load_bundle("gs://...")` copies the newest export to a local
cache once and loads it like a local bundle (stand-in bucket from conftest.py)."""

import jax
import numpy as np
import pytest
from flax import nnx

from c2s_jax.checkpoints.bundle import BUNDLE_FILE, load_bundle, newest_export
from c2s_jax.errors import InputError
from c2s_jax.storage.atomic import upload_directory
from c2s_jax.storage.cache import CACHE_ENV
from tests.support.trained_model import pbmc_workdir


def _upload_workdir_export(step_name: str) -> None:
    export = newest_export(pbmc_workdir())
    upload_directory(export, f"gs://b/run/exports/{step_name}", BUNDLE_FILE)


def test_a_bucket_workdir_loads_its_newest_export_through_the_cache(
    bucket_root, tmp_path, monkeypatch
):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    _upload_workdir_export("step_0000010")
    _upload_workdir_export("step_0000060")
    # An export still being uploaded (no c2s_model.json yet) is not taken.
    (bucket_root / "b" / "run" / "exports" / "step_0000070").mkdir()

    remote = load_bundle("gs://b/run")
    local = load_bundle(pbmc_workdir())

    cached = tmp_path / "cache" / "bundles" / "b" / "run" / "exports" / "step_0000060"
    assert remote.path == cached and (cached / BUNDLE_FILE).exists()
    assert remote.corpus == local.corpus
    np.testing.assert_array_equal(
        remote.tokenizer.encode("CD3D CD3E"), local.tokenizer.encode("CD3D CD3E")
    )
    for a, b in zip(
        jax.tree.leaves(nnx.state(remote.model)),
        jax.tree.leaves(nnx.state(local.model)),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    # Once copied, an export is read from the cache: only its marker file must remain.
    for item in (bucket_root / "b" / "run").rglob("*"):
        if item.is_file() and item.name != BUNDLE_FILE:
            item.unlink()
    again = load_bundle("gs://b/run")
    assert again.path == cached and again.corpus == local.corpus


def test_a_bucket_path_without_a_bundle_is_named(bucket_root, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    (bucket_root / "b" / "empty").mkdir(parents=True)
    with pytest.raises(InputError, match="gs://b/empty: neither a model bundle"):
        load_bundle("gs://b/empty")
