"""Evaluation metrics: scFID and embedders, distribution comparisons of generated cells,
cell-type annotation scores and baselines, and perturbation-response scores."""
