"""Registered sizes have the published parameter counts and fully named axes."""

import jax
import pytest
from flax import nnx

from c2s_jax.models import CONFIGS, count_params, get_config
from c2s_jax.models.registry import abstract_model

PUBLISHED = {
    "gemma2_2b": 2_614_341_888,
    "gemma2_9b": 9_241_705_984,
    "gemma2_27b": 27_227_128_320,
    "pythia_410m": 405_334_016,
    "pythia_1b": 1_011_781_632,
}
LOGICAL_AXES = {"embed", "mlp", "heads", "kv_heads", "head_dim", "vocab"}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_count_from_shapes(name):
    assert count_params(get_config(name)) == PUBLISHED[name]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_parameter_has_logical_axes(name):
    state = nnx.state(abstract_model(get_config(name)), nnx.Param)
    for path, var in nnx.to_flat_state(state):
        axes = var.get_metadata()["out_sharding"]
        assert len(axes) == var.get_value().ndim, path
        if path[0] == "layers":
            assert axes[0] == "layers", path
            axes = axes[1:]
        assert set(axes) <= LOGICAL_AXES, (path, axes)


def test_abstract_model_allocates_nothing():
    leaves = jax.tree.leaves(nnx.state(abstract_model(get_config("gemma2_27b"))))
    assert all(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in leaves)


def test_overrides_and_unknown_names():
    cfg = get_config("gemma2_9b", dtype="float32", remat="full")
    assert (cfg.dtype, cfg.remat, cfg.query_pre_attn_scalar) == ("float32", "full", 256)
    assert get_config("gemma2_27b").query_pre_attn_scalar == 144
    with pytest.raises(KeyError, match="gemma2_3b"):
        get_config("gemma2_3b")
