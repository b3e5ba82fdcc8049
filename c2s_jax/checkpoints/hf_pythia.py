"""HF ``GPTNeoXForCausalLM`` <-> :class:`~c2s_jax.models.pythia.Pythia`: config and tensors."""

from __future__ import annotations

from typing import Any

import numpy as np

from c2s_jax.checkpoints import rules
from c2s_jax.models.pythia import PythiaConfig

ARCHITECTURE = "GPTNeoXForCausalLM"
# Non-parameter buffers that older GPT-NeoX checkpoints saved (causal-mask constants and
# rotary frequencies); they are recomputed, never loaded.
IGNORED_SUFFIXES = ("attention.bias", "attention.masked_bias", "attention.rotary_emb.inv_freq")
_MAX_POSITIONS = 2048


def config_from_hf(hf: dict[str, Any], **overrides: Any) -> PythiaConfig:
    """Our config from a HF ``config.json`` dict; refuses variants we do not implement."""
    if not hf.get("use_parallel_residual", True):
        raise ValueError("unsupported GPT-NeoX variant: use_parallel_residual=False")
    if hf.get("tie_word_embeddings", False):
        raise ValueError("unsupported GPT-NeoX variant: tied output embedding")
    if not hf.get("attention_bias", True):
        raise ValueError("unsupported GPT-NeoX variant: attention_bias=False")
    if hf.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"unsupported GPT-NeoX activation {hf['hidden_act']!r}")
    rope = hf.get("rope_parameters") or {}
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"unsupported GPT-NeoX rope_type {rope['rope_type']!r}")
    cfg = PythiaConfig(
        vocab_size=hf["vocab_size"],
        d_model=hf["hidden_size"],
        num_layers=hf["num_hidden_layers"],
        num_heads=hf["num_attention_heads"],
        mlp_dim=hf["intermediate_size"],
        rotary_pct=rope.get("partial_rotary_factor", hf.get("rotary_pct", 0.25)),
        rope_base=float(rope.get("rope_theta", hf.get("rotary_emb_base", 10_000.0))),
        norm_eps=hf.get("layer_norm_eps", 1e-5),
        init_std=hf.get("initializer_range", 0.02),
    )
    return PythiaConfig(**{**cfg.__dict__, **overrides})


def config_to_hf(cfg: PythiaConfig, dtype: str) -> dict[str, Any]:
    """A HF ``config.json`` dict for ``cfg`` with tensors stored in ``dtype``."""
    return {
        "architectures": [ARCHITECTURE],
        "model_type": "gpt_neox",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.mlp_dim,
        "hidden_act": "gelu",
        "rotary_pct": cfg.rotary_pct,
        "rotary_emb_base": cfg.rope_base,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": cfg.rope_base,
            "partial_rotary_factor": cfg.rotary_pct,
        },
        "layer_norm_eps": cfg.norm_eps,
        "initializer_range": cfg.init_std,
        "max_position_embeddings": _MAX_POSITIONS,
        "use_parallel_residual": True,
        "tie_word_embeddings": False,
        "attention_bias": True,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "dtype": dtype,
    }


def _fused_qkv(cfg: PythiaConfig, kind: str) -> rules.TensorRule:
    """The fused query_key_value weight or bias.

    Its output rows are interleaved per head: [head, (q|k|v), head_dim], so it must be
    viewed as heads x 3 x head_dim, never cut into three contiguous blocks.
    """
    D, N, H = cfg.d_model, cfg.num_heads, cfg.head_dim
    name = f"gpt_neox.layers.{{i}}.attention.query_key_value.{kind}"
    if kind == "weight":
        # [N*3*H, D] -> [N, 3, H, D]; each part goes to ours [D, N, H].
        def to_ours(w):
            w_N3HD = w.reshape(N, 3, H, D)
            return tuple(w_N3HD[:, j].transpose(2, 0, 1) for j in range(3))

        def to_hf(q, k, v):
            parts_N3HD = np.stack([p.transpose(1, 2, 0) for p in (q, k, v)], axis=1)
            return parts_N3HD.reshape(3 * D, D)

        ours = ("layers/attn/wq", "layers/attn/wk", "layers/attn/wv")
        return rules.TensorRule(name, (3 * D, D), ours, to_ours, to_hf, per_layer=True)

    def bias_to_ours(b):
        b_N3H = b.reshape(N, 3, H)
        return tuple(b_N3H[:, j] for j in range(3))

    def bias_to_hf(q, k, v):
        return np.stack([q, k, v], axis=1).reshape(3 * D)

    ours = ("layers/attn/bq", "layers/attn/bk", "layers/attn/bv")
    return rules.TensorRule(name, (3 * D,), ours, bias_to_ours, bias_to_hf, per_layer=True)


def tensor_rules(cfg: PythiaConfig) -> list[rules.TensorRule]:
    """Every HF tensor of a GPT-NeoX checkpoint and the parameters it maps to."""
    D, N, H, F, V = cfg.d_model, cfg.num_heads, cfg.head_dim, cfg.mlp_dim, cfg.vocab_size
    layer = "gpt_neox.layers.{i}."
    per_layer_same = {
        "input_layernorm.weight": ((D,), "attn_norm/scale"),
        "input_layernorm.bias": ((D,), "attn_norm/bias"),
        "post_attention_layernorm.weight": ((D,), "mlp_norm/scale"),
        "post_attention_layernorm.bias": ((D,), "mlp_norm/bias"),
        "attention.dense.bias": ((D,), "attn/bo"),
        "mlp.dense_h_to_4h.bias": ((F,), "mlp/b_in"),
        "mlp.dense_4h_to_h.bias": ((D,), "mlp/b_out"),
    }
    return [
        rules.same("gpt_neox.embed_in.weight", (V, D), "embed"),
        *(
            rules.same(f"{layer}{hf}", shape, f"layers/{ours}", per_layer=True)
            for hf, (shape, ours) in per_layer_same.items()
        ),
        _fused_qkv(cfg, "weight"),
        _fused_qkv(cfg, "bias"),
        rules.heads_out(f"{layer}attention.dense.weight", D, N, H, "layers/attn/wo"),
        rules.transposed(f"{layer}mlp.dense_h_to_4h.weight", (F, D), "layers/mlp/w_in", True),
        rules.transposed(f"{layer}mlp.dense_4h_to_h.weight", (D, F), "layers/mlp/w_out", True),
        rules.same("gpt_neox.final_layer_norm.weight", (D,), "final_norm/scale"),
        rules.same("gpt_neox.final_layer_norm.bias", (D,), "final_norm/bias"),
        rules.transposed("embed_out.weight", (V, D), "unembed"),
    ]
