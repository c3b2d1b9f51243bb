"""Diagonal metrics P for the dual-averaging methods.

A :class:`Preconditioner` accumulates statistics with the same weights s_k as
the dual average and turns them into the diagonal metric P of the
subproblem. Its ``init``, ``update`` and ``metric`` should be module-level
functions (their identity is part of the optimizer state's static
structure).

Reference: Huang & Lee, NeurIPS 2024 (arXiv 2403.14398), Algorithm 1;
Defazio & Jelassi, MADGRAD (arXiv 2101.11075).
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ramda_optax import _validation
from ramda_optax.dual_averaging import statistics_dtype


class Preconditioner(NamedTuple):
  """A diagonal metric built from weighted gradient statistics.

  Attributes:
    init: ``params -> stats``.
    update: ``(stats, grads, weight, restart) -> stats``; restarts zero the
      statistics before adding the weighted new ones.
    metric: ``(stats, damping, stage_count) -> P`` (a pytree like params,
      or one array per leaf that broadcasts against it).
    damping: ε ≥ 0 added to the metric.
    damping_decay: factor applied to ε at each restart.
  """

  init: Callable[[optax.Params], Any]
  update: Callable[[Any, optax.Updates, jax.Array, jax.Array], Any]
  metric: Callable[[Any, jax.Array, jax.Array], Any]
  damping: float | jax.Array
  damping_decay: float


def _sum_sq_init(params: optax.Params) -> optax.Updates:
  return jax.tree.map(
      lambda p: jnp.zeros(jnp.shape(p), statistics_dtype(p.dtype)), params
  )


def _sum_sq_update(stats, grads, weight, restart):
  keep = jnp.logical_not(restart)
  return jax.tree.map(
      lambda u, g: jnp.where(keep, u, 0) + weight * jnp.square(g.astype(u.dtype)),
      stats,
      grads,
  )


def cbrt(x: jax.Array) -> jax.Array:
  """∛x for x >= 0, as exp(log(x)/3) (several times faster than
  ``jnp.cbrt`` on XLA:CPU; exact 0 at 0)."""
  return jnp.exp(jnp.log(x) / 3)


def _cube_root_metric(stats, damping, stage_count):
  del stage_count
  return jax.tree.map(lambda u: cbrt(u) + damping.astype(u.dtype), stats)


def cube_root(eps: float = 1e-6, eps_decay: float = 0.1) -> Preconditioner:
  r"""The cube-root preconditioner P = ∛U + ε, U = Σ_k s_k g_k².

  Args:
    eps: ε >= 0.
    eps_decay: factor in (0, 1] applied to ε at each restart.

  Returns:
    A :class:`Preconditioner`.

  References:
    Defazio & Jelassi, MADGRAD, 2021; Huang & Lee, NeurIPS 2024.
  """
  _validation.check_range("eps", eps, 0.0)
  _validation.check_range("eps_decay", eps_decay, 0.0, 1.0, low_open=True)
  return Preconditioner(
      init=_sum_sq_init,
      update=_sum_sq_update,
      metric=_cube_root_metric,
      damping=eps,
      damping_decay=eps_decay,
  )


def _no_stats_init(params):
  del params
  return ()


def _no_stats_update(stats, grads, weight, restart):
  del grads, weight, restart
  return stats


def _sqrt_count_metric(stats, damping, stage_count):
  del stats
  return jnp.sqrt(stage_count.astype(damping.dtype))


def sqrt_count() -> Preconditioner:
  r"""RMDA's scalar metric P = √k · I, k the steps since the last restart.

  Returns:
    A :class:`Preconditioner` with no statistics.

  References:
    Huang, Chen & Lee, ICLR 2022 (arXiv 2112.02612).
  """
  return Preconditioner(
      init=_no_stats_init,
      update=_no_stats_update,
      metric=_sqrt_count_metric,
      damping=0.0,
      damping_decay=1.0,
  )
