"""The environment of a test subprocess that runs JAX on virtual CPU devices."""

import os


def virtual_device_env(devices: int) -> dict[str, str]:
    """This process's environment, with JAX on the CPU split into ``devices`` devices.

    The suite's own XLA flags (see ``tests/conftest.py``) are kept.
    """
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    return {**os.environ, "XLA_FLAGS": flags.strip(), "JAX_PLATFORMS": "cpu"}
