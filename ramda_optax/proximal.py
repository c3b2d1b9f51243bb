"""Proximal methods anchored at the current parameters: ProxGen, ProxSSI,
ProxSGD.

Each step builds, from statistics of the gradients, a linear term v and a
diagonal metric P around the current parameters W and takes

    W ← θ̂ ≈ argmin <v, θ − W> + ½ <θ − W, P (θ − W)> + η λ ψ(θ),

so that with λ = 0 it is the unregularized optimizer's step.

References: Yun, Lozano & Yang, Adaptive proximal gradient methods for
structured neural networks (ProxGen), NeurIPS 2021; Deleu & Bengio,
Structured sparsity inducing adaptive optimizers for deep learning (ProxSSI),
arXiv 2102.03869; both as baselines in Huang & Lee, NeurIPS 2024
(arXiv 2403.14398), Section 5.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ramda_optax import _validation
from ramda_optax import solvers
from ramda_optax.dual_averaging import statistics_dtype
from ramda_optax.regularizers import Regularizer, check_regularizer


class Statistics(NamedTuple):
  """Gradient statistics giving the subproblem's linear term and metric.

  Attributes:
    init: ``params -> stats``.
    update: ``(grads, stats, count, learning_rate) -> (v, P, stats)`` with
      ``count`` the 0-based step; P is a pytree like params or one array
      for every leaf.
  """

  init: Callable[[optax.Params], Any]
  update: Callable[..., tuple[Any, Any, Any]]


class ProximalState(NamedTuple):
  """State of :func:`regularized_proximal`.

  Attributes:
    count: steps taken.
    stats: the statistics' state (e.g. Adam moments).
    inner_iters: solver iterations of the last step, one int per leaf.
  """

  count: jax.Array
  stats: Any
  inner_iters: Any


def _zeros_like_stats(params):
  return jax.tree.map(
      lambda p: jnp.zeros(jnp.shape(p), statistics_dtype(p.dtype)), params
  )


def _two_zero_trees(params):
  # Two distinct buffers (not one twice), so that the state can be donated.
  return _zeros_like_stats(params), _zeros_like_stats(params)


def _moments(b1, b2, grads, stats):
  m, v = stats
  m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g.astype(m.dtype), m, grads)
  v = jax.tree.map(
      lambda v, g: b2 * v + (1 - b2) * jnp.square(g.astype(v.dtype)), v, grads
  )
  return m, v


def adam_moments(b1: float, b2: float, eps: float) -> Statistics:
  """ProxGen's statistics: v = η m̂, P = √v̂ + ε (bias-corrected moments)."""

  def update(grads, stats, count, learning_rate):
    m, v = _moments(b1, b2, grads, stats)
    t = (count + 1).astype(jax.tree.leaves(m)[0].dtype)
    c1, c2 = 1 - b1**t, 1 - b2**t
    linear = jax.tree.map(lambda m: learning_rate * m / c1, m)
    metric = jax.tree.map(lambda v: jnp.sqrt(v / c2) + eps, v)
    return linear, metric, (m, v)

  return Statistics(_two_zero_trees, update)


def adamw_step_moments(b1: float, b2: float, eps: float) -> Statistics:
  """ProxSSI's statistics: the (Hugging Face) AdamW step Δ and P = √v + ε.

  Δ = η m̂ / (√v / √(1 − β₂ᵗ) + ε); the subproblem's minimiser without ψ is
  W − Δ, so v = P Δ.
  """

  def update(grads, stats, count, learning_rate):
    m, v = _moments(b1, b2, grads, stats)
    t = (count + 1).astype(jax.tree.leaves(m)[0].dtype)
    c1, c2 = 1 - b1**t, jnp.sqrt(1 - b2**t)
    metric = jax.tree.map(lambda v: jnp.sqrt(v) + eps, v)
    linear = jax.tree.map(
        lambda m, v, p: p * (learning_rate * m / c1) / (jnp.sqrt(v) / c2 + eps),
        m, v, metric,
    )
    return linear, metric, (m, v)

  return Statistics(_two_zero_trees, update)


def ema_momentum(momentum: float) -> Statistics:
  """ProxSGD's statistics: b ← (1 − m) b + m g, v = η b, P = I."""

  def update(grads, stats, count, learning_rate):
    del count
    b = jax.tree.map(
        lambda b, g: (1 - momentum) * b + momentum * g.astype(b.dtype),
        stats, grads,
    )
    linear = jax.tree.map(lambda b: learning_rate * b, b)
    return linear, jnp.ones([], jax.tree.leaves(b)[0].dtype), b

  return Statistics(_zeros_like_stats, update)


