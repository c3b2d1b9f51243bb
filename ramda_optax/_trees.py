"""Pytree helpers shared by the modules."""

from typing import Any

import jax
from flax import nnx


def _is_variable(x: Any) -> bool:
  return isinstance(x, nnx.Variable)


def unwrap_variables(tree: Any) -> Any:
  """``tree`` with Flax NNX variables (``nnx.Param``, the ``OptVariable`` of
  ``nnx.Optimizer``...) replaced by their values, so that
  ``nnx.state(model, nnx.Param)`` and its pure form line up."""
  return jax.tree.map(
      lambda x: x.get_value() if _is_variable(x) else x, tree, is_leaf=_is_variable
  )
