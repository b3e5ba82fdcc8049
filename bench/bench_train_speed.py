"""Training tokens/s of our full train step against transformers + torch.optim.AdamW.

Both sides do what a training step does: forward, backward and an AdamW update, float32,
on the same random weights (transformers saves them, our converter loads them) and the same
tokens. Ours is `c2s_jax.train.step.make_train_step` (jit, explicit shardings, donated
state, masked loss) with the layers unrolled (`scan_layers=False`, the small-model
setting). Each measurement is a fresh process, alternating sides; the table gives the
median over `--repeats` processes of each process's median step.

    .venv/bin/python bench/bench_train_speed.py --repeats 2 --steps 5
"""

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model_speed import FAMILIES, SMALL, hf_model, timed_steps, tokens
from report import run_worker, update_section

SHAPES = ((4, 256), (8, 512))


def worker_torch(family: str, ckpt_dir: str, steps: int) -> dict:
    """Saves the random transformers model and times eager steps with AdamW."""
    import torch

    model = hf_model(family).train()
    model.save_pretrained(ckpt_dir)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    results = {}
    for batch, seq in SHAPES:
        tokens_BT = torch.as_tensor(tokens(batch, seq))

        def step(tokens_BT=tokens_BT):
            optimizer.zero_grad(set_to_none=True)
            logits = model(tokens_BT[:, :-1]).logits
            torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), tokens_BT[:, 1:].reshape(-1)
            ).backward()
            optimizer.step()

        results[f"{batch}x{seq}"] = timed_steps(step, steps)
    return results


def worker_ours(family: str, ckpt_dir: str, steps: int) -> dict:
    """Our train step (AdamW) on the saved checkpoint."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    from c2s_jax import parallel
    from c2s_jax.checkpoints import load_hf
    from c2s_jax.models.parts import ModelParts
    from c2s_jax.train.data import to_global
    from c2s_jax.train.state import TrainState
    from c2s_jax.train.step import LossConfig, make_train_step

    model, config = load_hf(ckpt_dir, compute_dtype="float32", scan_layers=False)
    graphdef, params = nnx.split(model, nnx.Param)
    tx = optax.adamw(1e-4, weight_decay=0.1)
    mesh = Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1, 1), parallel.MESH_AXES)
    replicated = NamedSharding(mesh, PartitionSpec())
    batch_sharding = parallel.batch_sharding(mesh, parallel.DEFAULT_RULES)
    results = {}
    for batch, seq in SHAPES:
        # A fresh copy per shape: the step donates (and so deletes) the state it is given.
        fresh = jax.tree.map(jnp.copy, params)
        state = TrainState(jnp.zeros((), jnp.int32), fresh, tx.init(fresh))
        shardings = jax.tree.map(lambda _: replicated, state)
        step_fn = make_train_step(
            ModelParts(graphdef, config),
            tx,
            lambda _: 1e-4,
            LossConfig(),
            shardings,
            batch_sharding,
            parallel.DEFAULT_RULES,
        )
        sequence = tokens(batch, seq)
        host = {
            "tokens": sequence[:, :-1],
            "targets": sequence[:, 1:],
            "loss_mask": np.ones((batch, seq)),
            "segment_ids": np.ones((batch, seq)),
            "positions": np.broadcast_to(np.arange(seq), (batch, seq)),
            "task_id": np.zeros((batch, seq)),
        }
        data = to_global({k: np.asarray(v, np.int32) for k, v in host.items()}, batch_sharding)
        holder = {"state": state}

        def step(holder=holder, data=data, step_fn=step_fn):
            holder["state"], metrics = step_fn(holder["state"], data, None)
            jax.block_until_ready(metrics["loss"])

        results[f"{batch}x{seq}"] = timed_steps(step, steps)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        side, family, ckpt = args.worker
        run = worker_torch if side == "torch" else worker_ours
        print(json.dumps(run(family, ckpt, args.steps)))
        return
    rows = []
    for family in FAMILIES:
        runs = {"torch": [], "ours": []}
        with tempfile.TemporaryDirectory() as ckpt:
            for _ in range(args.repeats):
                for side in ("torch", "ours"):
                    runs[side].append(
                        run_worker(__file__, side, family, ckpt, "--steps", str(args.steps))
                    )
        for batch, seq in SHAPES:
            key = f"{batch}x{seq}"
            torch_s = statistics.median(r[key]["seconds"] for r in runs["torch"])
            ours_s = statistics.median(r[key]["seconds"] for r in runs["ours"])
            others = max(r[key]["other_cores"] for side in runs.values() for r in side)
            rows.append((family, key, batch * seq, torch_s, ours_s, others))
            print(
                f"{family} {key}: transformers+AdamW {batch * seq / torch_s:,.0f} tokens/s, "
                f"ours {batch * seq / ours_s:,.0f} tokens/s -> {torch_s / ours_s:.2f}x",
                flush=True,
            )
    lines = [
        "## Training step with AdamW: ours vs transformers + torch.optim.AdamW",
        "",
        f"Command: `.venv/bin/python bench/bench_train_speed.py --repeats {args.repeats} "
        f"--steps {args.steps}`. Forward, backward and AdamW update, float32, same weights "
        f"and tokens; model as in the section above (d_model {SMALL['hidden_size']}, "
        f"{SMALL['num_hidden_layers']} layers, vocabulary {SMALL['vocab_size']}); ours is the "
        "trainer's jitted step with unrolled layers. Median over fresh processes.",
        "",
        "| family | batch x length | transformers (tokens/s) | ours (tokens/s) | ratio | "
        "other load (cores) |",
        "|---|---|---:|---:|---:|---:|",
        *(
            f"| {f} | {k} | {n / t:,.0f} | {n / o:,.0f} | {t / o:.2f}x | {x:.2f} |"
            for f, k, n, t, o, x in rows
        ),
        "",
        "Goal: 1.5x.",
    ]
    update_section("bench_train_speed", "\n".join(lines))


if __name__ == "__main__":
    main()
