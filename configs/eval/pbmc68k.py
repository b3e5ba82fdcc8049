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

from c2s_jax.evaluate.default_config import default_eval_config


def get_config() -> ml_collections.ConfigDict:
    # The defaults are this evaluation: genes per cell within the demo corpus's 20-40.
    return default_eval_config()
