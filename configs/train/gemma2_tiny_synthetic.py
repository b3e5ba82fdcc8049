"""A tiny Gemma-2 on synthetic tokens: the smallest complete training run.

    c2s train --config configs/train/gemma2_tiny_synthetic.py --workdir /tmp/c2s_tiny

Expected on a 2-core CPU: 60 steps in well under a minute, a checkpoint every 20 steps
in /tmp/c2s_tiny/checkpoints, metrics in metrics.jsonl and TensorBoard. Random tokens
carry no signal, so the loss only falls from ~ln(512) = 6.24 towards the uniform floor.
"""

import ml_collections

from c2s_jax.parallel import DEFAULT_RULES


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.model = ml_collections.ConfigDict(
        {"name": "gemma2_tiny", "overrides": {"dtype": "float32"}, "init_from": ""}
    )
    c.lora = ml_collections.ConfigDict({"rank": 0, "alpha": 16.0, "targets": ("wq", "wv")})
    c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
    c.dcn_data = 1
    c.rules = tuple(DEFAULT_RULES)
    c.distributed = ml_collections.ConfigDict(
        {"coordinator_address": "", "num_processes": 1, "process_id": 0, "auto": False}
    )
    c.data = ml_collections.ConfigDict(
        {"source": "synthetic", "batch_size": 8, "seq_len": 64, "num_tasks": 2, "eval_batches": 2}
    )
    c.optimizer = ml_collections.ConfigDict(
        {
            "learning_rate": 3e-3,
            "warmup_steps": 10,
            "decay": "cosine",
            "end_factor": 0.1,
            "b1": 0.9,
            "b2": 0.95,
            "eps": 1e-8,
            "weight_decay": 0.1,
            "decay_embeddings": False,
            "clip_norm": 1.0,
        }
    )
    c.train = ml_collections.ConfigDict(
        {
            "steps": 60,
            "microbatches": 1,
            "z_loss_weight": 1e-4,
            "log_every": 10,
            "eval_every": 30,
            "checkpoint_every": 20,
            "keep_checkpoints": 3,
            "peak_flops_per_device": 0.0,
        }
    )
    return c
