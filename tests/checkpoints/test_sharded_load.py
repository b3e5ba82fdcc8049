"""Loading onto a device mesh, from HF safetensors and from our orbax checkpoints: each
tensor lands on the sharding its logical axes ask for.

Runs in a subprocess because the 8 virtual CPU devices must be configured before JAX
starts, and this test process already started it with one.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

from flax import nnx

from c2s_jax.checkpoints import export_hf
from c2s_jax.models import build_model, get_config
from tests.support.virtual_devices import virtual_device_env

SCRIPT = textwrap.dedent(
    """
    import sys
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import AxisType, PartitionSpec as P
    from c2s_jax.checkpoints import load_flax, load_hf, save_flax

    assert jax.device_count() == 8
    mesh = jax.make_mesh((2, 4), ("fsdp", "tensor"), axis_types=(AxisType.Auto,) * 2)
    rules = [("embed", "fsdp"), ("heads", "tensor"), ("kv_heads", None),
             ("mlp", "tensor"), ("vocab", "tensor")]
    sharded, _ = load_hf(sys.argv[1], mesh, rules=rules, compute_dtype="float32")
    single, _ = load_hf(sys.argv[1], compute_dtype="float32")

    wq = sharded.layers.attn.wq[...]
    assert wq.sharding.mesh == mesh and wq.sharding.spec == P(None, "fsdp", "tensor", None)
    assert sharded.embed[...].sharding.spec == P("tensor", "fsdp")
    assert sharded.final_norm.scale[...].sharding.spec == P("fsdp")
    # Each device holds only its block of a stacked parameter.
    assert wq.addressable_shards[0].data.shape == (2, 32, 1, 16)
    np.testing.assert_array_equal(wq, single.layers.attn.wq[...])

    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 512, (2, 12)))
    forward = jax.jit(lambda m, x: m(x))
    np.testing.assert_allclose(forward(sharded, tokens), forward(single, tokens), atol=1e-5)

    # Saved sharded, restored under other rules: orbax reshards while reading.
    save_flax(sharded, sys.argv[2])
    restored, _ = load_flax(sys.argv[2], mesh, rules=[("heads", "fsdp"), ("mlp", "tensor")])
    wq = restored.layers.attn.wq[...]
    assert wq.sharding.spec == P(None, None, "fsdp", None)
    np.testing.assert_array_equal(wq, single.layers.attn.wq[...])
    assert restored.layers.mlp.w_up[...].sharding.spec == P(None, None, "tensor")
    print("ok")
    """
)


def test_load_and_restore_onto_8_device_mesh(tmp_path):
    model = build_model(get_config("gemma2_tiny", dtype="float32"), rngs=nnx.Rngs(0))
    export_hf(model, tmp_path / "ckpt")
    env = virtual_device_env(8)
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "ckpt"), str(tmp_path / "flax")],
        env=env,
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
