"""Devices -> mesh, logical axis names -> mesh axes, and multi-host start-up.

Every parameter of our models carries logical axis names (`vocab`, `embed`, `mlp`, `heads`,
`kv_heads`, `head_dim`, `layers`); batches carry `batch` and `length`. Rules map each
logical name to mesh axes (`data`, `fsdp`, `tensor`), so the same code shards over one
CPU, eight virtual CPU devices, a GPU, a TPU pod, or the devices of a TPU topology that
exists only for the compiler, and the config alone decides how.

Activations are pinned the same way: a jitted step traces its model inside
:func:`activation_sharding`, and the models call :func:`constrain` on the activations they
make, so that the batch stays split over `data` x `fsdp` instead of following the weights'
`embed` sharding onto every chip.
"""

import contextlib
import contextvars
import functools
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence

import jax
import ml_collections
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from c2s_jax.errors import InputError

log = logging.getLogger(__name__)

MESH_AXES = ("data", "fsdp", "tensor")
# Batch over data x fsdp; weights' model dimension over fsdp (ZeRO-3 style) and their
# head/hidden dimensions over tensor (Megatron style).
DEFAULT_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("layers", None),
)

Rules = Sequence[tuple[str, str | tuple[str, ...] | None]]


# Weights whose non-model dimension decoding splits (tensor parallelism).
_TENSOR_PARALLEL = ("mlp", "heads", "kv_heads", "vocab")


def decode_rules(rules: Rules) -> tuple:
    """Rules for decoding with weights that stay put.

    Training shards every weight's model dimension (`embed`) over the FSDP axes, so each
    use gathers it: once per step in training, but once per token in decoding. For
    decoding the model dimension stays whole, the axes that split it join the tensor
    axes on heads, hidden units and vocabulary (each device keeps its own slice of every
    weight and exchanges only activations), and rows split over the remaining batch axes.
    """
    table = dict(rules)
    fsdp = spec_axes(table.get("embed"))
    out = []
    for name, target in rules:
        if name == "embed":
            target = None
        elif name in _TENSOR_PARALLEL:
            target = tuple(dict.fromkeys(spec_axes(target) + fsdp)) or None
        elif name == "batch":
            target = tuple(a for a in spec_axes(target) if a not in fsdp) or None
        out.append((name, target))
    return tuple(out)


def spec_axes(target) -> tuple[str, ...]:
    """The mesh axes a rule's target (or a PartitionSpec entry) names."""
    return (target,) if isinstance(target, str) else tuple(target or ())


def mesh_shape(sizes: Mapping[str, int], n_devices: int) -> tuple[int, ...]:
    """Resolves axis sizes (one may be -1 = fill) to a shape over `n_devices`.

    Args:
      sizes: {'data': d, 'fsdp': f, 'tensor': t}; missing axes are 1.
      n_devices: devices to cover exactly.
    """
    unknown = set(sizes) - set(MESH_AXES)
    if unknown:
        raise InputError(f"config.mesh has unknown axes {sorted(unknown)}; use {MESH_AXES}")
    shape = [int(sizes.get(axis, 1)) for axis in MESH_AXES]
    fill = [i for i, s in enumerate(shape) if s == -1]
    if len(fill) > 1:
        raise InputError("config.mesh: at most one axis may be -1 (fill)")
    known = math.prod(s for s in shape if s != -1)
    if fill:
        if n_devices % known:
            raise InputError(f"config.mesh: {n_devices} devices are not divisible by {known}")
        shape[fill[0]] = n_devices // known
    if math.prod(shape) != n_devices:
        raise InputError(
            f"config.mesh {dict(zip(MESH_AXES, shape, strict=True))} needs "
            f"{math.prod(shape)} devices but {n_devices} are available"
        )
    return tuple(shape)


