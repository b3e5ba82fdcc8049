"""GRPO: sample G completions per prompt, score them with verifiable rewards, normalize the
rewards within each group, and update the policy with the clipped objective and a KL
penalty to a frozen reference.

:class:`GRPO` is one policy in training and does one step of the algorithm on a batch of
prompts. :func:`run_grpo` is the experiment around it: mesh, model bundle, prompts from the
corpus, resume, held-out evaluation, checkpoints, metrics and the exported bundle.
Rerunning the same command with the same workdir continues from the newest checkpoint;
SIGTERM saves at the current step and returns cleanly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from etils import epath
from flax import nnx
from jax.sharding import Mesh

from c2s_jax import parallel
from c2s_jax.checkpoints.bundle import Bundle, export_bundle, load_bundle
from c2s_jax.errors import InputError, NonFiniteLossError
from c2s_jax.inference.sampler import PROMPT_BUCKET, Sampler, SamplingParams
from c2s_jax.models.parts import ModelParts
from c2s_jax.rl.objective import group_advantages
from c2s_jax.rl.prompts import Prompt, PromptOrder, corpus_prompts
from c2s_jax.rl.rewards import RewardSet, build_rewards
from c2s_jax.rl.step import (
    ObjectiveConfig,
    batch_shardings,
    completion_values,
    make_logprob_fn,
    make_update_step,
    rollout_batch,
)
from c2s_jax.run.checkpoints import Restored
from c2s_jax.run.runner import Outcome, Schedule, run
from c2s_jax.train.optimizer import optimizer_for
from c2s_jax.train.state import (
    LoraSpec,
    TrainState,
    new_train_state,
    state_shardings,
    trainable_parts,
)

# What each derived seed is for, so that rollouts and evaluations never share draws.
ROLLOUT_SEED, EVAL_SEED = 0, 1


@dataclasses.dataclass(frozen=True)
class Settings:
    """How GRPO samples and updates.

    Attributes:
      group_size: completions per prompt (G).
      sampling: temperature, top-k, top-p and max_new_tokens of the rollouts (its seed is
        replaced by each step's).
      iterations: optimizer updates per batch of completions (mu).
      objective: the loss settings.
    """

    group_size: int
    sampling: SamplingParams
    iterations: int = 1
    objective: ObjectiveConfig = dataclasses.field(default_factory=ObjectiveConfig)


def derived_seed(seed: int, purpose: int, step: int) -> int:
    """A 32-bit seed for one purpose (ROLLOUT_SEED, EVAL_SEED) at one step."""
    return int(np.random.SeedSequence([seed, purpose, step]).generate_state(1)[0])


def completion_texts(tokenizer, tokens_BN: np.ndarray, lengths_B: np.ndarray) -> list[str]:
    """The decoded completions, without their EOS.

    A model's vocabulary is often padded past the tokenizer's pieces; a sampled id the
    tokenizer does not know decodes as its unknown piece (or nothing, for tokenizers
    without one), so that it spoils the answer instead of failing.
    """
    unknown = tokenizer.unknown_id
    texts = []
    for tokens, n in zip(tokens_BN, lengths_B, strict=True):
        tokens = tokens[:n]
        if n and tokens[-1] == tokenizer.eos_id:
            tokens = tokens[:-1]
        known = tokens < tokenizer.vocab_size
        # Without an unknown piece (byte-level BPE), an unknown id is dropped instead.
        tokens = np.where(known, tokens, unknown) if unknown is not None else tokens[known]
        texts.append(tokenizer.decode(tokens))
    return texts


def reward_scalars(rewards: RewardSet, scores_NR: np.ndarray) -> dict[str, float]:
    """Mean and std of the total reward and of each named reward over [N, R] scores."""
    total_N = rewards.total(scores_NR)
    scalars = {"reward": float(total_N.mean()), "reward_std": float(total_N.std())}
    for name, column in zip(rewards.names, scores_NR.T, strict=True):
        scalars[f"reward/{name}"] = float(column.mean())
        scalars[f"reward/{name}_std"] = float(column.std())
    return scalars


class GRPO:
    """One policy trained with GRPO on a mesh.

    Args:
      parts: the model's static side (the frozen base under LoRA).
      params: the trainable parameters (adapters under LoRA), placed on `mesh`; their
        buffers are donated to the updates.
      tokenizer: decodes completions (`decode`, `eos_id`, `vocab_size`, `processor`).
      rewards: the reward functions and weights.
      settings: sampling and update settings.
      tx, schedule: the optimizer and its learning-rate schedule.
      mesh, rules: where parameters and batches live.
      row_length: L, at least the longest prompt plus max_new_tokens minus one.
    """

    def __init__(
        self,
        parts: ModelParts,
        params: Any,
        *,
        tokenizer,
        rewards: RewardSet,
        settings: Settings,
        tx: optax.GradientTransformation,
        schedule: optax.Schedule,
        mesh: Mesh,
        rules: parallel.Rules,
        row_length: int,
    ):
        self.parts = parts
        self.tokenizer = tokenizer
        self.rewards = rewards
        self.settings = settings
        self.row_length = row_length
        self.shardings = batch_shardings(mesh, rules)
        self.reference = None
        if settings.objective.beta > 0:
            # Under LoRA the frozen base is the reference (adapters start as zero changes):
            # no copy. A full-parameter policy keeps a copy of its starting weights.
            self.reference = parts.frozen
            if parts.frozen is None:
                self.reference = jax.tree.map(jnp.copy, params)
            self._reference_logprobs = make_logprob_fn(parts.graphdef, self.shardings, rules)
        self.state_shardings = state_shardings(params, tx, mesh, rules)
        self.state = new_train_state(params, tx, self.state_shardings)
        self._update = make_update_step(
            parts, tx, schedule, settings.objective, self.state_shardings, self.shardings, rules
        )
        self.sampler = Sampler(
            parts, self.state.params, tokenizer.eos_id, frozen=parts.frozen, mesh=mesh, rules=rules
        )

    def set_state(self, state: TrainState) -> None:
        """Continues from `state` (a restored checkpoint)."""
        self.state = state
        self.sampler.params = state.params

    def step(self, prompts: Sequence[Prompt], seed: int) -> dict[str, float]:
        """Samples, scores and updates on one batch of prompts; returns its metrics.

        Metrics: reward (total, mean and std) and each reward's mean and std over the
        completions; completion length (tokens, EOS included) and the fraction cut at
        max_new_tokens; the fraction of groups whose completions all scored the same (no
        learning signal); `logprob_diff`, the mean absolute difference between the
        sampler's and the trainer's log-probs of the sampled tokens before any update;
        the objective's loss, kl (with a reference), approx_kl, ratio and clip fractions
        averaged over the iterations; grad norm and learning rate of the last update;
        wall time of sampling and of the updates, and completion tokens per second.
        """
        began = time.perf_counter()
        G = self.settings.group_size
        rows = [p.tokens for p in prompts for _ in range(G)]
        targets = [p.target for p in prompts for _ in range(G)]
        sampling = dataclasses.replace(self.settings.sampling, seed=seed)
        tokens_BN, sampler_logp_BN, lengths_B = self.sampler.generate_tokens(rows, sampling)
        sampled = time.perf_counter()

        scores_BR = self.rewards.score(
            completion_texts(self.tokenizer, tokens_BN, lengths_B), targets
        )
        total_PG = self.rewards.total(scores_BR).reshape(len(prompts), G)
        advantages_B = np.asarray(group_advantages(total_PG)).reshape(-1)
        host = rollout_batch(rows, tokens_BN, lengths_B, self.row_length)
        batch = jax.device_put({**host, "advantages": advantages_B}, self.shardings)
        ref_logp_BL = None
        if self.reference is not None:
            ref_logp_BL = self._reference_logprobs(self.reference, batch)
        old_logp_BL, history = None, []
        for _ in range(self.settings.iterations):
            self.state, metrics, logp_BL = self._update(
                self.state, batch, self.parts.frozen, old_logp_BL, ref_logp_BL
            )
            old_logp_BL = logp_BL if old_logp_BL is None else old_logp_BL
            history.append(metrics)
        self.sampler.params = self.state.params
        history = jax.device_get(history)
        mask_BL = host["completion_mask"]
        sampler_logp_BL = completion_values(host, sampler_logp_BN)
        gap_BL = np.abs(np.asarray(jax.device_get(old_logp_BL)) - sampler_logp_BL) * mask_BL
        ended = time.perf_counter()

        scalars = reward_scalars(self.rewards, scores_BR)
        averaged = ("loss", "kl", "approx_kl", "ratio", "clip_fraction")
        averaged += ("clip_low_fraction", "clip_high_fraction")
        for name in averaged:
            if name in history[0]:
                scalars[name] = float(np.mean([m[name] for m in history]))
        scalars.update(
            grad_norm=float(history[-1]["grad_norm"]),
            learning_rate=float(history[-1]["learning_rate"]),
            logprob_diff=float(gap_BL.sum() / max(mask_BL.sum(), 1.0)),
            completion_length=float(lengths_B.mean()),
            truncated_fraction=float(
                np.mean(tokens_BN[np.arange(len(rows)), lengths_B - 1] != self.tokenizer.eos_id)
            ),
            zero_std_groups=float(np.mean(total_PG.std(axis=1) == 0)),
            sample_s=sampled - began,
            update_s=ended - sampled,
            tokens_per_s=float(lengths_B.sum()) / max(ended - began, 1e-9),
        )
        return scalars

    def evaluate(
        self, prompts: Sequence[Prompt], sampling: SamplingParams, samples: int, batch_size: int
    ) -> dict[str, float]:
        """Mean rewards of completions of held-out `prompts` (no update).

        Greedy when `sampling.temperature` is 0 (one completion per prompt), else
        `samples` completions per prompt. Returns the reward scalars of
        :func:`reward_scalars` and the mean completion length.
        """
        per_prompt = 1 if sampling.temperature == 0 else samples
        scores, lengths = [], []
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            rows = [p.tokens for p in chunk for _ in range(per_prompt)]
            targets = [p.target for p in chunk for _ in range(per_prompt)]
            chunk_sampling = dataclasses.replace(sampling, seed=sampling.seed + start)
            tokens_BN, _, lengths_B = self.sampler.generate_tokens(rows, chunk_sampling)
            texts = completion_texts(self.tokenizer, tokens_BN, lengths_B)
            scores.append(self.rewards.score(texts, targets))
            lengths.append(lengths_B)
        scalars = reward_scalars(self.rewards, np.concatenate(scores))
        scalars["completion_length"] = float(np.concatenate(lengths).mean())
        return scalars


# ---- the experiment ------------------------------------------------------------------------


@dataclasses.dataclass
class GRPOResult:
    """What a run ended with (also written to `workdir/result.json`).

    Attributes:
      workdir: the run's folder.
      step: GRPO steps done.
      eval: the last held-out evaluation's scalars ({} when none ran in this call).
      preempted: the run stopped on SIGTERM.
    """

    workdir: str
    step: int
    eval: dict[str, float]
    preempted: bool


def policy_parts(
    bundle: Bundle, lora: LoraSpec, seed: int, mesh: Mesh, rules: parallel.Rules
) -> tuple[ModelParts, Any]:
    """(parts, trainable params) of a loaded model: all its parameters, or, with
    `lora.rank` > 0, fresh adapters on `lora.targets` over the frozen model."""
    graphdef, base = nnx.split(bundle.model, nnx.Param)
    return trainable_parts(graphdef, base, bundle.config, lora, seed, mesh, rules)


def settings_from_config(cfg: ml_collections.ConfigDict) -> Settings:
    """The Settings of `config.sampling` and `config.grpo`, checked."""
    s, g = cfg.sampling, cfg.grpo
    if s.group_size < 2:
        raise InputError(
            f"config.sampling.group_size={s.group_size}: GRPO compares completions within a "
            "group; use 2 or more"
        )
    if g.iterations < 1:
        raise InputError(f"config.grpo.iterations={g.iterations}: use 1 or more")
    try:
        sampling = SamplingParams(s.max_new_tokens, s.temperature, s.top_k, s.top_p)
    except ValueError as err:
        raise InputError(f"config.sampling: {err}") from None
    try:
        objective = ObjectiveConfig(
            clip_eps=g.clip_eps,
            clip_eps_high=g.clip_eps_high,
            beta=g.beta,
            kl_estimator=g.kl_estimator,
            aggregation=g.aggregation,
            microbatches=g.microbatches,
        )
    except ValueError as err:
        raise InputError(f"config.grpo: {err}") from None
    return Settings(s.group_size, sampling, g.iterations, objective)


def _check_rows(cfg: ml_collections.ConfigDict, mesh: Mesh, rules: parallel.Rules) -> None:
    rows = cfg.grpo.prompts_per_step * cfg.sampling.group_size
    microbatches = cfg.grpo.microbatches
    split = parallel.batch_shards(mesh, rules) * microbatches
    if rows % split:
        raise InputError(
            f"config.grpo.prompts_per_step x config.sampling.group_size = {rows} rows do not "
            f"split into {microbatches} microbatch(es) over {split // microbatches} devices of "
            "the batch axes; change either, or config.mesh"
        )


def _prompt_pools(cfg: ml_collections.ConfigDict, bundle: Bundle):
    corpus_dir = cfg.data.corpus_dir or bundle.corpus.get("corpus_dir", "")
    if not corpus_dir:
        raise InputError(
            f"config.data.corpus_dir is empty and {bundle.path} names no corpus; set it to a "
            "folder built by `c2s corpus build`"
        )
    tasks = tuple(cfg.data.tasks)
    pools = []
    for split, limit in (
        (cfg.data.train_split, cfg.data.train_prompts),
        (cfg.data.eval_split, cfg.data.eval_prompts),
    ):
        pools.append(corpus_prompts(corpus_dir, split, tasks, bundle.tokenizer, limit))
    return pools


def run_grpo(
    cfg: ml_collections.ConfigDict, workdir: str | os.PathLike, strict_restore: bool = False
) -> GRPOResult:
    """Runs (or resumes) the GRPO experiment `cfg` in `workdir` (a local path or a URL).

    A workdir that holds a finished run (its export and `result.json`) is left as it is
    and its stored result returned.

    Args:
      cfg: the GRPO config.
      workdir: the run's folder.
      strict_restore: as for `c2s_jax.train.loop.train`.

    Raises:
      InputError: a setting GRPO cannot run with, or no `init_from`. Besides, what
      `c2s_jax.run.runner.run` raises: a busy workdir, no readable checkpoint, a
      non-finite loss.
    """
    mesh, rules = parallel.config_mesh(cfg)
    _check_rows(cfg, mesh, rules)
    if not cfg.init_from:
        raise InputError(
            "config.init_from is empty: name a training workdir or a model bundle "
            "(`c2s train` exports one at the end of a run)"
        )
    schedule = Schedule(
        steps=cfg.train.steps,
        checkpoint_every=cfg.train.checkpoint_every,
        keep_checkpoints=cfg.train.keep_checkpoints,
        eval_every=cfg.eval.every,
        eval_at_start=True,  # the starting policy's rewards, for comparison
        eval_at_end=True,
    )
    result = run(
        workdir,
        "c2s grpo",
        schedule,
        lambda workdir_path: GRPOJob(cfg, mesh, rules, workdir_path),
        GRPOJob.result,
        "policy",
        strict_restore,
    )
    return GRPOResult(**result)


class GRPOJob:
    """A GRPO experiment one step at a time (see :class:`c2s_jax.run.runner.Job`): the
    policy from `config.init_from`, prompts from its corpus, rollouts seeded per step."""

    progress_keys = ("reward", "tokens_per_s")

    def __init__(
        self,
        cfg: ml_collections.ConfigDict,
        mesh: Mesh,
        rules: parallel.Rules,
        workdir: epath.Path,
    ):
        self._cfg = cfg
        self._workdir = workdir
        self._bundle = load_bundle(cfg.init_from, mesh=mesh, rules=rules)
        parts, params = policy_parts(
            self._bundle, LoraSpec.from_config(cfg.lora), cfg.seed, mesh, rules
        )
        self._train_prompts, self._eval_prompts = _prompt_pools(cfg, self._bundle)
        settings = settings_from_config(cfg)
        longest = max(len(p.tokens) for p in self._train_prompts)
        row_length = -(-(longest + settings.sampling.max_new_tokens - 1) // PROMPT_BUCKET)
        tx, schedule = optimizer_for(cfg.optimizer, cfg.train.steps * settings.iterations)
        self._learner = GRPO(
            parts,
            params,
            tokenizer=self._bundle.tokenizer,
            rewards=build_rewards(cfg.rewards.names, cfg.rewards.weights),
            settings=settings,
            tx=tx,
            schedule=schedule,
            mesh=mesh,
            rules=rules,
            row_length=row_length * PROMPT_BUCKET,
        )
        self._order = PromptOrder(len(self._train_prompts), cfg.grpo.prompts_per_step, cfg.seed)
        self._eval_sampling = dataclasses.replace(
            settings.sampling,
            temperature=cfg.eval.temperature,
            seed=derived_seed(cfg.seed, EVAL_SEED, 0),
        )
        self._step = 0
        self._scalars: dict[str, float] = {}

    @property
    def state(self) -> TrainState:
        """The policy's parameters and optimizer state."""
        return self._learner.state

    def resume(self, restored: Restored) -> None:
        """Continues from a checkpoint's policy and prompt order."""
        self._learner.set_state(restored.state)
        self._order.set_state(restored.data)
        self._step = restored.step

    def step(self) -> None:
        """Samples, scores and updates on the next batch of prompts."""
        prompts = [self._train_prompts[i] for i in next(self._order)]
        self._scalars = self._learner.step(
            prompts, derived_seed(self._cfg.seed, ROLLOUT_SEED, self._step)
        )
        self._step += 1
        if not np.isfinite(self._scalars["loss"]):
            raise NonFiniteLossError(
                f"the GRPO loss is not finite at step {self._step}; lower "
                f"config.optimizer.learning_rate (checkpoints: {self._workdir / 'checkpoints'})"
            )

    def scalars(self, step: int) -> dict[str, float]:
        """The last step's rewards, objective and timings (see :meth:`GRPO.step`)."""
        return self._scalars

    def evaluate(self) -> dict[str, float]:
        """Rewards on the held-out prompts. The same seed at every evaluation, so that
        sampled evaluations of successive policies differ by the policy, not the draws."""
        e = self._cfg.eval
        return self._learner.evaluate(
            self._eval_prompts, self._eval_sampling, e.samples, e.batch_size
        )

    def checkpoint(self, step: int) -> tuple[dict, dict]:
        """The prompt order's position (losses are checked at every step)."""
        return self._order.get_state(), {}

    def export(self, out: Path) -> None:
        """Writes the policy (adapters merged) as a bundle with the base model's tokenizer
        and corpus facts, and its training config beside the GRPO config."""
        bundle, parts = self._bundle, self._learner.parts
        policy = parts.model(self._learner.state.params, parts.frozen)
        export_bundle(
            policy,
            out,
            bundle.tokenizer.path,
            bundle.tokenizer.family,
            bundle.corpus,
            bundle.trained_length,
            {**bundle.training_config, "grpo": json.loads(self._cfg.to_json_best_effort())},
        )

    def result(self, outcome: Outcome) -> dict:
        """The fields of :class:`GRPOResult` but the workdir."""
        return {"step": outcome.step, "eval": outcome.eval, "preempted": outcome.preempted}
