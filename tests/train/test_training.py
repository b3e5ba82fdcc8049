"""The loop in one process: resume, microbatches, LoRA, non-finite loss, metrics."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from c2s_jax.errors import NonFiniteLossError
from c2s_jax.train.loop import train
from tests.support.training import losses


def test_resume_continues_the_same_loss_curve(tiny_config, tmp_path):
    whole = train(tiny_config(), tmp_path / "whole")
    train(tiny_config("train.steps=10"), tmp_path / "split")
    resumed = train(tiny_config(), tmp_path / "split")
    assert resumed.step == whole.step == 20
    a, b = losses(tmp_path / "whole"), losses(tmp_path / "split")
    assert sorted(b) == [5, 10, 15, 20]
    np.testing.assert_allclose([b[s] for s in (15, 20)], [a[s] for s in (15, 20)], rtol=1e-6)


def test_microbatches_give_the_gradient_of_the_whole_batch(tiny_config, tmp_path):
    one = train(tiny_config("train.steps=5"), tmp_path / "one")
    four = train(tiny_config("train.steps=5", "train.microbatches=4"), tmp_path / "four")
    np.testing.assert_allclose(four.train_loss, one.train_loss, rtol=1e-5)
    assert losses(tmp_path / "one") == pytest.approx(losses(tmp_path / "four"), rel=1e-5)


def test_loss_falls_and_metrics_are_written(tiny_config, tmp_path):
    result = train(
        tiny_config(
            "train.steps=40",
            "train.eval_every=20",
            "data.num_tasks=3",
            "train.peak_flops_per_device=1e11",
        ),
        tmp_path,
    )
    curve = losses(tmp_path)
    assert curve[40] < curve[5]
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    for key in ("loss", "grad_norm", "learning_rate", "tokens_per_s", "step_time_s", "mfu"):
        assert np.isfinite(record[key]), key
    assert set(result.eval_task_loss) == {"task0", "task1", "task2"}
    assert list((tmp_path / "tensorboard").iterdir())
    assert json.loads((tmp_path / "result.json").read_text())["step"] == 40


def test_lora_trains_adapters_only(tiny_config, tmp_path):
    from c2s_jax.train.optimizer import make_optimizer
    from c2s_jax.train.state import ModelSpec, create_train_state

    cfg = tiny_config("lora.rank=4", "train.steps=10")
    result = train(cfg, tmp_path)
    curve = losses(tmp_path)
    assert curve[10] < curve[5]
    assert result.n_params > 100_000  # the frozen base counts too
    # The saved state holds adapters only: its parameters are LoRA A/B matrices.
    opt_cfg = cfg.optimizer.copy_and_resolve_references()
    opt_cfg.total_steps = 10
    state, parts, _ = create_train_state(
        ModelSpec.from_config(cfg),
        make_optimizer(opt_cfg),
        jax.sharding.Mesh(
            np.asarray(jax.devices()[:1]).reshape(1, 1, 1), ("data", "fsdp", "tensor")
        ),
    )
    assert parts.frozen is not None
    n_adapter = sum(x.size for x in jax.tree.leaves(state.params))
    assert 0 < n_adapter < sum(x.size for x in jax.tree.leaves(parts.frozen)) / 5


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(tiny_config, tmp_path):
    train(tiny_config("train.steps=10"), tmp_path)
    diverging = tiny_config(
        "train.steps=20",
        "optimizer.learning_rate=1e30",
        "optimizer.clip_norm=0.0",
        "optimizer.warmup_steps=0",
    )
    with pytest.raises(NonFiniteLossError, match=r"not finite at step 1[1-9].*step 10 in"):
        train(diverging, tmp_path)
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert steps[-1] == 10


def test_training_starts_from_an_hf_checkpoint(tiny_config, tmp_path):
    from tests.checkpoints import hf_reference

    hf_reference.pythia(tmp_path / "hf", vocab_size=512)
    cfg = tiny_config(
        "train.steps=5", f"model.init_from='{tmp_path / 'hf'}'", "model.name=pythia_tiny"
    )
    train(cfg, tmp_path / "run")
    first = losses(tmp_path / "run")[5]
    # Starting from the checkpoint, not from random weights: the step-5 loss differs from
    # a run initialized at random with the same seed and data.
    train(tiny_config("train.steps=5", "model.name=pythia_tiny"), tmp_path / "random")
    assert first != pytest.approx(losses(tmp_path / "random")[5], rel=1e-3)


def test_a_step_keeps_bfloat16_parameters_and_moments_bfloat16(tiny_config):
    """Every leaf of the train state keeps its dtype through a step (a promoted moment
    would compile the step again and stop matching its checkpoints)."""
    from c2s_jax import parallel
    from c2s_jax.train.data import DataSpec, batch_sources, to_global
    from c2s_jax.train.optimizer import optimizer_for
    from c2s_jax.train.state import ModelSpec, create_train_state
    from c2s_jax.train.step import LossConfig, make_train_step

    cfg = tiny_config("model.overrides={'dtype': 'bfloat16', 'param_dtype': 'bfloat16'}")
    mesh = parallel.make_mesh(dict(cfg.mesh), cfg.dcn_data)
    rules = tuple(tuple(r) for r in cfg.rules)
    sharding = parallel.batch_sharding(mesh, rules)
    tx, schedule = optimizer_for(cfg.optimizer, cfg.train.steps)
    state, parts, shardings = create_train_state(ModelSpec.from_config(cfg), tx, mesh)
    source, _, tasks = batch_sources(DataSpec.from_config(cfg), parts.config.vocab_size, sharding)
    loss_cfg = LossConfig(len(tasks), cfg.train.z_loss_weight, cfg.train.microbatches)
    step = make_train_step(parts, tx, schedule, loss_cfg, shardings, sharding, rules)
    before = [x.dtype for x in jax.tree.leaves(state)]
    assert jnp.bfloat16 in before
    state, _ = step(state, to_global(next(source), sharding), parts.frozen)
    assert [x.dtype for x in jax.tree.leaves(state)] == before
