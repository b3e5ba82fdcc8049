"""`c2s grpo` on the small pbmc68k model: metrics, export, resume after SIGTERM, and the same
steps on 8 virtual devices as on one."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from c2s_jax.checkpoints.bundle import BUNDLE_FILE, load_bundle
from c2s_jax.config_loading import load_config
from c2s_jax.errors import InputError
from c2s_jax.rl import grpo
from c2s_jax.rl.prompts import corpus_prompts
from c2s_jax.run import runner
from c2s_jax.run.checkpoints import Checkpoints
from tests.support.trained_model import pbmc_workdir
from tests.support.virtual_devices import virtual_device_env

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "grpo" / "pbmc68k_cell_type.py"
# Two prompts per step, the same two every step, and a sampled evaluation with as many
# rows: one compiled sampler serves rollouts and evaluations.
SMALL = (
    "grpo.prompts_per_step=2",
    "sampling.group_size=4",
    "sampling.max_new_tokens=8",
    "data.train_prompts=2",
    "data.eval_prompts=2",
    "eval.temperature=1.0",
    "eval.samples=4",
    "eval.every=0",
    "train.steps=2",
    "train.checkpoint_every=1",
)
# What must agree between runs of the same steps.
COMPARED = ("reward", "reward/format", "completion_length", "loss", "kl", "grad_norm")


def small_overrides(*overrides: str) -> list[str]:
    return [*SMALL, f"init_from='{pbmc_workdir()}'", *overrides]


def records(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def by_step(workdir: Path, split: str) -> dict[int, dict]:
    return {r["step"]: r for r in records(workdir) if r["split"] == split}


@pytest.fixture(scope="module")
def two_steps(tmp_path_factory) -> Path:
    """The workdir of a two-step run on one device, stopped by SIGTERM after its first step
    and rerun: the rerun continues from the checkpoint SIGTERM saved."""
    workdir = tmp_path_factory.mktemp("grpo") / "resumed"
    cfg = load_config(CONFIG, small_overrides())
    step = grpo.GRPO.step

    def step_then_sigterm(self, prompts, seed):
        scalars = step(self, prompts, seed)
        os.kill(os.getpid(), signal.SIGTERM)
        return scalars

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(grpo.GRPO, "step", step_then_sigterm)
        interrupted = grpo.run_grpo(cfg, workdir)
    assert interrupted.preempted and interrupted.step == 1
    assert not (workdir / "exports").exists()
    resumed = grpo.run_grpo(cfg, workdir)
    assert resumed.step == 2 and not resumed.preempted
    # A rerun of the finished run returns its stored result and writes nothing.
    stored = (workdir / "result.json").read_bytes()
    assert grpo.run_grpo(cfg, workdir) == resumed
    assert (workdir / "result.json").read_bytes() == stored
    return workdir


@pytest.mark.slow
@pytest.mark.integration
def test_a_run_logs_every_step_evaluates_and_exports_a_loadable_bundle(two_steps):
    train = by_step(two_steps, "train")
    assert sorted(train) == [1, 2]
    for metrics in train.values():
        for name in (*COMPARED, "reward_std", "reward/exact_match", "clip_fraction"):
            assert np.isfinite(metrics[name]), name
        assert metrics["logprob_diff"] < 1e-4  # float32: sampler and trainer agree
        assert metrics["tokens_per_s"] > 0
    # The start is evaluated once, not again on resuming; the end once.
    assert sorted(by_step(two_steps, "eval")) == [0, 2]
    result = json.loads((two_steps / "result.json").read_text())
    assert result["step"] == 2
    assert result["eval"]["reward"] == by_step(two_steps, "eval")[2]["reward"]
    start, tuned = load_bundle(pbmc_workdir()), load_bundle(two_steps)
    assert tuned.corpus == start.corpus and tuned.tokenizer.sha256 == start.tokenizer.sha256
    # The export holds the updated policy, not the starting weights.
    moved = jax.tree.map(
        lambda a, b: not np.array_equal(a, b),
        nnx.state(tuned.model, nnx.Param),
        nnx.state(start.model, nnx.Param),
    )
    assert any(jax.tree.leaves(moved))


@pytest.mark.slow
@pytest.mark.integration
def test_eight_devices_take_the_same_steps_as_one_resumed_device(two_steps, tmp_path):
    """An uninterrupted run on a data x fsdp mesh of 8 virtual devices against the
    interrupted and resumed one-device run: the same prompts, tokens and rewards, and
    losses equal up to float reordering, at both steps (a resume that lost the optimizer
    state or the prompt position would change step 2)."""
    command = [
        sys.executable,
        "-m",
        "c2s_jax",
        "grpo",
        "--config",
        str(CONFIG),
        "--workdir",
        str(tmp_path),
        *(f"--config.{o}" for o in small_overrides("mesh.data=2", "mesh.fsdp=4")),
    ]
    env = virtual_device_env(8)
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    expected, got = by_step(two_steps, "train"), by_step(tmp_path, "train")
    assert sorted(got) == sorted(expected)
    for step in expected:
        for name in COMPARED:
            np.testing.assert_allclose(
                got[step][name], expected[step][name], rtol=2e-4, atol=1e-6, err_msg=name
            )


def test_bad_settings_name_the_config_key(tmp_path):
    def config(*overrides):
        return load_config(CONFIG, list(overrides))

    with pytest.raises(InputError, match=r"config\.sampling\.group_size"):
        grpo.settings_from_config(config("sampling.group_size=1"))
    with pytest.raises(InputError, match=r"config\.grpo: kl_estimator"):
        grpo.settings_from_config(config("grpo.kl_estimator='k2'"))
    with pytest.raises(InputError, match=r"config\.grpo\.prompts_per_step"):
        odd_rows = ("grpo.prompts_per_step=3", "sampling.group_size=3", "grpo.microbatches=2")
        grpo.run_grpo(config(*odd_rows), tmp_path)
    with pytest.raises(InputError, match=r"config\.init_from"):
        grpo.run_grpo(config("init_from=''"), tmp_path)
    with pytest.raises(InputError, match="language_modeling"):
        corpus_prompts(tmp_path, "validation", ["language_modeling"], tokenizer=None)


@pytest.mark.slow
@pytest.mark.integration
def test_a_run_in_a_bucket_writes_everything_there(bucket_root, tmp_path, monkeypatch):
    """GRPO keeps a gs:// workdir a URL (the runner it shares with training), so metrics,
    the export and the result land in the bucket, not in a local './gs:' folder."""
    cfg = load_config(CONFIG, small_overrides("train.steps=1"))  # trains the base model
    # tensorstore writes checkpoint arrays through its own client, which the stand-in
    # bucket cannot serve: checkpoints go to a local folder here.
    monkeypatch.setattr(
        runner, "Checkpoints", lambda directory, keep: Checkpoints(tmp_path / "orbax", keep)
    )
    monkeypatch.chdir(tmp_path)
    result = grpo.run_grpo(cfg, "gs://b/runs/grpo")
    run = bucket_root / "b" / "runs" / "grpo"
    assert result.workdir == "gs://b/runs/grpo" and result.step == 1
    assert json.loads((run / "result.json").read_text())["eval"] == result.eval
    assert sorted(by_step(run, "eval")) == [0, 1]
    assert (run / "exports" / "step_0000001" / BUNDLE_FILE).exists()
    assert not (tmp_path / "gs:").exists()
