"""c2s-jax: Cell2Sentence-Scale in JAX/Flax."""

__version__ = "0.1.0"
