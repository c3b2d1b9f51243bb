"""RAMDA and the regularized dual-averaging family as optax transformations.

    statistics → (a, v, P, τ) per leaf → θ̂ ≈ argmin Q → W ← (1 − c) W + c θ̂

Reference: Huang & Lee, "Regularized Adaptive Momentum Dual Averaging with an
Efficient Inexact Subproblem Solver for Training Structured Neural Networks",
NeurIPS 2024 (arXiv 2403.14398), Algorithm 1.
"""

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ramda_optax import _trees
from ramda_optax import _validation
from ramda_optax import dual_averaging
from ramda_optax import preconditioners
from ramda_optax import solvers
from ramda_optax.regularizers import LeafPenalty, Regularizer, check_regularizer


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class SubproblemSpec:
  """The static part of the subproblem: a pytree node with no leaves.

  Stored in the optimizer state so that θ̂ can be rebuilt from the state
  alone (:func:`subproblem_solution`). Hashable and compared by value, so a
  re-built optimizer (as ``optax.inject_hyperparams`` does every step) keeps
  the state's tree structure.

  Attributes:
    metric: the preconditioner's ``(stats, damping, stage_count) -> P``.
    penalties: one leaf penalty or None per leaf.
    solver: the subproblem solver.
  """

  metric: Callable[[Any, jax.Array, jax.Array], Any]
  penalties: tuple[LeafPenalty | None, ...]
  solver: Any


class RamdaState(NamedTuple):
  """State of :func:`regularized_dual_averaging` (and so of :func:`ramda`).

  Attributes:
    dual: the dual-average accumulator (count, k, α, W⁰, V).
    precond: the preconditioner's statistics (U for the cube root).
    damping: ε in force at the last step.
    threshold: τ = α λ of the last step.
    inner_iters: solver iterations of the last step, one int per leaf.
    spec: the static subproblem description.
  """

  dual: dual_averaging.DualAveragingState
  precond: Any
  damping: jax.Array
  threshold: jax.Array
  inner_iters: Any
  spec: SubproblemSpec


def _value_at(schedule: optax.ScalarOrSchedule, count: jax.Array) -> Any:
  return schedule(count) if callable(schedule) else schedule


