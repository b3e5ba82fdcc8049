"""The train state (step, trainable parameters, optimizer state) and how it is built.

The model is split once (`nnx.split`) into a static graph and arrays. What trains is
either every parameter (full fine-tuning) or only LoRA adapters, with the base weights
frozen and passed to the step as a separate, non-donated argument.
"""

import dataclasses
import functools
from collections.abc import Mapping
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
from c2s_jax.models.lora import LoRA
from c2s_jax.models.parts import ModelParts, param_shardings, with_shardings
from c2s_jax.models.registry import abstract_model


@flax.struct.dataclass
class TrainState:
    """Everything a step updates; a pytree that checkpoints save and restore."""

    step: jax.Array
    params: Any
    opt_state: Any


@dataclasses.dataclass(frozen=True)
class LoraSpec:
    """Low-rank adapters to train instead of every parameter. No field has a default here:
    the defaults live in train/default_config.py alone.

    Attributes:
      rank: adapter rank; 0 trains every parameter (full fine-tuning).
      alpha: the adapters' scale numerator (updates are scaled by alpha / rank).
      targets: names of the projections that get adapters (e.g. 'wq', 'wv').
    """

    rank: int
    alpha: float
    targets: tuple[str, ...]

    @classmethod
    def from_config(cls, lora: ml_collections.ConfigDict) -> "LoraSpec":
        """`config.lora` read once."""
        return cls(rank=int(lora.rank), alpha=float(lora.alpha), targets=tuple(lora.targets))


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The model a run trains: `config.model`, `config.lora`, `config.seed` and
    `config.rules`, read once at the command's edge so nothing below reads the ConfigDict.

    Attributes:
      name: a registered model config name (e.g. 'gemma2_2b', 'pythia_160m').
      overrides: model config fields replaced by these values.
      init_from: an HF checkpoint folder to start from; '' initializes from `seed`.
      seed: seeds the initialization (and LoRA adapters, from seed + 1).
      lora: adapters to train instead of every parameter.
      rules: logical-axis -> mesh-axis rules that place the parameters.
    """

    name: str
    overrides: Mapping[str, Any]
    init_from: str
    seed: int
    lora: LoraSpec
    rules: parallel.Rules

    @classmethod
    def from_config(cls, cfg: ml_collections.ConfigDict) -> "ModelSpec":
        """The spec of a training config."""
        return cls(
            name=cfg.model.name,
            overrides=dict(cfg.model.overrides),
            init_from=cfg.model.init_from,
            seed=int(cfg.seed),
            lora=LoraSpec.from_config(cfg.lora),
            rules=tuple(tuple(rule) for rule in cfg.rules),
        )

    def model_config(self):
        """The model config `name` names, with `overrides` applied."""
        try:
            return get_config(self.name, **self.overrides)
        except KeyError as err:
            raise InputError(f"config.model.name: {err.args[0]}") from None
        except TypeError as err:
            raise InputError(f"config.model.overrides: {err}") from None


def state_shardings(
    params, tx: optax.GradientTransformation, mesh: Mesh, rules: parallel.Rules
) -> TrainState:
    """The sharding of every leaf of a TrainState over `params` (concrete or abstract).

    Parameters follow their logical axes; every optimizer-state tree shaped like the
    parameters (AdamW's moments) is sharded exactly like them; counters are replicated.
    """
    params_sharding = param_shardings(params, mesh, rules)
    replicated = NamedSharding(mesh, PartitionSpec())
    opt_sharding = optax.tree_map_params(
        tx,
        lambda _, sharding: sharding,
        jax.eval_shape(tx.init, params),
        params_sharding,
        transform_non_params=lambda _: replicated,
    )
    return TrainState(step=replicated, params=params_sharding, opt_state=opt_sharding)


def _fresh_state(tx: optax.GradientTransformation, params) -> TrainState:
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def new_train_state(params, tx: optax.GradientTransformation, shardings: TrainState) -> TrainState:
    """Step 0 over `params` with a fresh optimizer state, created directly into `shardings`
    (so no device ever holds a whole moment). `params`' buffers are donated."""
    return jax.jit(functools.partial(_fresh_state, tx), out_shardings=shardings, donate_argnums=0)(
        params
    )


def abstract_train_state(
    params, tx: optax.GradientTransformation, shardings: TrainState
) -> TrainState:
    """What :func:`new_train_state` returns, as sharded ShapeDtypeStructs."""
    return with_shardings(jax.eval_shape(functools.partial(_fresh_state, tx), params), shardings)


def base_model(spec: ModelSpec, mesh: Mesh, *, abstract: bool = False):
    """(graphdef, params, model config) of the model `spec` names: loaded from
    `spec.init_from`, or initialized from `spec.seed`, directly onto the mesh.

    With `abstract`, params are sharded ShapeDtypeStructs and nothing is read or allocated.
    """
    rules = spec.rules
    model_cfg = spec.model_config()
    if spec.init_from:
        # Imported here: only this path needs the checkpoint converters.
        from c2s_jax.checkpoints import load_hf
        from c2s_jax.checkpoints.load import hf_model_config

        load = dict(dtype=model_cfg.param_dtype, compute_dtype=model_cfg.dtype)
        if not abstract:
            model, model_cfg = load_hf(spec.init_from, mesh=mesh, rules=list(rules), **load)
            graphdef, params = nnx.split(model, nnx.Param)
            return graphdef, params, model_cfg
        model_cfg = hf_model_config(spec.init_from, **load)
    graphdef, shapes = nnx.split(abstract_model(model_cfg), nnx.Param)
    shardings = param_shardings(shapes, mesh, rules)
    if abstract:
        return graphdef, with_shardings(shapes, shardings), model_cfg

    def init():
        model = build_model(model_cfg, rngs=nnx.Rngs(params=spec.seed))
        return nnx.state(model, nnx.Param)

    return graphdef, jax.jit(init, out_shardings=shardings)(), model_cfg


def trainable_parts(
    graphdef,
    base_params,
    model_cfg,
    lora: LoraSpec,
    seed: int,
    mesh: Mesh,
    rules: parallel.Rules,
) -> tuple[ModelParts, Any]:
    """(parts, trainable params) over a base model: all its parameters, or, with
    `lora.rank` > 0, fresh adapters on `lora.targets` (seeded by `seed + 1`) over the frozen
    base. Abstract base parameters give abstract adapters."""
    if not lora.rank:
        return ModelParts(graphdef, model_cfg), base_params
    abstract = isinstance(jax.tree.leaves(base_params)[0], jax.ShapeDtypeStruct)

    def adapters() -> LoRA:
        return LoRA(
            nnx.merge(graphdef, base_params),
            rank=lora.rank,
            alpha=lora.alpha,
            targets=lora.targets,
            rngs=nnx.Rngs(params=seed + 1),
        )

    try:
        module = nnx.eval_shape(adapters) if abstract else adapters()
    except ValueError as err:
        raise InputError(f"config.lora.targets: {err}") from None
    lora_graphdef, params = nnx.split(module, nnx.LoRAParam)
    shardings = param_shardings(params, mesh, rules)
    params = with_shardings(params, shardings) if abstract else jax.device_put(params, shardings)
    parts = ModelParts(graphdef, model_cfg, frozen=base_params, lora_graphdef=lora_graphdef)
    return parts, params


def create_train_state(
    spec: ModelSpec,
    tx: optax.GradientTransformation,
    mesh: Mesh,
    *,
    abstract: bool = False,
) -> tuple[TrainState, ModelParts, TrainState]:
    """Builds the state of the model `spec` names on the mesh.

    Returns:
      (state, parts, state_shardings): parameters placed by the logical-axis rules of
      `spec.rules`, optimizer state sharded like them, and the sharding tree of the state
      (what the step's in/out shardings and checkpoint restores use). With `abstract`, the
      state (and a LoRA base in `parts.frozen`) are sharded ShapeDtypeStructs: enough to
      compile a step for any mesh, including a TPU topology's, without allocating.
    """
    rules = spec.rules
    graphdef, base_params, model_cfg = base_model(spec, mesh, abstract=abstract)
    parts, params = trainable_parts(
        graphdef, base_params, model_cfg, spec.lora, spec.seed, mesh, rules
    )
    shardings = state_shardings(params, tx, mesh, rules)
    if abstract:
        return abstract_train_state(params, tx, shardings), parts, shardings
    return new_train_state(params, tx, shardings), parts, shardings
