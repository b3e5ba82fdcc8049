"""Training-step speed of our models (jit) against transformers on PyTorch (eager).

Both sides run forward + backward of the mean next-token cross-entropy on the same
random weights (a transformers model is saved and loaded through our converter), the same
batch and the same float32 compute, on the CPU. Prints tokens/s for each (median of
``--runs`` timed steps after warm-up) and ours / transformers.

    python bench/bench_model_speed.py --family gemma2 --batch 4 --seq 256
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from flax import nnx
from transformers import Gemma2Config, Gemma2ForCausalLM, GPTNeoXConfig, GPTNeoXForCausalLM

from c2s_jax.convert import load_hf

# A small member of each family, sized so a step takes well under a second on a laptop.
HF_CONFIGS = {
    "gemma2": lambda vocab: Gemma2ForCausalLM(
        Gemma2Config(
            vocab_size=vocab,
            hidden_size=256,
            intermediate_size=1024,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=64,
            query_pre_attn_scalar=64,
            sliding_window=128,
            attn_implementation="eager",
        )
    ),
    "pythia": lambda vocab: GPTNeoXForCausalLM(
        GPTNeoXConfig(
            vocab_size=vocab,
            hidden_size=256,
            intermediate_size=1024,
            num_hidden_layers=4,
            num_attention_heads=4,
            attn_implementation="eager",
        )
    ),
}


def median_seconds(step, runs: int, warmup: int = 2) -> float:
    """Median wall time of ``step()`` over ``runs`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ours_step(model, tokens_BT: jax.Array):
    """A jitted forward+backward of our model; returns a callable that blocks on it."""

    @nnx.jit
    def loss_and_grads(model, tokens_BT):
        def loss_fn(model):
            logits_BTV = model(tokens_BT[:, :-1])
            return optax.softmax_cross_entropy_with_integer_labels(
                logits_BTV, tokens_BT[:, 1:]
            ).mean()

        return nnx.value_and_grad(loss_fn)(model)

    return lambda: jax.block_until_ready(loss_and_grads(model, tokens_BT))


def torch_step(model: torch.nn.Module, tokens_BT: torch.Tensor):
    """An eager forward+backward of the transformers model."""

    def step():
        model.zero_grad(set_to_none=True)
        logits = model(tokens_BT[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), tokens_BT[:, 1:].reshape(-1)
        )
        loss.backward()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=sorted(HF_CONFIGS), default="gemma2")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    torch.manual_seed(0)
    torch_model = HF_CONFIGS[args.family](args.vocab).train()
    tokens = np.random.default_rng(0).integers(0, args.vocab, (args.batch, args.seq + 1))
    # PyTorch is timed before JAX runs anything: XLA's CPU worker threads keep spinning
    # for a while after each computation and would slow a PyTorch step run after them.
    torch_s = median_seconds(torch_step(torch_model, torch.as_tensor(tokens)), args.runs)
    with tempfile.TemporaryDirectory() as tmp:
        torch_model.save_pretrained(tmp)
        model, _ = load_hf(tmp, compute_dtype="float32")
    ours_s = median_seconds(ours_step(model, jnp.asarray(tokens)), args.runs)
    n_tokens = args.batch * args.seq
    print(
        f"{args.family} d=256 L=4 vocab={args.vocab} batch={args.batch} seq={args.seq} "
        f"fp32 fwd+bwd, median of {args.runs} ({jax.devices()[0].platform}, "
        f"torch threads={torch.get_num_threads()})"
    )
    print(f"  ours (jax.jit)        {n_tokens / ours_s:10.0f} tokens/s  ({ours_s * 1e3:.1f} ms)")
    print(f"  transformers (eager)  {n_tokens / torch_s:10.0f} tokens/s  ({torch_s * 1e3:.1f} ms)")
    print(f"  ratio ours / transformers: {torch_s / ours_s:.2f}x")


if __name__ == "__main__":
    main()
