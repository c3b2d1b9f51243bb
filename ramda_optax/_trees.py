"""Pytree helpers shared by the modules."""

import sys
from typing import Any

import jax
import optax


def is_masked(x: Any) -> bool:
  """Whether ``x`` is an ``optax.MaskedNode`` (a leaf left out by
  ``optax.partition`` or ``optax.masked``)."""
  return isinstance(x, optax.MaskedNode)


def unwrap_variables(tree: Any) -> Any:
  """``tree`` with Flax NNX variables (``nnx.Param``, the ``OptVariable`` of
  ``nnx.Optimizer``...) replaced by their values, so that
  ``nnx.state(model, nnx.Param)`` and its pure form line up.

  Flax is not imported here: where ``flax.nnx`` was never imported, no
  variable can be in ``tree``.
  """
  nnx = sys.modules.get("flax.nnx")
  if nnx is None:
    return tree
  is_variable = lambda x: isinstance(x, nnx.Variable)
  return jax.tree.map(
      lambda x: x.get_value() if is_variable(x) else x, tree, is_leaf=is_variable
  )
