"""Mesh rules, config overrides, the loss, the decay mask, FLOPs and the memory plan."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
from flax import nnx
from jax.sharding import PartitionSpec as P

from c2s_jax import parallel
from c2s_jax.config_loading import load_config
from c2s_jax.errors import InputError
from c2s_jax.models import get_config
from c2s_jax.models.registry import abstract_model
from c2s_jax.train.flops import peak_flops, train_flops_per_token
from c2s_jax.train.loss import masked_loss
from c2s_jax.train.optimizer import decay_mask, learning_rate_schedule
from tests.support.training import TINY


def test_mesh_shape_fills_and_refuses():
    assert parallel.mesh_shape({"data": -1, "fsdp": 2, "tensor": 2}, 16) == (4, 2, 2)
    with pytest.raises(InputError, match="needs 6 devices but 8"):
        parallel.mesh_shape({"data": 3, "fsdp": 2}, 8)
    with pytest.raises(InputError, match="unknown axes"):
        parallel.mesh_shape({"model": 2}, 2)


def test_logical_axes_map_to_mesh_axes_once_and_only_where_they_divide():
    rules = parallel.DEFAULT_RULES
    assert parallel.logical_to_spec(("batch", "length"), rules) == P(("data", "fsdp"), None)
    assert parallel.logical_to_spec(("embed", "heads", "head_dim"), rules) == P(
        "fsdp", "tensor", None
    )
    # kv_heads and heads both want tensor: the second stays replicated.
    assert parallel.logical_to_spec(("heads", "kv_heads"), rules) == P("tensor", None)
    sizes = {"data": 1, "fsdp": 4, "tensor": 3}
    assert parallel.fitted_spec(P("fsdp", "tensor"), (8, 4), sizes) == P("fsdp", None)


def test_masked_loss_against_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 7))
    targets = rng.integers(0, 7, (2, 5))
    mask = rng.integers(0, 2, (2, 5))
    task = rng.integers(0, 3, (2, 5))
    log_norm = scipy.special.logsumexp(logits, axis=-1)
    target_logit = np.take_along_axis(logits, targets[..., None], -1)[..., 0]
    objective, aux = masked_loss(
        jnp.asarray(target_logit, jnp.float32),
        jnp.asarray(log_norm, jnp.float32),
        jnp.asarray(mask),
        jnp.asarray(task),
        3,
        z_loss_weight=0.1,
    )
    ce = (log_norm - target_logit) * mask
    np.testing.assert_allclose(aux["ce_sum"], ce.sum(), rtol=1e-5)
    np.testing.assert_allclose(objective, ce.sum() + 0.1 * (log_norm**2 * mask).sum(), rtol=1e-5)
    for k in range(3):
        np.testing.assert_allclose(aux["task_ce_sum"][k], ce[task == k].sum(), rtol=1e-5)
        assert aux["task_tokens"][k] == mask[task == k].sum()


def test_weight_decay_skips_norms_biases_and_embeddings():
    params = nnx.state(abstract_model(get_config("pythia_tiny")), nnx.Param)
    flat = {
        "/".join(str(getattr(p, "key", p)) for p in path if str(getattr(p, "key", p)) != "value"): v
        for path, v in jax.tree_util.tree_flatten_with_path(decay_mask(params, False))[0]
    }
    decayed = {k.removesuffix("/.value") for k, v in flat.items() if v}
    assert decayed == {f"layers/attn/w{x}" for x in "qkvo"} | {
        "layers/mlp/w_in",
        "layers/mlp/w_out",
    }


def test_schedule_warms_up_and_decays():
    cfg = load_config(TINY).optimizer
    cfg.total_steps = 100
    schedule = learning_rate_schedule(cfg)
    assert schedule(0) == 0 and schedule(10) == pytest.approx(cfg.learning_rate)
    assert schedule(100) == pytest.approx(cfg.learning_rate * cfg.end_factor, rel=1e-4)


def test_flops_formula_matches_counting_weights():
    # Independent count: each projection weight (w*) costs 6 FLOPs per parameter per token
    # in training, the unembedding 6*D*V, attention scores and values 6*keys*H*Dh per layer.
    for name in ("pythia_160m", "gemma2_2b"):
        cfg = get_config(name)
        seq = 2048
        state = nnx.state(abstract_model(cfg), nnx.Param)
        matrices = sum(
            leaf.size
            for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]
            if [str(getattr(p, "key", p)) for p in path][-2].startswith("w")
        )
        windows = getattr(cfg, "layer_windows", (0,) * cfg.num_layers)
        keys = sum(min(seq, w) if w else seq for w in windows)
        expected = 6 * matrices + 6 * cfg.d_model * cfg.vocab_size
        expected += 6 * keys * cfg.num_heads * cfg.head_dim
        assert train_flops_per_token(cfg, seq) == pytest.approx(expected, rel=1e-9)
    assert peak_flops("TPU v5p") == 459e12 and peak_flops("cpu") is None
    assert peak_flops("cpu", 1e12) == 1e12


def test_plan_names_a_mistyped_override(capsys):
    from c2s_jax.cli import main

    assert main(["plan", "--config", str(TINY), "--config.train.stepz=1"]) == 2
    assert "no key 'train.stepz'" in capsys.readouterr().err
