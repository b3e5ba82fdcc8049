"""Pythia-160M on the C2S corpus, compute-optimal: a real-size point of the scaling ladder.

    c2s corpus build --config CORPUS.py --out corpus_c2s --config.seq_len=2048
    c2s plan --config configs/scaling/pythia_160m.py --compile
    c2s train --config configs/scaling/pythia_160m.py --workdir runs/pythia_160m

CORPUS.py lists the datasets and the task mixture (configs/corpus/pbmc68k_multitask.py shows
the fields); a curve point needs 3.2B training tokens, far more than the embedded pbmc68k
data gives.

Slice: TPU v5e-16 (16 chips; 16 GiB HBM each), FSDP over 4 chips x data parallel over 4
(FSDP over all 16 chips of the 4 x 4 torus compiles gradient reduce-scatters to all-reduces
and weight gathers to collective-permutes). 1,024 x 2,048 tokens per step (2.1M, Pythia's
batch) in 4 microbatches, bfloat16 compute, full remat, scanned layers; 1,548 steps = 3.2B
tokens = 20 tokens per parameter (Hoffmann et al. 2022). Produces checkpoints, metrics.jsonl
and result.json (final eval loss, per task too) in the workdir.

`c2s plan --config configs/scaling/pythia_160m.py --compile` (the TPU compiler's report for
this slice):

    162,322,944 parameters on a data 4 x fsdp 4 x tensor 1 mesh
    memory per chip 7.95 GiB of 16 (arguments 0.48, temporaries 7.47)
    compiled FLOPs 1.379 x the model's; per step 2117 all-gather, 96 reduce-scatter,
    352 all-reduce
"""

from c2s_jax.train.default_config import default_config


def get_config():
    c = default_config()
    c.model.name = "pythia_160m"
    c.model.overrides = {"dtype": "bfloat16", "remat": "full", "scan_layers": True}
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 4, 4, 1
    c.data.source = "corpus"
    c.data.corpus_dir = "corpus_c2s"
    c.data.seq_len = 2048
    c.data.batch_size = 1024
    c.data.eval_batches = 10
    c.optimizer.learning_rate = 6e-4
    c.optimizer.warmup_steps = 150
    # 20 tokens per parameter: 20 x 162,322,944 / 2,097,152 tokens per step.
    c.train.steps = 1548
    c.train.microbatches = 4
    c.train.eval_every = 500
    c.train.checkpoint_every = 500
    # The slice this file is sized for (read by tests/scaling and bench/bench_scale_cost.py).
    c.target = {"slice": "v5e-16", "chip": "TPU v5e", "devices": 16, "hbm_gib": 16}
    return c
