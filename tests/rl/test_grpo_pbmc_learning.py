"""GRPO raises held-out cell type annotation accuracy of the small pbmc68k model (slow:
about 5 minutes on 2 CPU cores; bench/bench_grpo.py measures the same recipe across seeds)."""

import json

import pytest

from c2s_jax.config_loading import load_config
from c2s_jax.corpus.config import corpus_spec
from c2s_jax.corpus.records import build_corpus
from c2s_jax.rl.grpo import run_grpo
from c2s_jax.train.loop import train
from tests.support.corpus_helpers import scratch_dir, small_config
from tests.support.trained_model import ROOT, pbmc_train_config

CONFIG = ROOT / "configs" / "grpo" / "pbmc68k_cell_type.py"


@pytest.mark.slow
def test_grpo_raises_held_out_accuracy_with_bounded_kl():
    scratch = scratch_dir()
    corpus_cfg = small_config(top_k=(50, 100))
    corpus_cfg.tasks = {task: float(task == "cell_type_annotation") for task in corpus_cfg.tasks}
    corpus_cfg.examples = dict(train=1200, validation=120, test=120)
    build_corpus(corpus_spec(corpus_cfg), scratch / "corpus", progress=False)
    base = train(
        pbmc_train_config(
            f"data.corpus_dir='{scratch / 'corpus'}'", "train.steps=200", "data.batch_size=8"
        ),
        scratch / "base",
    )
    cfg = load_config(
        CONFIG,
        [f"init_from='{base.workdir}'", "train.steps=20", "eval.every=0", "data.eval_prompts=0"],
    )
    run_grpo(cfg, scratch / "grpo")
    lines = [json.loads(x) for x in (scratch / "grpo" / "metrics.jsonl").read_text().splitlines()]
    held_out = {r["step"]: r["reward/exact_match"] for r in lines if r["split"] == "eval"}
    kl = [r["kl"] for r in lines if r["split"] == "train"]
    # Greedy answers to the 120 test-split prompts: 0.60 at the start; BENCHMARKS.md has
    # this base at 0.68 after 30 steps with either GRPO seed (one binomial std is 0.045).
    assert held_out[20] >= held_out[0] + 0.04
    assert max(kl) < 0.2
