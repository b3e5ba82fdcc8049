"""Perturbation pairing: each perturbed cell with the controls of its cell type and batch.

Reads the common h5ad convention: one obs column names each cell's perturbation (drug,
cytokine or knocked-out gene) and a named label marks the control cells.
"""

import dataclasses

import numpy as np
import pandas as pd


@dataclasses.dataclass(frozen=True)
class ControlPairs:
    """Which control cells may stand beside each perturbed cell.

    Attributes:
      perturbed: [P] int64 perturbed cells that have at least one matching control.
      unmatched: perturbed cells without a control of the same cell type and batch.
      group_of_cell: [cells] int64 id of each cell's (cell type, batch) group.
      controls_by_group: group id -> [n] int64 control cells of that group.
    """

    perturbed: np.ndarray
    unmatched: int
    group_of_cell: np.ndarray
    controls_by_group: dict[int, np.ndarray]

    def draw_control(self, cell: int, rng: np.random.Generator) -> int:
        """A control of the same cell type and batch as `cell`, chosen by `rng`."""
        controls = self.controls_by_group[int(self.group_of_cell[cell])]
        return int(controls[rng.integers(len(controls))])


def pair_controls(
    perturbation: pd.Series,
    control_label: str,
    cell_type: pd.Series | None,
    batch: pd.Series | None,
) -> ControlPairs:
    """Groups cells by (cell type, batch) and lists each group's controls.

    Args:
      perturbation: [cells] perturbation name per cell; `control_label` marks controls.
      control_label: the value of control cells.
      cell_type, batch: [cells] grouping columns (None: not grouped by that column).
    """
    n_cells = len(perturbation)
    keys = [c.astype(str).to_numpy() for c in (cell_type, batch) if c is not None]
    if keys:
        frame = pd.DataFrame({f"k{i}": k for i, k in enumerate(keys)})
        group_of_cell = frame.groupby(list(frame.columns), sort=True).ngroup().to_numpy()
    else:
        group_of_cell = np.zeros(n_cells, np.int64)
    is_control = perturbation.astype(str).to_numpy() == control_label
    is_perturbed = ~is_control & perturbation.notna().to_numpy()
    controls = np.flatnonzero(is_control)
    controls_by_group = {
        int(g): controls[group_of_cell[controls] == g] for g in np.unique(group_of_cell[controls])
    }
    has_control = np.isin(group_of_cell, list(controls_by_group))
    return ControlPairs(
        perturbed=np.flatnonzero(is_perturbed & has_control),
        unmatched=int((is_perturbed & ~has_control).sum()),
        group_of_cell=group_of_cell.astype(np.int64),
        controls_by_group=controls_by_group,
    )
