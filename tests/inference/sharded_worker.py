"""Generates with a tiny model on a mesh of all devices; prints tokens and log-probs as JSON.

Run in a fresh process (the device count is fixed at JAX start-up):
    XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m tests.inference.sharded_worker
"""

import json

import jax
import numpy as np
from flax import nnx

from c2s_jax import parallel
from c2s_jax.inference.sampler import Sampler, SamplingParams
from tests.inference.helpers import VOCAB, tiny_parts


def main() -> None:
    parts, params = tiny_parts("gemma2_tiny", seed=5)
    # Rows over data, weights over fsdp and tensor (on one device every axis has size 1).
    sizes = {"data": 2, "fsdp": -1, "tensor": 2} if jax.device_count() == 8 else {"data": -1}
    mesh = parallel.make_mesh({"fsdp": 1, "tensor": 1, **sizes})
    rules = parallel.DEFAULT_RULES
    shardings = parallel.tree_shardings(nnx.get_partition_spec(params), params, mesh, rules)
    params = jax.device_put(params, shardings)
    sampler = Sampler(parts, params, eos_id=1, mesh=mesh, rules=rules)
    rng = np.random.default_rng(0)
    prompts = [rng.integers(2, VOCAB, n).astype(np.int32) for n in (3, 7, 5)]
    out = {}
    for name, settings in {
        "greedy": SamplingParams(max_new_tokens=6),
        "sampled": SamplingParams(max_new_tokens=6, temperature=1.5, top_p=0.9, seed=3),
    }.items():
        tokens, logprobs, _ = sampler.generate_tokens(prompts, settings)
        out[name] = {"tokens": tokens.tolist(), "logprobs": logprobs.tolist()}
    out["devices"] = jax.device_count()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
