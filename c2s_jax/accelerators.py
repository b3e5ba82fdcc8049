"""TPU accelerator types: chips, hosts, memory, physical topology and runtime image.

The number in an accelerator type counts TensorCores on v4 and v5p (two per chip) and chips
on v5e and v6e. Hosts of multi-host slices carry four chips each; v5e and v6e slices of up
to eight chips sit on one host. The topology (e.g. ``v5p:4x4x4`` for v5p-128) is the chip
grid the TPU compiler is given when a step is compiled for a slice without one.
"""

import dataclasses
import math
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
      topology_prefix: the generation's name in a topology ('v5p' in 'v5p:4x4x4').
      torus_dims: 3 for a 3-D torus of chips (v4, v5p), 2 for a 2-D one (v5e, v6e).
      hbm_gib: high-bandwidth memory per chip, GiB.
      device_kind: what JAX's ``device_kind`` calls one chip.
    """

    prefix: str
    cores_per_chip: int
    single_host_chips: int
    chips_per_host: int
    sizes: tuple[int, ...] | None
    size_step: int
    runtime_version: str
    topology_prefix: str
    torus_dims: int
    hbm_gib: float
    device_kind: str


_POD_SIZES = (1, 4, 8, 16, 32, 64, 128, 256)
GENERATIONS = {
    g.prefix: g
    for g in (
        Generation("v4", 2, 4, 4, None, 8, "tpu-ubuntu2204-base", "v4", 3, 32, "TPU v4"),
        Generation("v5p", 2, 4, 4, None, 8, "v2-alpha-tpuv5", "v5p", 3, 95, "TPU v5"),
        Generation(
            "v5litepod", 1, 8, 4, _POD_SIZES, 1, "v2-alpha-tpuv5-lite", "v5e", 2, 16, "TPU v5 lite"
        ),
        Generation("v6e", 1, 8, 4, _POD_SIZES, 1, "v2-alpha-tpuv6e", "v6e", 2, 32, "TPU v6 lite"),
    )
}
# Names people use for the same hardware.
ALIASES = {"v5e": "v5litepod"}


@dataclasses.dataclass(frozen=True)
class Accelerator:
    """One TPU slice shape, e.g. v5p-128: 64 chips on 16 hosts, a 4x4x4 torus."""

    type: str
    generation: Generation
    chips: int
    grid: tuple[int, ...] = ()

    @property
    def hosts(self) -> int:
        """Hosts (TPU VM workers) in one slice."""
        g = self.generation
        return 1 if self.chips <= g.single_host_chips else self.chips // g.chips_per_host

    @property
    def topology(self) -> str:
        """The slice's chip grid as the TPU compiler names it, e.g. 'v5p:4x4x4'."""
        return f"{self.generation.topology_prefix}:{'x'.join(map(str, self.grid))}"

    @property
    def chips_per_host_bounds(self) -> tuple[int, int, int]:
        """The chip grid of one host (x, y, z)."""
        if self.generation.torus_dims == 2 and self.hosts == 1:
            x, y = (*self.grid, 1)[:2]
            return (x, y, 1)
        return tuple(min(b, g) for b, g in zip((2, 2, 1), (*self.grid, 1, 1), strict=False))


def chip_grid(chips: int, dims: int) -> tuple[int, ...]:
    """The usual torus of ``chips`` chips: 4 -> 2x2(x1); then the smallest dimension doubles
    (v5p-128: 64 chips -> 4x4x4; v5e-256 -> 16x16).

    Raises:
      ValueError: ``chips`` is not a power of two (name such a topology explicitly).
    """
    if chips < 1 or chips & (chips - 1):
        raise ValueError(f"{chips} chips is not a power of two")
    if chips == 4 and dims == 3:
        return (2, 2, 1)
    grid = [1] * dims
    while math.prod(grid) < chips:
        smallest = min(grid)
        grid[max(i for i, g in enumerate(grid) if g == smallest)] *= 2
    return tuple(grid)


def parse_accelerator(text: str, flag: str = "--accelerator-type") -> Accelerator:
    """The slice shape named by an accelerator type such as 'v5litepod-8' or 'v5p-128', or
    by a topology such as 'v5p:4x4x4' or 'v5e:16x16'.

    'v5e-N' is accepted as another name for 'v5litepod-N'.

    Raises:
      InputError: an unknown generation or a size that generation does not come in; the
        message names ``flag``.
    """
    known = ", ".join(f"{p}-N" for p in GENERATIONS)
    topology = re.fullmatch(r"([a-z0-9]+):(\d+(?:x\d+)*)", text.strip().lower())
    if topology:
        return _from_topology(text, topology.group(1), topology.group(2), flag)
    match = re.fullmatch(r"([a-z0-9]+)-(\d+)", text.strip().lower())
    prefix = ALIASES.get(match.group(1), match.group(1)) if match else None
    if prefix not in GENERATIONS:
        raise InputError(
            f"{flag} {text!r}: unknown TPU type; use one of {known} "
            "(v5e-N means v5litepod-N), e.g. v5litepod-8 or v5p-128, or a topology such as "
            "v5p:4x4x4"
        )
    g = GENERATIONS[prefix]
    size = int(match.group(2))
    if g.sizes is not None and size not in g.sizes:
        raise InputError(f"{flag} {text!r}: {prefix} slices come in sizes {list(g.sizes)}")
    if g.sizes is None and (size <= 0 or size % g.size_step):
        raise InputError(
            f"{flag} {text!r}: {prefix} sizes count TensorCores and must be a "
            f"positive multiple of {g.size_step} (e.g. {prefix}-8, {prefix}-128)"
        )
    chips = size // g.cores_per_chip
    try:
        grid = chip_grid(chips, g.torus_dims)
    except ValueError:
        grid = ()  # launchable; a compile for it needs the topology spelled out
    return Accelerator(f"{prefix}-{size}", g, chips, grid)


def _from_topology(text: str, name: str, grid_text: str, flag: str) -> Accelerator:
    by_topology = {g.topology_prefix: g for g in GENERATIONS.values()}
    if name not in by_topology:
        raise InputError(
            f"{flag} {text!r}: unknown TPU generation {name!r}; topologies start with one "
            f"of {sorted(by_topology)}, e.g. v5p:4x4x4"
        )
    g = by_topology[name]
    grid = tuple(int(d) for d in grid_text.split("x"))
    if len(grid) != g.torus_dims or min(grid) < 1:
        raise InputError(
            f"{flag} {text!r}: a {name} topology has {g.torus_dims} dimensions, e.g. "
            + ("v5p:4x4x4" if g.torus_dims == 3 else f"{name}:16x16")
        )
    chips = math.prod(grid)
    return Accelerator(f"{g.prefix}-{chips * g.cores_per_chip}", g, chips, grid)
