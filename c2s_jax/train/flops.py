"""Training FLOPs per token and model FLOPs utilization (MFU).

Per layer, forward: 2*D*(Hq + 2*Hkv)*Dh (q, k, v) + 2*D*Hq*Dh (output) + MLP (GeGLU
6*D*F, GELU 4*D*F) + causal attention 2*S*Hq*Dh (a sliding-window layer attends to at
most W keys); plus 2*D*V for the unembedding. Training costs 3x the forward pass.
"""

from c2s_jax.models import Gemma2Config, PythiaConfig

# Dense bf16 peak FLOP/s per device (vendor figures), by substring of device_kind.
PEAK_FLOPS = {
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v5": 459e12,
    "TPU v6 lite": 918e12,
    "TPU v6e": 918e12,
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
}


def train_flops_per_token(cfg: Gemma2Config | PythiaConfig, seq_len: int) -> float:
    """Forward + backward FLOPs per token for sequences of `seq_len` tokens."""
    d, dh = cfg.d_model, cfg.head_dim
    hq = cfg.num_heads
    hkv = cfg.num_kv_heads
    if isinstance(cfg, Gemma2Config):
        mlp = 6 * d * cfg.mlp_dim
        windows = cfg.layer_windows
    else:
        mlp = 4 * d * cfg.mlp_dim
        windows = (0,) * cfg.num_layers
    forward = 2 * d * cfg.vocab_size
    for window in windows:
        keys = min(seq_len, window) if window else seq_len
        forward += 2 * d * (hq + 2 * hkv) * dh + 2 * d * hq * dh + mlp + 2 * keys * hq * dh
    return 3.0 * forward


def peak_flops(device_kind: str, configured: float | None = None) -> float | None:
    """Peak FLOP/s of one device: the configured value, else the table; None if unknown."""
    if configured:
        return float(configured)
    for name, flops in PEAK_FLOPS.items():
        if name.lower() in device_kind.lower():
            return flops
    return None
