"""`c2s plan --compile`: train, GRPO and decode steps of tiny models compiled by the TPU
compiler for a 4-chip v5e slice (no TPU attached), and what the command makes of them.

Compiles of ten seconds and more are marked slow and run in CI's TPU-compile step
(`pytest -m tpu_compile`)."""

import json
import sys

import pytest
from flax import nnx

from c2s_jax.checkpoints.bundle import export_bundle
from c2s_jax.cli import main
from c2s_jax.config_loading import load_config
from c2s_jax.models import build_model, get_config
from c2s_jax.plan.compiled import plan_compiled
from c2s_jax.plan.hlo_stats import COLLECTIVES
from tests.support.training import ROOT, TINY

GRPO = ROOT / "configs" / "grpo" / "pbmc68k_cell_type.py"
SLICE = "v5litepod-4"
FSDP = ("mesh.data=1", "mesh.fsdp=-1", "mesh.tensor=1")


def _check_memory_and_flops(plan, trips: int, loops: int):
    assert plan.devices == 4 and plan.hbm_gib == 16
    assert plan.total_gib == pytest.approx(
        plan.argument_gib + plan.output_gib - plan.alias_gib + plan.temp_gib + plan.resident_gib
    )
    assert 0 < plan.total_gib < 1 and plan.fits
    assert set(plan.collectives) == set(COLLECTIVES) == set(plan.collectives_per_step)
    # The layers are scanned: each loop runs once per period of the window pattern.
    assert plan.loop_trip_counts == [trips] * loops
    assert plan.compiled_flops_per_step > 0 and plan.model_flops_per_step > 0


# Four layers: Gemma-2 scans two (sliding, global) pairs, Pythia four single layers.
@pytest.mark.parametrize(("model", "trips"), [("gemma2_tiny", 2), ("pythia_tiny", 4)])
def test_a_tiny_train_step_compiles_for_a_v5e_slice(model, trips):
    overrides = "model.overrides={'dtype': 'float32', 'num_layers': 4}"
    cfg = load_config(TINY, [f"model.name={model}", overrides, *FSDP])
    plan = plan_compiled(cfg, topology=SLICE)
    assert plan.step == "train" and plan.topology == "v5litepod-4 (v5e:2x2)"
    assert plan.mesh == {"data": 1, "fsdp": 4, "tensor": 1}
    _check_memory_and_flops(plan, trips=trips, loops=2)  # forward and backward
    # No remat: the compiled program does about what the model needs, and more, never less.
    assert 1.0 <= plan.compiled_flops_per_step / plan.model_flops_per_step < 1.3
    # Weights sharded over fsdp are gathered for use: all-gathers inside the layer loops.
    assert plan.collectives_per_step["all-gather"] > plan.collectives["all-gather"]
    # XLA's cost model counts a loop body once: no step time without the extrapolation.
    assert plan.cost_model_seconds is None


@pytest.mark.slow
@pytest.mark.tpu_compile
def test_the_cost_model_step_time_is_extrapolated_in_depth():
    cfg = load_config(TINY, [*FSDP, "model.overrides={'num_layers': 6}"])
    # XLA's cost model gives no positive time on v5e: a v5p slice of 4 chips.
    scanned = plan_compiled(cfg, topology="v5p-8", cost_model=True)
    unrolled_cfg = load_config(
        TINY, [*FSDP, "model.overrides={'num_layers': 6, 'scan_layers': False}"]
    )
    unrolled = plan_compiled(unrolled_cfg, topology="v5p-8")
    assert unrolled.loop_trip_counts == []
    # The unrolled program's own cost-model time is what the extrapolation aims at.
    assert scanned.cost_model_seconds == pytest.approx(unrolled.cost_model_seconds, rel=0.25)


@pytest.mark.slow
@pytest.mark.tpu_compile
def test_a_grpo_update_compiles_for_a_v5e_slice(tmp_path):
    config = get_config("gemma2_tiny", dtype="float32", num_layers=4)
    model = build_model(config, rngs=nnx.Rngs(0))
    bundle = export_bundle(model, tmp_path / "bundle", None, "c2s", {})
    cfg = load_config(GRPO, [f"init_from='{bundle}'"])
    plan = plan_compiled(cfg, topology=SLICE, step="grpo", model_cfg=model.config, prompt_tokens=40)
    assert plan.step == "grpo" and plan.mesh == {"data": 4, "fsdp": 1, "tensor": 1}
    # A full-parameter policy holds a frozen copy of its starting weights (beta > 0).
    assert plan.resident_gib > 0
    _check_memory_and_flops(plan, trips=2, loops=2)


