"""A ladder of five Gemma-2 sizes trained on the multi-task pbmc68k corpus.

    c2s corpus build --config configs/corpus/pbmc68k_multitask.py --out c2s_demo_out/corpus \\
        --config.seq_len=256 "--config.top_k=(20,40)" "--config.cells_per_example=(3,5)" \\
        "--config.examples={'train':3000,'validation':200,'test':200}"
    c2s sweep --config configs/sweeps/pbmc68k_ladder.py --out sweeps/pbmc68k_ladder

(`c2s demo` builds the same corpus.) Ten members: sizes xs..xl (31k to 3.3M non-embedding
parameters, 107x; the vocabulary covers the corpus tokenizer's ~2,400 pieces) x two token
budgets (245,760 and 491,520 tokens of 8 x 512; 60 and 120 steps). Each appends one line to
sweeps/pbmc68k_ladder/results.jsonl with its parameters, tokens, FLOPs and final
evaluation loss over all tasks and per task, trained on the corpus's own task mixture
(not the main job's annotation-heavy one) (cell type annotation, tissue inference,
conditional generation, multi-cell context, question answering). Expected on a busy 2-core
CPU: about 40 minutes, most of it in the two xl members (about 8 s per step; xs trains
its 60 steps in a minute or two). Rerunning resumes.

On a Cloud TPU, after `python -m launch create/setup` and `python -m launch data
--src gs://BUCKET/corpora/pbmc68k` (see launch/README.md):

    c2s sweep --config configs/sweeps/pbmc68k_ladder.py --out sweeps/pbmc68k_ladder \\
        --runner tpu --workdir-root gs://BUCKET/sweeps/pbmc68k_ladder \\
        --launch-args "--name c2s-v5e --zone us-west4-a --accelerator-type v5litepod-8 \\
        --config.data.corpus_dir=/mnt/c2s-data/pbmc68k"

A task-mixture axis needs one corpus per mixture: build each with its `tasks` weights and
add axis("mixture", points={"annotation": {"data.corpus_dir": "corpus_a"}, ...}).
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
        vocab_size=2560,
        sliding_window=512,
        dtype="float32",
    )


def get_config():
    c = ml_collections.ConfigDict()
    c.base = "configs/train/gemma2_pbmc68k.py"
    c.base_overrides = (
        "data.corpus_dir='c2s_demo_out/corpus'",
        "data.eval_batches=4",
        "data.seq_len=512",  # rows of 8 x 512 tokens, as the token budgets count
        "data.task_weights={}",  # the corpus's own mixture
        "optimizer.warmup_steps=20",
        "train.eval_every=1000000",  # evaluate once, at the end
        "train.checkpoint_every=60",
        "train.keep_checkpoints=1",
    )
    c.axes = (
        axis(
            "size",
            points={
                "xs": _gemma2(32, 2, 2, 1, 16, 128),
                "s": _gemma2(64, 2, 4, 2, 16, 256),
                "m": _gemma2(96, 3, 4, 2, 24, 384),
                "l": _gemma2(128, 4, 4, 2, 32, 512),
                "xl": _gemma2(192, 6, 6, 3, 32, 768),
            },
        ),
        axis("tokens", "tokens", (245_760, 491_520)),
    )
    return c
