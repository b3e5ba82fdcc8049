"""A trained model with everything needed to use it: weights, tokenizer, corpus facts.

A bundle is a directory holding an orbax model checkpoint (``model_config.json`` and
``params/``, see :mod:`c2s_jax.checkpoints.orbax_io`), the tokenizer (SentencePiece
``tokenizer.model`` or ``tokenizer.json``) and ``c2s_model.json``: the tokenizer family
and the corpus metadata that generation and evaluation need (gene symbols,
inverse-transform fit, task names, corpus location). The
trainer writes one at the end of a run under ``WORKDIR/exports/step_NNNNNNN``; anything
that takes a bundle also takes the training workdir and uses its newest export, local or
in an object store (``gs://``), whose bundle is first copied to a local cache.

Why a folder of plain files around orbax's parameters rather than one orbax composite
checkpoint: a composite stores each JSON item as ``ITEM/metadata`` (orbax 0.12) and has no
handler for an opaque file, so the tokenizer would still sit beside it, and
``model_config.json``, ``c2s_model.json`` and ``tokenizer.model`` would no longer be the
files a person, SentencePiece or another tool opens. What a composite would add is
already here: orbax writes the arrays (sharded, any mesh), steps are ``exports/step_N``
with the newest found by :func:`newest_export`, and :func:`c2s_jax.run.finish.export_final`
writes to ``gs://``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from etils import epath
from jax.sharding import Mesh
from tqdm.auto import tqdm

from c2s_jax import fault_points, parallel
from c2s_jax.checkpoints.orbax_io import CONFIG_FILE, load_flax, save_flax
from c2s_jax.corpus.tokenizer import FILE_NAMES, Tokenizer
from c2s_jax.errors import InputError
from c2s_jax.storage.atomic import atomic_directory, is_remote
from c2s_jax.storage.cache import cache_root

BUNDLE_FILE = "c2s_model.json"
EXPORTS_DIR = "exports"
HF_CONFIG_FILE = "config.json"  # what marks an HF checkpoint folder
_STEP_DIR = re.compile(r"step_(\d+)$")


@dataclasses.dataclass
class Bundle:
    """A loaded bundle.

    Attributes:
      model: the model (Gemma-2 or Pythia), parameters on the requested mesh.
      config: its config.
      tokenizer: the tokenizer the model was trained with.
      corpus: the corpus metadata (``corpus.json`` of ``c2s corpus build``), or {} for a
        model trained without a corpus.
      path: the bundle directory.
      trained_length: tokens per sequence the model was trained on (prompts beyond it are
        refused), or None when unknown (a converted checkpoint).
      training_config: the experiment config that trained it ({} when unknown).
    """

    model: Any
    config: Any
    tokenizer: Tokenizer
    corpus: dict
    path: Path
    trained_length: int | None = None
    training_config: dict = dataclasses.field(default_factory=dict)

    def dataset(self, name: str | None = None) -> dict:
        """One dataset's metadata (genes, inverse_fit, ...); the only one when unnamed."""
        datasets = self.corpus.get("datasets", {})
        if not datasets:
            raise InputError(f"{self.path}: the model was trained without a cell corpus")
        if name is None:
            if len(datasets) > 1:
                raise InputError(f"{self.path}: name one dataset of {sorted(datasets)}")
            return next(iter(datasets.values()))
        if name not in datasets:
            raise InputError(f"{self.path}: no dataset '{name}'; it has {sorted(datasets)}")
        return datasets[name]


def export_bundle(
    model: Any,
    out_dir: str | Path,
    tokenizer_path: str | Path | None,
    family: str,
    corpus: dict,
    trained_length: int | None = None,
    training_config: dict | None = None,
) -> Path:
    """Writes a bundle directory (atomically: it appears complete or not at all).

    Args:
      model: the model to save (adapters already merged).
      out_dir: a missing or empty directory.
      tokenizer_path: the tokenizer file (SentencePiece .model or tokenizer.json) to copy
        in, or None (no tokenizer).
      family: the tokenizer family ('gemma', 'pythia' or 'c2s').
      corpus: corpus metadata to keep beside the weights.
      trained_length: tokens per training sequence, if known.
      training_config: the experiment config (JSON values), if known.

    Returns:
      ``out_dir`` as an absolute Path.
    """
    out = Path(out_dir).absolute()
    with atomic_directory(out) as tmp:
        save_flax(model, tmp / "model")
        for item in (tmp / "model").iterdir():
            item.rename(tmp / item.name)
        (tmp / "model").rmdir()
        if tokenizer_path is not None:
            shutil.copyfile(tokenizer_path, tmp / Tokenizer(tokenizer_path, family).file_name)
        fault_points.reached("export")
        description = {
            "tokenizer_family": family,
            "corpus": corpus,
            "trained_length": trained_length,
            "training_config": training_config or {},
        }
        (tmp / BUNDLE_FILE).write_text(json.dumps(description, indent=1))
    return out


