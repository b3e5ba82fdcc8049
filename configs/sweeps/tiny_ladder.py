"""A ladder of five Gemma-2 sizes on synthetic tokens: the cheapest scaling sweep.

    c2s sweep --config configs/sweeps/tiny_ladder.py --out sweeps/tiny_ladder
    c2s sweep --config configs/sweeps/tiny_ladder.py --out sweeps/tiny_ladder --dry-run

Ten members: sizes xs..xl (9,376 to 985,216 non-embedding parameters, 105x) x two token
budgets (40,960 and 163,840 tokens of 8 x 64; 80 and 320 steps). Each writes its
checkpoints and metrics to sweeps/tiny_ladder/NAME and appends one line to
sweeps/tiny_ladder/results.jsonl (parameters, tokens, FLOPs, final evaluation loss over
both tasks and per task). Measured on a busy 2-core CPU: 8 minutes for the ten, most of it
XLA compilation; rerunning gives the same losses, skips recorded members and resumes an
interrupted one. The synthetic answers copy Zipf-distributed prompts: after 40,960 tokens
every size still predicts little more than token frequencies (eval loss 4.8 to 4.5), after
163,840 tokens the loss falls with size from 4.02 (xs) to 2.47 (s), 1.07 (m) and 1.00 (l),
while xl, with the same learning rate of 3e-3, is still mid-way through learning to copy
(1.76).
"""

import ml_collections

from c2s_jax.scaling.spec import axis, gemma2_size


def _gemma2(d_model, num_layers, num_heads, num_kv_heads, head_dim, mlp_dim):
    return gemma2_size(
        d_model,
        num_layers,
        num_heads,
        num_kv_heads,
        head_dim,
        mlp_dim,
        vocab_size=512,
        dtype="float32",
        # Unrolled layers step faster on a CPU; these models are shallow.
        scan_layers=False,
    )


def get_config():
    c = ml_collections.ConfigDict()
    c.base = "configs/train/gemma2_tiny_synthetic.py"
    c.base_overrides = (
        "data.batch_size=8",
        "data.seq_len=64",
        "data.eval_batches=8",
        "optimizer.warmup_steps=10",
        "train.log_every=20",
        "train.eval_every=1000000",  # evaluate once, at the end
        "train.checkpoint_every=100",
        "train.keep_checkpoints=1",
    )
    c.axes = (
        axis(
            "size",
            points={
                "xs": _gemma2(32, 1, 2, 1, 16, 64),
                "s": _gemma2(48, 2, 2, 1, 24, 128),
                "m": _gemma2(64, 2, 4, 2, 16, 256),
                "l": _gemma2(96, 3, 4, 2, 24, 384),
                "xl": _gemma2(128, 4, 4, 2, 32, 512),
            },
        ),
        axis("tokens", "tokens", (40_960, 163_840)),
    )
    return c
