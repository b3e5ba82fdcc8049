"""Train/validation/test assignment of cells, by cell or by groups of obs values.

Grouped splits put every cell of a group (a donor, a dataset, or a cell type x
perturbation combination) into one split, so no group leaks between splits; holding out
cell type x perturbation groups gives unseen-combination test sets.
"""

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from c2s_jax.errors import InputError

SPLIT_IDS = {"train": 0, "validation": 1, "test": 2}


def assign_splits(
    obs: pd.DataFrame,
    by: Sequence[str],
    fractions: Mapping[str, float],
    seed: int,
    where: str,
    held_out: Sequence[Mapping[str, str]] = (),
) -> np.ndarray:
    """Split of every cell.

    Args:
      obs: [cells] obs columns (must hold the `by` columns).
      by: group columns; () assigns cells one by one.
      fractions: share of cells per split name (train/validation/test), summing to 1.
      seed: seed of the random order of cells or groups.
      where: dataset name for messages.
      held_out: obs value combinations ({column: value}) whose cells all go to test; the
        other cells are split as above.

    Returns:
      [cells] int8 split ids (SPLIT_IDS).

    Raises:
      InputError: a split with a positive share gets no cell (too few groups).
    """
    missing = [k for k in by if k not in obs.columns]
    if missing:
        raise InputError(f"{where}: split.by names obs columns {missing} that it lacks")
    is_held_out = _held_out_cells(obs, held_out, where)
    if is_held_out.any():
        splits = np.full(len(obs), SPLIT_IDS["test"], np.int8)
        rest = np.flatnonzero(~is_held_out)
        splits[rest] = assign_splits(obs.iloc[rest], by, fractions, seed, where)
        return splits
    n_cells = len(obs)
    shares = np.array([fractions.get(name, 0.0) for name in SPLIT_IDS])
    if by:
        group_of_cell = obs.groupby(list(by), sort=True, observed=True, dropna=False).ngroup()
        group_of_cell = group_of_cell.to_numpy()
        group_sizes = np.bincount(group_of_cell, minlength=int(group_of_cell.max()) + 1)
        group_split = _fill_by_deficit(group_sizes, shares, seed)
        splits = group_split[group_of_cell]
    else:
        # Cells one by one: cut a random order at the cumulative shares. Position p of the
        # order goes to the number of bounds below p + 0.5 (at most 2), so each split is a
        # run of positions; filled run by run, with no per-cell temporaries beyond the order.
        order = np.random.default_rng(seed).permutation(n_cells)
        bounds = np.cumsum(shares) * n_cells
        cuts = np.clip(np.floor(bounds - 0.5).astype(np.int64) + 1, 0, n_cells)
        group_split = np.empty(n_cells, np.int8)
        first = 0
        for split_id, stop in enumerate([*cuts[:2].tolist(), n_cells]):
            group_split[order[first:stop]] = split_id
            first = max(first, stop)
        splits = group_split
    n_groups = len(group_split)
    for name, split_id in SPLIT_IDS.items():
        if fractions.get(name, 0.0) > 0 and not (splits == split_id).any():
            unit = f"groups of {list(by)}" if by else "cells"
            raise InputError(
                f"{where}: split '{name}' is empty ({n_groups} {unit} for shares "
                f"{dict(fractions)}); lower split.fractions.{name} to 0, split by fewer "
                "columns, or add data"
            )
    return splits


def _held_out_cells(
    obs: pd.DataFrame, held_out: Sequence[Mapping[str, str]], where: str
) -> np.ndarray:
    """[cells] bool: the cells of any held-out value combination.

    Raises:
      InputError: a combination names a missing column or matches no cell (a typo would
        otherwise hold nothing out and leak the very cells meant for testing).
    """
    chosen = np.zeros(len(obs), bool)
    for index, group in enumerate(held_out):
        missing = [k for k in group if k not in obs.columns]
        if missing:
            raise InputError(
                f"{where}: split.held_out[{index}] names obs columns {missing} that it lacks"
            )
        match = np.ones(len(obs), bool)
        for column, value in group.items():
            match &= obs[column].astype(str).to_numpy() == value
        if not match.any():
            values = {k: sorted(map(str, obs[k].unique()))[:12] for k in group}
            raise InputError(
                f"{where}: split.held_out[{index}] {dict(group)} matches no cell; values "
                f"present: {values}"
            )
        chosen |= match
    return chosen


def _fill_by_deficit(group_sizes: np.ndarray, shares: np.ndarray, seed: int) -> np.ndarray:
    """[groups] split ids: groups in random order, each to the split furthest below its share.

    Every split with a positive share gets a group as long as there are enough groups.
    """
    target = shares * group_sizes.sum()
    assigned = np.zeros(len(shares))
    group_split = np.empty(len(group_sizes), np.int8)
    for group in np.random.default_rng(seed).permutation(len(group_sizes)):
        deficit = np.where(shares > 0, target - assigned, -np.inf)
        split = int(np.argmax(deficit))
        group_split[group] = split
        assigned[split] += group_sizes[group]
    return group_split
