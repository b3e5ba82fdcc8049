"""The TPU a launch talks to: its name, zone, shape, slice count and kind of resource."""

import dataclasses
import re

from c2s_jax.accelerators import Accelerator, parse_accelerator
from c2s_jax.errors import InputError

# Cloud TPU resource names: lowercase letters, digits and hyphens, starting with a letter.
_NAME = re.compile(r"[a-z]([-a-z0-9]{0,50}[a-z0-9])?")
APIS = ("queued", "vm")


@dataclasses.dataclass(frozen=True)
class Target:
    """A TPU VM (api='vm') or a queued resource of one or more slices (api='queued').

    A single-slice queued resource names its node like itself; with several slices the
    nodes are NAME-0, NAME-1, ... and data parallelism spans them over the data-center
    network.
    """

    name: str
    zone: str
    accelerator: Accelerator
    slices: int = 1
    api: str = "queued"
    project: str = ""

    @property
    def hosts(self) -> int:
        """TPU VM workers over all slices: one `c2s` process runs on each."""
        return self.accelerator.hosts * self.slices


def make_target(
    name: str,
    zone: str,
    accelerator_type: str,
    slices: int = 1,
    api: str = "queued",
    project: str = "",
) -> Target:
    """A checked Target; bad values raise InputError naming the flag and the fix."""
    if not _NAME.fullmatch(name or ""):
        raise InputError(
            f"--name {name!r}: TPU names are 1-52 lowercase letters, digits and hyphens, "
            "starting with a letter (e.g. c2s-v5p)"
        )
    if not zone:
        raise InputError("--zone is empty: give the TPU's zone, e.g. us-east5-a")
    if slices < 1:
        raise InputError(
            f"--slices {slices}: the slice count must be at least 1 (1 for one slice, "
            "N for N slices joined over the data-center network)"
        )
    if api not in APIS:
        raise InputError(f"--api {api!r}: use one of {APIS}")
    if slices > 1 and api != "queued":
        raise InputError(
            f"--slices {slices} needs --api queued: several slices exist only as one "
            "queued resource"
        )
    return Target(name, zone, parse_accelerator(accelerator_type), slices, api, project)
