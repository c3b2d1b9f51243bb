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
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import lax

from ramda_optax import blocks
from ramda_optax import cpu_kernel
from ramda_optax import group_kernels
from ramda_optax import partitioning
from ramda_optax import solvers
from ramda_optax.partitioning import GroupStep
from ramda_optax.regularizers import LeafPenalty
from ramda_optax.statistics import Statistics
from ramda_optax.subproblem import Subproblem

# (subproblem, warm start) -> (θ̂, iterations): the solve of the leaf or
# block a step runs on.
Solve = Callable[[Subproblem, jax.Array], tuple[jax.Array, jax.Array]]
# (solve, arrays) -> (new arrays, None for those unchanged; iterations)
LeafStep = Callable[[Solve, tuple[jax.Array, ...]],
                    tuple[tuple[jax.Array | None, ...], jax.Array]]
# (penalty, arrays, the XLA step of the whole leaf, the stop to aim the
# paper's rule at (stop_hint), or None for another solver) -> (new arrays,
# iterations), or None where the kernel does not take the leaf.
Kernel = Callable[[LeafPenalty | None, tuple[jax.Array, ...],
                   Callable[[], tuple[tuple[jax.Array, ...], jax.Array]],
                   jax.Array | None],
                  tuple[tuple[jax.Array, ...], jax.Array] | None]


# Platforms on which the Pallas kernel compiles (through Triton).
PALLAS_PLATFORMS = ("cuda", "rocm")


def gpu_in_use() -> bool:
  """Whether JAX's default backend is a GPU. Only then does
  ``backend="kernel"`` trace the Pallas kernel's branch, which costs a few
  seconds per trace of a large model (3.4 s against 0.5 s for VGG19's
  step on a CPU)."""
  return jax.default_backend() == "gpu"


def _paper_rule(solver: Any) -> bool:
  """Whether ``solver`` is the paper's PG rule as the CPU kernel takes it
  (``backend="kernel"``, whole leaves, the relative-decrease test)."""
  return (isinstance(solver, solvers.PGSolver) and solver.backend == "kernel"
          and solver.block_bytes is None and solver.residual_tol is None)


def kernel_selected(solver: Any, statistics: Statistics) -> bool:
  """Whether an optimizer with ``solver`` and ``statistics`` runs the whole
  step of its leaves as a kernel where one takes them: statistics in
  :class:`ramda_optax.Moments` form and an exact solver with
  ``backend="kernel"`` or ``"cpu"``, the paper's PG rule with
  ``backend="kernel"`` (on a CPU), or any solver with
  ``backend="pallas"``."""
  backend = getattr(solver, "backend", None)
  return statistics.moments is not None and (
      backend == "pallas" or _paper_rule(solver)
      or (backend in ("kernel", "cpu")
          and isinstance(solver, solvers.ExactSolver)))


# Each kernel's step takes the view of the arrays it is given, which under
# SPMD are a device's shard (partitioning.by_shards).


def _cpu_step(solver: Any, penalty) -> GroupStep:
  if penalty is not None and _paper_rule(solver):
    # The rule's test sums Q over the whole leaf: shards that split its
    # groups solve by sweeps, gathering the groups' Q after each, the first
    # aimed at stop_hint's stop (the whole leaf's kernel keeps its own).
    def whole(arrays, coefficients, restart, *, root, delta, hint):
      del hint
      return cpu_kernel.pg_step(
          cpu_kernel.leaf_view(penalty, arrays[0].shape), penalty, arrays,
          coefficients, restart, root=root, delta=delta,
          max_iters=solver.max_iters, rtol=solver.rtol)

    def across(axes):
      return lambda arrays, coefficients, restart, *, root, delta, hint: (
          cpu_kernel.pg_step_across(
              penalty, arrays, coefficients, restart, axes=axes, root=root,
              delta=delta, max_iters=solver.max_iters, rtol=solver.rtol,
              hint=hint))
    return partitioning.by_shards(whole, penalty, across)

  def step(arrays, coefficients, restart, *, root, delta):
    return cpu_kernel.group_step(
        cpu_kernel.leaf_view(penalty, arrays[0].shape), penalty, arrays,
        coefficients, restart, root=root, delta=delta,
        max_iters=solver.max_iters,
        warm_start=getattr(solver, "warm_start", True),
        block_bytes=solver.block_bytes)
  return partitioning.by_shards(step, penalty)


