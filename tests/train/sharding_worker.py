"""Builds the tiny experiment's train state and step on a data x fsdp x tensor mesh of all
devices and prints, as JSON, how its arrays are sharded.

Run in a fresh process (the device count is fixed at JAX start-up):
    XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m tests.train.sharding_worker
"""

import json
import re

import jax
import jax.numpy as jnp
import optax

from c2s_jax import parallel
from c2s_jax.config_loading import load_config
from c2s_jax.train.optimizer import optimizer_for
from c2s_jax.train.packing import BATCH_KEYS
from c2s_jax.train.state import ModelSpec, create_train_state
from c2s_jax.train.step import LossConfig, make_train_step
from tests.support.training import TINY

# An unusual batch shape, so that a buffer holding the whole batch is easy to spot in HLO.
ROWS, LENGTH = 16, 24


def main() -> None:
    cfg = load_config(TINY, ["mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2", "train.steps=10"])
    mesh = parallel.make_mesh(dict(cfg.mesh))
    rules = tuple(tuple(r) for r in cfg.rules)
    tx, schedule = optimizer_for(cfg.optimizer, cfg.train.steps)
    state, parts, shardings = create_train_state(ModelSpec.from_config(cfg), tx, mesh)

    # Every leaf of every optimizer-state tree shaped like the parameters (AdamW's two
    # moments): (its array's sharding, its parameter array's sharding).
    pairs = []

    def pair(moment, param):
        pairs.append((str(moment.sharding.spec), str(param.sharding.spec)))
        return moment

    optax.tree_map_params(tx, pair, state.opt_state, state.params)

    batch_sharding = parallel.batch_sharding(mesh, rules)
    step = make_train_step(
        parts, tx, schedule, LossConfig(cfg.data.num_tasks), shardings, batch_sharding, rules
    )
    batch = {
        k: jax.ShapeDtypeStruct((ROWS, LENGTH), jnp.int32, sharding=batch_sharding)
        for k in BATCH_KEYS
    }
    hlo = step.lower(state, batch, parts.frozen).compile().as_text()
    shapes = re.findall(r"\[(\d+),(\d+)[,\]]", hlo)
    print(
        json.dumps(
            {
                "devices": jax.device_count(),
                "batch_devices": mesh.shape["data"] * mesh.shape["fsdp"],
                "params": len(jax.tree.leaves(state.params)),
                "sharded_params": sum(
                    1 for x in jax.tree.leaves(state.params) if not x.sharding.is_fully_replicated
                ),
                "moment_and_param_specs": pairs,
                "global_rows": sum(1 for r, t in shapes if (int(r), int(t)) == (ROWS, LENGTH)),
                "local_rows": sum(1 for r, t in shapes if (int(r), int(t)) == (ROWS // 4, LENGTH)),
            }
        )
    )


if __name__ == "__main__":
    main()
