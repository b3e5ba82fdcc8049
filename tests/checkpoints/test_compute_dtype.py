"""A HF checkpoint computes in its own dtype by default, as transformers does."""

import torch

from c2s_jax.checkpoints.load import hf_model_config
from tests.checkpoints import hf_reference as ref


def test_the_checkpoints_dtype_is_the_default_compute_dtype(tmp_path):
    ref.gemma2(tmp_path / "f32", dtype=torch.float32)
    ref.pythia(tmp_path / "bf16", dtype=torch.bfloat16)
    assert hf_model_config(tmp_path / "f32").dtype == "float32"
    assert hf_model_config(tmp_path / "bf16").dtype == "bfloat16"
    assert hf_model_config(tmp_path / "f32", compute_dtype="bfloat16").dtype == "bfloat16"
    assert hf_model_config(tmp_path / "f32", dtype="bfloat16").param_dtype == "bfloat16"
