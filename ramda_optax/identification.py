"""Watching structure identification: when does the zero pattern settle?

The paper's theory (Huang & Lee, NeurIPS 2024, Section 4) shows that after
finitely many steps the zero pattern of θ̂ is the one of the limit point.
A :class:`PatternHistory` follows one zero pattern (of θ̂, from
:func:`ramda_optax.subproblem_zero_groups`, or of the parameters, from
:func:`zero_groups`) inside a jitted training loop: the last step at which
it changed and how many groups flipped since the interval began.

Example:
  >>> import jax.numpy as jnp, ramda_optax as ro
  >>> groups = {'w': (1,)}
  >>> history = ro.identification.init(ro.zero_groups({'w': jnp.ones((3, 2))}, groups))
  >>> w = jnp.array([[1.0, 1.0], [0.0, 0.0], [1.0, 1.0]])
  >>> history = ro.identification.update(history, ro.zero_groups({'w': w}, groups))
  >>> int(history.last_change), int(history.flips)
  (1, 1)
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ramda_optax.layouts import GroupsSpec
from ramda_optax.layouts import leaf_groups


class PatternHistory(NamedTuple):
  """The history of one zero pattern.

  Attributes:
    step: patterns seen after the initial one.
    pattern: the latest pattern (a pytree of bool arrays, None leaves kept).
    last_change: the step at which the pattern last changed (0: never).
    flips: groups that changed (zero ↔ nonzero) since the interval began.
  """

  step: jax.Array
  pattern: Any
  last_change: jax.Array
  flips: jax.Array


def zero_groups(params: Any, groups: GroupsSpec) -> Any:
  """A pytree like params: True where a group is all zero, None where the
  leaf is not regularized (jit-able)."""
  leaves, treedef = jax.tree.flatten(params)
  return treedef.unflatten([
      None if axes is None else jnp.all(x == 0, axis=axes)
      for x, (_, axes) in zip(leaves, leaf_groups(groups, params))
  ])


def init(pattern: Any) -> PatternHistory:
  """Starts a history at ``pattern``."""
  return PatternHistory(
      step=jnp.zeros([], jnp.int32),
      pattern=pattern,
      last_change=jnp.zeros([], jnp.int32),
      flips=jnp.zeros([], jnp.int32),
  )


def update(history: PatternHistory, pattern: Any) -> PatternHistory:
  """Records the next pattern (one pass over the group masks)."""
  flips = sum(
      jnp.sum(old != new, dtype=jnp.int32)
      for old, new in zip(jax.tree.leaves(history.pattern), jax.tree.leaves(pattern))
  )
  step = history.step + 1
  return PatternHistory(
      step=step,
      pattern=pattern,
      last_change=jnp.where(flips > 0, step, history.last_change),
      flips=history.flips + flips,
  )


def new_interval(history: PatternHistory) -> PatternHistory:
  """Sets the flip counter to zero (e.g. at the start of an epoch)."""
  return history._replace(flips=jnp.zeros([], jnp.int32))