def test_a_decode_program_compiles_for_a_v5e_slice():
    # Query and key/value heads both split over the 4 chips (as the released sizes do).
    heads = "model.overrides={'dtype': 'float32', 'num_heads': 8, 'num_kv_heads': 4}"
    cfg = load_config(TINY, [*FSDP, heads])
    plan = plan_compiled(
        cfg, topology=SLICE, step="decode", rows=8, prompt_tokens=24, new_tokens=16
    )
    assert plan.step == "decode" and plan.fits
    # The decoding loop stops when every row has ended: its trip count is not static.
    assert plan.loop_trip_counts == [None]
    assert plan.compiled_flops_per_step > 0
    # Weights stay where they are while tokens are generated: the loop gathers nothing,
    # it only sums the heads' and hidden units' partial outputs.
    assert plan.collectives_in_loops["all-gather"] == 0
    assert plan.collectives_in_loops["all-reduce"] > 0


@pytest.mark.slow
@pytest.mark.tpu_compile
def test_splash_attention_kernels_count_the_blocks_they_compute():
    # 1,024 tokens in 512-token blocks: a causal layer computes 3 of 4 blocks per head, and
    # a 256-token window the same 3 (diagonal blocks, and the one below each).
    overrides = (
        "model.overrides={'dtype': 'bfloat16', 'head_dim': 128, 'sliding_window': 256, "
        "'num_layers': 4, 'attention': 'splash'}"
    )
    cfg = load_config(TINY, [*FSDP, overrides, "data.seq_len=1024", "data.batch_size=8"])
    plan = plan_compiled(cfg, topology=SLICE)
    entries = 8 * 4 * 3 * 512 * 512  # rows x heads x blocks x block entries, per layer
    forward, backward = 4 * 128 * entries, 10 * 128 * entries  # QK + PV; fused backward
    assert plan.kernel_flops_per_step == 4 * (forward + backward)
    assert plan.compiled_flops_per_step > plan.kernel_flops_per_step


@pytest.mark.slow
@pytest.mark.tpu_compile
def test_the_command_prints_json_and_fails_a_step_that_does_not_fit(capsys):
    argv = ["plan", "--config", str(TINY), "--compile", "--topology", SLICE, "--json"]
    assert main([*argv, *(f"--config.{o}" for o in FSDP)]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in (
        "topology",
        "devices",
        "hbm_gib",
        "argument_gib",
        "output_gib",
        "temp_gib",
        "total_gib",
        "fits",
        "compiled_flops_per_step",
        "model_flops_per_step",
        "collectives",
    ):
        assert key in report, key
    assert report["fits"] and report["devices"] == 4
    # Long rows of a tiny model: the attention scores alone outgrow 16 GiB per chip.
    oversized = ("--config.data.batch_size=64", "--config.data.seq_len=8192")
    assert main([*argv, *(f"--config.{o}" for o in FSDP), *oversized]) == 1
    captured = capsys.readouterr()
    assert not json.loads(captured.out)["fits"]
    assert "more than 16 GiB x 95%" in captured.err


@pytest.mark.slow
@pytest.mark.tpu_compile
def test_two_slices_compile_with_data_parallelism_between_them():
    cfg = load_config(TINY, ["mesh.data=1", "mesh.fsdp=-1", "dcn_data=2"])
    plan = plan_compiled(cfg, topology=SLICE, slices=2)
    assert plan.topology == "2 x v5litepod-4 (v5e:2x2)"
    assert plan.devices == 8 and plan.mesh == {"data": 2, "fsdp": 4, "tensor": 1}
    assert plan.fits


def test_without_the_tpu_compiler_the_command_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "libtpu", None)  # import libtpu now fails
    assert main(["plan", "--config", str(TINY), "--compile", "--topology", SLICE]) == 2
    assert "pip install 'libtpu==0.0.42.*'" in capsys.readouterr().err


def test_a_config_without_a_target_needs_a_topology(capsys):
    assert main(["plan", "--config", str(TINY), "--compile"]) == 2
    assert "--topology" in capsys.readouterr().err


def test_unknown_topologies_are_named(capsys):
    assert main(["plan", "--config", str(TINY), "--compile", "--topology", "v9-8"]) == 2
    assert "--topology 'v9-8': unknown TPU type" in capsys.readouterr().err
