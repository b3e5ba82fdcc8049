"""Tests for c2s_jax.convert."""
