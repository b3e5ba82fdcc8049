"""Multi-task corpus of the embedded pbmc68k data (700 PBMCs), with a gene-aware tokenizer.

Run:
  c2s corpus build --config configs/corpus/pbmc68k_multitask.py --out corpus_pbmc68k

Produces corpus_pbmc68k/: a SentencePiece tokenizer trained on the corpus text with every
gene symbol as one piece (tokenizer/c2s.model), ArrayRecord shards (records/, a TFDS
dataset per part), corpus.json (genes, vocabulary counts, inverse fit, tokenizer path and
sha256, config, split sizes, task counts) and cells.parquet (each cell's split). About
10 s on 2 CPU cores; the command prints each task's share of the training examples beside
its weight. pbmc68k has no spatial coordinates, perturbations or study text, so those
tasks have weight 0 here; give them weight with datasets that hold them (see the
DatasetSpec fields in c2s_jax/corpus/config.py).
"""

import ml_collections

from c2s_jax.corpus.config import default_corpus_config


def get_config() -> ml_collections.ConfigDict:
    config = default_corpus_config()
    config.datasets = [
        dict(
            name="pbmc68k",
            path="embedded:pbmc68k",
            cell_type_key="cell_type",
            tissue_key="tissue",
            organism_key="organism",
            group_keys=("cell_type",),
        )
    ]
    config.tasks.update(
        cell_type_annotation=3.0,
        tissue_inference=1.0,
        conditional_generation=2.0,
        multi_cell_context=1.0,
        question_answering=2.0,
    )
    return config
