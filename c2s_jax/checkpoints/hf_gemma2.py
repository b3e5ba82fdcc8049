"""HF ``Gemma2ForCausalLM`` <-> :class:`~c2s_jax.models.gemma2.Gemma2`: config and tensors."""

from __future__ import annotations

from typing import Any

from c2s_jax.checkpoints import rules
from c2s_jax.models.gemma2 import Gemma2Config

ARCHITECTURE = "Gemma2ForCausalLM"
# The output projection is tied to the embedding: HF leaves it out of saved checkpoints,
# and where a file carries the copy anyway it is the embedding again, so it is skipped.
IGNORED_SUFFIXES = ("lm_head.weight",)
_MAX_POSITIONS = 8192


def _rope_theta(hf: dict[str, Any]) -> float:
    rope = hf.get("rope_parameters") or {}
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"unsupported Gemma-2 rope_type {rope['rope_type']!r}")
    return float(rope.get("rope_theta", hf.get("rope_theta", 10_000.0)))


def config_from_hf(hf: dict[str, Any], **overrides: Any) -> Gemma2Config:
    """Our config from a HF ``config.json`` dict; refuses variants we do not implement."""
    act = hf.get("hidden_activation") or hf.get("hidden_act") or "gelu_pytorch_tanh"
    if act not in ("gelu_pytorch_tanh", "gelu_tanh"):
        raise ValueError(f"unsupported Gemma-2 activation {act!r} (expected tanh GELU)")
    if not hf.get("tie_word_embeddings", True):
        raise ValueError("unsupported Gemma-2 variant: untied output embedding")
    if hf.get("use_bidirectional_attention"):
        raise ValueError("unsupported Gemma-2 variant: bidirectional attention")
    if hf.get("attention_bias", False):
        raise ValueError("unsupported Gemma-2 variant: attention_bias=True")
    num_layers = hf["num_hidden_layers"]
    expected_types = [
        "sliding_attention" if i % 2 == 0 else "full_attention" for i in range(num_layers)
    ]
    if hf.get("layer_types", expected_types) != expected_types:
        raise ValueError("unsupported Gemma-2 layer_types: expected sliding on even layers")
    cfg = Gemma2Config(
        vocab_size=hf["vocab_size"],
        d_model=hf["hidden_size"],
        num_layers=num_layers,
        num_heads=hf["num_attention_heads"],
        num_kv_heads=hf["num_key_value_heads"],
        head_dim=hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"],
        mlp_dim=hf["intermediate_size"],
        query_pre_attn_scalar=hf["query_pre_attn_scalar"],
        sliding_window=hf.get("sliding_window") or 0,
        attn_logit_softcap=hf.get("attn_logit_softcapping"),
        final_logit_softcap=hf.get("final_logit_softcapping"),
        rope_base=_rope_theta(hf),
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        init_std=hf.get("initializer_range", 0.02),
    )
    return Gemma2Config(**{**cfg.__dict__, **overrides})


def config_to_hf(cfg: Gemma2Config, dtype: str) -> dict[str, Any]:
    """A HF ``config.json`` dict for ``cfg`` with tensors stored in ``dtype``."""
    return {
        "architectures": [ARCHITECTURE],
        "model_type": "gemma2",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "intermediate_size": cfg.mlp_dim,
        "hidden_activation": "gelu_pytorch_tanh",
        "query_pre_attn_scalar": cfg.query_pre_attn_scalar,
        "sliding_window": cfg.sliding_window,
        "layer_types": ["sliding_attention" if w else "full_attention" for w in cfg.layer_windows],
        "attn_logit_softcapping": cfg.attn_logit_softcap,
        "final_logit_softcapping": cfg.final_logit_softcap,
        "rope_theta": cfg.rope_base,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_base},
        "rms_norm_eps": cfg.norm_eps,
        "initializer_range": cfg.init_std,
        "max_position_embeddings": _MAX_POSITIONS,
        "tie_word_embeddings": True,
        "attention_bias": False,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "bos_token_id": 2,
        "dtype": dtype,
    }


def tensor_rules(cfg: Gemma2Config) -> list[rules.TensorRule]:
    """Every HF tensor of a Gemma-2 checkpoint and the parameters it maps to."""
    D, N, K, H, F = cfg.d_model, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.mlp_dim
    layer = "model.layers.{i}."
    norms = {
        "input_layernorm": "pre_attn_norm",
        "post_attention_layernorm": "post_attn_norm",
        "pre_feedforward_layernorm": "pre_mlp_norm",
        "post_feedforward_layernorm": "post_mlp_norm",
    }
    return [
        rules.same("model.embed_tokens.weight", (cfg.vocab_size, D), "embed"),
        *(
            rules.same(f"{layer}{hf}.weight", (D,), f"layers/{ours}/scale", per_layer=True)
            for hf, ours in norms.items()
        ),
        rules.heads_in(f"{layer}self_attn.q_proj.weight", D, N, H, "layers/attn/wq"),
        rules.heads_in(f"{layer}self_attn.k_proj.weight", D, K, H, "layers/attn/wk"),
        rules.heads_in(f"{layer}self_attn.v_proj.weight", D, K, H, "layers/attn/wv"),
        rules.heads_out(f"{layer}self_attn.o_proj.weight", D, N, H, "layers/attn/wo"),
        rules.transposed(f"{layer}mlp.gate_proj.weight", (F, D), "layers/mlp/w_gate", True),
        rules.transposed(f"{layer}mlp.up_proj.weight", (F, D), "layers/mlp/w_up", True),
        rules.transposed(f"{layer}mlp.down_proj.weight", (D, F), "layers/mlp/w_down", True),
        rules.same("model.norm.weight", (D,), "final_norm/scale"),
    ]
