"""The regularized dual-averaging optimizers: RAMDA, RMDA and MADGRAD mode.

    statistics → (a = W⁰, v = V, P, τ = αλ) → θ̂ ≈ argmin Q → W ← (1 − c) W + c θ̂

run on each leaf, or block by block (:mod:`ramda_optax.fused`).

Reference: Huang & Lee, "Regularized Adaptive Momentum Dual Averaging with an
Efficient Inexact Subproblem Solver for Training Structured Neural Networks",
NeurIPS 2024 (arXiv 2403.14398), Algorithm 1.
"""

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ramda_optax import _validation
from ramda_optax import accumulator
from ramda_optax import fused
from ramda_optax import schedules
from ramda_optax import solvers
from ramda_optax import statistics
from ramda_optax.regularizers import Regularizer
from ramda_optax.regularizers import check_regularizer
from ramda_optax.subproblem import Subproblem


class RamdaState(NamedTuple):
  """State of :func:`regularized_dual_averaging` (and so of :func:`ramda`).

  Arrays only: params-shaped buffers and scalars.

  Attributes:
    dual: the dual-average accumulator (count, k, α, W⁰, V).
    precond: the statistics' buffers (``(U,)`` for the cube root).
    damping: ε in force at the last step.
    threshold: τ = α λ of the last step.
    solution: θ̂ of the last step (W⁰ before the first), in the statistics'
      dtypes.
    inner_iters: solver iterations of the last step, one int32 per leaf in
      ``jax.tree.leaves`` order (see :func:`ramda_optax.inner_iterations`).
  """

  dual: accumulator.DualAveragingState
  precond: Any
  damping: jax.Array
  threshold: jax.Array
  solution: optax.Params
  inner_iters: jax.Array