def regularized_dual_averaging(
    learning_rate: optax.ScalarOrSchedule,
    *,
    preconditioner: preconditioners.Preconditioner,
    momentum: optax.ScalarOrSchedule = 0.9,
    regularizer: Regularizer | None = None,
    solver: Any = None,
    restart_steps: Sequence[int] = (),
) -> optax.GradientTransformationExtraArgs:
  r"""Regularized momentum dual averaging with a pluggable diagonal metric.

  At step t (k steps since the last restart), with g the gradient at W:

      s = η √k,  α ← α + s,  V ← V + s g,  P = metric(stats)
      θ̂ ≈ argmin <V, θ − W⁰> + ½‖θ − W⁰‖²_P + α λ ψ(θ)
      W ← momentum · W + (1 − momentum) · θ̂

  :func:`ramda` is this with :func:`ramda_optax.cube_root`.

  Args:
    learning_rate: η ≥ 0, a number or an ``optax`` schedule.
    preconditioner: the metric (see :mod:`ramda_optax.preconditioners`).
    momentum: 1 − c in [0, 1), a number or a schedule.
    regularizer: λψ, or None for none.
    solver: the subproblem solver; :func:`ramda_optax.pg_solver` by default.
    restart_steps: global steps (0-based counts of steps taken) at which the
      dual averaging restarts and ε is multiplied by the preconditioner's
      decay.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` needs ``params``
    and returns W_new − W.
  """
  _validation.check_range("learning_rate", learning_rate, 0.0)
  _validation.check_range("momentum", momentum, 0.0, 1.0, high_open=True)
  check_regularizer(regularizer)
  solver = solvers.pg_solver() if solver is None else solver
  restart_steps = dual_averaging.check_restart_steps(restart_steps)

  def make_spec(params: optax.Params) -> SubproblemSpec:
    if regularizer is None:
      penalties = (None,) * len(jax.tree.leaves(params))
    else:
      penalties = regularizer.layout(params)
    solvers.check_solver(solver, penalties)
    return SubproblemSpec(preconditioner.metric, penalties, solver)

  def init_fn(params: optax.Params) -> RamdaState:
    dual = dual_averaging.init(params)
    return RamdaState(
        dual=dual,
        precond=preconditioner.init(params),
        damping=jnp.asarray(preconditioner.damping, dual.alpha.dtype),
        threshold=jnp.zeros([], dual.alpha.dtype),
        inner_iters=jax.tree.map(lambda _: jnp.zeros([], jnp.int32), params),
        spec=make_spec(params),
    )

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError(
          "ramda needs params: call update(updates, state, params)."
      )
    spec = make_spec(params)
    count = state.dual.count
    restart, num_restarts = dual_averaging.stage(count, restart_steps)
    if not restart_steps:
      restart = False
    dual, weight = dual_averaging.update(
        updates, state.dual, params, _value_at(learning_rate, count), restart
    )
    precond = preconditioner.update(state.precond, updates, weight, restart)
    dtype = dual.alpha.dtype
    damping = jnp.asarray(preconditioner.damping, dtype) * jnp.asarray(
        preconditioner.damping_decay, dtype
    ) ** num_restarts
    strength = 0.0 if regularizer is None else _value_at(
        regularizer.strength, count
    )
    threshold = (dual.alpha * strength).astype(dtype)
    metric = spec.metric(precond, damping, dual.stage_count)
    theta, inner_iters = solvers.solve_tree(
        spec.solver, spec.penalties, dual.anchor, dual.grad_sum, metric,
        threshold, params, dual.count,
    )
    m = jnp.asarray(_value_at(momentum, count), dtype)
    new_updates = jax.tree.map(
        lambda t, w: ((1 - m) * t + m * w.astype(dtype) - w).astype(w.dtype),
        theta,
        params,
    )
    return new_updates, RamdaState(
        dual=dual,
        precond=precond,
        damping=damping,
        threshold=threshold,
        inner_iters=inner_iters,
        spec=spec,
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def ramda(
    learning_rate: optax.ScalarOrSchedule,
    *,
    momentum: optax.ScalarOrSchedule = 0.9,
    eps: float = 1e-6,
    regularizer: Regularizer | None = None,
    solver: Any = None,
    restart_steps: Sequence[int] = (),
    eps_decay: float = 0.1,
) -> optax.GradientTransformationExtraArgs:
  r"""RAMDA: regularized adaptive momentum dual averaging.

  At step t, k steps after the last restart, with g the gradient at W:

      s = η √k,  α ← α + s,  V ← V + s g,  U ← U + s g²,  P = ∛U + ε
      θ̂ ≈ argmin <V, θ − W⁰> + ½‖θ − W⁰‖²_P + α λ ψ(θ)
      W ← (1 − c) W + c θ̂,      c = 1 − momentum

  The subproblem is solved by ``solver`` (the paper's inexact proximal
  gradient by default). With no regularizer this is MADGRAD (whose optax
  version adds ε to the learning rate). At each step in ``restart_steps``
  the dual averaging restarts (k, α, V, U ← 0, W⁰ ← W) and ε ← ε ·
  ``eps_decay``; :func:`ramda_optax.stagewise_schedule` builds the paper's
  whole schedule.

  Args:
    learning_rate: η ≥ 0, a number or an ``optax`` schedule.
    momentum: 1 − c in [0, 1), a number or an ``optax`` schedule; 0 makes
      W = θ̂.
    eps: ε ≥ 0 added to the cube root.
    regularizer: λψ (e.g. :func:`ramda_optax.group_lasso`), or None.
    solver: subproblem solver; :func:`ramda_optax.pg_solver` by default.
    restart_steps: strictly increasing global steps (counts of steps taken)
      at which the dual averaging restarts.
    eps_decay: factor in (0, 1] applied to ε at each restart.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` needs ``params``.

  Example:
    >>> import jax, jax.numpy as jnp, optax, ramda_optax
    >>> params = {'w': jnp.ones((4, 3)), 'b': jnp.zeros(3)}
    >>> opt = ramda_optax.ramda(
    ...     1e-2, momentum=0.9,
    ...     regularizer=ramda_optax.group_lasso(1e-3, {'w': (1,), 'b': None}))
    >>> state = opt.init(params)
    >>> grads = jax.tree.map(jnp.ones_like, params)
    >>> updates, state = opt.update(grads, state, params)
    >>> params = optax.apply_updates(params, updates)

  References:
    Huang & Lee, NeurIPS 2024 (arXiv 2403.14398), Algorithm 1.
  """
  return regularized_dual_averaging(
      learning_rate,
      preconditioner=preconditioners.cube_root(eps, eps_decay),
      momentum=momentum,
      regularizer=regularizer,
      solver=solver,
      restart_steps=restart_steps,
  )


def rmda(
    learning_rate: optax.ScalarOrSchedule,
    *,
    momentum: optax.ScalarOrSchedule = 0.9,
    regularizer: Regularizer | None = None,
    solver: Any = None,
    restart_steps: Sequence[int] = (),
) -> optax.GradientTransformationExtraArgs:
  r"""RMDA: regularized modernized dual averaging (scalar metric √k · I).

      s = η √k,  α ← α + s,  V ← V + s g
      θ̂ = prox_{α λ ψ / √k}(W⁰ − V / √k)
      W ← (1 − c) W + c θ̂,      c = 1 − momentum

  Args:
    learning_rate: η ≥ 0, a number or an ``optax`` schedule.
    momentum: 1 − c in [0, 1), a number or an ``optax`` schedule.
    regularizer: λψ, or None.
    solver: the closed-form :func:`ramda_optax.prox_solver` by default
      (exact, the metric being scalar).
    restart_steps: strictly increasing global steps at which the dual
      averaging restarts (k, α, V ← 0, W⁰ ← W).

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` needs ``params``.

  References:
    Huang, Chen & Lee, Training structured neural networks through manifold
    identification and variance reduction, ICLR 2022 (arXiv 2112.02612).
  """
  return regularized_dual_averaging(
      learning_rate,
      preconditioner=preconditioners.sqrt_count(),
      momentum=momentum,
      regularizer=regularizer,
      solver=solvers.prox_solver() if solver is None else solver,
      restart_steps=restart_steps,
  )


def _find_states(opt_state: Any) -> list[RamdaState]:
  found = [
      s
      for s in jax.tree.leaves(
          opt_state, is_leaf=lambda x: isinstance(x, RamdaState)
      )
      if isinstance(s, RamdaState)
  ]
  if not found:
    raise ValueError(
        "opt_state holds no regularized dual-averaging state (ramda, ...)."
    )
  return found


def _merge(trees: list[Any], fill: Any = None) -> Any:
  """Joins per-partition trees (``optax.MaskedNode`` where not owned)."""
  is_masked = lambda x: isinstance(x, optax.MaskedNode)
  flat = [jax.tree.flatten(t, is_leaf=is_masked) for t in trees]
  treedef = flat[0][1]
  fills = (
      [optax.MaskedNode()] * treedef.num_leaves
      if fill is None else treedef.flatten_up_to(fill)
  )
  merged = []
  for i, default in enumerate(fills):
    owned = [leaves[i] for leaves, _ in flat if not is_masked(leaves[i])]
    merged.append(owned[0] if owned else default)
  return treedef.unflatten(merged)


def _restrict(tree: Any, like: Any) -> Any:
  """``tree``'s leaves where ``like`` has arrays (skipping MaskedNodes)."""
  is_masked = lambda x: isinstance(x, optax.MaskedNode)
  like_leaves, treedef = jax.tree.flatten(like, is_leaf=is_masked)
  leaves = treedef.flatten_up_to(tree)
  return treedef.unflatten([
      m if is_masked(m) else x for x, m in zip(leaves, like_leaves)
  ])


def subproblem_solution(
    opt_state: Any, params: optax.Params | None = None
) -> optax.Params:
  r"""The current θ̂, rebuilt from the optimizer state.

  θ̂ is the point whose zero pattern the paper's theory identifies. Its zero
  pattern follows exactly from screening on the stored statistics; its
  values come from solving the last step's subproblem again with the
  optimizer's own solver, warm-started at ``params`` (the current
  parameters, as in training) or else at W⁰. No extra state buffer is kept.

  Args:
    opt_state: any nesting of optax states holding :class:`RamdaState`
      (``chain``, ``partition``, ``inject_hyperparams``, ``MultiSteps``...).
    params: optional current parameters; also fill the leaves that no
      dual-averaging state covers (else ``optax.MaskedNode``).

  Returns:
    θ̂ as a pytree like params.
  """
  opt_state = _trees.unwrap_variables(opt_state)
  params = _trees.unwrap_variables(params)
  thetas = []
  for state in _find_states(opt_state):
    anchor = state.dual.anchor
    warm = anchor if params is None else _restrict(params, anchor)
    metric = state.spec.metric(
        state.precond, state.damping, state.dual.stage_count
    )
    theta, _ = solvers.solve_tree(
        state.spec.solver, state.spec.penalties, anchor, state.dual.grad_sum,
        metric, state.threshold, warm, state.dual.count,
    )
    thetas.append(
        jax.tree.map(lambda t, a: t.astype(a.dtype), theta, anchor)
    )
  return _merge(thetas, params)


def subproblem_zero_groups(opt_state: Any) -> Any:
  """Which blocks of θ̂ are zero, from screening alone (one cheap pass).

  A block is zero at the subproblem's exact minimiser iff the screening rule
  holds (for the group lasso ‖P_g W⁰_g − V_g‖ ≤ τ√|g|, Deleu & Bengio 2021),
  so this is θ̂'s zero pattern without solving anything: cheap enough for
  every step of a jitted loop. Penalties without screening (the nuclear
  norm) report no zero block.

  Args:
    opt_state: any nesting of optax states holding :class:`RamdaState`.

  Returns:
    A pytree like params: for each regularized leaf a bool array with one
    entry per block (the reduced axes dropped), True where the block is zero;
    None for unregularized leaves and ``optax.MaskedNode`` for leaves no
    dual-averaging state covers.
  """
  patterns = []
  for state in _find_states(_trees.unwrap_variables(opt_state)):
    spec = state.spec
    leaves, treedef = jax.tree.flatten(state.dual.anchor)
    metric = spec.metric(state.precond, state.damping, state.dual.stage_count)
    ps = solvers.metric_leaves(metric, treedef)
    out = []
    for penalty, a, v, p in zip(
        spec.penalties, leaves, treedef.flatten_up_to(state.dual.grad_sum), ps
    ):
      if penalty is None:
        out.append(None)
        continue
      keep = penalty.screen(p * a.astype(v.dtype) - v, state.threshold.astype(v.dtype))
      keep = jnp.broadcast_to(keep, penalty.block_shape(a.shape))
      out.append(jnp.logical_not(jnp.squeeze(keep, penalty.block_axes(a.ndim))))
    patterns.append(treedef.unflatten(out))
  return _merge(patterns)


def inner_iterations(opt_state: Any) -> Any:
  """Subproblem solver iterations of the last step, one int per leaf."""
  states = _find_states(_trees.unwrap_variables(opt_state))
  return _merge([s.inner_iters for s in states])