def make_mesh(
    sizes: Mapping[str, int], dcn_data: int = 1, devices: Sequence[jax.Device] | None = None
) -> Mesh:
    """A (data, fsdp, tensor) mesh over all devices.

    Args:
      sizes: axis sizes within a slice (or over all devices when dcn_data == 1).
      dcn_data: number of slices; data parallelism across slices goes over the data-center
        network (DCN), everything else stays on the fast interconnect within a slice.
      devices: the devices to use; default `jax.devices()`. The devices of a TPU topology
        description (:func:`topology_devices`) give a mesh to compile for, not to run on.
    """
    devices = list(jax.devices() if devices is None else devices)
    if dcn_data > 1:
        if len(devices) % dcn_data:
            raise InputError(f"config.dcn_data={dcn_data} does not divide {len(devices)} devices")
        per_slice = mesh_shape(sizes, len(devices) // dcn_data)
        grid = mesh_utils.create_hybrid_device_mesh(per_slice, (dcn_data, 1, 1), devices)
    else:
        shape = mesh_shape(sizes, len(devices))
        try:
            grid = mesh_utils.create_device_mesh(shape, devices)
        except (AssertionError, NotImplementedError, ValueError):
            # Virtual CPU devices have no physical topology to follow.
            grid = np.asarray(devices).reshape(shape)
    return Mesh(grid, MESH_AXES)


def config_mesh(cfg: ml_collections.ConfigDict) -> tuple[Mesh, tuple]:
    """(mesh over this job's devices, logical rules) of a training or GRPO config: its
    `mesh` sizes, `dcn_data` slices and `rules`."""
    return make_mesh(dict(cfg.mesh), cfg.dcn_data), tuple(tuple(r) for r in cfg.rules)


def topology_devices(topology: str, slices: int = 1) -> list:
    """The devices of a TPU slice (or of `slices` slices) that is not attached: programs
    can be compiled for them with the TPU compiler, and their memory and cost read.

    Args:
      topology: an accelerator type ('v5p-128', 'v5litepod-256', 'v6e-64') or a topology
        ('v5p:4x4x4', 'v5e:16x16').
      slices: slices joined over the data-center network.

    Raises:
      InputError: an unknown type, or the TPU compiler (libtpu) is not installed.
    """
    from jax.experimental import topologies

    from c2s_jax.accelerators import parse_accelerator

    accelerator = parse_accelerator(topology, "--topology")
    if not accelerator.grid:
        raise InputError(
            f"--topology {topology!r}: {accelerator.chips} chips is not a power of two; name "
            f"the chip grid instead, e.g. {accelerator.generation.topology_prefix}:4x4x12"
        )
    try:
        import libtpu  # noqa: F401  (only to tell a missing compiler from other failures)
    except ImportError:
        raise InputError(
            "compiling for a TPU needs the TPU compiler: pip install 'libtpu==0.0.42.*' "
            "(the version jax[tpu] pins for this jax)"
        ) from None
    try:
        description = topologies.get_topology_desc(
            platform="tpu",
            topology_name=accelerator.topology,
            chip_config_name="default",
            chips_per_host_bounds=accelerator.chips_per_host_bounds,
            num_slices=slices,
        )
    except jax.errors.JaxRuntimeError as err:
        if "lockfile" not in str(err):
            raise
        raise InputError(
            "another process holds the TPU compiler (libtpu takes /tmp/libtpu_lockfile; one "
            "process at a time): wait for it to end, then run this again; on a machine with "
            "no TPU attached, ALLOW_MULTIPLE_LIBTPU_LOAD=1 lets compiles run side by side"
        ) from None
    return list(description.devices)


# The mesh and rules that `constrain` pins activations with, while a step is traced.
_ACTIVATIONS: contextvars.ContextVar[tuple[Mesh, tuple] | None] = contextvars.ContextVar(
    "activation_sharding", default=None
)


@contextlib.contextmanager
def activation_sharding(mesh: Mesh | None, rules: Rules) -> Iterator[None]:
    """Within this block, :func:`constrain` pins activations onto `mesh` by `rules`
    (nothing when `mesh` is None). Enter it inside the function that is jitted, so that it
    holds while the function is traced."""
    token = _ACTIVATIONS.set(None if mesh is None else (mesh, tuple(rules)))
    try:
        yield
    finally:
        _ACTIVATIONS.reset(token)


def target_platform() -> str:
    """The platform what is being traced will run on ('cpu', 'gpu', 'tpu'): that of the
    enclosing :func:`activation_sharding`'s mesh (a TPU topology's too), else JAX's
    default backend."""
    active = _ACTIVATIONS.get()
    if active is not None:
        return active[0].devices.flat[0].platform
    return jax.default_backend()


def active_sharding() -> tuple[Mesh, tuple] | None:
    """(mesh, rules) of the enclosing :func:`activation_sharding`, or None."""
    return _ACTIVATIONS.get()


def constrain(x: jax.Array, axes: Sequence[str | None]) -> jax.Array:
    """`x` with the sharding its logical `axes` map to, inside :func:`activation_sharding`;
    `x` unchanged outside it. None in `axes` keeps that dimension replicated."""
    active = _ACTIVATIONS.get()
    if active is None:
        return x
    mesh, rules = active
    return jax.lax.with_sharding_constraint(x, sharding_for(axes, x.shape, mesh, rules))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def pin_gradient(x: jax.Array, axes: tuple[str | None, ...]) -> jax.Array:
    """`x` unchanged; its gradient is constrained to the sharding `axes` map to (inside
    :func:`activation_sharding`) where it is formed.

    Applied to a weight where a step reads it, this makes the gradient of an FSDP-sharded
    weight a reduce-scatter of the devices' partial sums straight onto the weight's
    shards, instead of a full all-reduce that every device then slices.
    """
    return x


def _pin_forward(x, axes):
    return x, None


def _pin_backward(axes, _, gradient):
    return (constrain(gradient, axes),)


pin_gradient.defvjp(_pin_forward, _pin_backward)


def logical_to_spec(axes: Sequence[str | None], rules: Rules) -> PartitionSpec:
    """PartitionSpec of mesh axes for a tuple of logical axis names.

    A mesh axis is used at most once per array: a later logical axis that maps to an
    already used mesh axis stays replicated.
    """
    table = dict(rules)
    used: set[str] = set()
    out = []
    for axis in axes:
        target = table.get(axis) if axis is not None else None
        names = tuple(n for n in spec_axes(target) if n not in used)
        used.update(names)
        out.append(names[0] if len(names) == 1 else (names or None))
    return PartitionSpec(*out)


def fitted_spec(
    spec: PartitionSpec, shape: Sequence[int], axis_sizes: Mapping[str, int]
) -> PartitionSpec:
    """Drops mesh axes from dimensions they do not divide (those stay replicated).

    `axis_sizes` is {mesh axis: size}, e.g. `mesh.shape`.
    """
    out = []
    for dim, entry in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec)), strict=True):
        kept = []
        for name in spec_axes(entry):
            if dim % (math.prod(axis_sizes[n] for n in kept) * axis_sizes[name]) == 0:
                kept.append(name)
        out.append(kept[0] if len(kept) == 1 else (tuple(kept) or None))
    return PartitionSpec(*out)


