"""HF safetensors <-> our Flax models (Gemma-2, Pythia), streamed tensor by tensor."""

from c2s_jax.convert.export import export_hf
from c2s_jax.convert.load import CheckpointError, load_hf

__all__ = ["CheckpointError", "export_hf", "load_hf"]
