"""A tiny Gemma-2 on synthetic tokens: the smallest complete training run.

    c2s train --config configs/train/gemma2_tiny_synthetic.py --workdir /tmp/c2s_tiny

Expected on a 2-core CPU: 60 steps in well under a minute, a checkpoint every 20 steps
in /tmp/c2s_tiny/checkpoints, metrics in metrics.jsonl and TensorBoard. The synthetic
answers copy Zipf-distributed prompts, so the loss falls below ln(512) = 6.24.
"""

from c2s_jax.train.default_config import default_config


def get_config():
    return default_config()
