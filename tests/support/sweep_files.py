"""Sweep files written on the fly, and a truly tiny model to sweep."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "configs" / "train" / "gemma2_tiny_synthetic.py"
# A one-layer Gemma-2 that compiles and trains two steps in seconds.
TINY_MODEL = (
    "model.overrides={'d_model': 8, 'num_layers': 1, 'num_heads': 1, 'num_kv_heads': 1, "
    "'head_dim': 8, 'mlp_dim': 16, 'query_pre_attn_scalar': 8, 'vocab_size': 32, "
    "'dtype': 'float32', 'scan_layers': False}"
)
TINY_RUN = (
    TINY_MODEL,
    "data.batch_size=2",
    "data.seq_len=8",
    "data.eval_batches=1",
    "train.steps=2",
    "train.log_every=1",
    "train.eval_every=2",
    "train.checkpoint_every=1",
    "train.keep_checkpoints=3",
)


def write_sweep(
    path: Path, axes: str, base_overrides=TINY_RUN, extra: str = "", base: Path = BASE
) -> Path:
    """A sweep file at `path` whose get_config() has `axes` (Python source) and overrides."""
    lines = [
        "import ml_collections",
        "from c2s_jax.scaling.spec import axis",
        "",
        "def get_config():",
        "    c = ml_collections.ConfigDict()",
        f"    c.base = {str(base)!r}",
        f"    c.base_overrides = {tuple(base_overrides)!r}",
        f"    c.axes = ({axes},)",
        f"    {extra}",
        "    return c",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path
