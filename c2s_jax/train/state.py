"""The train state (step, trainable parameters, optimizer state) and how it is built.

The model is split once (`nnx.split`) into a static graph and arrays. What trains is
either every parameter (full fine-tuning) or only LoRA adapters, with the base weights
frozen and passed to the step as a separate, non-donated argument.
"""

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from c2s_jax import parallel
from c2s_jax.errors import InputError
from c2s_jax.models import build_model, get_config
from c2s_jax.models.lora import LoRA, with_lora


@flax.struct.dataclass
class TrainState:
    """Everything a step updates; a pytree that checkpoints save and restore."""

    step: jax.Array
    params: Any
    opt_state: Any


@dataclasses.dataclass(frozen=True)
class ModelParts:
    """The static side of the model: graph definitions and, with LoRA, the frozen base.

    Attributes:
      graphdef: the model's graph.
      config: the model config (Gemma2Config or PythiaConfig).
      frozen: base parameters when only adapters train, else None.
      lora_graphdef: the adapters' graph when training LoRA.
    """

    graphdef: Any
    config: Any
    frozen: Any = None
    lora_graphdef: Any = None

    def model(self, params, frozen=None):
        """The callable model for trainable `params` (and the frozen base under LoRA)."""
        if self.lora_graphdef is None:
            return nnx.merge(self.graphdef, params)
        # nnx only lets a transform (the layer scan) use Variables made at its own trace
        # level; the frozen base enters from an outer one (it is not differentiated), so
        # its containers are rebuilt here, at the level of the caller.
        base = nnx.merge(self.graphdef, jax.tree.map(lambda x: x, frozen))
        return with_lora(base, nnx.merge(self.lora_graphdef, params))


def model_config(cfg: ml_collections.ConfigDict):
    """The model config named by `config.model.name` with `config.model.overrides`."""
    overrides = dict(cfg.model.get("overrides", {}))
    try:
        return get_config(cfg.model.name, **overrides)
    except KeyError as err:
        raise InputError(f"config.model.name: {err.args[0]}") from None
    except TypeError as err:
        raise InputError(f"config.model.overrides: {err}") from None


def _shardings_of(tree, mesh: Mesh, rules) -> Any:
    specs = nnx.get_partition_spec(tree)
    return parallel.tree_shardings(specs, tree, mesh, rules)


def _build_base(cfg: ml_collections.ConfigDict, mesh: Mesh, rules):
    """(graphdef, params) of the base model, initialized or loaded directly onto the mesh."""
    model_cfg = model_config(cfg)
    if cfg.model.init_from:
        from c2s_jax.convert import load_hf  # imported here: only this path needs it

        model, model_cfg = load_hf(
            cfg.model.init_from,
            mesh=mesh,
            rules=list(rules),
            dtype=model_cfg.param_dtype,
            compute_dtype=model_cfg.dtype,
        )
        graphdef, params = nnx.split(model, nnx.Param)
        return graphdef, params, model_cfg
    abstract = nnx.eval_shape(lambda: build_model(model_cfg, rngs=nnx.Rngs(0)))
    graphdef, abstract_params = nnx.split(abstract, nnx.Param)
    shardings = _shardings_of(abstract_params, mesh, rules)

    def init():
        model = build_model(model_cfg, rngs=nnx.Rngs(params=cfg.seed))
        return nnx.state(model, nnx.Param)

    params = jax.jit(init, out_shardings=shardings)()
    return graphdef, params, model_cfg


def create_train_state(
    cfg: ml_collections.ConfigDict, tx: optax.GradientTransformation, mesh: Mesh
) -> tuple[TrainState, ModelParts, Any]:
    """Builds the state on the mesh.

    Returns:
      (state, parts, state_shardings): parameters placed by the logical-axis rules of
      `config.rules`, optimizer state alongside them, and the sharding tree of the state
      (what the step's in/out shardings and checkpoint restores use).
    """
    rules = tuple(cfg.rules)
    graphdef, base_params, model_cfg = _build_base(cfg, mesh, rules)
    if cfg.lora.rank:
        lora = LoRA(
            nnx.merge(graphdef, base_params),
            rank=cfg.lora.rank,
            alpha=cfg.lora.alpha,
            targets=tuple(cfg.lora.targets),
            rngs=nnx.Rngs(params=cfg.seed + 1),
        )
        lora_graphdef, params = nnx.split(lora, nnx.LoRAParam)
        params = jax.device_put(params, _shardings_of(params, mesh, rules))
        parts = ModelParts(graphdef, model_cfg, frozen=base_params, lora_graphdef=lora_graphdef)
    else:
        params, parts = base_params, ModelParts(graphdef, model_cfg)
    replicated = NamedSharding(mesh, PartitionSpec())
    opt_state = jax.jit(tx.init)(params)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state)
    shardings = jax.tree.map(
        lambda x: x.sharding if isinstance(x.sharding, NamedSharding) else replicated, state
    )
    return jax.device_put(state, shardings), parts, shardings