def newest_export(workdir: str | Path) -> Path | None:
    """The newest ``exports/step_N`` bundle of a training workdir, or None."""
    return _newest_export_in(Path(workdir))


def _newest_export_in(workdir):
    """:func:`newest_export` for a local ``Path`` or a remote ``epath.Path`` alike: the
    newest step folder that holds its ``c2s_model.json`` (written last), or None."""
    exports = workdir / EXPORTS_DIR
    if not exports.is_dir():
        return None
    steps = [
        (int(m.group(1)), p)
        for p in exports.iterdir()
        if (m := _STEP_DIR.search(p.name)) and (p / BUNDLE_FILE).exists()
    ]
    return max(steps)[1] if steps else None


def resolve(path: str | Path) -> Path:
    """The bundle directory meant by ``path``: a bundle, or a training workdir."""
    path = Path(path)
    if (path / BUNDLE_FILE).exists():
        return path
    export = newest_export(path)
    if export is not None:
        return export
    if (path / CONFIG_FILE).exists():
        raise InputError(
            f"{path}: a model checkpoint without {BUNDLE_FILE}; pass the tokenizer with "
            "--tokenizer FILE --tokenizer-family gemma|pythia|c2s"
        )
    raise InputError(
        f"{path}: neither a model bundle ({BUNDLE_FILE}) nor a training workdir with "
        f"{EXPORTS_DIR}/; train with `c2s train` (it exports at the end of the run)"
    )


def _remote_bundle(url: str) -> epath.Path:
    """The bundle folder meant by ``url``: a bundle, or a workdir's newest export."""
    root = epath.Path(url)
    if (root / BUNDLE_FILE).exists():
        return root
    export = _newest_export_in(root)
    if export is None:
        raise InputError(
            f"{url}: neither a model bundle ({BUNDLE_FILE}) nor a training workdir with "
            f"{EXPORTS_DIR}/step_N/{BUNDLE_FILE}; check the URL and that the run finished"
        )
    return export


def _files_under(folder: epath.Path) -> list[epath.Path]:
    files = []
    for item in folder.iterdir():
        files.extend(_files_under(item) if item.is_dir() else [item])
    return files


def fetch_bundle(url: str, cache: str | Path | None = None, progress: bool = True) -> Path:
    """Copies a bundle from an object store to a local folder and returns that folder.

    ``url`` names a bundle or a training workdir (its newest export is taken). The copy
    goes to ``cache / BUCKET / KEY`` (default :func:`cache_root`) and appears whole or not
    at all. An export never changes once its ``c2s_model.json`` is written (that file is
    uploaded last), so an existing copy is used as it is, without a download.

    Raises:
      InputError: nothing at ``url`` is a bundle or a workdir with exports.
    """
    source = _remote_bundle(url)
    local = Path(cache or cache_root()) / "bundles" / os.fspath(source).split("://", 1)[1]
    if (local / BUNDLE_FILE).exists():
        return local
    files = _files_under(source)
    with atomic_directory(local) as tmp:
        for file in tqdm(files, desc=f"copying {source.name}", unit="file", disable=not progress):
            target = tmp / os.path.relpath(os.fspath(file), os.fspath(source))
            target.parent.mkdir(parents=True, exist_ok=True)
            with file.open("rb") as reader, open(target, "wb") as writer:
                shutil.copyfileobj(reader, writer, length=1 << 24)
    return local