def regularized_dual_averaging(
    learning_rate: optax.ScalarOrSchedule,
    *,
    preconditioner: statistics.Statistics,
    momentum: optax.ScalarOrSchedule = 0.9,
    regularizer: Regularizer | None = None,
    solver: Any = None,
    restart_steps: Sequence[int] = (),
    name: str = "regularized_dual_averaging",
) -> optax.GradientTransformationExtraArgs:
  r"""Regularized momentum dual averaging with a pluggable diagonal metric.

  At step t (k steps since the last restart), with g the gradient at W:

      s = η √k,  α ← α + s,  V ← V + s g,  P = metric(stats)
      θ̂ ≈ argmin <V, θ − W⁰> + ½‖θ − W⁰‖²_P + α λ ψ(θ)
      W ← momentum · W + (1 − momentum) · θ̂

  :func:`ramda` is this with :func:`ramda_optax.cube_root`,
  :func:`rmda` with :func:`ramda_optax.sqrt_count`.

  Args:
    learning_rate: η ≥ 0, a number or an ``optax`` schedule.
    preconditioner: the metric's statistics (see
      :mod:`ramda_optax.statistics`).
    momentum: the decay 1 − c in [0, 1) of the average of θ̂ (the paper's
      averaging weight is c), a number or a schedule.
    regularizer: λψ, or None for none.
    solver: the subproblem solver; :func:`ramda_optax.default_solver` (exact
      for group norms, the paper's PG otherwise) by default.
    restart_steps: global steps (0-based counts of steps taken) at which the
      dual averaging restarts and ε is multiplied by the preconditioner's
      decay.
    name: the optimizer's name in error messages.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` needs ``params``
    and returns W_new − W.
  """
  _validation.check_range("learning_rate", learning_rate, 0.0)
  _validation.check_range("momentum", momentum, 0.0, 1.0, high_open=True)
  check_regularizer(regularizer)
  solver = solvers.default_solver() if solver is None else solver
  restart_steps = accumulator.check_restart_steps(restart_steps)
  uses_kernel = fused.kernel_selected(solver, preconditioner)

  def init_fn(params: optax.Params) -> RamdaState:
    if jax.tree.leaves(params):  # (optax.tree_utils passes leafless params)
      solvers.leaf_penalties(regularizer, solver, params)
    dual = accumulator.init(params)
    dtype = dual.alpha.dtype
    return RamdaState(
        dual=dual,
        precond=preconditioner.init(params),
        damping=jnp.asarray(preconditioner.damping, dtype),
        threshold=jnp.zeros([], dtype),
        solution=jax.tree.map(
            lambda p: jnp.array(p, statistics.statistics_dtype(p.dtype)),
            params,
        ),
        inner_iters=jnp.zeros([len(jax.tree.leaves(params))], jnp.int32),
    )

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    _validation.check_params(params, name)
    count = state.dual.count
    restart, num_restarts = accumulator.stage(count, restart_steps)
    if not restart_steps:
      restart = False
    learning_rate_t = schedules.value_at(learning_rate, count)
    dual, weight = accumulator.advance(state.dual, learning_rate_t, restart)
    dtype = dual.alpha.dtype
    damping = jnp.asarray(preconditioner.damping, dtype) * jnp.asarray(
        preconditioner.damping_decay, dtype
    ) ** num_restarts
    step = statistics.Step(
        count=count,
        stage_count=dual.stage_count,
        learning_rate=jnp.asarray(learning_rate_t, dtype),
        weight=weight,
        restart=restart,
        damping=damping,
    )
    strength = 0.0 if regularizer is None else schedules.value_at(
        regularizer.strength, count
    )
    threshold = (dual.alpha * strength).astype(dtype)
    m = jnp.asarray(schedules.value_at(momentum, count), dtype)
    from_solution = getattr(solver, "start", "params") == "solution"

    def leaf_step(solve, arrays):
      """One leaf's (or block's) step: its g, V, W⁰, W, θ̂ and statistics to
      W_new − W (in g's place), V, W⁰, θ̂ and statistics."""
      g, v, anchor, w, theta, *stats = arrays
      v = accumulator.accumulate(v, g, restart, weight)
      if restart is not False:
        anchor = accumulator.reanchor(anchor, w, restart)
      _, metric, stats = preconditioner.update(g, tuple(stats), step)
      theta, iters = solve(Subproblem(anchor, v, metric, threshold),
                           theta if from_solution else w)
      update = ((1 - m) * theta + m * w.astype(dtype) - w).astype(w.dtype)
      return (update, v, None if restart is False else anchor, None, theta,
              *stats), iters

    def kernel_step(penalty, arrays, xla_step, hint):
      """The leaf's step as the solver's kernel where it covers it (None
      elsewhere; XLA's on platforms the kernel does not run on), given the
      stop to aim the paper's rule at."""
      g, v, anchor, w, theta, u = arrays
      # V is the dual average: V ← V + s g, v = V.
      _, _, decay, weight_u, scale, _ = preconditioner.moments.coefficients(
          step)

      def compiled(group_step):
        v_new, u_new, anchor_new, theta_new, passes = group_step(
            (g, w, v, u, anchor, theta if from_solution else w),
            (1.0, weight, decay, weight_u, scale, 1.0, damping, threshold),
            restart, root=preconditioner.moments.root, delta=False)
        update = (1 - m) * theta_new + m * w - w
        return (update, v_new, anchor if anchor_new is None else anchor_new,
                w, theta_new, u_new), passes

      return fused.run_kernel(solver, penalty, arrays, compiled, xla_step,
                              hint)

    new, inner_iters = fused.apply(
        leaf_step, solver, solvers.leaf_penalties(regularizer, solver, params),
        dual.count, params, (updates, state.dual.grad_sum, state.dual.anchor,
                             params, state.solution, *state.precond),
        kernel_step if uses_kernel else None,
        state.inner_iters)
    new_update, grad_sum, anchor, _, theta, *precond = new
    return new_update, RamdaState(
        dual=dual._replace(anchor=anchor, grad_sum=grad_sum),
        precond=tuple(precond),
        damping=damping,
        threshold=threshold,
        solution=theta,
        inner_iters=inner_iters,
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

  The subproblem is solved by ``solver``: by default exactly for group
  norms (group lasso, ℓ1; Newton on each group's radius; on a CPU the
  whole step of a float32 leaf grouped along one axis runs as a compiled
  kernel, :mod:`ramda_optax.cpu_kernel`) and by the paper's inexact
  proximal gradient for other penalties;
  ``solver=pg_solver()`` is the paper's rule for all. With no regularizer
  this is MADGRAD (whose optax version adds ε to the learning rate). At
  each step in ``restart_steps`` the dual averaging restarts (k, α, V, U ←
  0, W⁰ ← W) and ε ← ε · ``eps_decay``;
  :func:`ramda_optax.stagewise_schedule` builds the paper's whole
  schedule.

  Args:
    learning_rate: η ≥ 0, a number or an ``optax`` schedule.
    momentum: 1 − c in [0, 1), a number or an ``optax`` schedule; 0 makes
      W = θ̂.
    eps: ε ≥ 0 added to the cube root.
    regularizer: λψ (e.g. :func:`ramda_optax.group_lasso`), or None.
    solver: subproblem solver; :func:`ramda_optax.default_solver` by
      default (the exact group-norm solution; ``pg_solver()`` for the
      paper's inexact PG rule).
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
      preconditioner=statistics.cube_root(eps, eps_decay),
      momentum=momentum,
      regularizer=regularizer,
      solver=solver,
      restart_steps=restart_steps,
      name="ramda",
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
      preconditioner=statistics.sqrt_count(),
      momentum=momentum,
      regularizer=regularizer,
      solver=solvers.prox_solver() if solver is None else solver,
      restart_steps=restart_steps,
      name="rmda",
  )
