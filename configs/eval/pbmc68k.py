"""Evaluate the README's main-job model on the embedded pbmc68k data.

Run:
  c2s eval --config configs/eval/pbmc68k.py --config.checkpoint=c2s_demo_out/train \\
      --out c2s_demo_out/eval

Writes c2s_demo_out/eval/report.md (+ metrics.json, predictions.h5ad, annotation.png,
question_answering.png, generation.png): cell type and tissue annotation on the held-out
cells (generation and likelihood ranking) beside logistic regression, kNN and the majority
label; question answering per question kind (most expressed gene, is a gene expressed,
cell type multiple choice) beside chance; every accuracy with its 95% Wilson interval
(pbmc68k has one tissue, so tissue inference is marked trivial); conditioned generation
per cell type (scFID in the model's embedding and in PCA, MMD, kNN label accuracy, gene
validity, mean-expression correlation) beside a real-vs-real noise floor. predictions.h5ad
holds every evaluated cell's truth and predictions (obs), its log10-normalized expression
(X) and PCA (obsm['X_pca']). pbmc68k has no perturbations, so that section says so. A
few minutes on 2 CPU cores.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.checkpoint = "c2s_demo_out/train"  # a model bundle or a training workdir
    c.dataset = ""  # which of the corpus's datasets ('' = the only one)
    c.seed = 0
    c.annotation = dict(
        enabled=True,
        splits=("test",),
        top_k=30,  # within the corpus's 20-40 genes per cell
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
        top_k=0,
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
        seed=0,
    )
    return c
