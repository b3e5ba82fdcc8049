"""Sweep files and their expansion into members.

A sweep file is an ml-collections file whose `get_config()` holds

    base            the training experiment every member starts from
                    (e.g. 'configs/train/gemma2_tiny_synthetic.py', relative to the cwd)
    base_overrides  'a.b=value' strings applied to every member, as on the command line
    axes            a tuple of `axis(...)`: a name and labelled points, each a dict of
                    config overrides {'a.b': value}; the key 'tokens' is a token budget that
                    becomes train.steps = tokens / (batch_size * seq_len)
    zip             groups of axis names that advance together (default: none)

The members are the cartesian product of the axes (a zip group counts as one axis, at the
place of its first member), the last axis varying fastest. A member is named by its labels,
'size-s_lr-0.003_seed-0', so the same sweep file always gives the same names, in the same
order, with the same overrides.
"""

import dataclasses
import itertools
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections

from c2s_jax.config_loading import load_config
from c2s_jax.errors import InputError

TOKENS = "tokens"
_AXIS_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_LABEL = re.compile(r"[A-Za-z0-9._-]+")


def gemma2_size(
    d_model: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    head_dim: int,
    mlp_dim: int,
    **fields: Any,
) -> dict[str, dict[str, Any]]:
    """A point of a model-size axis: Gemma-2's architecture at the given shape.

    The query scale follows head_dim (query_pre_attn_scalar = head_dim); `fields` adds or
    replaces any other model config field (vocab_size, dtype, sliding_window, ...).
    """
    overrides = dict(
        d_model=d_model,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
        mlp_dim=mlp_dim,
        query_pre_attn_scalar=head_dim,
    )
    return {"model.overrides": {**overrides, **fields}}


