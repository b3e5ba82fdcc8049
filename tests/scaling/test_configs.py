"""Every real-size experiment in configs/scaling fits the HBM of the slice it names."""

import re
from pathlib import Path

import pytest

from c2s_jax import parallel
from c2s_jax.config_loading import load_config
from c2s_jax.train.memory_plan import GIB, plan_memory
from c2s_jax.train.state import model_config

CONFIGS = sorted((Path(__file__).parents[2] / "configs" / "scaling").glob("*.py"))
HBM_GIB = {"TPU v5e": 16, "TPU v5p": 95}


def test_the_ladder_is_there():
    names = {p.stem for p in CONFIGS}
    assert names >= {
        "pythia_160m",
        "pythia_410m",
        "pythia_1b",
        "gemma2_2b",
        "gemma2_9b",
        "gemma2_27b",
    }


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_plan_fits_the_named_slice_and_matches_the_docstring(path):
    cfg = load_config(path)
    target = cfg.target
    assert target.hbm_gib == HBM_GIB[target.chip]
    shape = parallel.mesh_shape(dict(cfg.mesh), target.devices)
    plan = plan_memory(cfg, dict(zip(parallel.MESH_AXES, shape, strict=True)))
    assert plan.total <= target.hbm_gib * GIB
    text = path.read_text()
    assert f"TPU {target.slice} " in text
    assert f"--devices {target.devices}" in text
    documented = re.search(r"^\s+total\s+([\d.]+) GiB$", text, re.M)
    assert documented, "the docstring holds the `c2s plan` table"
    assert float(documented.group(1)) == pytest.approx(plan.total / GIB, abs=1e-3)
    assert f"{plan.n_params:,} parameters on mesh" in text


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_real_size_training_settings(path):
    cfg = load_config(path)
    model = model_config(cfg)
    assert (model.dtype, model.param_dtype) == ("bfloat16", "float32")
    assert model.remat != "none" and model.scan_layers
    assert cfg.data.source == "corpus"
    tokens_per_step = cfg.data.batch_size * cfg.data.seq_len
    assert 1e6 <= tokens_per_step <= 4e6
    shape = dict(
        zip(
            parallel.MESH_AXES, parallel.mesh_shape(dict(cfg.mesh), cfg.target.devices), strict=True
        )
    )
    assert cfg.data.batch_size % (shape["data"] * shape["fsdp"] * cfg.train.microbatches) == 0
    # A compute-optimal point: 20 training tokens per parameter.
    n_params = plan_memory(cfg, shape).n_params
    assert cfg.train.steps * tokens_per_step == pytest.approx(20 * n_params, rel=1e-3)
