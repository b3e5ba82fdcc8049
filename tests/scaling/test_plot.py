"""The scaling figure is written as a PNG; a one-variable fit needs its compute law."""

import numpy as np
import pytest
from matplotlib import image

from c2s_jax.scaling import law
from c2s_jax.scaling.plot import plot_scaling


def test_one_variable_figure_needs_the_compute_law(grid_results, tmp_path):
    points = law.read_results(grid_results)[:7]
    losses = law.target_losses(points)
    fit = law.fit_scaling_law([p.n_params for p in points], losses)
    with pytest.raises(ValueError, match="compute_fit"):
        plot_scaling(points, losses, fit, tmp_path / "no.png")
    assert not (tmp_path / "no.png").exists()
    compute = law.fit_scaling_law([p.flops for p in points], losses, bootstrap=3)
    plot_scaling(points, losses, fit, tmp_path / "yes.png", compute_fit=compute, title="t")
    pixels = image.imread(tmp_path / "yes.png")
    assert pixels.shape[2] in (3, 4) and np.ptp(pixels) > 0
