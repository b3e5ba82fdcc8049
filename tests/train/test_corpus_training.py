"""Training on the embedded pbmc68k multi-task corpus: the loss falls for both families."""

import numpy as np
import pytest

from c2s_jax.config_loading import load_config
from c2s_jax.train.loop import train
from tests.data.corpus_helpers import pbmc_corpus
from tests.train.conftest import ROOT, losses

PBMC = ROOT / "configs" / "train" / "gemma2_pbmc68k.py"
SMALL = (
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


@pytest.mark.parametrize(
    "model",
    [
        (),
        (
            "model.name=pythia_tiny",
            "model.overrides={'d_model': 64, 'num_layers': 2, 'num_heads': 4, 'mlp_dim': 256,"
            " 'vocab_size': 2048, 'dtype': 'float32'}",
        ),
    ],
    ids=["gemma2", "pythia"],
)
def test_loss_falls_on_the_pbmc_corpus(model, tmp_path):
    cfg = load_config(PBMC, [*SMALL, f"data.corpus_dir='{pbmc_corpus()}'", *model])
    result = train(cfg, tmp_path)
    curve = losses(tmp_path)
    # From ~ln(vocabulary) at initialization to well below it: more than a nat lower.
    assert np.mean([curve[s] for s in range(51, 61)]) < curve[1] - 1.0, curve
    assert set(result.eval_task_loss) <= {
        "cell_type_annotation",
        "tissue_inference",
        "conditional_generation",
        "multi_cell_context",
        "question_answering",
    }
    assert result.eval_task_loss
