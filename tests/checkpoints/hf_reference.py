"""Random-weight transformers models saved as HF checkpoints: the numerical reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import Gemma2Config, Gemma2ForCausalLM, GPTNeoXConfig, GPTNeoXForCausalLM

from c2s_jax.checkpoints.safetensors_io import CheckpointReader

GEMMA2_TINY = dict(
    vocab_size=97,
    hidden_size=48,
    intermediate_size=80,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    query_pre_attn_scalar=16,
    sliding_window=4096,
)
PYTHIA_TINY = dict(
    vocab_size=97,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    rotary_pct=0.25,
)


def _randomize(model: torch.nn.Module, seed: int) -> None:
    """Weights of unit-scale activations, so every path (norm scales, biases, softcaps)
    changes the logits; HF's default init leaves norms at identity and biases at zero."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=gen) / p.shape[1] ** 0.5)
            else:
                offset = 1.0 if "layernorm" in name or "layer_norm" in name else 0.0
                if isinstance(model, Gemma2ForCausalLM):
                    offset = 0.0  # Gemma's RMSNorm already multiplies by (1 + scale).
                p.copy_(offset + 0.2 * torch.randn(p.shape, generator=gen))


def _saved(model_class, config, path: Path, seed: int, dtype: torch.dtype):
    model = model_class(config).eval()
    _randomize(model, seed)
    model.to(dtype).save_pretrained(path)
    return model


def gemma2(path: Path, seed: int = 0, dtype: torch.dtype = torch.float32, **overrides):
    """A random Gemma2ForCausalLM saved to ``path``; returns the (eval-mode) torch model."""
    cfg = Gemma2Config(**{**GEMMA2_TINY, **overrides}, attn_implementation="eager")
    return _saved(Gemma2ForCausalLM, cfg, path, seed, dtype)


def pythia(path: Path, seed: int = 0, dtype: torch.dtype = torch.float32, **overrides):
    """A random GPTNeoXForCausalLM saved to ``path``; returns the (eval-mode) torch model."""
    cfg = GPTNeoXConfig(**{**PYTHIA_TINY, **overrides}, attn_implementation="eager")
    return _saved(GPTNeoXForCausalLM, cfg, path, seed, dtype)


def logits(model: torch.nn.Module, tokens: np.ndarray, **kwargs) -> np.ndarray:
    """float32 logits [B, T, V] of the torch model; kwargs are numpy arrays."""
    torch_kwargs = {k: torch.as_tensor(v) for k, v in kwargs.items()}
    with torch.no_grad():
        out = model(torch.as_tensor(tokens), **torch_kwargs).logits
    return out.float().numpy()


def pack(pieces: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One row holding ``pieces`` back to back: (tokens, segment_ids, positions), [1, T]."""
    tokens = np.concatenate(pieces)[None]
    segment_ids = np.concatenate([np.full(len(p), s + 1) for s, p in enumerate(pieces)])[None]
    positions = np.concatenate([np.arange(len(p)) for p in pieces])[None]
    return tokens, segment_ids, positions


def assert_close(ours, ref: np.ndarray, rel: float = 1e-4) -> None:
    """max |ours - ref| <= rel * max |ref| (tolerance relative to the logits' scale)."""
    ours = np.asarray(ours)
    assert ours.shape == ref.shape
    err, scale = np.abs(ours - ref).max(), np.abs(ref).max()
    assert err <= rel * scale, f"max abs diff {err:.3g} > {rel} x logit scale {scale:.3g}"


def assert_same_tensors(dir_a: Path, dir_b: Path) -> None:
    """Both HF checkpoint directories hold the same tensors, bit for bit."""
    a, b = CheckpointReader(dir_a), CheckpointReader(dir_b)
    assert sorted(a.names()) == sorted(b.names())
    for name in a.names():
        x, y = a.read(name), b.read(name)
        assert (x.dtype, x.shape) == (y.dtype, y.shape), name
        assert x.tobytes() == y.tobytes(), f"{name} differs"