def regularized_proximal(
    learning_rate: optax.ScalarOrSchedule,
    *,
    statistics: Statistics,
    regularizer: Regularizer | None,
    solver: Any,
) -> optax.GradientTransformationExtraArgs:
  r"""A regularized proximal step anchored at the current parameters W.

      W ← θ̂ ≈ argmin <v, θ − W> + ½‖θ − W‖²_P + η λ ψ(θ)

  with (v, P) from ``statistics``.

  Args:
    learning_rate: η ≥ 0, a number or an ``optax`` schedule.
    statistics: the linear term and metric (see :class:`Statistics`).
    regularizer: λψ, or None.
    solver: the subproblem solver.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` needs ``params``.
  """
  _validation.check_range("learning_rate", learning_rate, 0.0)
  check_regularizer(regularizer)

  def penalties(params):
    if regularizer is None:
      return (None,) * len(jax.tree.leaves(params))
    out = regularizer.layout(params)
    solvers.check_solver(solver, out)
    return out

  def init_fn(params):
    penalties(params)
    return ProximalState(
        count=jnp.zeros([], jnp.int32),
        stats=statistics.init(params),
        inner_iters=jax.tree.map(lambda _: jnp.zeros([], jnp.int32), params),
    )

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError("this optimizer needs params: update(updates, state, params).")
    count = state.count
    lr = learning_rate(count) if callable(learning_rate) else learning_rate
    linear, metric, stats = statistics.update(updates, state.stats, count, lr)
    dtype = jax.tree.leaves(linear)[0].dtype
    strength = 0.0
    if regularizer is not None:
      strength = regularizer.strength
      strength = strength(count) if callable(strength) else strength
    threshold = jnp.asarray(lr * strength, dtype)
    theta, inner_iters = solvers.solve_tree(
        solver, penalties(params), params, linear, metric, threshold, params,
        optax.safe_increment(count),
    )
    new_updates = jax.tree.map(
        lambda t, w: (t - w.astype(t.dtype)).astype(w.dtype), theta, params
    )
    return new_updates, ProximalState(
        count=optax.safe_increment(count), stats=stats, inner_iters=inner_iters
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _check_betas(b1, b2, eps):
  _validation.check_range("b1", b1, 0.0, 1.0, high_open=True)
  _validation.check_range("b2", b2, 0.0, 1.0, high_open=True)
  _validation.check_range("eps", eps, 0.0)


def proxgen(
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    regularizer: Regularizer | None = None,
    solver: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""ProxGen (ProxAdamW): Adam's model with a regularizer, solved inexactly.

      m ← β₁m + (1−β₁)g,  v ← β₂v + (1−β₂)g²,  P = √(v/(1−β₂ᵗ)) + ε
      W ← argmin <η m/(1−β₁ᵗ), θ − W> + ½‖θ − W‖²_P + ηλψ(θ)

  With λ = 0 this is Adam.

  Args:
    learning_rate: η ≥ 0, a number or an ``optax`` schedule.
    b1: first-moment decay in [0, 1).
    b2: second-moment decay in [0, 1).
    eps: ε ≥ 0.
    regularizer: λψ, or None.
    solver: :func:`ramda_optax.pg_solver` by default.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` needs ``params``.

  References:
    Yun, Lozano & Yang, Adaptive proximal gradient methods for structured
    neural networks, NeurIPS 2021.
  """
  _check_betas(b1, b2, eps)
  return regularized_proximal(
      learning_rate,
      statistics=adam_moments(b1, b2, eps),
      regularizer=regularizer,
      solver=solvers.pg_solver() if solver is None else solver,
  )


def prox_ssi(
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    regularizer: Regularizer | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""ProxSSI: an AdamW step, then the exact prox in Adam's metric.

      y = W − η m̂ / (√v/√(1−β₂ᵗ) + ε)                  (Hugging Face AdamW)
      W ← argmin ½‖θ − y‖²_P + ηλψ(θ),   P = √v + ε     (exact, Newton)

  Args:
    learning_rate: η ≥ 0, a number or an ``optax`` schedule.
    b1: first-moment decay in [0, 1).
    b2: second-moment decay in [0, 1).
    eps: ε ≥ 0.
    regularizer: λψ (group lasso or ℓ1), or None.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` needs ``params``.

  References:
    Deleu & Bengio, Structured sparsity inducing adaptive optimizers for deep
    learning, arXiv 2102.03869, 2021; Huang & Lee, NeurIPS 2024.
  """
  _check_betas(b1, b2, eps)
  return regularized_proximal(
      learning_rate,
      statistics=adamw_step_moments(b1, b2, eps),
      regularizer=regularizer,
      solver=solvers.exact_solver(),
  )


def prox_sgd(
    learning_rate: optax.ScalarOrSchedule,
    *,
    momentum: float = 0.1,
    regularizer: Regularizer | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""ProxSGD: momentum SGD followed by the closed-form prox.

      b ← (1 − m) b + m g,     W ← prox_{ηλψ}(W − η b)

  Args:
    learning_rate: η ≥ 0, a number or an ``optax`` schedule.
    momentum: the averaging weight m in (0, 1] of the new gradient.
    regularizer: λψ, or None.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` needs ``params``.

  References:
    Huang & Lee, NeurIPS 2024, Section 5 (the ProxSGD baseline).
  """
  _validation.check_range("momentum", momentum, 0.0, 1.0, low_open=True)
  return regularized_proximal(
      learning_rate,
      statistics=ema_momentum(momentum),
      regularizer=regularizer,
      solver=solvers.prox_solver(),
  )
