"""Solving a leaf's subproblem block by block, each block of whole groups.

A group-norm subproblem separates over groups, so a leaf can be solved as a
sequence of blocks of whole groups along one axis, each small enough to stay
in cache through all of its solver's iterations, and each stopping on its
own progress. Leaves whose groups span every axis (the nuclear norm, one
group per leaf) are solved whole.

Reference: Huang & Lee, NeurIPS 2024 (arXiv 2403.14398), Section 3 (the
subproblem separates over the groups of ψ).
"""

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from ramda_optax.regularizers import LeafPenalty
from ramda_optax.subproblem import Subproblem

LeafSolve = Callable[
    [LeafPenalty, Subproblem, jax.Array, jax.Array], tuple[jax.Array, jax.Array]
]


def block_axis(penalty: LeafPenalty, ndim: int) -> int | None:
  """The outermost axis that no group spans (None if groups span all)."""
  spanned = penalty.block_axes(ndim)
  free = [d for d in range(ndim) if d not in spanned]
  return free[0] if free else None


def block_length(shape: tuple[int, ...], itemsize: int, axis: int,
                 block_bytes: int) -> int:
  """Indices of ``axis`` per block: as many as fit in ``block_bytes`` per
  array, at least one."""
  per_index = itemsize * math.prod(shape) // shape[axis]
  return max(1, min(shape[axis], block_bytes // max(per_index, 1)))


def solve_in_blocks(
    solve: LeafSolve,
    penalty: LeafPenalty,
    sub: Subproblem,
    z0: jax.Array,
    count: jax.Array,
    block_bytes: int,
) -> tuple[jax.Array, jax.Array]:
  """``solve`` applied to blocks of whole groups of one leaf, one after
  another (a ``lax.fori_loop``; a last, shorter block takes the remainder).

  Args:
    solve: a one-leaf solver, ``(penalty, subproblem, z0, count) -> (θ̂,
      iterations)``; it sees each block as a leaf of the same penalty.
    penalty: the leaf's penalty.
    sub: the leaf's subproblem.
    z0: the leaf's warm start.
    count: the 1-based step count.
    block_bytes: the most bytes of one array of a block.

  Returns:
    ``(θ̂, iterations)``, the iterations of the block that took most.
  """
  a = sub.anchor
  axis = block_axis(penalty, a.ndim)
  if axis is None:
    return solve(penalty, sub, z0, count)
  n = a.shape[axis]
  length = block_length(a.shape, a.dtype.itemsize, axis, block_bytes)
  if length >= n:
    return solve(penalty, sub, z0, count)
  arrays = (a, sub.linear, jnp.broadcast_to(sub.metric, a.shape), z0)

  def solve_block(start, size):
    take = lambda x: lax.dynamic_slice_in_dim(x, start, size, axis)
    a, v, p, z = map(take, arrays)
    return solve(penalty, Subproblem(a, v, p, sub.threshold), z, count)

  def body(i, carry):
    theta, iters = carry
    block, it = solve_block(i * length, length)
    theta = lax.dynamic_update_slice_in_dim(theta, block, i * length, axis)
    return theta, jnp.maximum(iters, it)

  num = n // length
  theta, iters = lax.fori_loop(
      0, num, body, (jnp.zeros_like(sub.linear), jnp.zeros((), jnp.int32))
  )
  if n > num * length:
    block, it = solve_block(num * length, n - num * length)
    theta = lax.dynamic_update_slice_in_dim(theta, block, num * length, axis)
    iters = jnp.maximum(iters, it)
  return theta, iters
