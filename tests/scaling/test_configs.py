"""Every real-size experiment in configs/scaling: a compute-optimal point on the slice it
names, and (marked tpu_compile, a separate CI step) compiled by the TPU compiler for that
slice, where it fits with the memory its docstring states."""

import re
from pathlib import Path

import pytest

from c2s_jax import parallel
from c2s_jax.accelerators import parse_accelerator
from c2s_jax.config_loading import load_config
from c2s_jax.models import count_params
from c2s_jax.plan.compiled import FIT_FRACTION, plan_compiled
from c2s_jax.train.flops import peak_flops
from c2s_jax.train.state import ModelSpec

CONFIGS = sorted((Path(__file__).parents[2] / "configs" / "scaling").glob("*.py"))
# Per-chip memory each Gemma-2 and the 1B Pythia step must stay under, GiB: room for larger
# batches or cheaper rematerialization.
MEMORY_GOALS = {"gemma2_2b": 38, "gemma2_9b": 43, "gemma2_27b": 57, "pythia_1b": 9.6}


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
def test_real_size_training_settings(path):
    cfg = load_config(path)
    target = cfg.target
    accelerator = parse_accelerator(target.slice)
    assert accelerator.chips == target.devices
    assert accelerator.generation.hbm_gib == target.hbm_gib
    # The name the trainer's MFU looks the chip's peak up by, and JAX's name for the chip.
    assert peak_flops(target.chip) == peak_flops(accelerator.generation.device_kind)
    model = ModelSpec.from_config(cfg).model_config()
    assert (model.dtype, model.param_dtype) == ("bfloat16", "float32")
    assert model.remat != "none" and model.scan_layers
    assert cfg.data.source == "corpus"
    tokens_per_step = cfg.data.batch_size * cfg.data.seq_len
    assert 1e6 <= tokens_per_step <= 4e6
    shape = dict(
        zip(parallel.MESH_AXES, parallel.mesh_shape(dict(cfg.mesh), target.devices), strict=True)
    )
    assert cfg.data.batch_size % (shape["data"] * shape["fsdp"] * cfg.train.microbatches) == 0
    # A compute-optimal point: 20 training tokens per parameter.
    n_params = count_params(model)
    assert cfg.train.steps * tokens_per_step == pytest.approx(20 * n_params, rel=1e-3)
    assert f"{n_params:,} parameters" in path.read_text()


@pytest.mark.slow
@pytest.mark.tpu_compile
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_compiles_for_its_slice_and_fits(path):
    cfg = load_config(path)
    plan = plan_compiled(cfg, topology=cfg.target.slice, slices=cfg.dcn_data)
    assert plan.compiled and plan.devices == cfg.target.devices
    assert plan.total_gib <= FIT_FRACTION * plan.hbm_gib
    if path.stem in MEMORY_GOALS:
        assert plan.total_gib <= MEMORY_GOALS[path.stem]
    # Gradients land on their FSDP shards by reduce-scatter.
    assert plan.collectives_per_step["reduce-scatter"] > 0
    if path.stem.startswith("gemma2"):
        # Full remat recomputes the forward pass (4/3); windows cost only their window.
        assert plan.compiled_flops_per_step <= 1.40 * plan.model_flops_per_step
    documented = re.search(r"memory per chip ([\d.]+) GiB of", path.read_text())
    assert documented, "the docstring states what the compiler reports"
    assert float(documented.group(1)) == pytest.approx(plan.total_gib, abs=0.05)
