"""Sweep expansion: count, order, stable names, overrides, zip groups, token budgets, errors."""

import pytest

from c2s_jax.errors import InputError
from c2s_jax.scaling.results import non_embedding_params
from c2s_jax.scaling.spec import axis, load_sweep
from c2s_jax.train.state import ModelSpec
from tests.support.sweep_files import ROOT, write_sweep

SIZES = """axis("size", points={
    "a": {"model.overrides": {"d_model": 16, "num_layers": 1, "vocab_size": 64}},
    "b": {"model.overrides": {"d_model": 32, "num_layers": 2, "vocab_size": 64}},
    "c": {"model.overrides": {"d_model": 64, "num_layers": 2, "vocab_size": 64}},
})"""


def test_product_order_names_and_overrides(tmp_path):
    path = write_sweep(
        tmp_path / "s.py",
        SIZES
        + ', axis("lr", "optimizer.learning_rate", (1e-3, 3e-3)), axis("seed", "seed", (0, 1))',
    )
    sweep = load_sweep(path)
    names = [m.name for m in sweep.members]
    assert len(names) == 3 * 2 * 2 == len(set(names))
    assert names[:3] == [
        "size-a_lr-0.001_seed-0",
        "size-a_lr-0.001_seed-1",
        "size-a_lr-0.003_seed-0",
    ]
    assert names[-1] == "size-c_lr-0.003_seed-1"
    assert [m.name for m in load_sweep(path).members] == names  # same file, same names
    member = sweep.members[-1]
    assert member.labels == {"size": "c", "lr": "0.003", "seed": "1"}
    cfg = sweep.member_config(member)
    assert (cfg.model.overrides.d_model, cfg.model.overrides.num_layers) == (64, 2)
    assert cfg.optimizer.learning_rate == 3e-3 and cfg.seed == 1
    assert cfg.train.steps == 2 and cfg.data.seq_len == 8  # base overrides hold for all


def test_zip_groups_advance_together_and_tokens_set_steps(tmp_path):
    path = write_sweep(
        tmp_path / "s.py",
        SIZES + ', axis("tokens", "tokens", (160, 320, 480)), axis("seed", "seed", (0, 1))',
        extra='c.zip = (("size", "tokens"),)',
    )
    sweep = load_sweep(path)
    assert [m.name for m in sweep.members] == [
        f"size-{s}_tokens-{t}_seed-{seed}"
        for s, t in (("a", 160), ("b", 320), ("c", 480))
        for seed in (0, 1)
    ]
    # 2 x 8 tokens per step: 160 tokens are 10 steps.
    steps = [sweep.member_config(m).train.steps for m in sweep.members]
    assert steps == [10, 10, 20, 20, 30, 30]


def test_model_name_axis(tmp_path):
    path = write_sweep(
        tmp_path / "s.py", 'axis("model", "model.name", ("gemma2_tiny", "pythia_tiny"))'
    )
    sweep = load_sweep(path)
    assert [m.name for m in sweep.members] == ["model-gemma2_tiny", "model-pythia_tiny"]
    assert sweep.member_config(sweep.members[1]).model.name == "pythia_tiny"


@pytest.mark.parametrize(
    ("axes", "extra", "says"),
    [
        ('axis("x", "optimizer.nope", (1.0,))', "", "member x-1: .*no key 'optimizer.nope'"),
        ('axis("x", "train.eval_every", (0,))', "", "train.eval_every is 0"),
        (SIZES + ', axis("n", "seed", (1, 2))', 'c.zip = (("size", "n"),)', "different lengths"),
        (SIZES, 'c.zip = (("size", "lr"),)', "zip names axis 'lr'"),
        ('axis("t", points={"a": {"tokens": 100, "train.steps": 3}})', "", "either tokens or"),
        ('axis("x", "seed", (1,)), axis("x", "seed", (2,))', "", "more than once"),
    ],
)
def test_bad_sweeps_name_the_problem(tmp_path, axes, extra, says):
    path = write_sweep(tmp_path / "s.py", axes, extra=extra)
    with pytest.raises(InputError, match=says):
        load_sweep(path)


def test_axis_values_that_make_no_name_ask_for_points():
    with pytest.raises(InputError, match="points="):
        axis("model", "model.overrides", ({"d_model": 8},))
    with pytest.raises(InputError, match="either key and values, or points"):
        axis("model")


@pytest.mark.parametrize(
    ("name", "source"), [("tiny_ladder", "synthetic"), ("pbmc68k_ladder", "corpus")]
)
def test_shipped_ladders_span_30x_in_non_embedding_parameters(name, source, monkeypatch):
    monkeypatch.chdir(ROOT)  # their base paths are relative to the repository root
    sweep = load_sweep(ROOT / "configs" / "sweeps" / f"{name}.py")
    configs = [sweep.member_config(m) for m in sweep.members]
    sizes = {non_embedding_params(ModelSpec.from_config(c).model_config()) for c in configs}
    assert len(sizes) >= 5 and max(sizes) / min(sizes) >= 30
    assert {c.model.name[:6] for c in configs} == {"gemma2"}
    assert {c.data.source for c in configs} == {source}
    assert all(c.train.eval_every for c in configs)
