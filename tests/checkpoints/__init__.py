"""Tests for c2s_jax.checkpoints."""
