"""Reading an optimizer state: the subproblem solution θ̂, its zero pattern
and the inner solver's iterations.

Every function takes any nesting of optax states (``chain``, ``partition``,
``inject_hyperparams``, ``MultiSteps``, ``apply_if_finite``, the state of
``flax.nnx.Optimizer``) holding the states of this package's optimizers,
and joins what it finds over partitions. Where a partition owns no leaf,
the result holds ``optax.MaskedNode``.
"""

from typing import Any

import jax
import optax

from ramda_optax import _trees
from ramda_optax.dual_averaging import RamdaState
from ramda_optax.identification import zero_groups
from ramda_optax.layouts import GroupsSpec
from ramda_optax.proximal import ProximalState

_STATES = (RamdaState, ProximalState)


def _find_states(opt_state: Any) -> list[RamdaState | ProximalState]:
  is_state = lambda x: isinstance(x, _STATES)
  found = [
      s for s in jax.tree.leaves(_trees.unwrap_variables(opt_state), is_leaf=is_state)
      if is_state(s)
  ]
  if not found:
    raise ValueError(
        "opt_state holds no ramda_optax optimizer state (the dual-averaging "
        "state of ramda or rmda, or the proximal state of proxgen, prox_ssi "
        "or prox_sgd)."
    )
  return found


def _merge(trees: list[Any], fill: Any = None) -> Any:
  """Joins per-partition trees (``optax.MaskedNode`` where not owned)."""
  flat = [jax.tree.flatten(t, is_leaf=_trees.is_masked) for t in trees]
  treedef = flat[0][1]
  fills = (
      [optax.MaskedNode()] * treedef.num_leaves
      if fill is None else treedef.flatten_up_to(fill)
  )
  merged = []
  for i, default in enumerate(fills):
    owned = [leaves[i] for leaves, _ in flat if not _trees.is_masked(leaves[i])]
    merged.append(owned[0] if owned else default)
  return treedef.unflatten(merged)


def _restrict(tree: Any, like: Any) -> Any:
  """``tree``'s leaves where ``like`` has arrays (MaskedNodes kept)."""
  like_leaves, treedef = jax.tree.flatten(like, is_leaf=_trees.is_masked)
  return treedef.unflatten([
      m if _trees.is_masked(m) else x
      for x, m in zip(treedef.flatten_up_to(tree), like_leaves)
  ])


def _params_like(state: RamdaState | ProximalState, params: Any) -> Any:
  """A params-shaped tree of the state (MaskedNodes where not owned)."""
  if isinstance(state, RamdaState):
    return state.dual.anchor
  if state.stats:
    return state.stats[0]
  if params is None:
    raise ValueError(
        "this optimizer keeps no params-shaped buffer: pass params."
    )
  return params


def subproblem_solution(
    opt_state: Any, params: optax.Params | None = None
) -> optax.Params:
  r"""The last step's θ̂, the point whose zero pattern the paper's theory
  identifies.

  The dual-averaging methods (:func:`ramda_optax.ramda`,
  :func:`ramda_optax.rmda`) keep θ̂ in their state; the proximal ones
  (ProxGen, ProxSSI, ProxSGD) step to W = θ̂, so for them θ̂ is ``params``,
  the parameters after the update.

  Args:
    opt_state: any nesting of optax states holding this package's states.
    params: the current parameters; needed for the proximal methods, and
      fill the leaves that no state covers (else ``optax.MaskedNode``).

  Returns:
    θ̂ as a pytree like params, in the statistics' dtypes.

  Raises:
    ValueError: if no state of the package is found, or ``params`` is
      missing for a proximal method.
  """
  params = _trees.unwrap_variables(params)
  thetas = []
  for state in _find_states(opt_state):
    if isinstance(state, RamdaState):
      thetas.append(state.solution)
    elif params is None:
      raise ValueError(
          "a proximal method's θ̂ is the parameters after its step: pass "
          "params."
      )
    else:
      thetas.append(_restrict(params, _params_like(state, params)))
  return _merge(thetas, params)


def subproblem_zero_groups(
    opt_state: Any, groups: GroupsSpec, params: optax.Params | None = None
) -> Any:
  """Which groups of θ̂ are all zero (one pass over θ̂; jit-able).

  Args:
    opt_state: any nesting of optax states holding this package's states.
    groups: the groups specification of the regularizer (as for
      :func:`ramda_optax.group_lasso`).
    params: as for :func:`subproblem_solution`.

  Returns:
    :func:`ramda_optax.zero_groups` of θ̂: a pytree like params with, per
    regularized leaf, a bool array with one entry per group (the reduced
    axes dropped), True where the group is zero; None for leaves outside
    ``groups`` and ``optax.MaskedNode`` for leaves no state covers.
  """
  return zero_groups(subproblem_solution(opt_state, params), groups)


def inner_iterations(opt_state: Any, params: optax.Params | None = None) -> Any:
  """Subproblem solver iterations of the last step, one int per leaf: PG
  iterations or Newton passes (of the block that took most, where a leaf
  is solved by blocks), 1 for a closed-form prox, 0 for a leaf without a
  penalty or where τ = 0.

  Args:
    opt_state: any nesting of optax states holding this package's states.
    params: needed only for a proximal method whose statistics keep no
      params-shaped buffer.

  Returns:
    A pytree like params of int32 scalars (``optax.MaskedNode`` for leaves
    no state covers).
  """
  params = _trees.unwrap_variables(params)
  per_state = []
  for state in _find_states(opt_state):
    treedef = jax.tree.structure(_params_like(state, params))
    per_state.append(treedef.unflatten(list(state.inner_iters)))
  return _merge(per_state)
