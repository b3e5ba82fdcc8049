"""What a compiled XLA program does per run, read from its optimized HLO text.

XLA's own ``cost_analysis()`` counts the body of a loop once, whatever its trip count, so
for a step whose layers (and microbatches) are scanned it reports a fraction of the work.
This module walks the program's call graph from its entry computation, multiplies every
loop body by its trip count, and sums:

- matrix-multiply FLOPs: ``dot`` and ``convolution`` instructions (the TPU compiler writes
  most matmuls as convolutions, with batch dimensions as spatial windows); for these the
  count follows XLA's own cost model, counting only the multiply-adds whose operands are not
  padding or dilation holes, so a loop-free program gets XLA's figure for its matmuls;
- kernel FLOPs: a Pallas kernel is a custom call whose inside XLA does not see; a kernel
  that names its own FLOPs per phase in its name scope, ``kernel_flops[fwd=N,dkv=M]``
  (see :mod:`c2s_jax.models.splash`), is counted by the phase its call runs;
- collectives: all-gather, reduce-scatter, all-reduce, all-to-all, collective-permute,
  both as instructions in the program and as executions per run. The TPU compiler writes
  a reduce-scatter as a fusion of an all-reduce with the slicing of its shard (a fused
  computation named ``all-reduce-scatter``); such a fusion counts as one reduce-scatter.

Elementwise work is not counted: the figure is the one to hold against model FLOPs, which
count matmuls only.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter

import numpy as np

COLLECTIVES = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")

_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*(.*)$")
_HEADER = re.compile(r"^(ENTRY\s+)?%([\w.\-]+)\s*\(.*\{\s*$")
_ARRAY = re.compile(r"([a-z][a-z0-9]*)\[([\d,]*)\]")
_CALLEES = re.compile(
    r"\b(calls|body|condition|to_apply|branch_computations|true_computation|"
    r"false_computation|called_computations)=(\{[^}]*\}|%[\w.\-]+)"
)
_ELEMENT_BYTES = {"pred": 1, "s8": 1, "u8": 1, "bf16": 2, "f16": 2, "s16": 2, "u16": 2}


@dataclasses.dataclass
class Instruction:
    """One HLO instruction: its name, result type text, opcode, operands (names), the raw
    text between its parentheses (a constant's value) and its attributes."""

    name: str
    type: str
    opcode: str
    operands: list[str]
    arguments: str
    attributes: str

    @property
    def dims(self) -> tuple[int, ...]:
        """Dimensions of an array result (the first array of a tuple)."""
        match = _ARRAY.search(self.type)
        return tuple(int(d) for d in match.group(2).split(",") if d) if match else ()


@dataclasses.dataclass
class Computation:
    name: str
    instructions: dict[str, Instruction]
    root: str


@dataclasses.dataclass(frozen=True)
class ProgramStats:
    """Per-device figures of one run of a compiled program.

    Attributes:
      matmul_flops: multiply-add FLOPs (2 per FMA) of dots, convolutions and kernels that
        name their FLOPs, loop bodies counted once per iteration.
      kernel_flops: the part of matmul_flops that kernels named.
      collectives: instructions of each collective kind in the program text.
      collectives_per_run: executions of each kind in one run (loops multiplied out).
      collectives_in_loops: instructions of each kind inside loop bodies (a decoding
        loop, say), counted once each.
      loops: trip count of every while loop, outermost first; a loop whose count could not
        be read from its condition counts as 1 and is listed with count None.
    """

    matmul_flops: float
    kernel_flops: float
    collectives: dict[str, int]
    collectives_per_run: dict[str, int]
    collectives_in_loops: dict[str, int]
    loops: tuple[tuple[str, int | None], ...]


def _logical_lines(text: str) -> list[str]:
    """The text's lines with instructions that span several lines (a kernel's metadata may
    hold line breaks) joined into one."""
    lines: list[str] = []
    for line in text.splitlines():
        starts = (
            not lines
            or line.rstrip() == "}"
            or _HEADER.match(line)
            or re.match(r"\s*(ROOT\s+)?%", line)
            or not line.startswith((" ", '"', "}"))
        )
        if starts:
            lines.append(line)
        else:
            lines[-1] += line
    return lines


def parse_module(text: str) -> tuple[dict[str, Computation], str]:
    """The computations of an HLO module's text by name, and the entry computation's name."""
    computations: dict[str, Computation] = {}
    entry, current = "", None
    for line in _logical_lines(text):
        header = _HEADER.match(line)
        if header:
            current = Computation(header.group(2), {}, "")
            computations[current.name] = current
            if header.group(1):
                entry = current.name
            continue
        if current is None:
            continue
        if line.rstrip() == "}":
            current = None
            continue
        instruction = _parse_instruction(line)
        if instruction is not None:
            current.instructions[instruction.name] = instruction
            if line.lstrip().startswith("ROOT"):
                current.root = instruction.name
    if not entry:
        raise ValueError("no ENTRY computation in the HLO text")
    return computations, entry


def _parse_instruction(line: str) -> Instruction | None:
    match = _INSTRUCTION.match(line)
    if not match:
        return None
    name, rest = match.groups()
    if rest.startswith("("):
        end = _closing(rest, 0)
        type_text, rest = rest[: end + 1], rest[end + 1 :].lstrip()
    else:
        type_text, _, rest = rest.partition(" ")
    opcode_match = re.match(r"([\w\-]+)\(", rest)
    if not opcode_match:
        return None
    open_at = opcode_match.end() - 1
    close_at = _closing(rest, open_at)
    arguments = rest[open_at + 1 : close_at]
    operands = re.findall(r"%([\w.\-]+)", arguments)
    return Instruction(
        name, type_text, opcode_match.group(1), operands, arguments, rest[close_at + 1 :]
    )


def _closing(text: str, open_at: int) -> int:
    """Index of the parenthesis that closes the one at ``open_at``."""
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    return len(text) - 1


def _int_attr(attributes: str, key: str, default: int = 1) -> int:
    match = re.search(rf"\b{key}=(\d+)", attributes)
    return int(match.group(1)) if match else default


def _list_attr(attributes: str, key: str) -> list[int]:
    match = re.search(rf"\b{key}=\{{([\d,]*)\}}", attributes)
    return [int(d) for d in match.group(1).split(",") if d] if match else []


def dot_flops(instruction: Instruction, shapes: dict[str, tuple[int, ...]]) -> float:
    """2 x output elements x contracted size of a ``dot``."""
    lhs = shapes.get(instruction.operands[0], ())
    contracted = math.prod(
        lhs[d] for d in _list_attr(instruction.attributes, "lhs_contracting_dims")
    )
    return 2.0 * math.prod(instruction.dims) * contracted


def convolution_flops(instruction: Instruction, shapes: dict[str, tuple[int, ...]]) -> float:
    """FLOPs of a ``convolution`` as XLA's cost model counts them: 2 per multiply-add whose
    input position is neither padding nor a hole of the input's dilation."""
    attributes = instruction.attributes
    labels = re.search(r"dim_labels=(\w+)_(\w+)->(\w+)", attributes)
    lhs = shapes.get(instruction.operands[0])
    rhs = shapes.get(instruction.operands[1])
    out = instruction.dims
    if labels is None or lhs is None or rhs is None:
        raise ValueError(f"cannot read the shapes of convolution %{instruction.name}")
    lhs_labels, rhs_labels, out_labels = labels.groups()
    spatial = [c for c in lhs_labels if c.isdigit()]
    window = _window(attributes, len(spatial))
    batch = lhs[lhs_labels.index("b")]
    in_features = lhs[lhs_labels.index("f")]
    out_features = rhs[rhs_labels.index("o")]
    feature_groups = _int_attr(attributes, "feature_group_count")
    batch_groups = _int_attr(attributes, "batch_group_count")
    positions = 1
    for i, axis in enumerate(spatial):
        positions *= _valid_positions(
            input_size=lhs[lhs_labels.index(axis)],
            kernel_size=rhs[rhs_labels.index(axis)],
            output_size=out[out_labels.index(axis)],
            **{key: values[i] for key, values in window.items()},
        )
    fma = (in_features // feature_groups) * out_features * (batch // batch_groups) * positions
    return 2.0 * fma


def _window(attributes: str, rank: int) -> dict[str, list[int]]:
    """Per spatial dimension: stride, low padding, input (base) and kernel dilation."""
    found = re.search(r"window=\{([^}]*)\}", attributes)
    text = found.group(1) if found else ""

    def field(name: str, default: int) -> list[int]:
        match = re.search(rf"\b{name}=([\dx_]+)", text)
        if not match:
            return [default] * rank
        return [int(part.split("_")[0]) for part in match.group(1).split("x")]

    return {
        "stride": field("stride", 1),
        "pad_low": field("pad", 0),
        "base_dilation": field("lhs_dilate", 1),
        "window_dilation": field("rhs_dilate", 1),
    }


def _valid_positions(
    *,
    input_size: int,
    kernel_size: int,
    output_size: int,
    stride: int,
    pad_low: int,
    base_dilation: int,
    window_dilation: int,
) -> int:
    """(output, kernel) position pairs of one spatial dimension that read a real input
    element (XLA's count: neither padding nor a base-dilation hole)."""
    out_O1 = np.arange(output_size, dtype=np.int64)[:, None]
    kernel_1K = np.arange(kernel_size, dtype=np.int64)[None, :]
    undilated_OK = out_O1 * stride - pad_low + kernel_1K * window_dilation
    valid_OK = (undilated_OK % base_dilation == 0) & (undilated_OK >= 0)
    valid_OK &= undilated_OK // base_dilation < input_size
    return int(valid_OK.sum())


def _trip_count(
    loop: Instruction, caller: Computation, computations: dict[str, Computation]
) -> int | None:
    """Iterations of a while loop: from XLA's annotation, else from a condition that compares
    the loop counter with a constant (``i < N``, ``<=``, ``>``, ``>=``, ``!=``), the counter's
    constant start and its constant step in the body; None when any of them is not plain."""
    known = re.search(r'"known_trip_count":\{"n":"(\d+)"\}', loop.attributes)
    if known:
        return int(known.group(1))
    condition = computations.get(_callee(loop.attributes, "condition"))
    body = computations.get(_callee(loop.attributes, "body"))
    if condition is None or body is None:
        return None
    compare = condition.instructions.get(condition.root)
    if compare is None or compare.opcode != "compare" or len(compare.operands) != 2:
        return None
    direction = re.search(r"direction=(\w+)", compare.attributes)
    bounds = [_constant(condition, name) for name in compare.operands]
    if direction is None or (bounds[0] is None) == (bounds[1] is None):
        return None
    bound_first = bounds[0] is not None
    bound = bounds[0] if bound_first else bounds[1]
    index = _tuple_index(condition, compare.operands[1 if bound_first else 0])
    if index is None:
        return None
    start = _initial_value(loop, caller, index)
    step = _counter_step(body, index)
    if start is None or not step:
        return None
    op = direction.group(1)
    if bound_first:  # N > i is i < N
        op = {"GT": "LT", "GE": "LE", "LT": "GT", "LE": "GE"}.get(op, op)
    span = bound - start
    if op == "NE":
        return span // step if span % step == 0 and span // step >= 0 else None
    if (op in ("LT", "LE")) != (step > 0) or op not in ("LT", "LE", "GT", "GE"):
        return None
    if op in ("LE", "GE"):
        span += 1 if step > 0 else -1
    return max(-(-span // step), 0)


def _tuple_index(computation: Computation, name: str) -> int | None:
    """The tuple index a scalar was read from (through copies), or None."""
    instruction = computation.instructions.get(name)
    while instruction is not None and instruction.opcode in ("copy", "bitcast", "convert"):
        instruction = computation.instructions.get(instruction.operands[0])
    if instruction is None or instruction.opcode != "get-tuple-element":
        return None
    return _int_attr(instruction.attributes, "index", 0)


def _counter_step(body: Computation, index: int) -> int | None:
    """The constant a loop body adds to the counter at tuple `index`, or None."""
    root = body.instructions.get(body.root)
    if root is None or root.opcode != "tuple" or index >= len(root.operands):
        return None
    update = body.instructions.get(root.operands[index])
    if update is None or update.opcode not in ("add", "subtract") or len(update.operands) != 2:
        return None
    values = [_constant(body, name) for name in update.operands]
    counters = [_tuple_index(body, name) for name in update.operands]
    if update.opcode == "add" and values[0] is not None and counters[1] == index:
        return values[0]
    if values[1] is not None and counters[0] == index:
        return values[1] if update.opcode == "add" else -values[1]
    return None


def _constant(computation: Computation, name: str) -> int | None:
    """The integer value of a scalar constant (through copies and converts), else None."""
    seen = 0
    instruction = computation.instructions.get(name)
    while instruction is not None and seen < 8:
        if instruction.opcode == "constant":
            value = re.fullmatch(r"\s*(-?\d+)\s*", instruction.arguments)
            return int(value.group(1)) if value else None
        if instruction.opcode not in ("copy", "bitcast", "convert") or not instruction.operands:
            return None
        instruction = computation.instructions.get(instruction.operands[0])
        seen += 1
    return None


def _initial_value(loop: Instruction, caller: Computation, index: int) -> int | None:
    init = caller.instructions.get(loop.operands[0]) if loop.operands else None
    if init is None or init.opcode != "tuple" or index >= len(init.operands):
        return None
    return _constant(caller, init.operands[index])


def _callee(attributes: str, key: str) -> str:
    match = re.search(rf"\b{key}=%([\w.\-]+)", attributes)
    return match.group(1) if match else ""


_KERNEL_FLOPS = re.compile(r"kernel_flops\[([^\]]*)\]")


def kernel_flops(instruction: Instruction) -> float:
    """FLOPs a custom call's kernel named for the phase it runs (0 when it names none):
    its name scope holds ``kernel_flops[phase=N,...]`` and the kernel's own name, further
    along, ends in ``_phase`` (e.g. ``splash_mha_dkv_segmented``)."""
    tag = _KERNEL_FLOPS.search(instruction.attributes)
    if instruction.opcode != "custom-call" or tag is None:
        return 0.0
    phases = dict(item.split("=") for item in tag.group(1).split(","))
    after = instruction.attributes[tag.end() :]
    for phase, flops in phases.items():
        if re.search(rf"_{phase}(_|\b)", after):
            return float(flops)
    return 0.0


def program_stats(text: str) -> ProgramStats:
    """Per-device matmul FLOPs and collectives of one run of the compiled HLO ``text``."""
    computations, entry = parse_module(text)
    static = Counter()
    for name, computation in computations.items():
        if _is_reduce_scatter(name):
            continue  # counted where its fusion is
        for instruction in computation.instructions.values():
            kind = _collective(instruction)
            if kind:
                static[kind] += 1
    walk = _Walk(computations)
    flops = walk.computation(entry, multiplier=1, in_loop=False, depth=0)
    return ProgramStats(
        matmul_flops=flops,
        kernel_flops=walk.kernel_flops,
        collectives={k: static.get(k, 0) for k in COLLECTIVES},
        collectives_per_run={k: int(walk.per_run.get(k, 0)) for k in COLLECTIVES},
        collectives_in_loops={k: int(walk.in_loops.get(k, 0)) for k in COLLECTIVES},
        loops=tuple(walk.loops),
    )


def _collective(instruction: Instruction) -> str | None:
    """The collective kind of an instruction (async starts count, their dones do not; a
    fusion that is a reduce-scatter counts as one)."""
    if instruction.opcode == "fusion" and _is_reduce_scatter(
        _callee(instruction.attributes, "calls")
    ):
        return "reduce-scatter"
    opcode = instruction.opcode.removesuffix("-start")
    return opcode if opcode in COLLECTIVES and not instruction.opcode.endswith("-done") else None


def _is_reduce_scatter(computation: str) -> bool:
    """Whether a fused computation is the TPU compiler's form of a reduce-scatter."""
    return computation.startswith("all-reduce-scatter")


class _Walk:
    """Walks the call graph from the entry computation, multiplying loop bodies by their
    trip counts, and adds up FLOPs and collectives on the way."""

    def __init__(self, computations: dict[str, Computation]):
        self.computations = computations
        self.per_run: Counter = Counter()
        self.in_loops: Counter = Counter()
        self.loops: list[tuple[str, int | None]] = []
        self.kernel_flops = 0.0

    def computation(self, name: str, *, multiplier: float, in_loop: bool, depth: int) -> float:
        """FLOPs of one run of computation `name`, run `multiplier` times per program run."""
        computation = self.computations.get(name)
        if computation is None or depth > 64:
            return 0.0
        shapes = {n: i.dims for n, i in computation.instructions.items()}
        flops = 0.0
        for instruction in computation.instructions.values():
            flops += multiplier * self._own_flops(instruction, shapes, multiplier)
            kind = _collective(instruction)
            if kind:
                self.per_run[kind] += multiplier
                self.in_loops[kind] += in_loop
                if instruction.opcode == "fusion":
                    continue  # a reduce-scatter: its inner all-reduce is the same collective
            flops += self._callees(instruction, computation, multiplier, in_loop, depth)
        return flops

    def _own_flops(self, instruction: Instruction, shapes, multiplier: float) -> float:
        if instruction.opcode == "dot":
            return dot_flops(instruction, shapes)
        if instruction.opcode == "convolution":
            return convolution_flops(instruction, shapes)
        if instruction.opcode == "custom-call":
            named = kernel_flops(instruction)
            self.kernel_flops += multiplier * named
            return named
        return 0.0

    def _callees(self, instruction, computation, multiplier, in_loop, depth) -> float:
        if instruction.opcode == "while":
            trips = _trip_count(instruction, computation, self.computations)
            self.loops.append((instruction.name, trips))
            body = _callee(instruction.attributes, "body")
            return self.computation(
                body, multiplier=multiplier * (trips or 1), in_loop=True, depth=depth + 1
            )
        flops = 0.0
        for key, value in _CALLEES.findall(instruction.attributes):
            if key in ("condition", "to_apply") and instruction.opcode != "call":
                continue  # reductions' scalar computations and loop conditions hold no matmuls
            callees = re.findall(r"%([\w.\-]+)", value)
            if key == "branch_computations" or key.endswith("_computation"):
                # One branch runs: count the costliest, as if it always did.
                flops += max(
                    (
                        _Walk(self.computations).computation(
                            c, multiplier=multiplier, in_loop=in_loop, depth=depth + 1
                        )
                        for c in callees
                    ),
                    default=0.0,
                )
                continue
            for callee in callees:
                flops += self.computation(
                    callee, multiplier=multiplier, in_loop=in_loop, depth=depth + 1
                )
        return flops
