"""Tests for c2s_jax.models."""
