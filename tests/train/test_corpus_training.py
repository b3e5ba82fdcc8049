"""Training on the embedded pbmc68k multi-task corpus: the loss falls for both families."""

import numpy as np
import pytest

from c2s_jax.checkpoints.bundle import load_bundle
from c2s_jax.train.loop import train
from tests.support.trained_model import pbmc_run, pbmc_train_config, pbmc_workdir
from tests.support.training import losses


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
    if model:
        workdir = tmp_path
        result = train(pbmc_train_config(*model), workdir)
    else:
        result = pbmc_run()  # the shared run: trained once for every test that needs it
        workdir = pbmc_workdir()
    curve = losses(workdir)
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


def test_a_finished_run_exports_a_bundle_with_tokenizer_and_corpus_facts():
    bundle = load_bundle(pbmc_workdir())
    assert bundle.path.name == "step_0000060"
    assert bundle.tokenizer.family == "c2s"
    dataset = bundle.dataset()
    assert len(dataset["genes"]) == 765 and "slope" in dataset["inverse_fit"]
    assert bundle.config.num_layers == 4


def test_training_reads_the_task_mixture_of_its_config():
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    from c2s_jax.corpus.records import read_metadata
    from c2s_jax.train.data import DataSpec, batch_sources

    cfg = pbmc_train_config("data.task_weights={'cell_type_annotation': 1.0}")
    mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
    train_source, eval_source, tasks = batch_sources(
        DataSpec.from_config(cfg), 4096, NamedSharding(mesh, PartitionSpec("data"))
    )
    assert tasks == read_metadata(cfg.data.corpus_dir)["tasks"]
    annotation = tasks.index("cell_type_annotation")
    batch = next(iter(train_source))
    seen = np.unique(np.asarray(batch["task_id"])[np.asarray(batch["segment_ids"]) > 0])
    assert seen.tolist() == [annotation]
    held = next(iter(eval_source()))  # evaluation keeps the corpus's own mixture
    assert len(np.unique(np.asarray(held["task_id"])[np.asarray(held["segment_ids"]) > 0])) > 1
