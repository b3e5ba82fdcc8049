"""The same experiment on 1 device and on 8 virtual devices (data, fsdp, fsdp x tensor),
and a checkpoint written on 8 devices restored onto 4."""

import numpy as np
import pytest

from c2s_jax.train.loop import train
from tests.support.training import losses, run_training

MESHES = {
    "data": ("mesh.data=8", "mesh.fsdp=1", "mesh.tensor=1"),
    "fsdp": ("mesh.data=1", "mesh.fsdp=8", "mesh.tensor=1"),
}


@pytest.mark.slow
@pytest.mark.integration
def test_loss_curve_is_the_same_on_any_mesh(tiny_config, tmp_path):
    train(tiny_config(), tmp_path / "one_device")
    reference = losses(tmp_path / "one_device")
    for name, mesh in MESHES.items():
        run_training(tmp_path / name, *mesh, devices=8)
        curve = losses(tmp_path / name)
        assert curve.keys() == reference.keys()
        np.testing.assert_allclose(
            [curve[s] for s in sorted(curve)],
            [reference[s] for s in sorted(reference)],
            rtol=2e-5,
            err_msg=name,
        )
    # fsdp x tensor on 8 devices for the first half, then resharded onto 4 devices.
    run_training(
        tmp_path / "resharded",
        "mesh.data=1",
        "mesh.fsdp=4",
        "mesh.tensor=2",
        "train.steps=10",
        devices=8,
    )
    run_training(tmp_path / "resharded", "mesh.data=2", "mesh.fsdp=1", "mesh.tensor=2", devices=4)
    curve = losses(tmp_path / "resharded")
    np.testing.assert_allclose(
        [curve[s] for s in sorted(curve)], [reference[s] for s in sorted(reference)], rtol=2e-5
    )
