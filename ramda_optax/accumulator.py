"""The dual-average accumulator with stage-wise restarts.

Since the last restart, step k = 1, 2, … weighs its gradient by
s_k = η_k √k and accumulates

    α_t = Σ_k s_k,        V_t = Σ_k s_k g_k,

around the anchor W⁰, the parameters at the stage start. At each global step
listed in ``restart_steps`` the accumulation restarts: k, α, V ← 0 and
W⁰ ← the current parameters.

Reference: Huang & Lee, NeurIPS 2024 (arXiv 2403.14398), Algorithm 1 and
App. A.1; Defazio & Jelassi, MADGRAD (arXiv 2101.11075).
"""

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from ramda_optax import _validation
from ramda_optax.statistics import statistics_dtype
from ramda_optax.statistics import zeros_like_params


class DualAveragingState(NamedTuple):
  """State of the dual-average accumulator.

  Attributes:
    count: steps taken in all (global step).
    stage_count: k, steps taken since the last restart.
    alpha: α = Σ s_k since the last restart.
    anchor: W⁰, the parameters at the last restart.
    grad_sum: V = Σ s_k g_k since the last restart.
  """

  count: jax.Array
  stage_count: jax.Array
  alpha: jax.Array
  anchor: optax.Params
  grad_sum: optax.Updates


class Stage(NamedTuple):
  """Where a global step sits in the restart schedule.

  Attributes:
    restart: whether the step restarts the dual averaging.
    num_restarts: restarts at or before the step.
  """

  restart: jax.Array
  num_restarts: jax.Array


def check_restart_steps(restart_steps: Sequence[int]) -> tuple[int, ...]:
  """Validates restart steps: strictly increasing integers >= 1."""
  steps = tuple(restart_steps)
  for s in steps:
    _validation.check_int("restart_steps entries", s, 1)
  if any(b <= a for a, b in zip(steps, steps[1:])):
    raise ValueError(
        f"restart_steps must be strictly increasing; got {steps!r}."
    )
  return steps


def stage(count: jax.Array, restart_steps: tuple[int, ...]) -> Stage:
  """The restart status of global step ``count`` (0-based)."""
  if not restart_steps:
    return Stage(jnp.zeros((), bool), jnp.zeros((), jnp.int32))
  steps = jnp.asarray(restart_steps, dtype=count.dtype)
  return Stage(
      restart=jnp.any(count == steps),
      num_restarts=jnp.sum(count >= steps, dtype=jnp.int32),
  )


def init(params: optax.Params) -> DualAveragingState:
  """Starts the accumulation at W⁰ = params."""
  return DualAveragingState(
      count=jnp.zeros([], jnp.int32),
      stage_count=jnp.zeros([], jnp.int32),
      alpha=jnp.zeros([], statistics_dtype(optax.tree.dtype(params, "highest"))),
      # A buffer of its own, so that params and state can both be donated.
      anchor=jax.tree.map(jnp.copy, params),
      grad_sum=zeros_like_params(params),
  )


def advance(
    state: DualAveragingState,
    learning_rate: jax.Array,
    restart: jax.Array | bool,
) -> tuple[DualAveragingState, jax.Array]:
  """The step's scalars: count, k, α and the weight s = η √k of its
  gradient (W⁰ and V as given: see :func:`accumulate`, :func:`reanchor`)."""
  keep = jnp.logical_not(restart)
  k = jnp.where(keep, state.stage_count, 0) + 1
  dtype = state.alpha.dtype
  weight = (learning_rate * jnp.sqrt(k.astype(dtype))).astype(dtype)
  return state._replace(
      count=optax.safe_increment(state.count),
      stage_count=k,
      alpha=jnp.where(keep, state.alpha, 0) + weight,
  ), weight


def accumulate(grad_sum: jax.Array, grads: jax.Array,
               restart: jax.Array | bool, weight: jax.Array) -> jax.Array:
  """V ← V + s g (V ← s g on a restart), one leaf or block."""
  keep = jnp.logical_not(restart)
  return jnp.where(keep, grad_sum, 0) + weight * grads.astype(grad_sum.dtype)


def reanchor(anchor: jax.Array, params: jax.Array,
             restart: jax.Array | bool) -> jax.Array:
  """W⁰ ← W on a restart, one leaf or block."""
  return jnp.where(restart, params, anchor)
