"""Gemma-2 9B on the C2S corpus, compute-optimal: a real-size point of the scaling ladder.

    c2s corpus build --config CORPUS.py --out corpus_c2s --config.seq_len=8192
    c2s plan --config configs/scaling/gemma2_9b.py --compile
    c2s train --config configs/scaling/gemma2_9b.py --workdir runs/gemma2_9b

CORPUS.py lists the datasets and the task mixture (configs/corpus/pbmc68k_multitask.py shows
the fields); a curve point needs 184.8B training tokens, far more than the embedded pbmc68k
data gives.

Slice: TPU v5p-256 (128 chips: v5p names count TensorCores, 2 per chip; 95 GiB HBM each),
FSDP over 32 chips x data parallel over 4: each group of 32 is a 4 x 8 plane of the 4 x 4 x
8 torus, within which weights are all-gathered and gradients reduce-scattered (FSDP over all
128 chips spans the whole torus, and the compiler moves both as all-reduces). 256 x 8,192
tokens per step (2.1M, Pythia's batch in tokens) in 1 microbatch, bfloat16 compute, full
remat, scanned layers; 88,136 steps = 184.8B tokens = 20 tokens per parameter (Hoffmann et
al. 2022). --config.model.init_from=DIR (an HF Gemma-2 checkpoint) starts from released
weights instead, as C2S-Scale does. Produces checkpoints, metrics.jsonl and result.json
(final eval loss, per task too) in the workdir.

`c2s plan --config configs/scaling/gemma2_9b.py --compile` (the TPU compiler's report for
this slice):

    9,241,705,984 parameters on a data 4 x fsdp 32 x tensor 1 mesh
    memory per chip 27.04 GiB of 95 (arguments 3.23, temporaries 23.81)
    compiled FLOPs 1.352 x the model's; per step 758 all-gather, 294 reduce-scatter,
    90 all-reduce
"""

from c2s_jax.train.default_config import default_config


def get_config():
    c = default_config()
    c.model.name = "gemma2_9b"
    c.model.overrides = {"dtype": "bfloat16", "remat": "full", "scan_layers": True}
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 4, 32, 1
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
