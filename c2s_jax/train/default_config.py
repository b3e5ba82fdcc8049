"""The defaults every training experiment starts from; experiment files change a few fields.

def get_config():
    c = default_config()
    c.model.name = "gemma2_2b"
    ...
    return c
"""

import ml_collections

from c2s_jax.parallel import DEFAULT_RULES


def default_config() -> ml_collections.ConfigDict:
    """A complete training config: a tiny Gemma-2 on synthetic data, AdamW, one host."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    # model.overrides: any field of the registry config (d_model, vocab_size, dtype, remat,
    # ...); model.init_from: an HF checkpoint folder to start from.
    c.model = ml_collections.ConfigDict(
        {"name": "gemma2_tiny", "overrides": {"dtype": "float32"}, "init_from": ""}
    )
    # lora.rank > 0 trains adapters on lora.targets only, with the base frozen.
    c.lora = ml_collections.ConfigDict({"rank": 0, "alpha": 16.0, "targets": ("wq", "wv")})
    c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
    c.dcn_data = 1
    c.rules = tuple(DEFAULT_RULES)
    c.distributed = ml_collections.ConfigDict(
        {"coordinator_address": "", "num_processes": 1, "process_id": 0, "auto": False}
    )
    # data.source: 'corpus' (data.corpus_dir from `c2s corpus build`) or 'synthetic'.
    # data.task_weights: task -> weight, to train on another mixture than the corpus's
    # (empty: the corpus's own; a corpus task left out is not trained on).
    c.data = ml_collections.ConfigDict(
        {
            "source": "synthetic",
            "corpus_dir": "",
            "batch_size": 8,
            "seq_len": 64,
            "num_tasks": 2,
            "eval_batches": 2,
            "worker_count": 0,
            "pack_window": 4096,
            "task_weights": {},
        }
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
