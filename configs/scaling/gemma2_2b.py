"""Gemma-2 2B on the C2S corpus, compute-optimal: a real-size point of the scaling ladder.

    c2s corpus build --config CORPUS.py --out corpus_c2s --config.seq_len=8192
    c2s plan --config configs/scaling/gemma2_2b.py --compile
    c2s train --config configs/scaling/gemma2_2b.py --workdir runs/gemma2_2b

CORPUS.py lists the datasets and the task mixture (configs/corpus/pbmc68k_multitask.py shows
the fields); a curve point needs 52.3B training tokens, far more than the embedded pbmc68k
data gives.

Slice: TPU v5p-128 (64 chips: v5p names count TensorCores, 2 per chip; 95 GiB HBM each),
FSDP over 16 chips x data parallel over 4: each group of 16 is a 4 x 4 plane of the 4 x 4 x
4 torus, within which weights are all-gathered and gradients reduce-scattered (FSDP over all
64 chips spans the whole torus, and the compiler moves both as all-reduces). 256 x 8,192
tokens per step (2.1M, Pythia's batch in tokens) in 1 microbatch, bfloat16 compute, full
remat, scanned layers; 24,932 steps = 52.3B tokens = 20 tokens per parameter (Hoffmann et
al. 2022). --config.model.init_from=DIR (an HF Gemma-2 checkpoint) starts from released
weights instead, as C2S-Scale does. Produces checkpoints, metrics.jsonl and result.json
(final eval loss, per task too) in the workdir.

`c2s plan --config configs/scaling/gemma2_2b.py --compile` (the TPU compiler's report for
this slice):

    2,614,341,888 parameters on a data 4 x fsdp 16 x tensor 1 mesh
    memory per chip 14.33 GiB of 95 (arguments 1.83, temporaries 12.50)
    compiled FLOPs 1.370 x the model's; per step 470 all-gather, 156 reduce-scatter,
    58 all-reduce
"""

from c2s_jax.train.default_config import default_config


def get_config():
    c = default_config()
    c.model.name = "gemma2_2b"
    c.model.overrides = {"dtype": "bfloat16", "remat": "full", "scan_layers": True}
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 4, 16, 1
    c.data.source = "corpus"
    c.data.corpus_dir = "corpus_c2s"
    c.data.seq_len = 8192
    c.data.batch_size = 256
    c.data.eval_batches = 10
    c.optimizer.learning_rate = 3e-4
    c.optimizer.warmup_steps = 2000
    # 20 tokens per parameter: 20 x 2,614,341,888 / 2,097,152 tokens per step.
    c.train.steps = 24932
    c.train.microbatches = 1
    c.train.eval_every = 1200
    c.train.checkpoint_every = 1200
    # The slice this file is sized for (read by tests/scaling and bench/bench_scale_cost.py).
    c.target = {"slice": "v5p-128", "chip": "TPU v5p", "devices": 64, "hbm_gib": 95}
    return c
