"""GRPO learns a reward it can clearly reach: a tiny random model over 16 token ids is
rewarded for the fraction of its 8 new tokens that are the id 7."""

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from c2s_jax import parallel
from c2s_jax.inference.sampler import SamplingParams
from c2s_jax.models import build_model, get_config
from c2s_jax.models.lora import LoRA
from c2s_jax.models.parts import ModelParts
from c2s_jax.rl.grpo import GRPO, Settings
from c2s_jax.rl.prompts import Prompt
from c2s_jax.rl.rewards import RewardSet, RewardTarget
from c2s_jax.rl.step import ObjectiveConfig

V, NEW, GROUP = 16, 8, 8
TARGET = "7"


class DigitTokenizer:
    """Token ids as words: what a completion says is which ids it sampled."""

    eos_id, bos_id, vocab_size, unknown_id = 1, None, V, 0

    def decode(self, ids) -> str:
        return " ".join(str(int(i)) for i in ids)


def sevens(completion: str, target: RewardTarget) -> float:
    return completion.split().count(target.answer) / NEW


def learner(lora_rank: int = 0, beta: float = 0.04, learning_rate: float = 1e-2) -> GRPO:
    cfg = get_config("gemma2_tiny", vocab_size=V, dtype="float32")
    model = build_model(cfg, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model, nnx.Param)
    parts = ModelParts(graphdef, cfg)
    if lora_rank:
        adapters = LoRA(
            model, rank=lora_rank, alpha=16.0, targets=("wq", "wv", "wo"), rngs=nnx.Rngs(1)
        )
        lora_graphdef, adapter_params = nnx.split(adapters, nnx.LoRAParam)
        parts = ModelParts(graphdef, cfg, frozen=params, lora_graphdef=lora_graphdef)
        params = adapter_params
    return GRPO(
        parts,
        params,
        tokenizer=DigitTokenizer(),
        rewards=RewardSet(("sevens",), (sevens,), (1.0,)),
        settings=Settings(
            GROUP, SamplingParams(NEW, temperature=1.0), 1, ObjectiveConfig(beta=beta)
        ),
        tx=optax.adam(learning_rate),
        schedule=optax.constant_schedule(learning_rate),
        mesh=parallel.make_mesh({"data": -1}),
        rules=parallel.DEFAULT_RULES,
        row_length=16,
    )


def prompts(n: int = 4) -> list[Prompt]:
    rng = np.random.default_rng(0)
    target = RewardTarget("cell_type_annotation", TARGET)
    return [Prompt(rng.integers(2, V, 5).astype(np.int32), target) for _ in range(n)]


def held_out_reward(grpo: GRPO) -> float:
    # The same prompts, seed and row count as the rollouts: one compiled sampler serves both.
    sampling = SamplingParams(NEW, temperature=1.0, seed=1234)
    return grpo.evaluate(prompts(), sampling, samples=GROUP, batch_size=64)["reward"]


@pytest.mark.slow
@pytest.mark.integration
def test_full_parameter_grpo_learns_the_toy_reward_with_bounded_kl():
    grpo = learner()
    before = held_out_reward(grpo)
    history = [grpo.step(prompts(), seed=step) for step in range(12)]
    after = held_out_reward(grpo)
    # Chance is 1/16 per token; the policy ends up writing almost only 7s.
    assert before < 0.15 < 0.8 < after
    first = history[0]
    # Nothing has moved before the first update: the trainer recomputes what the sampler
    # drew, so the ratio is 1, nothing is clipped and the policy equals the reference.
    assert first["logprob_diff"] < 1e-5
    assert first["ratio"] == 1.0 and first["clip_fraction"] == 0.0
    assert abs(first["kl"]) < 1e-6
    # The KL to the start grows as the policy leaves it, bounded by the penalty: at most
    # the cost of always writing 7 (log 16 nats, the start being close to uniform).
    kl = [m["kl"] for m in history]
    assert kl[-1] > kl[2] > 0
    assert max(kl) < np.log(V) + 1
    assert np.mean([m["reward"] for m in history[-3:]]) > 0.8


@pytest.mark.slow
@pytest.mark.integration
def test_lora_trains_adapters_only_against_the_frozen_base_as_reference():
    grpo = learner(lora_rank=2, beta=0.1)
    # The reference is the base the adapters sit on, not a copy of it.
    assert grpo.reference is grpo.parts.frozen
    base = jax.tree.map(np.array, grpo.parts.frozen)
    adapters = jax.tree.map(np.array, grpo.state.params)
    metrics = grpo.step(prompts(), seed=0)
    # Fresh adapters change nothing, so the policy starts as the reference.
    assert abs(metrics["kl"]) < 1e-6 and metrics["logprob_diff"] < 1e-5
    jax.tree.map(np.testing.assert_array_equal, grpo.parts.frozen, base)
    moved = jax.tree.map(lambda a, b: not np.array_equal(a, b), grpo.state.params, adapters)
    assert any(jax.tree.leaves(moved))


def test_beta_zero_holds_no_reference_and_full_parameters_hold_a_copy():
    assert learner(beta=0.0).reference is None
    assert learner(lora_rank=2, beta=0.0).reference is None
    full = learner(beta=0.1)
    # Its own buffers: the updates donate (free) the policy's.
    assert all(
        r.unsafe_buffer_pointer() != p.unsafe_buffer_pointer()
        for r, p in zip(
            jax.tree.leaves(full.reference), jax.tree.leaves(full.state.params), strict=True
        )
    )