def _pallas_step(solver: Any, penalty,
                 interpret: bool | None) -> GroupStep:
  def step(arrays, coefficients, restart, *, root, delta):
    return group_kernels.fused_step(
        group_kernels.leaf_view(penalty, arrays[0].shape), penalty, arrays,
        coefficients, restart, root=root, delta=delta,
        block_bytes=solver.block_bytes,
        max_iters=solver.max_iters,
        newton=isinstance(solver, solvers.ExactSolver),
        warm_start=getattr(solver, "warm_start", True),
        rtol=getattr(solver, "rtol", 0.0), interpret=interpret)
  return partitioning.by_shards(step, penalty)


def run_kernel(
    solver: Any,
    penalty: LeafPenalty | None,
    arrays: tuple[jax.Array, ...],
    compiled: Callable[[GroupStep], tuple],
    xla_step: Callable[[], tuple],
    hint: jax.Array | None,
) -> tuple | None:
  """``compiled(group_step)`` with the kernel's step of this leaf, on the
  platforms where the solver's kernel takes it, ``xla_step()`` on the
  others; None where no kernel takes the leaf. The paper's PG rule's step
  is given ``hint``, the stop to aim its solve at (:func:`stop_hint`).

  The C++ kernels (``backend`` "cpu" or "kernel", on a CPU) take float32
  leaves grouped along one axis and leaves without a penalty; the Pallas
  kernel (``backend`` "pallas" everywhere, interpreted off GPUs, or
  "kernel" for the exact solver where the default backend is a GPU; the
  paper's PG rule takes the XLA path there) takes group-norm leaves of
  one dtype grouped along one axis (a leaf without a penalty is one XLA
  fusion already). The platform is chosen when the step is lowered
  (``lax.platform_dependent``).
  """
  backend = solver.backend
  branches = {}
  if backend in ("cpu", "kernel"):
    view = cpu_kernel.leaf_takes(penalty, arrays)
    if view is not None:
      cpu_step = _cpu_step(solver, penalty)
      if penalty is not None and _paper_rule(solver):
        cpu_step = functools.partial(cpu_step, hint=hint)
      branches["cpu"] = lambda: compiled(cpu_step)
  pallas = backend == "pallas" or (
      backend == "kernel" and gpu_in_use()
      and isinstance(solver, solvers.ExactSolver))
  if pallas and penalty is not None and len({x.dtype for x in arrays}) == 1:
    view = group_kernels.leaf_view(penalty, arrays[0].shape)
    if view is not None:
      if backend == "pallas":
        return compiled(_pallas_step(solver, penalty, None))
      # Lowered for a GPU only: compiled, wherever it is traced.
      step = lambda: compiled(_pallas_step(solver, penalty, False))
      branches.update({name: step for name in PALLAS_PLATFORMS})
  if not branches:
    return None
  # Every branch's count in the shape of a kernel's by shards (one per
  # entry of the free axis), so that the branches give one type.
  shape = partitioning.count_shape(penalty, arrays[0].shape)

  def counted(run):
    def branch():
      out, iters = run()
      return out, jnp.broadcast_to(iters, shape)
    return branch

  return lax.platform_dependent(
      **{name: counted(run) for name, run in branches.items()},
      default=counted(xla_step))


