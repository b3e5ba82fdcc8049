"""The parts of the perturbation evaluation that need no model: the reference / floor
sampling of a pair's real cells, and the per-pair markdown tables."""

import numpy as np
import pytest

from c2s_jax.evaluate.perturbation import (
    DistributionScores,
    PerturbationResult,
    perturbation_metrics,
    results_table,
)
from c2s_jax.evaluate.perturbation_eval import _split_sample, per_pair_markdown


@pytest.mark.parametrize(
    ("n_cells", "max_cells", "sizes"), [(321, 100, (100, 100)), (9, 100, (5, 4)), (3, 2, (2, 1))]
)
def test_reference_and_floor_samples_are_disjoint_real_cells(n_cells, max_cells, sizes):
    cells = list(range(1000, 1000 + n_cells))
    reference, floor = _split_sample(cells, max_cells, np.random.default_rng(0))
    assert (len(reference), len(floor)) == sizes
    assert not set(reference) & set(floor) and set(reference) | set(floor) <= set(cells)
    assert reference == sorted(reference) and floor == sorted(floor)
    again = _split_sample(cells, max_cells, np.random.default_rng(0))
    assert again == (reference, floor)


def test_per_pair_markdown_puts_each_floor_under_its_pair():
    metrics = perturbation_metrics(np.array([1.0, 2.0, 0.5]), np.array([1.5, 3.0, 0.0]), np.ones(3))
    results = [
        PerturbationResult(
            "IFN", cell_type, method, metrics, DistributionScores(mmd, 10 * mmd), floor
        )
        for cell_type, floor in (("B", DistributionScores(0.011, 0.25)), ("NK", None))
        for method, mmd in (("model", 0.3), ("control_mean", 0.7), ("train_mean", 0.2))
    ]
    result = {
        "table": results_table(results, []).to_dict(orient="records"),
        "embedder": "pca10",
    }
    text = "\n".join(per_pair_markdown(result))
    b_part, nk_part = text.split("#### NK, IFN")
    assert "#### B, IFN (unseen in training)" in b_part
    assert "| control unchanged |" in b_part and "| control + mean training shift |" in b_part
    floor_row = next(line for line in b_part.splitlines() if line.startswith("| real"))
    assert floor_row.split("|")[-3:-1] == [" 0.011 ", " 0.25 "]
    model_row = next(line for line in nk_part.splitlines() if line.startswith("| model"))
    assert model_row.split("|")[-3:-1] == [" 0.3 ", " 3 "]
    assert "| real (noise floor) |" in nk_part and nk_part.count("n/a") == 2
