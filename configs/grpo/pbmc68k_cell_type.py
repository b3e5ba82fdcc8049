"""GRPO on cell type annotation for the small Gemma-2 of the README's main job.

    c2s demo   # or the two commands in configs/train/gemma2_pbmc68k.py
    c2s grpo --config configs/grpo/pbmc68k_cell_type.py --workdir c2s_demo_out/grpo

Samples 8 answers to each of 8 validation-split annotation prompts per step, rewards the
exact label (1) and a well-formed one (0.1), and takes one full-parameter update per batch
with a k3 KL penalty (beta 0.04) to the starting model. Held out: greedy answers to the
test split's annotation prompts, every 10 steps. metrics.jsonl has each step's rewards,
KL, clip fraction, sampler-vs-trainer log-prob difference and tokens/s; the end exports a
bundle to c2s_demo_out/grpo/exports/. Expected, from a base that answers with labels: the
held-out exact match rises by a few points while the KL stays below 0.1 nats per token
(bench/bench_grpo.py: 0.60 -> 0.68 and 0.70 -> 0.73 for two bases, about 3-5 s a step on a
2-core CPU). A base that has not yet learned to answer with a label (the 60-step test
model) gets no exact-match signal to learn from.
"""

from c2s_jax.rl.default_config import default_config


def get_config():
    c = default_config()
    c.init_from = "c2s_demo_out/train"
    c.data.tasks = ("cell_type_annotation",)
    c.sampling.max_new_tokens = 16
    c.optimizer.learning_rate = 3e-4
    c.train.steps = 60
    c.train.checkpoint_every = 20
    c.eval.every = 10
    return c