def _load_hf_folder(path: Path, mesh, rules, tokenizer, family, config_overrides) -> Bundle:
    """An HF checkpoint folder as a bundle: its weights (computed in their own dtype), its
    tokenizer (or the one given), no corpus facts."""
    from c2s_jax.checkpoints import load_hf
    from c2s_jax.checkpoints.hf_tokenizer import checkpoint_tokenizer

    config = json.loads((path / HF_CONFIG_FILE).read_text())
    if tokenizer is not None:
        if family is None:
            raise InputError(f"{path}: name the tokenizer family with --tokenizer-family")
        chosen = Tokenizer(tokenizer, family)
    else:
        chosen = checkpoint_tokenizer(path, config)
        if chosen is None:
            raise InputError(
                f"{path}: an HF checkpoint without tokenizer.json or tokenizer.model; pass "
                "--tokenizer FILE --tokenizer-family gemma|pythia|c2s"
            )
    dtype = config_overrides.pop("dtype", None)
    model, model_config = load_hf(path, mesh, rules=rules, compute_dtype=dtype, **config_overrides)
    return Bundle(model=model, config=model_config, tokenizer=chosen, corpus={}, path=path)


def bundle_model_config(path: str | Path):
    """The model config of a bundle or training workdir (local or ``gs://``), read without
    its weights (what compiling a step for it needs)."""
    from c2s_jax.models.registry import config_from_dict

    folder = _remote_bundle(os.fspath(path)) if is_remote(path) else resolve(path)
    try:
        return config_from_dict(json.loads((folder / CONFIG_FILE).read_text()))
    except ValueError as err:
        raise InputError(f"{folder / CONFIG_FILE}: {err}") from None


def load_bundle(
    path: str | Path,
    *,
    mesh: Mesh | None = None,
    rules: parallel.Rules = (),
    tokenizer: str | Path | None = None,
    tokenizer_family: str | None = None,
    **config_overrides: Any,
) -> Bundle:
    """Loads a bundle (or a workdir's newest export, an HF checkpoint folder with its
    tokenizer, or a bare model checkpoint plus a tokenizer given here).

    Args:
      path: bundle directory, training workdir, or a ``c2s convert hf2flax`` directory;
        a ``gs://`` bundle or workdir is first copied to a local cache (:func:`fetch_bundle`).
      mesh, rules: where the parameters go, as in :func:`c2s_jax.checkpoints.load_flax`.
      tokenizer, tokenizer_family: a tokenizer file (SentencePiece .model or
        tokenizer.json) to use instead of the bundle's (required for a bare checkpoint).
      **config_overrides: model config fields that keep parameter shapes (e.g. dtype).
    """
    path = fetch_bundle(os.fspath(path)) if is_remote(path) else Path(path)
    if (path / HF_CONFIG_FILE).exists() and not (path / CONFIG_FILE).exists():
        return _load_hf_folder(path, mesh, rules, tokenizer, tokenizer_family, config_overrides)
    if tokenizer is not None and (path / CONFIG_FILE).exists():
        bundle_dir, description = path, {}
        if (path / BUNDLE_FILE).exists():
            description = json.loads((path / BUNDLE_FILE).read_text())
    else:
        bundle_dir = resolve(path)
        description = json.loads((bundle_dir / BUNDLE_FILE).read_text())
    family = tokenizer_family or description.get("tokenizer_family")
    if tokenizer is not None:
        tokenizer_file = Path(tokenizer)
    else:
        kept = [bundle_dir / name for name in FILE_NAMES.values() if (bundle_dir / name).exists()]
        if not kept:
            raise InputError(
                f"{bundle_dir}: no {' or '.join(FILE_NAMES.values())} (the model was trained "
                "on synthetic tokens); pass --tokenizer FILE --tokenizer-family "
                "gemma|pythia|c2s"
            )
        tokenizer_file = kept[0]
    if family is None:
        raise InputError(f"{bundle_dir}: name the tokenizer family with --tokenizer-family")
    model, config = load_flax(bundle_dir, mesh, rules=rules, **config_overrides)
    return Bundle(
        model=model,
        config=config,
        tokenizer=Tokenizer(tokenizer_file, family),
        corpus=description.get("corpus", {}),
        path=bundle_dir,
        # Bundles written before the training length was recorded: the corpus's length.
        trained_length=description.get("trained_length")
        or description.get("corpus", {}).get("seq_len"),
        training_config=description.get("training_config", {}),
    )
