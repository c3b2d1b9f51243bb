"""Gradient statistics: the diagonal metric P and the linear term v.

Every method of the package solves, per leaf, the model

    Q(θ) = <v, θ − a> + ½ <θ − a, P (θ − a)> + τ ψ(θ)          (P diagonal)

A :class:`Statistics` accumulates what it needs from the gradients and gives
P and, for the methods anchored at the current parameters, v (for the
dual-averaging methods v is the dual average V of
:mod:`ramda_optax.accumulator`):

================================  ================  ================  ============
statistics                        state             v                 P
================================  ================  ================  ============
``cube_root`` (RAMDA, MADGRAD)    U = Σ s_k g_k²    (V)               ∛U + ε
``sqrt_count`` (RMDA)             none              (V)               √k
``adam_moments`` (ProxGen)        m, v              η m̂               √v̂ + ε
``adamw_step_moments`` (ProxSSI)  m, v              η √(1−β₂ᵗ) m/(1−β₁ᵗ)   √v + ε
``ema_momentum`` (ProxSGD)        b                 η b               1
================================  ================  ================  ============

References: Huang & Lee, NeurIPS 2024 (arXiv 2403.14398), Algorithm 1 and
Section 5; Defazio & Jelassi, MADGRAD (arXiv 2101.11075); Yun, Lozano &
Yang, NeurIPS 2021 (ProxGen); Deleu & Bengio, arXiv 2102.03869 (ProxSSI).
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ramda_optax import _numerics
from ramda_optax import _validation


class Step(NamedTuple):
  """What a statistics update knows of the step being taken.

  Attributes:
    count: steps taken before this one (0-based global step).
    stage_count: k >= 1, this step's index since the last restart (the
      global 1-based step t for methods without restarts).
    learning_rate: η of this step.
    weight: the gradient's weight, s_k = η √k for dual averaging, η else.
    restart: whether this step restarts the accumulation.
    damping: ε in force (the statistics' damping times its decay to the
      power of the restarts so far).
  """

  count: jax.Array
  stage_count: jax.Array
  learning_rate: jax.Array
  weight: jax.Array
  restart: jax.Array | bool
  damping: jax.Array


class Moments(NamedTuple):
  """Statistics of two buffers, V and U, updated entry by entry as

      V ← β₁ V + w₁ g,  U ← β₂ U + w₂ g²,  P = root(c U) + ε,  v = ℓ V,

  in the form a compiled kernel of the whole step computes them
  (:mod:`ramda_optax.cpu_kernel`). For the dual-averaging methods V is the
  dual average, which they keep.

  Attributes:
    root: 3 (the cube root) or 2 (the square root).
    coefficients: ``step -> (β₁, w₁, β₂, w₂, c, ℓ)``, with ``step`` a
      :class:`Step`.
  """

  root: int
  coefficients: Callable[[Step], tuple[Any, ...]]


class Statistics(NamedTuple):
  """Gradient statistics giving the subproblem's metric and linear term.

  Attributes:
    init: ``params -> stats``, a tuple of params-shaped buffers.
    update: ``(grads, stats, step) -> (v, P, stats)`` with ``step`` a
      :class:`Step`; v is None for statistics that only give a metric (the
      dual-averaging methods take V instead), P a pytree like params or one
      array for every leaf. The optimizers call it on one leaf at a time
      (a pytree of one array), or on one block of a leaf when the solver
      solves by blocks (:mod:`ramda_optax.fused`), so it must act entry by
      entry.
    damping: ε >= 0, passed on in ``step.damping``.
    damping_decay: the factor applied to ε at each restart.
    moments: None, or the same statistics as :class:`Moments`, by which a
      compiled kernel of the whole step computes them.
  """

  init: Callable[[optax.Params], tuple[Any, ...]]
  update: Callable[[optax.Updates, Any, Step], tuple[Any, Any, Any]]
  damping: float | jax.Array = 0.0
  damping_decay: float = 1.0
  moments: Moments | None = None


Preconditioner = Statistics  # the name the dual-averaging methods used


def statistics_dtype(dtype: Any) -> jnp.dtype:
  """float32 statistics for lower-precision parameters, else the same."""
  return jnp.promote_types(dtype, jnp.float32)


def zeros_like_params(params: optax.Params) -> optax.Updates:
  """A zero buffer per leaf, in the statistics' dtype (a new buffer on every
  call, so that states can be donated)."""
  return jax.tree.map(
      lambda p: jnp.zeros(jnp.shape(p), statistics_dtype(p.dtype)), params
  )


def _one_buffer(params: optax.Params) -> tuple[optax.Updates]:
  return (zeros_like_params(params),)


def _two_buffers(params: optax.Params) -> tuple[optax.Updates, optax.Updates]:
  return zeros_like_params(params), zeros_like_params(params)


def _restarted(x: jax.Array, restart: jax.Array | bool) -> jax.Array:
  """``x``, or 0 on a restart."""
  return x if restart is False else jnp.where(restart, 0, x)


def cube_root(eps: float = 1e-6, eps_decay: float = 0.1) -> Statistics:
  r"""RAMDA's metric P = ∛U + ε, U = Σ_k s_k g_k² since the last restart.

  Args:
    eps: ε >= 0.
    eps_decay: factor in (0, 1] applied to ε at each restart.

  Returns:
    A :class:`Statistics` with state ``(U,)``.

  References:
    Defazio & Jelassi, MADGRAD, 2021; Huang & Lee, NeurIPS 2024.
  """
  _validation.check_range("eps", eps, 0.0)
  _validation.check_range("eps_decay", eps_decay, 0.0, 1.0, low_open=True)

  def update(grads, stats, step):
    (u,) = stats
    u = jax.tree.map(
        lambda u, g: _restarted(u, step.restart)
        + step.weight.astype(u.dtype) * jnp.square(g.astype(u.dtype)),
        u, grads,
    )
    metric = jax.tree.map(
        lambda u: _numerics.cbrt(u) + step.damping.astype(u.dtype), u
    )
    return None, metric, (u,)

  def coefficients(step):
    return 1.0, step.weight, 1.0, step.weight, 1.0, 1.0

  return Statistics(_one_buffer, update, damping=eps, damping_decay=eps_decay,
                    moments=Moments(3, coefficients))


def sqrt_count() -> Statistics:
  r"""RMDA's scalar metric P = √k · I, k the steps since the last restart.

  Returns:
    A :class:`Statistics` with no state.

  References:
    Huang, Chen & Lee, ICLR 2022 (arXiv 2112.02612).
  """

  def init(params):
    del params
    return ()

  def update(grads, stats, step):
    del grads
    return None, jnp.sqrt(step.stage_count.astype(step.weight.dtype)), stats

  return Statistics(init, update)


def _moments(b1, b2, grads, stats):
  m, v = stats
  m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g.astype(m.dtype), m, grads)
  v = jax.tree.map(
      lambda v, g: b2 * v + (1 - b2) * jnp.square(g.astype(v.dtype)), v, grads
  )
  return m, v


def _check_betas(b1: float, b2: float, eps: float) -> None:
  _validation.check_range("b1", b1, 0.0, 1.0, high_open=True)
  _validation.check_range("b2", b2, 0.0, 1.0, high_open=True)
  _validation.check_range("eps", eps, 0.0)


def adam_moments(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Statistics:
  r"""ProxGen's statistics: Adam's moments with bias correction.

      m ← β₁m + (1−β₁)g,  v ← β₂v + (1−β₂)g²,
      v_lin = η m/(1−β₁ᵗ),  P = √(v/(1−β₂ᵗ)) + ε

  Args:
    b1: first-moment decay in [0, 1).
    b2: second-moment decay in [0, 1).
    eps: ε >= 0.

  Returns:
    A :class:`Statistics` with state ``(m, v)``.
  """
  _check_betas(b1, b2, eps)

  def update(grads, stats, step):
    m, v = _moments(b1, b2, grads, stats)
    c2, scale = corrections(step)
    linear = jax.tree.map(lambda m: scale.astype(m.dtype) * m, m)
    metric = jax.tree.map(
        lambda v: jnp.sqrt(v / c2.astype(v.dtype)) + step.damping.astype(v.dtype),
        v,
    )
    return linear, metric, (m, v)

  def corrections(step):
    """(1 − β₂ᵗ, η/(1 − β₁ᵗ))."""
    t = step.stage_count.astype(step.weight.dtype)
    return 1 - b2**t, step.learning_rate / (1 - b1**t)

  def coefficients(step):
    c2, scale = corrections(step)
    return b1, 1 - b1, b2, 1 - b2, 1 / c2, scale

  return Statistics(_two_buffers, update, damping=eps,
                    moments=Moments(2, coefficients))


def adamw_step_moments(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6
) -> Statistics:
  r"""ProxSSI's statistics: the AdamW step of the ProxSSI authors.

  Their step is y = W − η √(1−β₂ᵗ)/(1−β₁ᵗ) · m/(√v + ε), with ε on the raw
  √v and the bias correction in the step size, and their prox is weighted by
  the same P = √v + ε. The subproblem's minimiser without ψ is y, so

      v_lin = P (W − y) = η √(1−β₂ᵗ)/(1−β₁ᵗ) · m,     P = √v + ε.

  Args:
    b1: first-moment decay in [0, 1).
    b2: second-moment decay in [0, 1).
    eps: ε >= 0.

  Returns:
    A :class:`Statistics` with state ``(m, v)``.

  References:
    Deleu & Bengio, Structured sparsity inducing adaptive optimizers for deep
    learning, arXiv 2102.03869, 2021.
  """
  _check_betas(b1, b2, eps)

  def update(grads, stats, step):
    m, v = _moments(b1, b2, grads, stats)
    scale = step_scale(step)
    linear = jax.tree.map(lambda m: scale.astype(m.dtype) * m, m)
    metric = jax.tree.map(
        lambda v: jnp.sqrt(v) + step.damping.astype(v.dtype), v
    )
    return linear, metric, (m, v)

  def step_scale(step):
    """η √(1−β₂ᵗ)/(1−β₁ᵗ)."""
    t = step.stage_count.astype(step.weight.dtype)
    return step.learning_rate * jnp.sqrt(1 - b2**t) / (1 - b1**t)

  def coefficients(step):
    return b1, 1 - b1, b2, 1 - b2, 1.0, step_scale(step)

  return Statistics(_two_buffers, update, damping=eps,
                    moments=Moments(2, coefficients))


def ema_momentum(momentum: float = 0.9) -> Statistics:
  r"""ProxSGD's statistics: b ← μ b + (1 − μ) g, v_lin = η b, P = I.

  Args:
    momentum: the decay μ in [0, 1) of the running average (optax's
      convention; the paper's weight on the new gradient is 1 − μ).

  Returns:
    A :class:`Statistics` with state ``(b,)``.
  """
  _validation.check_range("momentum", momentum, 0.0, 1.0, high_open=True)

  def update(grads, stats, step):
    (b,) = stats
    b = jax.tree.map(
        lambda b, g: momentum * b + (1 - momentum) * g.astype(b.dtype), b, grads
    )
    linear = jax.tree.map(lambda b: step.learning_rate.astype(b.dtype) * b, b)
    return linear, jnp.ones([], step.weight.dtype), (b,)

  return Statistics(_one_buffer, update)