def axis(
    name: str,
    key: str | None = None,
    values: Sequence[Any] | None = None,
    *,
    points: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """One sweep axis, for a sweep file's `axes`.

    Either `key` and `values` (one config field, e.g. axis('lr', 'optimizer.learning_rate',
    (1e-3, 3e-3)); labels are the values) or `points` ({label: {'a.b': value, ...}}, for
    settings of several fields such as a model size).

    Returns:
      {'name': name, 'points': {label: {key: value}}}, a plain dict (what the expansion reads).
    """
    if (points is None) == (key is None or values is None):
        raise InputError(f"axis {name!r}: give either key and values, or points")
    if points is None:
        points = {_label(name, v): {key: v} for v in values}
        if len(points) != len(values):
            raise InputError(f"axis {name!r}: values {list(values)} repeat a label")
    return {"name": name, "points": {str(label): dict(p) for label, p in points.items()}}


def _label(axis_name: str, value: Any) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    text = text.replace("+", "")  # 1e+06 -> 1e06: names stay plain file names
    if not _LABEL.fullmatch(text):
        raise InputError(
            f"axis {axis_name!r}: the value {value!r} makes no name; give "
            "points={label: {key: value}} instead"
        )
    return text


@dataclasses.dataclass(frozen=True)
class Member:
    """One training run of a sweep.

    Attributes:
      name: from the axis labels, e.g. 'size-s_lr-0.003'; also the member's folder name.
      labels: {axis name: label}.
      overrides: 'a.b=value' strings for the base experiment, base overrides first.
    """

    name: str
    labels: dict[str, str]
    overrides: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A sweep file, expanded."""

    source: Path
    base: Path
    base_overrides: tuple[str, ...]
    members: tuple[Member, ...]

    def member_config(self, member: Member) -> ml_collections.ConfigDict:
        """The full training config of `member`."""
        return load_config(self.base, member.overrides)


def load_sweep(path: str | Path) -> Sweep:
    """Reads a sweep file and expands it; every member's config is loaded and checked."""
    path = Path(path)
    spec = load_config(path)
    for field in ("base", "axes"):
        if field not in spec:
            raise InputError(f"{path}: the sweep has no '{field}' (see c2s_jax/scaling/spec.py)")
    base = Path(spec.base)
    if not base.is_file():
        raise InputError(
            f"{path}: base {spec.base} not found from {Path.cwd()}; run from the "
            "repository root or give base as a path that exists from here"
        )
    base_overrides = tuple(spec.get("base_overrides", ()))
    axes = _checked_axes(path, spec.axes)
    order = [a["name"] for a in axes]
    points = {a["name"]: a["points"] for a in axes}
    factors = _factors(path, order, points, [tuple(g) for g in spec.get("zip", ())])
    members = []
    for combination in itertools.product(*factors):
        pairs = sorted(
            (p for choice in combination for p in choice), key=lambda p: order.index(p[0])
        )
        members.append(_member(path, base, base_overrides, dict(pairs), points))
    repeated = _repeated([m.name for m in members])
    if repeated:
        raise InputError(f"{path}: members {repeated} share a name; use other labels")
    return Sweep(path, base, base_overrides, tuple(members))


def _checked_axes(path: Path, axes: Sequence[Any]) -> list[dict[str, Any]]:
    if not axes:
        raise InputError(f"{path}: 'axes' is empty; add at least one axis(...)")
    names = [a.get("name") if isinstance(a, Mapping) else None for a in axes]
    for a, name in zip(axes, names, strict=True):
        if name is None or not isinstance(a.get("points"), Mapping) or not a["points"]:
            raise InputError(f"{path}: axes entry {a!r} is not an axis(...) with points")
        if not _AXIS_NAME.fullmatch(name):
            raise InputError(f"{path}: axis name {name!r}: use letters and digits")
        for label in a["points"]:
            if not _LABEL.fullmatch(label):
                raise InputError(f"{path}: axis {name!r} label {label!r}: use [A-Za-z0-9._-]")
    repeated = _repeated(names)
    if repeated:
        raise InputError(f"{path}: axes {repeated} appear more than once")
    return list(axes)


def _repeated(names: list[str]) -> list[str]:
    return sorted({n for n in names if names.count(n) > 1})


def _factors(
    path: Path, order: list[str], points: dict[str, Mapping], zips: list[tuple[str, ...]]
) -> list[list[list[tuple[str, str]]]]:
    """The factors of the product: per axis or zip group, its choices of [(axis, label)]."""
    group_of = {}
    for group in zips:
        for name in group:
            if name not in points:
                raise InputError(f"{path}: zip names axis {name!r}; the axes are {order}")
            if name in group_of:
                raise InputError(f"{path}: axis {name!r} is in more than one zip group")
            group_of[name] = group
        if len({len(points[n]) for n in group}) > 1:
            raise InputError(f"{path}: zip group {list(group)} has axes of different lengths")
    factors, placed = [], set()
    for name in order:
        group = group_of.get(name, (name,))
        if group not in placed:
            placed.add(group)
            columns = [[(n, label) for label in points[n]] for n in group]
            factors.append([list(row) for row in zip(*columns, strict=True)])
    return factors


def _member(
    path: Path,
    base: Path,
    base_overrides: tuple[str, ...],
    labels: dict[str, str],
    points: dict[str, Mapping],
) -> Member:
    name = "_".join(f"{axis_name}-{label}" for axis_name, label in labels.items())
    settings: dict[str, Any] = {}
    for axis_name, label in labels.items():
        for key, value in points[axis_name][label].items():
            if key in settings:
                raise InputError(f"{path}: member {name}: two axes set {key}")
            settings[key] = value
    tokens = settings.pop(TOKENS, None)
    overrides = base_overrides + tuple(f"{key}={value!r}" for key, value in settings.items())
    try:
        cfg = load_config(base, overrides)
    except InputError as err:
        raise InputError(f"{path}: member {name}: {err}") from None
    if tokens is not None:
        if "train.steps" in settings:
            raise InputError(f"{path}: member {name}: set either tokens or train.steps, not both")
        if not isinstance(tokens, (int, float)) or tokens <= 0:
            raise InputError(f"{path}: member {name}: tokens={tokens!r} must be a positive number")
        steps = max(1, round(tokens / (cfg.data.batch_size * cfg.data.seq_len)))
        overrides += (f"train.steps={steps}",)
    if not cfg.train.eval_every:
        raise InputError(
            f"{path}: member {name}: train.eval_every is 0, so it would end without an "
            "evaluation loss; set train.eval_every > 0 in base_overrides"
        )
    return Member(name, labels, overrides)
