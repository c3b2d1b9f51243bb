"""The regularized quadratic subproblem every method solves, and its closed
forms.

Per leaf, with anchor a, linear term v, diagonal metric P >= 0 and
threshold τ >= 0,

    Q(θ) = <v, θ − a> + ½ <θ − a, P (θ − a)> + τ ψ(θ),     θ̂ ≈ argmin Q.

Reference: Huang & Lee, NeurIPS 2024 (arXiv 2403.14398), Section 3.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ramda_optax import _numerics
from ramda_optax.regularizers import LeafPenalty


class Subproblem(NamedTuple):
  """The data of Q, for one leaf (arrays) or for a pytree of leaves.

  Attributes:
    anchor: a.
    linear: v, like ``anchor``; its dtype is the computation's.
    metric: the diagonal of P, like ``anchor`` or broadcasting against it
      (a scalar metric); for a pytree, one array for every leaf is allowed.
    threshold: τ, a scalar.
  """

  anchor: Any
  linear: Any
  metric: Any
  threshold: jax.Array


def unregularized_solution(sub: Subproblem) -> jax.Array:
  """argmin <v, θ − a> + ½‖θ − a‖²_P = a − v/P (a coordinate without
  curvature stays at a)."""
  return sub.anchor - _numerics.safe_divide(sub.linear, sub.metric)


def blockwise_prox_solution(penalty: LeafPenalty, sub: Subproblem) -> jax.Array:
  """prox_{τ/P ψ}(a − v/P): exact when P is constant on every block of ψ
  (a scalar metric, or any diagonal metric for a separable ψ such as ℓ1).
  A block with no curvature (P = 0) goes to 0, the minimiser of τψ."""
  p, tau = sub.metric, sub.threshold
  block_p = p if jnp.ndim(p) == 0 else penalty.block_max(p)
  y = unregularized_solution(sub)
  z, _ = penalty.prox(y, _numerics.safe_divide(tau, block_p))
  return jnp.where(tau > 0, jnp.where(block_p > 0, z, 0), y)
