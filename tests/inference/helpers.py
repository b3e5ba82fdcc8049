"""Small models for the sampler tests."""

from flax import nnx

from c2s_jax.models import build_model, get_config
from c2s_jax.models.parts import ModelParts

VOCAB = 512


def tiny_parts(name: str, seed: int = 0, **overrides):
    """(parts, params) of a randomly initialised tiny model in float32."""
    overrides.setdefault("dtype", "float32")
    if name.startswith("gemma2"):
        # Shorter than the test sequences, so the sliding layers' cache masking matters.
        overrides.setdefault("sliding_window", 5)
    cfg = get_config(name, **overrides)
    graphdef, params = nnx.split(build_model(cfg, rngs=nnx.Rngs(seed)))
    return ModelParts(graphdef, cfg), params
