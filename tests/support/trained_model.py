"""One small model trained on the embedded pbmc68k corpus, shared by the tests that use a
trained model (training, generation, evaluation, GRPO); trained once per test process."""

import functools
from pathlib import Path

import numpy as np

from c2s_jax.config_loading import load_config
from tests.support.corpus_helpers import neox_corpus, pbmc_corpus, scratch_dir

ROOT = Path(__file__).resolve().parents[2]
PBMC_TRAIN = ROOT / "configs" / "train" / "gemma2_pbmc68k.py"
SMALL_RUN = (
    "data.task_weights={}",  # the test corpora's own mixtures
    "data.batch_size=4",
    "data.seq_len=256",
    "data.eval_batches=1",
    "train.steps=60",
    "train.log_every=1",
    "train.eval_every=60",
    "train.checkpoint_every=60",
    "optimizer.warmup_steps=5",
    "optimizer.learning_rate=1e-2",
)


def pbmc_train_config(*overrides: str):
    """The README's experiment shrunk to a minute of CPU, on the small test corpus."""
    return load_config(PBMC_TRAIN, [*SMALL_RUN, f"data.corpus_dir='{pbmc_corpus()}'", *overrides])


@functools.cache
def pbmc_run():
    """The TrainResult of a Gemma-2 trained by :func:`pbmc_train_config` (with its export)."""
    from c2s_jax.train.loop import train

    return train(pbmc_train_config(), scratch_dir() / "pbmc_gemma2")


def pbmc_workdir() -> Path:
    """The workdir of :func:`pbmc_run`."""
    return Path(pbmc_run().workdir)


@functools.cache
def neox_pythia_run() -> Path:
    """A tiny Pythia trained 4 steps on the NeoX-tokenized corpus (its workdir)."""
    from c2s_jax.train.loop import train

    cfg = load_config(
        PBMC_TRAIN,
        [
            "model.name='pythia_tiny'",
            "model.overrides={'vocab_size': 640, 'dtype': 'float32'}",
            f"data.corpus_dir='{neox_corpus()}'",
            "data.task_weights={}",
            "data.batch_size=4",
            "data.seq_len=256",
            "data.eval_batches=1",
            "train.steps=4",
            "train.eval_every=4",
            "train.checkpoint_every=4",
        ],
    )
    workdir = scratch_dir() / "neox_pythia"
    assert np.isfinite(train(cfg, workdir).train_loss)
    return workdir