def block_bytes(solver: Any, penalty: LeafPenalty | None) -> int | None:
  """The bytes of one array of the blocks a leaf's step runs in, or None to
  run it whole (no penalty, a separable one, or a solver without XLA
  blocks)."""
  if (penalty is None or penalty.separable
      or getattr(solver, "backend", "xla") not in ("xla", "cpu", "kernel")
      or not hasattr(solver, "solve_block")):
    return None
  return getattr(solver, "block_bytes", None)


# Moves of a stop within (STEADY, 1/STEADY) leave the other leaves' hints
# as they were (the whole leaf's kernel's band, csrc/ramda_pg_leaf.cc).
STEADY = 0.8


def stop_hint(last: jax.Array,
              latest: tuple[jax.Array, jax.Array] | None) -> jax.Array:
  """The stop to aim a leaf's solve by the paper's rule at: its stop at the
  last step ``last``, scaled by how far the stop of the leaf solved just
  before it in this step moved from that leaf's at the last step,
  ``latest = (now, before)``, where it moved by more than a factor
  ``STEADY``: early in training the stops fall at every step, at much the
  same rate for every leaf. Where ``last`` is 0 (a first step), ``now``.
  As the whole leaf's kernel aims its first chunk; int32."""
  last = jnp.asarray(last, jnp.int32)
  if latest is None:
    return last
  now, before = (jnp.asarray(x, jnp.int32) for x in latest)
  move = now / jnp.maximum(before, 1)
  steady = (before == 0) | ((move > STEADY) & (move < 1 / STEADY))
  scaled = jnp.maximum(1, jnp.floor(last * move + 0.5)).astype(jnp.int32)
  return jnp.where(last == 0, now, jnp.where(steady, last, scaled))


def most_per_leaf(iters: Sequence[jax.Array]) -> jax.Array:
  """One int32 per leaf: the most of its iteration counts (one, or one per
  group or shard of a kernel's step), all leaves' in one reduction, so
  that a step on a GPU does not launch a reduction per leaf."""
  if not iters:
    return jnp.zeros([0], jnp.int32)
  counts = [jnp.ravel(jnp.asarray(i, jnp.int32)) for i in iters]
  width = max(c.size for c in counts)
  return jnp.max(jnp.stack([jnp.pad(c, (0, width - c.size)) for c in counts]),
                 axis=1)


def apply(
    step: LeafStep,
    solver: Any,
    penalties: Sequence[LeafPenalty | None],
    count: jax.Array,
    params: optax.Params,
    trees: Sequence[optax.Params],
    kernel: Kernel | None = None,
    last_iters: jax.Array | None = None,
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
      the platforms it does not run on and, for the paper's rule, the stop
      to aim it at (:func:`stop_hint` of ``last_iters`` and this step's
      iterations so far; only a kernel on a CPU reads it), else None.
    last_iters: the iterations of the last step, one int32 per leaf (the
      optimizer state's); needed with ``kernel``.

  Returns:
    ``(new trees, iterations)``, unchanged trees' leaves as given and the
    iterations one int32 per leaf (:func:`most_per_leaf`).
  """
  leaves, treedef = jax.tree.flatten(params)
  solvers.check_leaf_count(penalties, len(leaves))
  columns = [treedef.flatten_up_to(tree) for tree in trees]
  new, iters = [], []
  # Only the paper's rule's kernel reads a hint: the others' steps trace none.
  aims = kernel is not None and _paper_rule(solver)
  latest = None  # (now, before) of the last regularized leaf a kernel took
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
    hint = stop_hint(last_iters[i], latest) if aims else None
    taken = None if kernel is None else kernel(penalty, arrays, whole, hint)
    if taken is not None:
      out, it = taken
    elif size is None:
      out, it = whole()
    else:
      out, it = blocks.map_blocks(run, penalty, arrays, size)
    new.append(out)
    iters.append(it)
    if aims and taken is not None and penalty is not None:
      latest = (jnp.max(it), last_iters[i])
  trees = tuple(treedef.unflatten([out[j] for out in new])
                for j in range(len(columns)))
  return trees, most_per_leaf(iters)
