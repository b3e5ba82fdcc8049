"""The defaults every evaluation config starts from; configs/eval/ files change a few fields.

def get_config():
    c = default_eval_config()
    c.checkpoint = "runs/my_model/train"
    c.perturbation.top_de = 100
    return c
"""

import ml_collections


def default_eval_config() -> ml_collections.ConfigDict:
    """Every evaluation key at its default: each task's part enabled, on the held-out cells
    of the model's corpus, sized for a 2-core CPU."""
    c = ml_collections.ConfigDict()
    c.checkpoint = "c2s_demo_out/train"  # a model bundle or a training workdir
    c.dataset = ""  # which of the corpus's datasets ('' = the only one)
    c.seed = 0
    c.annotation = dict(
        enabled=True,
        splits=("test",),
        top_k=30,  # genes per cell, within the corpus's top_k range
        max_cells=0,  # 0 = every held-out cell
        max_new_tokens=24,
        batch_size=32,
        zero_shot=True,
        knn_k=5,
        synonyms={},
        seed=0,
    )
    c.question_answering = dict(
        enabled=True,
        splits=("test",),
        top_k=30,
        max_cells=0,  # 0 = every held-out cell; one question of each kind per cell
        max_new_tokens=16,
        batch_size=32,
        seed=0,
    )
    c.generation = dict(
        enabled=True,
        field="cell_type",
        splits=("validation", "test"),
        min_cells=5,
        cells_per_condition=20,
        num_genes=40,
        temperature=1.0,
        top_k=0,  # top-k sampling (0 = off), not genes per cell
        top_p=0.95,
        pca_components=20,
        knn_k=5,
        seed=0,
    )
    c.perturbation = dict(
        enabled=True,
        splits=("validation", "test"),
        num_genes=100,
        max_cells_per_pair=16,
        temperature=0.0,
        top_p=1.0,
        top_de=20,
        batch_size=32,
        pca_components=10,  # PCA of the distribution metrics (MMD, scFID)
        pca_cells=2000,  # training-split cells that PCA is fitted on
        seed=0,
    )
    return c
