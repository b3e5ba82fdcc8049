"""The defaults every GRPO experiment starts from; experiment files change a few fields.

def get_config():
    c = default_config()
    c.init_from = "runs/pbmc68k"
    ...
    return c
"""

import ml_collections

from c2s_jax.train.default_config import default_config as training_defaults


def default_config() -> ml_collections.ConfigDict:
    """A complete GRPO config: cell type annotation on the model's own corpus, full-parameter
    updates with a k3 KL penalty, greedy held-out evaluation, one host."""
    training = training_defaults()
    c = ml_collections.ConfigDict()
    c.seed = 0
    # A training workdir (its newest export) or a model bundle directory.
    c.init_from = ""
    # Adapters, mesh, logical-axis rules and multi-host start-up as in training. With
    # lora.rank > 0 only adapters on lora.targets train and the reference policy is the
    # frozen base itself, so no second copy of the weights is held.
    for key in ("lora", "mesh", "dcn_data", "rules", "distributed"):
        c[key] = training[key]
    # Prompts come from a built corpus: data.corpus_dir, or the corpus the model was
    # trained on when empty. Training prompts from train_split, the held-out evaluation's
    # from eval_split; *_prompts caps how many are read (0: all of the split's).
    c.data = ml_collections.ConfigDict(
        {
            "corpus_dir": "",
            "tasks": ("cell_type_annotation",),
            "train_split": "validation",
            "eval_split": "test",
            "train_prompts": 0,
            "eval_prompts": 64,
        }
    )
    # Names from c2s_jax.rl.rewards.REWARDS, one weight each; the total is their sum.
    c.rewards = ml_collections.ConfigDict(
        {"names": ("exact_match", "format"), "weights": (1.0, 0.1)}
    )
    # group_size completions per prompt (G), sampled with these settings.
    c.sampling = ml_collections.ConfigDict(
        {"group_size": 8, "max_new_tokens": 32, "temperature": 1.0, "top_k": 0, "top_p": 1.0}
    )
    # The objective (c2s_jax.rl.objective.grpo_loss): `iterations` updates (mu) per batch
    # of prompts_per_step x group_size completions; clip_eps_high None = clip_eps; beta 0
    # drops the reference model (no copy, no forward pass); microbatches accumulate
    # gradients over parts of the batch.
    c.grpo = ml_collections.ConfigDict(
        {
            "prompts_per_step": 8,
            "iterations": 1,
            "clip_eps": 0.2,
            "clip_eps_high": None,
            "beta": 0.04,
            "kl_estimator": "k3",
            "aggregation": "sequence_mean_token_mean",
            "microbatches": 1,
        }
    )
    # AdamW as in training (c2s_jax.train.optimizer), gentler for reinforcement; the
    # schedule counts optimizer updates (train.steps x grpo.iterations).
    c.optimizer = training.optimizer
    c.optimizer.update(
        {
            "learning_rate": 1e-5,
            "warmup_steps": 0,
            "decay": "constant",
            "end_factor": 1.0,
            "b2": 0.99,
            "weight_decay": 0.0,
        }
    )
    c.train = ml_collections.ConfigDict(
        {"steps": 100, "checkpoint_every": 50, "keep_checkpoints": 2}
    )
    # Held-out evaluation every `every` steps (0: only at start and end): greedy when
    # temperature is 0, else `samples` completions per prompt with top_k/top_p of sampling.
    c.eval = ml_collections.ConfigDict(
        {"every": 20, "temperature": 0.0, "samples": 1, "batch_size": 64}
    )
    return c
