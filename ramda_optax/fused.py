"""The fused step: every stage of an optimizer's step, leaf by leaf or block
by block.

Per leaf, a step of the package's optimizers is a function of that leaf's
arrays alone,

    statistics → subproblem (a, v, P, τ) → θ̂ ≈ argmin Q → new parameters,

every stage acting entry by entry except the solve, which separates over
the groups of ψ. :func:`apply` runs such a leaf step on every leaf: whole,
or, when the solver solves by blocks (``block_bytes`` on the XLA backend),
on one block of whole groups after another, so that all of a block's
stages run while it is in cache and every array is read and written once
(:func:`ramda_optax.blocks.map_blocks`).

Reference: Huang & Lee, NeurIPS 2024 (arXiv 2403.14398), Algorithm 1.
"""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import optax

from ramda_optax import blocks
from ramda_optax import solvers
from ramda_optax.regularizers import LeafPenalty
from ramda_optax.subproblem import Subproblem

# (subproblem, warm start) -> (θ̂, iterations): the solve of the leaf or
# block a step runs on.
Solve = Callable[[Subproblem, jax.Array], tuple[jax.Array, jax.Array]]
# (solve, arrays) -> (new arrays, None for those unchanged; iterations)
LeafStep = Callable[[Solve, tuple[jax.Array, ...]],
                    tuple[tuple[jax.Array | None, ...], jax.Array]]
# (penalty, arrays, the XLA step of the whole leaf) -> (new arrays,
# iterations), or None where the kernel does not take the leaf.
Kernel = Callable[[LeafPenalty | None, tuple[jax.Array, ...],
                   Callable[[], tuple[tuple[jax.Array, ...], jax.Array]]],
                  tuple[tuple[jax.Array, ...], jax.Array] | None]


def block_bytes(solver: Any, penalty: LeafPenalty | None) -> int | None:
  """The bytes of one array of the blocks a leaf's step runs in, or None to
  run it whole (no penalty, a separable one, or a solver without XLA
  blocks)."""
  if (penalty is None or penalty.separable
      or getattr(solver, "backend", "xla") not in ("xla", "cpu")
      or not hasattr(solver, "solve_block")):
    return None
  return getattr(solver, "block_bytes", None)


def apply(
    step: LeafStep,
    solver: Any,
    penalties: Sequence[LeafPenalty | None],
    count: jax.Array,
    params: optax.Params,
    trees: Sequence[optax.Params],
    kernel: Kernel | None = None,
) -> tuple[tuple[optax.Params, ...], list[jax.Array]]:
  """``step`` run on every leaf of ``trees``: by ``kernel`` where it takes
  the leaf, else whole or block by block.

  Args:
    step: the step of one leaf (or block): given the solve of its
      subproblem and its arrays, one per tree, their new values (None
      where unchanged) and the solver's iterations.
    solver: the subproblem solver.
    penalties: one leaf penalty or None per leaf of ``params``.
    count: the 1-based step count (for solvers that schedule tolerances).
    params: the parameters (their structure is the trees').
    trees: pytrees like ``params``.
    kernel: None, or a compiled step of whole leaves
      (:mod:`ramda_optax.cpu_kernel`), given the XLA step of the leaf for
      the platforms it does not run on.

  Returns:
    ``(new trees, iterations per leaf)``; unchanged trees' leaves as given.
  """
  leaves, treedef = jax.tree.flatten(params)
  solvers.check_leaf_count(penalties, len(leaves))
  columns = [treedef.flatten_up_to(tree) for tree in trees]
  new, iters = [], []
  for i, penalty in enumerate(penalties):
    arrays = tuple(column[i] for column in columns)

    def run(arrays, share=None, penalty=penalty):
      solve = lambda sub, z0: solvers.solve_leaf(
          solver, penalty, sub, z0, count, share)
      return step(solve, arrays)

    def whole(arrays=arrays, run=run):
      out, it = run(arrays)
      return tuple(x if y is None else y for x, y in zip(arrays, out)), it

    size = block_bytes(solver, penalty)
    taken = None if kernel is None else kernel(penalty, arrays, whole)
    if taken is not None:
      out, it = taken
    elif size is None:
      out, it = whole()
    else:
      out, it = blocks.map_blocks(run, penalty, arrays, size)
    new.append(out)
    iters.append(it)
  trees = tuple(treedef.unflatten([out[j] for out in new])
                for j in range(len(columns)))
  return trees, iters
