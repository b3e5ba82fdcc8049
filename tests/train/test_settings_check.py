"""Training settings that cannot train: one line naming the config key, and no workdir."""

import pytest

from c2s_jax.cli import main
from c2s_jax.errors import InputError
from c2s_jax.train.loop import train
from tests.support.training import FAST, TINY


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.steps=0", r"config.train.steps=0: must be a whole number >= 1"),
        ("train.steps=-3", r"config.train.steps=-3: must be a whole number >= 1"),
        ("data.batch_size=0", r"config.data.batch_size=0: must be a whole number >= 1"),
        ("train.checkpoint_every=0", r"config.train.checkpoint_every=0: must be"),
        ("train.eval_every=-1", r"config.train.eval_every=-1: .* >= 0 \(0 turns it off\)"),
        (
            "train.microbatches=3",
            r"config.data.batch_size=8 does not split into config.train.microbatches=3",
        ),
    ],
)
def test_a_setting_that_cannot_train_names_its_key_and_leaves_no_workdir(
    tmp_path, tiny_config, override, message
):
    with pytest.raises(InputError, match=message):
        train(tiny_config(override), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_evaluation_needs_batches_only_when_it_is_on(tmp_path, tiny_config):
    with pytest.raises(InputError, match=r"config.data.eval_batches=0: .*config.train.eval_every"):
        train(tiny_config("train.eval_every=5", "data.eval_batches=0"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_batch_that_does_not_divide_over_the_devices_says_what_would(capsys):
    # The compile check meets the same rule before compiling: 4 chips share the batch.
    argv = ["plan", "--config", str(TINY), "--compile", "--topology", "v5litepod-4"]
    mesh = ("mesh.data=1", "mesh.fsdp=-1", "mesh.tensor=1")
    overrides = [f"--config.{o}" for o in (*FAST, *mesh, "data.batch_size=6")]
    assert main([*argv, *overrides]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after libtpu's own warnings
    assert "config.data.batch_size=6: each of its 1 microbatch(es) of 6 rows must divide" in err
    assert "over the 4 devices that share the batch (config.mesh); use a multiple of 4" in err
