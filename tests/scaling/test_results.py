"""results.jsonl records: parameter counts by hand, tokens and FLOPs."""

import json

import pytest

from c2s_jax.config_loading import load_config
from c2s_jax.models.registry import count_params, get_config
from c2s_jax.scaling import results
from tests.support.sweep_files import BASE


def test_non_embedding_parameters_match_the_architecture_by_hand():
    g = get_config("gemma2_tiny")  # D=64, L=2, Hq=4, Hkv=2, Dh=16, F=128, V=512, tied
    d, dh, f = g.d_model, g.head_dim, g.mlp_dim
    per_layer = 2 * d * g.num_heads * dh + 2 * d * g.num_kv_heads * dh + 3 * d * f + 4 * d
    assert results.non_embedding_params(g) == g.num_layers * per_layer + d
    assert count_params(g) - results.non_embedding_params(g) == g.vocab_size * d

    p = get_config("pythia_tiny")  # untied: embed_in and embed_out both excluded
    d, f = p.d_model, p.mlp_dim
    per_layer = 4 * d * d + 3 * d + d + 2 * d * f + f + d + 4 * d
    assert results.non_embedding_params(p) == p.num_layers * per_layer + 2 * d
    assert count_params(p) - results.non_embedding_params(p) == 2 * p.vocab_size * d


def test_record_fields_tokens_and_flops():
    cfg = load_config(BASE, ["data.batch_size=4", "data.seq_len=32"])
    result = {
        "step": 10,
        "eval_loss": 2.5,
        "eval_task_loss": {"task0": 2.0, "task1": 3.0},
        "train_loss": 2.4,
    }
    record = results.member_record("seed-0", {"seed": "0"}, cfg, result, "/w/seed-0")
    assert record["tokens"] == 10 * 4 * 32
    # Forward+backward = 3 x forward: per layer 2*D*(Hq+2Hkv)*Dh + 2*D*Hq*Dh + 6*D*F +
    # causal attention over min(T, window) keys 2*T*Hq*Dh; plus the 2*D*V unembedding.
    g = get_config("gemma2_tiny")
    d, dh, hq, hkv = g.d_model, g.head_dim, g.num_heads, g.num_kv_heads
    layer = 2 * d * (hq + 2 * hkv) * dh + 2 * d * hq * dh + 6 * d * g.mlp_dim + 2 * 32 * hq * dh
    assert record["flops"] == pytest.approx(3 * (2 * d * g.vocab_size + 2 * layer) * 1280)
    assert record["n_params"] == results.non_embedding_params(g)
    assert record["n_params_total"] == count_params(g)
    assert (record["loss"], record["task_loss"]) == (2.5, {"task0": 2.0, "task1": 3.0})
    assert record["config"]["data"]["seq_len"] == 32 and record["axes"] == {"seed": "0"}
    json.dumps(record)  # JSON-ready as is
