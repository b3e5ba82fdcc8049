"""Checkpoint interchange: HF safetensors <-> our Flax models (Gemma-2, Pythia), streamed
tensor by tensor, and our own orbax checkpoint directories."""

from c2s_jax.checkpoints.export import export_hf
from c2s_jax.checkpoints.load import CheckpointError, load_hf
from c2s_jax.checkpoints.orbax_io import load_flax, save_flax

__all__ = ["CheckpointError", "export_hf", "load_flax", "load_hf", "save_flax"]
