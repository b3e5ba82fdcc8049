"""The tiny experiment of tests/support/training.py as a fixture."""

import pytest

from c2s_jax.config_loading import load_config
from tests.support.training import FAST, TINY


@pytest.fixture
def tiny_config():
    """A tiny Gemma-2 on synthetic data that trains 20 steps in seconds."""

    def make(*overrides: str):
        return load_config(TINY, [*FAST, *overrides])

    return make
