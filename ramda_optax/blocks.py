"""Running a leaf's step block by block, each block of whole groups.

A group-norm subproblem separates over groups, and every other stage of a
step (the statistics, the dual average, the averaging of W) acts entry by
entry, so a leaf's whole step can run as a sequence of blocks of whole
groups along one axis: each block small enough to stay in cache from its
first read to its last write, its solver stopping on its own progress.
Leaves whose groups span every axis (the nuclear norm, one group per leaf)
run whole.

Reference: Huang & Lee, NeurIPS 2024 (arXiv 2403.14398), Section 3 (the
subproblem separates over the groups of ψ).
"""

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from ramda_optax.regularizers import LeafPenalty
from ramda_optax.subproblem import Subproblem

# (arrays of a block, the block's share of the leaf's entries) -> (new
# arrays, None where one is unchanged; iterations)
BlockStep = Callable[[tuple[jax.Array, ...], float],
                     tuple[tuple[jax.Array | None, ...], jax.Array]]
# (penalty, subproblem, warm start, count, share) -> (θ̂, iterations)
BlockSolve = Callable[[LeafPenalty, Subproblem, jax.Array, jax.Array, float],
                      tuple[jax.Array, jax.Array]]


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


def map_blocks(
    step: BlockStep,
    penalty: LeafPenalty,
    arrays: Sequence[jax.Array],
    block_bytes: int,
) -> tuple[tuple[jax.Array, ...], jax.Array]:
  """``step`` applied to the blocks of whole groups of one leaf's arrays,
  one block after another (a ``lax.fori_loop``; a last, shorter block takes
  the remainder).

  Each block reads its part of every array and writes its part of the new
  ones in place (a block touches no other block's entries), so that the
  leaf is read and written once, with no leaf-sized scratch beyond a copy
  of each replaced array that the caller keeps (not donated).

  Args:
    step: the step of one block: its arrays and its share of the leaf's
      entries to its new arrays (the same shapes; None for one it leaves
      unchanged) and its iteration count.
    penalty: the leaf's penalty (its groups set the blocks' axis).
    arrays: the leaf's arrays, all of the leaf's shape.
    block_bytes: the most bytes of one array of a block (the widest
      dtype's).

  Returns:
    ``(new arrays, iterations)``, the iterations of the block that took
    most; unchanged arrays are returned as given.
  """
  arrays = tuple(arrays)
  shape = arrays[0].shape
  axis = block_axis(penalty, len(shape))
  itemsize = max(x.dtype.itemsize for x in arrays)
  n = 1 if axis is None else shape[axis]
  length = n if axis is None else block_length(shape, itemsize, axis,
                                               block_bytes)
  if length >= n:
    new, iters = step(arrays, 1.0)
    return tuple(x if y is None else y for x, y in zip(arrays, new)), iters
  take = lambda x, start, size: lax.dynamic_slice_in_dim(x, start, size, axis)
  kinds = jax.eval_shape(
      lambda xs: step(xs, 1.0)[0], tuple(take(x, 0, length) for x in arrays))
  changed = [i for i, k in enumerate(kinds) if k is not None]
  buffers = tuple(arrays[i].astype(kinds[i].dtype) for i in changed)

  def run(start, size, carry):
    buffers, iters = carry
    current = list(arrays)
    for i, x in zip(changed, buffers):
      current[i] = x
    # The block is read inside a branch (always taken; XLA cannot know)
    # that its writes depend on: without that order XLA copies the
    # carried buffers at every block when it fuses the reads of one array
    # into the writes of another.
    read = lambda: tuple(take(x, start, size) for x in current)
    block = lax.cond(iters >= 0, read, lambda: tuple(
        jnp.zeros_like(x) for x in jax.eval_shape(read)))
    new, it = step(block, size / n)
    buffers = tuple(lax.dynamic_update_slice_in_dim(x, new[i], start, axis)
                    for i, x in zip(changed, buffers))
    return buffers, jnp.maximum(iters, it)

  num = n // length
  carry = lax.fori_loop(
      0, num, lambda i, c: run(i * length, length, c),
      (buffers, jnp.zeros((), jnp.int32)))
  if n > num * length:
    carry = run(num * length, n - num * length, carry)
  buffers, iters = carry
  result = list(arrays)
  for i, x in zip(changed, buffers):
    result[i] = x
  return tuple(result), iters


def solve_in_blocks(
    solve: BlockSolve,
    penalty: LeafPenalty,
    sub: Subproblem,
    z0: jax.Array,
    count: jax.Array,
    block_bytes: int,
) -> tuple[jax.Array, jax.Array]:
  """A leaf's subproblem solved by ``solve`` block by block
  (:func:`map_blocks`).

  Args:
    solve: a block solver, ``(penalty, subproblem, z0, count, share) ->
      (θ̂, iterations)``; it sees each block as a leaf of the same penalty,
      with its share of the leaf's entries.
    penalty: the leaf's penalty.
    sub: the leaf's subproblem.
    z0: the leaf's warm start.
    count: the 1-based step count.
    block_bytes: the most bytes of one array of a block.

  Returns:
    ``(θ̂, iterations)``, the iterations of the block that took most.
  """

  def step(arrays, share):
    a, v, p, z = arrays
    theta, iters = solve(penalty, Subproblem(a, v, p, sub.threshold), z,
                         count, share)
    return (None, None, None, theta), iters

  a = sub.anchor
  arrays = (a, sub.linear, jnp.broadcast_to(sub.metric, a.shape),
            z0.astype(sub.linear.dtype))
  new, iters = map_blocks(step, penalty, arrays, block_bytes)
  return new[3], iters
