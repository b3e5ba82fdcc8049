"""A small Gemma-2 trained on the multi-task pbmc68k corpus: the README's main job.

    c2s corpus build --config configs/corpus/pbmc68k_multitask.py --out c2s_demo_out/corpus \\
        --config.seq_len=512 "--config.top_k=(50,100)" "--config.cells_per_example=(3,5)" \\
        "--config.examples={'train':3000,'validation':200,'test':200}"
    c2s train --config configs/train/gemma2_pbmc68k.py --workdir c2s_demo_out/train

(`c2s demo` runs both after the data stage.) Expected on a 2-core CPU: 120 steps of
8 x 512 tokens in a few minutes; the answer-token loss falls from ~7.5 (uniform over
~1,900 pieces) to ~6, with per-task evaluation losses in metrics.jsonl and TensorBoard.
Rerunning the train command resumes from the last checkpoint.
"""

import ml_collections

from c2s_jax.parallel import DEFAULT_RULES


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.model = ml_collections.ConfigDict(
        {
            "name": "gemma2_tiny",
            # Gemma-2's architecture at laptop size; the vocabulary covers the corpus
            # tokenizer (about 2,000 pieces).
            "overrides": {
                "d_model": 128,
                "num_layers": 4,
                "num_heads": 4,
                "num_kv_heads": 2,
                "head_dim": 32,
                "mlp_dim": 512,
                "query_pre_attn_scalar": 32,
                "vocab_size": 2304,
                "sliding_window": 512,
                "dtype": "float32",
            },
            "init_from": "",
        }
    )
    c.lora = ml_collections.ConfigDict({"rank": 0, "alpha": 16.0, "targets": ("wq", "wv")})
    c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
    c.dcn_data = 1
    c.rules = tuple(DEFAULT_RULES)
    c.distributed = ml_collections.ConfigDict(
        {"coordinator_address": "", "num_processes": 1, "process_id": 0, "auto": False}
    )
    c.data = ml_collections.ConfigDict(
        {
            "source": "corpus",
            "corpus_dir": "c2s_demo_out/corpus",
            "batch_size": 8,
            "seq_len": 512,
            "eval_batches": 4,
            "worker_count": 0,
        }
    )
    c.optimizer = ml_collections.ConfigDict(
        {
            "learning_rate": 3e-3,
            "warmup_steps": 20,
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
            "steps": 120,
            "microbatches": 1,
            "z_loss_weight": 1e-4,
            "log_every": 10,
            "eval_every": 60,
            "checkpoint_every": 60,
            "keep_checkpoints": 2,
            "peak_flops_per_device": 0.0,
        }
    )
    return c
