"""Solvers of the regularized quadratic subproblem.

Every method of the package forms, per leaf, the model

    Q(θ) = <v, θ − a> + ½ <θ − a, P (θ − a)> + τ ψ(θ)        (P diagonal)

and asks a solver for θ̂ ≈ argmin Q. A solver is a hashable object with a
``solve(penalty, a, v, p, tau, z0)`` method working on one leaf.

Reference: Huang & Lee, NeurIPS 2024 (arXiv 2403.14398), Section 3 and
Algorithm 2.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from ramda_optax import _validation
from ramda_optax.regularizers import LeafPenalty


def safe_divide(x: jax.Array, y: jax.Array) -> jax.Array:
  """x / y, with 0 where y == 0 (a coordinate with no curvature stays put)."""
  return jnp.where(y > 0, x / jnp.where(y > 0, y, 1), 0)


def unregularized_solution(a: jax.Array, v: jax.Array, p: jax.Array) -> jax.Array:
  """argmin <v, θ − a> + ½‖θ − a‖²_P = a − v / P."""
  return a - safe_divide(v, p)


class PGSolver(NamedTuple):
  """Inexact proximal gradient with exact screening and warm start.

  Attributes:
    max_iters: most iterations per leaf and step.
    rtol: relative-decrease stopping tolerance.
  """

  max_iters: int
  rtol: float

  def solve(
      self,
      penalty: LeafPenalty,
      a: jax.Array,
      v: jax.Array,
      p: jax.Array,
      tau: jax.Array,
      z0: jax.Array,
  ) -> tuple[jax.Array, jax.Array]:
    """Approximately minimises Q on one leaf.

    Args:
      penalty: the leaf's unit-strength ψ.
      a: anchor.
      v: linear term.
      p: diagonal of the metric P (>= 0), an array or a scalar.
      tau: threshold τ >= 0 (scalar).
      z0: warm start (the current parameters).

    Returns:
      ``(θ̂, iterations)``.
    """
    p = jnp.broadcast_to(p, a.shape)
    b = p * a - v
    active = penalty.screen(b, tau)
    block_p = penalty.block_max(p)
    step = jnp.where(block_p > 0, 1 / jnp.where(block_p > 0, block_p, 1), 0)
    iterate = jnp.logical_and(tau > 0, jnp.any(active))
    zero = jnp.zeros((), a.dtype)

    def objective_and_next(z):
      y = z - step * (v + p * (z - a))
      z_new, psi = penalty.prox(y, step * tau)
      z_new = jnp.where(active, z_new, zero)
      d = z_new - a
      smooth = jnp.sum(jnp.where(active, v * d + 0.5 * p * d * d, zero))
      return z_new, smooth + tau * jnp.sum(jnp.where(active, psi, zero))

    def cond(carry):
      j, _, q_prev, q = carry
      decreasing = (q_prev - q) / (jnp.abs(q) + 1) >= self.rtol
      return jnp.logical_and(
          iterate,
          jnp.logical_and(j < self.max_iters, jnp.logical_or(j < 2, decreasing)),
      )

    def body(carry):
      j, z, _, q = carry
      z_new, q_new = objective_and_next(z)
      return j + 1, z_new, q, q_new

    init = (jnp.zeros((), jnp.int32), jnp.where(active, z0, zero), zero, zero)
    iters, z, _, _ = lax.while_loop(cond, body, init)
    # τ = 0: no regularization, the closed form is exact.
    z = jnp.where(tau > 0, z, unregularized_solution(a, v, p))
    return z, iters


def pg_solver(max_iters: int = 100, rtol: float = 1e-8) -> PGSolver:
  r"""The paper's inexact proximal-gradient subproblem solver.

  Per leaf: exact screening of groups that are zero at the optimum
  (‖P_g a_g − v_g‖ ≤ τ√|g|, Deleu & Bengio 2021), per-group step
  η_g = 1 / max_{i∈g} P_i, warm start at the current parameters, and the
  iteration

      z ← prox_{η_g τ ψ}(z − η_g (v + P (z − a)))

  stopped after at least 2 iterations once (Q_prev − Q)/(|Q| + 1) < rtol (Q
  summed over the non-screened groups), or after ``max_iters``. It runs as a
  bounded ``lax.while_loop`` inside jit, without host synchronisation. With
  τ = 0 the closed form θ̂ = a − v/P is returned and no iteration runs; so
  it is when every group is screened.

  Args:
    max_iters: most iterations per leaf and step, >= 1.
    rtol: relative-decrease tolerance, >= 0.

  Returns:
    A :class:`PGSolver`.

  References:
    Huang & Lee, NeurIPS 2024, Algorithm 2 and App. A.1.
  """
  _validation.check_int("max_iters", max_iters, 1)
  _validation.check_range("rtol", rtol, 0.0)
  return PGSolver(max_iters=max_iters, rtol=float(rtol))
