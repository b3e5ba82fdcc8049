"""Scaling laws: sweeps of experiments (spec.py expands them, local.py and tpu.py run
them), their results (results.py, one JSON object per member), the power-law fits of loss
against parameters and tokens with their compute-optimal allocation (law.py), and the
plots (plot.py)."""
