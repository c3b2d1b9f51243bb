"""Elementwise helpers of the solvers and statistics."""

import jax
import jax.numpy as jnp


def safe_divide(x: jax.Array, y: jax.Array) -> jax.Array:
  """x / y, with 0 where y <= 0 (a coordinate with no curvature stays put;
  a NaN y also gives 0)."""
  positive = y > 0
  return jnp.where(positive, x / jnp.where(positive, y, 1), 0)


def cbrt(x: jax.Array) -> jax.Array:
  """∛x for x >= 0, as exp(log(x)/3) (several times faster than
  ``jnp.cbrt`` on XLA:CPU; exact 0 at 0)."""
  return jnp.exp(jnp.log(x) / 3)
