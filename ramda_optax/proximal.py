"""The proximal optimizers, anchored at the current parameters: ProxGen,
ProxSSI, ProxSGD.

Each step builds, from statistics of the gradients, a linear term v and a
diagonal metric P around the current parameters W and takes

    W ← θ̂ ≈ argmin <v, θ − W> + ½ <θ − W, P (θ − W)> + η λ ψ(θ),

so that with λ = 0 it is the unregularized optimizer's step. The step runs
on each leaf, or block by block (:mod:`ramda_optax.fused`).

References: Yun, Lozano & Yang, Adaptive proximal gradient methods for
structured neural networks (ProxGen), NeurIPS 2021; Deleu & Bengio,
Structured sparsity inducing adaptive optimizers for deep learning (ProxSSI),
arXiv 2102.03869; both as baselines in Huang & Lee, NeurIPS 2024
(arXiv 2403.14398), Section 5.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ramda_optax import _validation
from ramda_optax import fused
from ramda_optax import schedules
from ramda_optax import solvers
from ramda_optax.regularizers import Regularizer
from ramda_optax.regularizers import check_regularizer
from ramda_optax.statistics import Statistics
from ramda_optax.statistics import Step
from ramda_optax.statistics import adam_moments
from ramda_optax.statistics import adamw_step_moments
from ramda_optax.statistics import ema_momentum
from ramda_optax.statistics import statistics_dtype
from ramda_optax.subproblem import Subproblem


class ProximalState(NamedTuple):
  """State of :func:`regularized_proximal`.

  Attributes:
    count: steps taken.
    stats: the statistics' buffers (e.g. Adam's moments ``(m, v)``).
    inner_iters: solver iterations of the last step, one int32 per leaf in
      ``jax.tree.leaves`` order (see :func:`ramda_optax.inner_iterations`).
  """

  count: jax.Array
  stats: Any
  inner_iters: jax.Array


def regularized_proximal(
    learning_rate: optax.ScalarOrSchedule,
    *,
    statistics: Statistics,
    regularizer: Regularizer | None,
    solver: Any,
    name: str = "regularized_proximal",
) -> optax.GradientTransformationExtraArgs:
  r"""A regularized proximal step anchored at the current parameters W.

      W ← θ̂ ≈ argmin <v, θ − W> + ½‖θ − W‖²_P + η λ ψ(θ)

  with (v, P) from ``statistics``.

  Args:
    learning_rate: η ≥ 0, a number or an ``optax`` schedule.
    statistics: the linear term and metric (see
      :class:`ramda_optax.Statistics`); its ``init`` gives a tuple of
      params-shaped buffers.
    regularizer: λψ, or None.
    solver: the subproblem solver.
    name: the optimizer's name in error messages.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` needs ``params``.
  """
  _validation.check_range("learning_rate", learning_rate, 0.0)
  check_regularizer(regularizer)
  uses_kernel = fused.kernel_selected(solver, statistics)

  def init_fn(params):
    if jax.tree.leaves(params):  # (optax.tree_utils passes leafless params)
      solvers.leaf_penalties(regularizer, solver, params)
    return ProximalState(
        count=jnp.zeros([], jnp.int32),
        stats=statistics.init(params),
        inner_iters=jnp.zeros([len(jax.tree.leaves(params))], jnp.int32),
    )

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    _validation.check_params(params, name)
    count = state.count
    dtype = statistics_dtype(optax.tree.dtype(params, "highest"))
    lr = jnp.asarray(schedules.value_at(learning_rate, count), dtype)
    step = Step(
        count=count,
        stage_count=optax.safe_increment(count),
        learning_rate=lr,
        weight=lr,
        restart=False,
        damping=jnp.asarray(statistics.damping, dtype),
    )
    strength = 0.0 if regularizer is None else schedules.value_at(
        regularizer.strength, count
    )
    threshold = jnp.asarray(lr * strength, dtype)

    def leaf_step(solve, arrays):
      """One leaf's (or block's) step: its g, W and statistics to W_new − W
      (in g's place) and the statistics."""
      g, w, *stats = arrays
      linear, metric, stats = statistics.update(g, tuple(stats), step)
      theta, iters = solve(Subproblem(w, linear, metric, threshold), w)
      return ((theta - w.astype(theta.dtype)).astype(w.dtype), None,
              *stats), iters

    def kernel_step(penalty, arrays, xla_step, hint):
      """The leaf's step as the solver's kernel where it covers it (None
      elsewhere; XLA's on platforms the kernel does not run on), given the
      stop to aim the paper's rule at."""
      if len(arrays) != 4:
        return None
      g, w, first, second = arrays

      def compiled(group_step):
        first_new, second_new, _, update, passes = group_step(
            (g, w, first, second, w, w),
            (*statistics.moments.coefficients(step), step.damping, threshold),
            False, root=statistics.moments.root, delta=True)
        return (update, w, first_new, second_new), passes

      return fused.run_kernel(solver, penalty, arrays, compiled, xla_step,
                              hint)

    (new_updates, _, *stats), inner_iters = fused.apply(
        leaf_step, solver, solvers.leaf_penalties(regularizer, solver, params),
        optax.safe_increment(count), params, (updates, params, *state.stats),
        kernel_step if uses_kernel else None,
        state.inner_iters)
    return new_updates, ProximalState(
        count=optax.safe_increment(count),
        stats=tuple(stats),
        inner_iters=inner_iters,
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def proxgen(
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    regularizer: Regularizer | None = None,
    solver: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""ProxGen (ProxAdamW): Adam's model with a regularizer.

      m ← β₁m + (1−β₁)g,  v ← β₂v + (1−β₂)g²,  P = √(v/(1−β₂ᵗ)) + ε
      W ← argmin <η m/(1−β₁ᵗ), θ − W> + ½‖θ − W‖²_P + ηλψ(θ)

  With λ = 0 this is Adam. The paper solves the subproblem inexactly by PG
  (``solver=pg_solver()``); the default solves group norms exactly, as for
  :func:`ramda_optax.ramda`.

  Args:
    learning_rate: η ≥ 0, a number or an ``optax`` schedule.
    b1: first-moment decay in [0, 1).
    b2: second-moment decay in [0, 1).
    eps: ε ≥ 0.
    regularizer: λψ, or None.
    solver: :func:`ramda_optax.default_solver` by default (the exact
      group-norm solution, in the compiled kernel of the step on a CPU and
      a GPU; the paper's PG for other penalties); ``pg_solver()`` is the
      paper's rule.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` needs ``params``.

  References:
    Yun, Lozano & Yang, Adaptive proximal gradient methods for structured
    neural networks, NeurIPS 2021.
  """
  return regularized_proximal(
      learning_rate,
      statistics=adam_moments(b1, b2, eps),
      regularizer=regularizer,
      solver=solvers.default_solver() if solver is None else solver,
      name="proxgen",
  )


def prox_ssi(
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    regularizer: Regularizer | None = None,
    solver: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""ProxSSI: the authors' AdamW step, then the exact prox in Adam's metric.

      y = W − η √(1−β₂ᵗ)/(1−β₁ᵗ) · m/(√v + ε)
      W ← argmin ½‖θ − y‖²_P + ηλψ(θ),   P = √v + ε     (exact, Newton)

  ε sits on the raw √v, and the bias correction in the step size, as in the
  ProxSSI authors' optimizer (and in the AdamW of Hugging Face Transformers
  whose step it takes); optax's AdamW adds ε to the bias-corrected √v̂
  instead, which differs early in training.

  Args:
    learning_rate: η ≥ 0, a number or an ``optax`` schedule.
    b1: first-moment decay in [0, 1).
    b2: second-moment decay in [0, 1).
    eps: ε ≥ 0.
    regularizer: λψ (group lasso or ℓ1), or None.
    solver: ``exact_solver(backend="kernel")`` by default (the whole
      step of a group-lasso leaf as a compiled kernel: on a CPU
      :mod:`ramda_optax.cpu_kernel`, on a GPU
      :func:`ramda_optax.group_kernels.fused_step`; its XLA form
      elsewhere).

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` needs ``params``.

  References:
    Deleu & Bengio, Structured sparsity inducing adaptive optimizers for deep
    learning, arXiv 2102.03869, 2021; Huang & Lee, NeurIPS 2024.
  """
  return regularized_proximal(
      learning_rate,
      statistics=adamw_step_moments(b1, b2, eps),
      regularizer=regularizer,
      solver=solvers.exact_solver(backend="kernel") if solver is None
      else solver,
      name="prox_ssi",
  )


def prox_sgd(
    learning_rate: optax.ScalarOrSchedule,
    *,
    momentum: float = 0.9,
    regularizer: Regularizer | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""ProxSGD: momentum SGD followed by the closed-form prox.

      b ← μ b + (1 − μ) g,     W ← prox_{ηλψ}(W − η b)

  Args:
    learning_rate: η ≥ 0, a number or an ``optax`` schedule.
    momentum: the decay μ in [0, 1) of the running average of gradients
      (optax's convention, as for every optimizer of the package; the
      paper's ProxSGD weighs the new gradient by 1 − μ = 0.1).
    regularizer: λψ, or None.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` needs ``params``.

  References:
    Huang & Lee, NeurIPS 2024, Section 5 (the ProxSGD baseline).
  """
  return regularized_proximal(
      learning_rate,
      statistics=ema_momentum(momentum),
      regularizer=regularizer,
      solver=solvers.prox_solver(),
      name="prox_sgd",
  )
