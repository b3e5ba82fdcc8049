"""Synthetic sweeps with known constants, written as a sweep's results.jsonl."""

import json

import numpy as np
import pytest

# Hoffmann et al. (2022)-like constants; N non-embedding parameters, D tokens.
TRUTH = {"E": 1.7, "A": 400.0, "alpha": 0.34, "B": 410.0, "beta": 0.28}


def true_loss(n_params, tokens=None):
    loss = TRUTH["E"] + TRUTH["A"] * np.asarray(n_params, float) ** -TRUTH["alpha"]
    if tokens is not None:
        loss = loss + TRUTH["B"] * np.asarray(tokens, float) ** -TRUTH["beta"]
    return loss


def grid_points(noise: float = 0.015, seed: int = 0):
    """(N [P], D [P], L [P]) on a 7 x 6 grid of sizes and token counts, multiplicative noise."""
    n_NG, d_NG = np.meshgrid(np.geomspace(1e7, 3e9, 7), np.geomspace(3e8, 1e12, 6))
    n_params, tokens = n_NG.ravel(), d_NG.ravel()
    rng = np.random.default_rng(seed)
    return (
        n_params,
        tokens,
        true_loss(n_params, tokens) * np.exp(rng.normal(0, noise, n_params.size)),
    )


def record(name, n_params, tokens, loss, **changes) -> dict:
    """One results.jsonl line as a sweep writes it."""
    line = {
        "name": name,
        "n_params": int(n_params),
        "n_params_total": int(n_params * 1.3),
        "tokens": int(tokens),
        "flops": 6.0 * n_params * tokens,
        "loss": float(loss),
        "task_loss": {"cell_type_annotation": float(loss) * 1.1, "qa": float(loss) * 0.9},
        "config": {"model": {"name": name}},
    }
    line.update(changes)
    return line


def write_results(path, records, tail: str = "") -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    return str(path)


@pytest.fixture
def grid_results(tmp_path) -> str:
    """A results.jsonl over the 7 x 6 grid (2 % noise)."""
    n_params, tokens, loss = grid_points(noise=0.02, seed=3)
    records = [
        record(f"run{i}", n, d, value)
        for i, (n, d, value) in enumerate(zip(n_params, tokens, loss, strict=True))
    ]
    return write_results(tmp_path / "results.jsonl", records)
