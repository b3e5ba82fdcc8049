"""Matmul FLOPs and collectives read from compiled TPU programs, checked against the TPU
compiler's own cost analysis and against arithmetic."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from c2s_jax import parallel
from c2s_jax.plan.hlo_stats import parse_module, program_stats


@pytest.fixture(scope="module")
def mesh():
    """The 4 chips of a v5e slice, as the TPU compiler sees them (no TPU attached)."""
    return Mesh(np.array(parallel.topology_devices("v5litepod-4")), ("x",))


def _compiled(mesh, fn, *shapes_specs):
    args = [
        jax.ShapeDtypeStruct(shape, jnp.bfloat16, sharding=NamedSharding(mesh, P(*spec)))
        for shape, spec in shapes_specs
    ]
    return jax.jit(fn).lower(*args).compile()


def _xla_flops(compiled) -> float:
    cost = compiled.cost_analysis()
    return (cost[0] if isinstance(cost, list) else cost)["flops"]


def _summed(fn):
    return lambda *xs: fn(*xs).astype(jnp.float32).sum()


def _squares(fn):
    # Not a plain sum: its gradient is not a constant the compiler could fold into sums.
    return lambda *xs: jnp.square(fn(*xs).astype(jnp.float32)).sum()


@pytest.mark.parametrize(
    ("fn", "operands"),
    [
        (lambda a, b: a @ b, [((256, 512), ()), ((512, 1024), ())]),
        # Batched: the TPU compiler writes these as dilated, padded convolutions.
        (
            lambda q, k: jnp.einsum("btkgh,bskh->bkgts", q, k),
            [((2, 128, 2, 2, 64), ()), ((2, 128, 2, 64), ())],
        ),
        (
            jax.grad(_summed(lambda q, k: jnp.einsum("btkgh,bskh->bkgts", q, k)), argnums=(0, 1)),
            [((2, 128, 2, 2, 64), ()), ((2, 128, 2, 64), ())],
        ),
        (
            jax.grad(_summed(lambda x, w: jnp.einsum("btd,dnh->btnh", x, w)), argnums=(0, 1)),
            [((4, 128, 256), ("x",)), ((256, 4, 64), ())],
        ),
    ],
    ids=["matmul", "batched", "batched-gradient", "sharded-projection-gradient"],
)
def test_loop_free_matmuls_count_as_the_compiler_counts_them(mesh, fn, operands):
    compiled = _compiled(mesh, fn, *operands)
    matmuls, everything = program_stats(compiled.as_text()).matmul_flops, _xla_flops(compiled)
    # The compiler's figure adds the elementwise work (here the final sums): a few in 10^4.
    assert matmuls <= everything
    assert matmuls == pytest.approx(everything, rel=1e-3)


def _layers(x, ws, unroll):
    def layer(x, w):
        return x @ w, None

    return jax.lax.scan(layer, x, ws, unroll=unroll)[0]


def test_scanned_layers_count_every_iteration(mesh):
    L, rows, d = 6, 64, 512
    operands = [((rows, d), ("x",)), ((L, d, d), (None, None, "x"))]
    scanned, unrolled = (
        _compiled(
            mesh,
            jax.grad(_squares(lambda x, ws, u=unroll: _layers(x, ws, u)), argnums=(0, 1)),
            *operands,
        )
        for unroll in (1, True)
    )
    stats = program_stats(scanned.as_text())
    # Forward and two backward products per layer, on each chip's 16 rows.
    expected = L * 3 * 2 * (rows // 4) * d * d
    assert stats.matmul_flops == expected
    assert program_stats(unrolled.as_text()).matmul_flops == expected
    assert [trips for _, trips in stats.loops] == [L, L]
    # The compiler's own figure counts the loop body once.
    assert _xla_flops(scanned) < expected / 2


def test_collectives_in_a_loop_are_counted_per_iteration(mesh):
    L = 5
    compiled = _compiled(
        mesh,
        lambda x, ws: _layers(x, ws, 1),
        ((64, 256), ("x",)),
        ((L, 256, 256), (None, None, "x")),
    )
    stats = program_stats(compiled.as_text())
    assert stats.collectives["all-gather"] >= 1
    in_loop = stats.collectives_per_run["all-gather"] - stats.collectives["all-gather"]
    assert in_loop > 0 and in_loop % (L - 1) == 0


HLO = """HloModule m

%cond (p: (s32[], f32[4])) -> pred[] {
  %p = (s32[], f32[4]) parameter(0)
  %i = s32[] get-tuple-element(%p), index=0
  %n = s32[] constant(LIMIT)
  ROOT %c = pred[] compare(%i, %n), direction=DIRECTION
}

%body (p.1: (s32[], f32[4])) -> (s32[], f32[4]) {
  %p.1 = (s32[], f32[4]) parameter(0)
  %i.1 = s32[] get-tuple-element(%p.1), index=0
  %x = f32[4] get-tuple-element(%p.1), index=1
  %one = s32[] constant(STEP)
  %next = s32[] add(%i.1, %one)
  %g = f32[8] all-gather(%x), dimensions={0}
  ROOT %t = (s32[], f32[4]) tuple(%next, %x)
}

ENTRY %main (a: f32[4]) -> (s32[], f32[4]) {
  %a = f32[4] parameter(0)
  %zero = s32[] constant(START)
  %start = s32[] copy(%zero)
  %init = (s32[], f32[4]) tuple(%start, %a)
  ROOT %w = (s32[], f32[4]) while(%init), condition=%cond, body=%body
}
"""


@pytest.mark.parametrize(
    ("start", "limit", "direction", "step", "trips"),
    [
        (0, 26, "LT", 1, 26),
        (1, 26, "LT", 1, 25),
        (0, 7, "LE", 1, 8),
        (9, 0, "GT", -1, 9),
        (0, 26, "LT", 2, 13),
        (0, 25, "LT", 2, 13),
        (0, 26, "NE", 2, 13),
        (0, 26, "EQ", 1, None),  # not a counting loop: read as 1
        (0, 26, "LT", -1, None),  # never ends as written: read as 1
    ],
)
def test_trip_counts_are_read_from_the_loop_condition(start, limit, direction, step, trips):
    text = (
        HLO.replace("START", str(start))
        .replace("LIMIT", str(limit))
        .replace("DIRECTION", direction)
        .replace("STEP", str(step))
    )
    computations, entry = parse_module(text)
    assert entry == "main" and set(computations) == {"cond", "body", "main"}
    stats = program_stats(text)
    assert stats.loops == (("w", trips),)
    assert stats.collectives_per_run["all-gather"] == (trips or 1)
