"""Pythia-410M on the C2S corpus, compute-optimal: a real-size point of the scaling ladder.

    c2s corpus build --config CORPUS.py --out corpus_c2s --config.seq_len=2048
    c2s plan --config configs/scaling/pythia_410m.py --compile
    c2s train --config configs/scaling/pythia_410m.py --workdir runs/pythia_410m

CORPUS.py lists the datasets and the task mixture (configs/corpus/pbmc68k_multitask.py shows
the fields); a curve point needs 8.1B training tokens, far more than the embedded pbmc68k
data gives.

Slice: TPU v5e-32 (32 chips; 16 GiB HBM each), FSDP over 8 chips x data parallel over 4
(FSDP over all 32 chips of the 4 x 8 torus compiles gradient reduce-scatters to all-reduces
and weight gathers to collective-permutes). 1,024 x 2,048 tokens per step (2.1M, Pythia's
batch) in 4 microbatches, bfloat16 compute, full remat, scanned layers; 3,866 steps = 8.1B
tokens = 20 tokens per parameter (Hoffmann et al. 2022). Produces checkpoints, metrics.jsonl
and result.json (final eval loss, per task too) in the workdir.

`c2s plan --config configs/scaling/pythia_410m.py --compile` (the TPU compiler's report for
this slice):

    405,334,016 parameters on a data 4 x fsdp 8 x tensor 1 mesh
    memory per chip 6.77 GiB of 16 (arguments 0.57, temporaries 6.20)
    compiled FLOPs 1.333 x the model's; per step 5869 all-gather, 96 reduce-scatter,
    396 all-reduce
"""

from c2s_jax.train.default_config import default_config


def get_config():
    c = default_config()
    c.model.name = "pythia_410m"
    c.model.overrides = {"dtype": "bfloat16", "remat": "full", "scan_layers": True}
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 4, 8, 1
    c.data.source = "corpus"
    c.data.corpus_dir = "corpus_c2s"
    c.data.seq_len = 2048
    c.data.batch_size = 1024
    c.data.eval_batches = 10
    c.optimizer.learning_rate = 3e-4
    c.optimizer.warmup_steps = 400
    # 20 tokens per parameter: 20 x 405,334,016 / 2,097,152 tokens per step.
    c.train.steps = 3866
    c.train.microbatches = 4
    c.train.eval_every = 500
    c.train.checkpoint_every = 500
    # The slice this file is sized for (read by tests/scaling and bench/bench_scale_cost.py).
    c.target = {"slice": "v5e-32", "chip": "TPU v5e", "devices": 32, "hbm_gib": 16}
    return c
