"""A model split for jitted functions: its static side (:class:`ModelParts`) apart from its
parameter arrays, and where those arrays live on a mesh.

Training, GRPO, sampling, scoring and evaluation all pass a model this way: the graph
definition is static, the trainable parameters are a donated argument, and under LoRA the
frozen base is a separate, non-donated one.
"""

import dataclasses
from typing import Any

import jax
from flax import nnx
from jax.sharding import Mesh

from c2s_jax import parallel
from c2s_jax.models.lora import with_lora


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


def param_shardings(params, mesh: Mesh, rules: parallel.Rules) -> Any:
    """NamedShardings of a parameter tree (concrete or abstract) from the logical axes its
    Variables carry."""
    return parallel.tree_shardings(nnx.get_partition_spec(params), params, mesh, rules)


def with_shardings(tree, shardings) -> Any:
    """ShapeDtypeStructs of `tree`'s leaves carrying `shardings`: what `jit(...).lower`
    takes to compile for arrays that are never allocated."""
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings
    )
