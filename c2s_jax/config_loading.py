"""ml-collections experiment files: load `get_config()` and apply `--config.a.b=value`.

An experiment is a Python file with `get_config() -> ml_collections.ConfigDict`. Overrides
name an existing field by its dotted path; the value is parsed as a Python literal and
checked against the field's type, so a typo or a wrong type fails with the key's name
instead of running the wrong experiment.

Why not ml_collections' `config_flags`: it is built on absl flags and finds overrides by
reading `sys.argv`, where our CLI is argparse subcommands and bench scripts, tests and
notebooks pass overrides as a list; and it hands a string field the raw text, so the
quoted form used throughout our docs, `--config.data.corpus_dir='runs/x'`, would become
the path `'runs/x'` with its quotes. Here a value is a Python literal or else a bare word,
so quoted and bare strings agree, and a dict or tuple field takes a whole literal.
"""

import ast
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import ml_collections

from c2s_jax.errors import InputError


def load_config(
    path: str | os.PathLike, overrides: Sequence[str] = ()
) -> ml_collections.ConfigDict:
    """Loads an experiment file and applies overrides.

    Args:
      path: a .py file defining `get_config()`.
      overrides: "a.b=value" strings (the `--config.` prefix already removed).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such config file")
    spec = importlib.util.spec_from_file_location(f"c2s_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # the user's file: report where it failed
        raise InputError(f"{path}: cannot be imported ({type(err).__name__}: {err})") from err
    if not hasattr(module, "get_config"):
        raise InputError(f"{path}: defines no get_config()")
    try:
        config = module.get_config()
    except Exception as err:  # the user's file: report where it failed
        raise InputError(f"{path}: get_config() failed ({type(err).__name__}: {err})") from err
    for override in overrides:
        apply_override(config, override, path)
    return config


def apply_override(config: ml_collections.ConfigDict, override: str, source: Path) -> None:
    """Sets one "a.b=value" override in place."""
    key, sep, text = override.partition("=")
    if not sep:
        raise InputError(f"override '{override}' must look like --config.{key}=VALUE")
    *parents, leaf = key.split(".")
    node = config
    for i, part in enumerate(parents):
        if part not in node:
            raise InputError(f"{source}: config has no key '{'.'.join(parents[: i + 1])}'")
        node = node[part]
    if leaf not in node:
        raise InputError(f"{source}: config has no key '{key}' (known here: {sorted(node)})")
    current = node[leaf]
    value = _parse(text)
    if current is not None and value is not None and not _compatible(current, value):
        raise InputError(
            f"--config.{key}={text}: expected {type(current).__name__}, got {type(value).__name__}"
        )
    if isinstance(current, float) and isinstance(value, int):
        value = float(value)
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    if isinstance(current, ml_collections.ConfigDict):
        value = ml_collections.ConfigDict(value)
    try:
        node[leaf] = value
    except TypeError as err:
        raise InputError(f"--config.{key}={text}: {err}") from None


def _parse(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word is a string: --config.model.name=gemma2_9b


def _compatible(current, value) -> bool:
    if isinstance(current, bool) or isinstance(value, bool):
        return isinstance(current, bool) and isinstance(value, bool)
    if isinstance(current, float):
        return isinstance(value, (int, float))
    if isinstance(current, (list, tuple)):
        return isinstance(value, (list, tuple))
    if isinstance(current, ml_collections.ConfigDict):
        return isinstance(value, dict)
    return isinstance(value, type(current))