def sharding_for(axes: Sequence[str | None], shape: Sequence[int], mesh: Mesh, rules: Rules):
    """NamedSharding of an array with logical `axes` and `shape` on `mesh`."""
    return NamedSharding(mesh, fitted_spec(logical_to_spec(axes, rules), shape, mesh.shape))


def tree_shardings(logical_specs, shapes, mesh: Mesh, rules: Rules):
    """Maps a pytree of logical PartitionSpecs (and matching shapes) to NamedShardings."""
    return jax.tree.map(
        lambda spec, leaf: sharding_for(tuple(spec), leaf.shape, mesh, rules),
        logical_specs,
        shapes,
        is_leaf=lambda x: isinstance(x, PartitionSpec),
    )


def batch_shards(mesh: Mesh, rules: Rules) -> int:
    """How many pieces `rules` cut the batch axis into on `mesh` (every batch, and every
    microbatch of one, must have a multiple of this many rows)."""
    axes = logical_to_spec(("batch",), rules)[0]
    names = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
    return math.prod(mesh.shape[name] for name in names)


def batch_sharding(mesh: Mesh, rules: Rules) -> NamedSharding:
    """Sharding of [batch, length] arrays."""
    return NamedSharding(mesh, logical_to_spec(("batch", "length"), rules))


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    auto: bool = False,
) -> None:
    """Starts multi-host JAX when asked to.

    On Cloud TPU VMs every argument is discovered, so `auto=True` is enough. Elsewhere
    (CPU tests, GPU clusters) pass the coordinator and this process's id. With nothing
    given and `auto` False this is a single-process run and does nothing.
    """
    if coordinator_address is None and not auto:
        return
    # Only the CPU client reads this; it must be set before any backend starts, and it
    # lets CPU processes run cross-process collectives (tests, CPU clusters).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
    )
    log.info(
        "process %d of %d (%d local / %d global devices, host %s)",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
        os.uname().nodename,
    )
