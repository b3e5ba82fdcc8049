"""TPU accelerator types: chips, hosts and the runtime image of each slice shape.

The number in an accelerator type counts TensorCores on v4 and v5p (two per chip) and chips
on v5e and v6e. Hosts of multi-host slices carry four chips each; v5e and v6e slices of up
to eight chips sit on one host.
"""

import dataclasses
import re

from c2s_jax.errors import InputError


@dataclasses.dataclass(frozen=True)
class Generation:
    """What one TPU generation's accelerator types mean.

    Attributes:
      prefix: the accelerator-type prefix gcloud takes (e.g. 'v5litepod').
      cores_per_chip: 2 where the type's number counts TensorCores, 1 where it counts chips.
      single_host_chips: the largest slice that fits on one host.
      chips_per_host: chips per host in multi-host slices.
      sizes: the numbers allowed after the prefix, or None for any multiple of `size_step`.
      size_step: for open-ended generations, the numbers must be multiples of this.
      runtime_version: the default TPU VM image.
    """

    prefix: str
    cores_per_chip: int
    single_host_chips: int
    chips_per_host: int
    sizes: tuple[int, ...] | None
    size_step: int
    runtime_version: str


_POD_SIZES = (1, 4, 8, 16, 32, 64, 128, 256)
GENERATIONS = {
    g.prefix: g
    for g in (
        Generation("v4", 2, 4, 4, None, 8, "tpu-ubuntu2204-base"),
        Generation("v5p", 2, 4, 4, None, 8, "v2-alpha-tpuv5"),
        Generation("v5litepod", 1, 8, 4, _POD_SIZES, 1, "v2-alpha-tpuv5-lite"),
        Generation("v6e", 1, 8, 4, _POD_SIZES, 1, "v2-alpha-tpuv6e"),
    )
}
# Names people use for the same hardware.
ALIASES = {"v5e": "v5litepod"}


@dataclasses.dataclass(frozen=True)
class Accelerator:
    """One TPU slice shape, e.g. v5p-128: 64 chips on 16 hosts."""

    type: str
    generation: Generation
    chips: int

    @property
    def hosts(self) -> int:
        """Hosts (TPU VM workers) in one slice."""
        g = self.generation
        return 1 if self.chips <= g.single_host_chips else self.chips // g.chips_per_host


def parse_accelerator(text: str) -> Accelerator:
    """The slice shape named by an accelerator type such as 'v5litepod-8' or 'v5p-128'.

    'v5e-N' is accepted as another name for 'v5litepod-N'.

    Raises:
      InputError: an unknown generation or a size that generation does not come in.
    """
    known = ", ".join(f"{p}-N" for p in GENERATIONS)
    match = re.fullmatch(r"([a-z0-9]+)-(\d+)", text.strip().lower())
    prefix = ALIASES.get(match.group(1), match.group(1)) if match else None
    if prefix not in GENERATIONS:
        raise InputError(
            f"--accelerator-type {text!r}: unknown TPU type; use one of {known} "
            "(v5e-N means v5litepod-N), e.g. v5litepod-8 or v5p-128"
        )
    g = GENERATIONS[prefix]
    size = int(match.group(2))
    if g.sizes is not None and size not in g.sizes:
        raise InputError(
            f"--accelerator-type {text!r}: {prefix} slices come in sizes {list(g.sizes)}"
        )
    if g.sizes is None and (size <= 0 or size % g.size_step):
        raise InputError(
            f"--accelerator-type {text!r}: {prefix} sizes count TensorCores and must be a "
            f"positive multiple of {g.size_step} (e.g. {prefix}-8, {prefix}-128)"
        )
    return Accelerator(f"{prefix}-{size}", g, size // g.cores_per_chip)
