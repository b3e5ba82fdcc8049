"""Accelerator types -> chips and hosts, and the errors for types that do not exist."""

import pytest

from c2s_jax.accelerators import parse_accelerator
from c2s_jax.errors import InputError


@pytest.mark.parametrize(
    ("text", "canonical", "chips", "hosts"),
    [
        ("v5litepod-8", "v5litepod-8", 8, 1),
        ("v5e-8", "v5litepod-8", 8, 1),
        ("v5litepod-16", "v5litepod-16", 16, 4),
        ("v5e-256", "v5litepod-256", 256, 64),
        ("v5p-8", "v5p-8", 4, 1),
        ("v5p-128", "v5p-128", 64, 16),
        ("v4-8", "v4-8", 4, 1),
        ("v4-32", "v4-32", 16, 4),
        ("v6e-8", "v6e-8", 8, 1),
        ("v6e-64", "v6e-64", 64, 16),
    ],
)
def test_chips_and_hosts(text, canonical, chips, hosts):
    accelerator = parse_accelerator(text)
    assert (accelerator.type, accelerator.chips, accelerator.hosts) == (canonical, chips, hosts)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("v9-8", "unknown TPU type"),
        ("tpu", "unknown TPU type"),
        ("v5litepod-12", "sizes [1, 4, 8"),
        ("v5p-12", "multiple of 8"),
    ],
)
def test_bad_types_name_the_flag_and_the_choices(text, says):
    with pytest.raises(InputError, match="--accelerator-type") as err:
        parse_accelerator(text)
    assert says in str(err.value)
