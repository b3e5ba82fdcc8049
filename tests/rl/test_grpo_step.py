"""The GRPO batch layout, and the update step against the whole-batch objective."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from c2s_jax import parallel
from c2s_jax.models import build_model, get_config
from c2s_jax.models.parts import ModelParts
from c2s_jax.rl.objective import grpo_loss
from c2s_jax.rl.step import (
    ObjectiveConfig,
    batch_shardings,
    completion_values,
    make_update_step,
    rollout_batch,
    sequence_logprobs,
)
from c2s_jax.train.state import TrainState

EOS = 1
V, L = 32, 12


def test_rows_hold_prompt_and_completion_shifted_by_one():
    prompts = [np.array([2, 5, 6], np.int32), np.array([2, 7], np.int32)]
    completions_BN = np.array([[8, 9, EOS, 4], [3, 3, 3, 3]], np.int32)
    lengths_B = np.array([3, 4])
    batch = rollout_batch(prompts, completions_BN, lengths_B, L=8)
    np.testing.assert_array_equal(batch["tokens"][0], [2, 5, 6, 8, 9, 0, 0, 0])
    np.testing.assert_array_equal(batch["targets"][0], [5, 6, 8, 9, EOS, 0, 0, 0])
    np.testing.assert_array_equal(batch["tokens"][1], [2, 7, 3, 3, 3, 0, 0, 0])
    np.testing.assert_array_equal(batch["targets"][1], [7, 3, 3, 3, 3, 0, 0, 0])
    np.testing.assert_array_equal(batch["positions"][0], [0, 1, 2, 3, 4, 0, 0, 0])
    np.testing.assert_array_equal(batch["segment_ids"][1], [1, 1, 1, 1, 1, 0, 0, 0])
    # The completion's targets only: the prompt's own continuation is not the policy's.
    np.testing.assert_array_equal(batch["completion_mask"][0], [0, 0, 1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(batch["completion_mask"][1], [0, 1, 1, 1, 1, 0, 0, 0])
    values_BN = np.array([[0.1, 0.2, 0.3, 9.0], [0.4, 0.5, 0.6, 0.7]], np.float32)
    placed = completion_values(batch, values_BN)
    np.testing.assert_allclose(placed[0], [0, 0, 0.1, 0.2, 0.3, 0, 0, 0])
    np.testing.assert_allclose(placed[1], [0, 0.4, 0.5, 0.6, 0.7, 0, 0, 0])
    with pytest.raises(ValueError, match="positions"):
        rollout_batch(prompts, completions_BN, lengths_B, L=4)


@jax.jit
def _logprobs(graphdef, params, batch):
    return sequence_logprobs(nnx.merge(graphdef, params), batch)


def _setup(seed=0):
    """A one-layer model, a batch of 4 rows of unequal completion lengths (one empty),
    old and reference log-probs near the model's own."""
    cfg = get_config("gemma2_tiny", vocab_size=V, num_layers=1, dtype="float32")
    graphdef, params = nnx.split(build_model(cfg, rngs=nnx.Rngs(seed)), nnx.Param)
    rng = np.random.default_rng(seed)
    prompts = [rng.integers(2, V, n).astype(np.int32) for n in (3, 5, 2, 4)]
    completions_BN = rng.integers(2, V, (4, 6)).astype(np.int32)
    batch = rollout_batch(prompts, completions_BN, np.array([6, 2, 4, 0]), L)
    batch["advantages"] = np.array([1.2, -0.4, 0.7, -1.5], np.float32)
    logp_BL = np.asarray(_logprobs(graphdef, params, batch))
    mask_BL = batch["completion_mask"]
    old_BL = (logp_BL + rng.normal(0, 0.3, logp_BL.shape) * mask_BL).astype(np.float32)
    ref_BL = (logp_BL + rng.normal(0, 0.3, logp_BL.shape) * mask_BL).astype(np.float32)
    return ModelParts(graphdef, cfg), params, batch, old_BL, ref_BL


@pytest.mark.parametrize(
    "aggregation", ["token_mean", pytest.param("sequence_mean_token_mean", marks=pytest.mark.slow)]
)
def test_microbatches_take_the_whole_batch_step(aggregation):
    parts, params, batch, old_BL, ref_BL = _setup()
    mesh = parallel.make_mesh({"data": -1})
    shardings = batch_shardings(mesh, parallel.DEFAULT_RULES)
    tx = optax.sgd(0.5)
    knobs = dict(clip_eps=0.2, beta=0.1, kl_estimator="k3", aggregation=aggregation)

    def expected_loss(p):
        logp_BL = sequence_logprobs(parts.model(p), batch)
        return grpo_loss(
            logp_BL, old_BL, ref_BL, batch["advantages"], batch["completion_mask"], **knobs
        )

    (loss, aux), grads = jax.jit(jax.value_and_grad(expected_loss, has_aux=True))(params)
    expected_params = jax.tree.map(lambda p, g: p - 0.5 * g, params, grads)
    # Two microbatches of unequal weight: rows 0 and 2 hold 10 completion tokens in two
    # sequences, rows 1 and 3 hold 2 in one.
    step = make_update_step(
        parts,
        tx,
        optax.constant_schedule(0.5),
        ObjectiveConfig(microbatches=2, **knobs),
        None,
        shardings,
        (),
    )
    state = TrainState(jnp.zeros((), jnp.int32), jax.tree.map(jnp.copy, params), tx.init(params))
    new_state, metrics, logp_BL = step(state, batch, None, old_BL, ref_BL)
    np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-5)
    for name in ("kl", "ratio", "clip_fraction", "tokens"):
        np.testing.assert_allclose(metrics[name], aux[name], rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(logp_BL, _logprobs(parts.graphdef, params, batch), atol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), new_state.params, expected_params
    )
