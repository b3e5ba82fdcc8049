"""Gemma-2 9B on the C2S corpus, compute-optimal: a real-size point of the scaling ladder.

    c2s corpus build --config CORPUS.py --out corpus_c2s --config.seq_len=8192
    c2s plan --config configs/scaling/gemma2_9b.py --devices 128
    c2s train --config configs/scaling/gemma2_9b.py --workdir runs/gemma2_9b

CORPUS.py lists the datasets and the task mixture (configs/corpus/pbmc68k_multitask.py shows
the fields); a curve point needs 184.8B training tokens, far more than the embedded pbmc68k
data gives.

Slice: TPU v5p-256 (128 chips: v5p names count TensorCores, 2 per chip; 95 GiB HBM each),
FSDP over all 128. 256 x 8,192 tokens per step (2.1M, Pythia's batch in tokens) in 1
microbatch, bfloat16 compute, full remat, scanned layers; 88,136 steps = 184.8B tokens = 20
tokens per parameter (Hoffmann et al. 2022). --config.model.init_from=DIR (an HF Gemma-2
checkpoint) starts from released weights instead, as C2S-Scale does. Produces checkpoints,
metrics.jsonl and result.json (final eval loss, per task too) in the workdir. `c2s plan` on
128 devices (parameters, gradients and AdamW moments in float32):

    9,241,705,984 parameters on mesh {'data': 1, 'fsdp': 128, 'tensor': 1}; per device:
      parameters                    0.269 GiB
      gradients                     0.269 GiB
      optimizer state               0.538 GiB
      activations (estimate)       35.844 GiB
      total                        36.920 GiB
"""

from c2s_jax.train.default_config import default_config


def get_config():
    c = default_config()
    c.model.name = "gemma2_9b"
    c.model.overrides = {"dtype": "bfloat16", "remat": "full", "scan_layers": True}
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, -1, 1
    c.data.source = "corpus"
    c.data.corpus_dir = "corpus_c2s"
    c.data.seq_len = 8192
    c.data.batch_size = 256
    c.data.eval_batches = 10
    c.optimizer.learning_rate = 2e-4
    c.optimizer.warmup_steps = 2000
    # 20 tokens per parameter: 20 x 9,241,705,984 / 2,097,152 tokens per step.
    c.train.steps = 88136
    c.train.microbatches = 1
    c.train.eval_every = 4400
    c.train.checkpoint_every = 4400
    # The slice this file is sized for (read by tests/scaling and bench/bench_scale_cost.py).
    c.target = {"slice": "v5p-256", "chip": "TPU v5p", "devices": 128, "hbm_gib": 95}
    return c
