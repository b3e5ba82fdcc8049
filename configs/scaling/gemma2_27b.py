"""Gemma-2 27B on the C2S corpus, compute-optimal: a real-size point of the scaling ladder.

    c2s corpus build --config CORPUS.py --out corpus_c2s --config.seq_len=8192
    c2s plan --config configs/scaling/gemma2_27b.py --compile
    c2s train --config configs/scaling/gemma2_27b.py --workdir runs/gemma2_27b

CORPUS.py lists the datasets and the task mixture (configs/corpus/pbmc68k_multitask.py shows
the fields); a curve point needs 544.5B training tokens, far more than the embedded pbmc68k
data gives.

Slice: TPU v5p-512 (256 chips: v5p names count TensorCores, 2 per chip; 95 GiB HBM each),
FSDP over 64 x tensor parallel over 4: each layer's weight all-gather spans 64 chips instead
of 256, and every device keeps 4 rows of the batch. 256 x 8,192 tokens per step (2.1M,
Pythia's batch in tokens) in 1 microbatch, bfloat16 compute, full remat, scanned layers;
259,658 steps = 544.5B tokens = 20 tokens per parameter (Hoffmann et al. 2022).
--config.model.init_from=DIR (an HF Gemma-2 checkpoint) starts from released weights
instead, as C2S-Scale does. Produces checkpoints, metrics.jsonl and result.json (final eval
loss, per task too) in the workdir.

`c2s plan --config configs/scaling/gemma2_27b.py --compile` (the TPU compiler's report for
this slice):

    27,227,128,320 parameters on a data 1 x fsdp 64 x tensor 4 mesh
    memory per chip 34.01 GiB of 95 (arguments 1.19, temporaries 32.82)
    compiled FLOPs 1.337 x the model's; per step 830 all-gather, 138 reduce-scatter,
    456 all-reduce
"""

from c2s_jax.train.default_config import default_config


def get_config():
    c = default_config()
    c.model.name = "gemma2_27b"
    c.model.overrides = {"dtype": "bfloat16", "remat": "full", "scan_layers": True}
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, -1, 4
    c.data.source = "corpus"
    c.data.corpus_dir = "corpus_c2s"
    c.data.seq_len = 8192
    c.data.batch_size = 256
    c.data.eval_batches = 10
    c.optimizer.learning_rate = 1.5e-4
    c.optimizer.warmup_steps = 2000
    # 20 tokens per parameter: 20 x 27,227,128,320 / 2,097,152 tokens per step.
    c.train.steps = 259658
    c.train.microbatches = 1
    c.train.eval_every = 13000
    c.train.checkpoint_every = 13000
    # The slice this file is sized for (read by tests/scaling and bench/bench_scale_cost.py).
    c.target = {"slice": "v5p-512", "chip": "TPU v5p", "devices": 256, "hbm_gib": 95}
    return c
