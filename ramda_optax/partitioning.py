"""A leaf's kernel step under SPMD: each device steps its own shard where
the shards hold whole groups.

The kernels of a leaf's step (the C++ step, the fused Pallas step) are
custom calls, which XLA's partitioner cannot split: it would gather every
operand and run the whole leaf on every device. The step acts entry by
entry except for its sums over each group, so on a shard along axes that
no group spans it is the step of that shard alone (or, for a solve whose
stopping test sums the whole leaf, a step that gathers those sums over
the devices that share the leaf's groups). :func:`by_shards` wraps
a leaf's step in ``custom_partitioning``: the leaf keeps its sharding on
those axes and is gathered on the others (which would cut groups), every
device steps its shard, and the iterations come back as one count per
entry of the first free axis (each shard's, or each group's where the
kernel counts per group), sharded as that axis. Under ``vmap`` the step
runs unpartitioned.

Reference: Huang & Lee, NeurIPS 2024 (arXiv 2403.14398), Section 3 (the
subproblem separates over the groups of ψ).
"""

import string
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from ramda_optax.regularizers import LeafPenalty

# The kernel's step of one leaf: (arrays, coefficients, restart, *, root,
# delta[, hint]) -> (V, U, anchor or None, θ̂ or θ̂ − W, iterations), as
# :func:`ramda_optax.cpu_kernel.group_step` takes and returns them (a
# solve alone gives None for the statistics); the iterations one count,
# or one per entry of the leaf's free axis
# (:func:`ramda_optax.group_kernels.fused_step`).
GroupStep = Callable[..., tuple[jax.Array | None, ...]]
# The mesh axes that split a leaf's groups -> the kernel's step of one
# device's shard, for a step whose solve sums over the whole leaf (it
# gathers those sums over the axes).
Across = Callable[[tuple[str, ...]], GroupStep]
# The sharding rule's names of a leaf's axes; z names the scalars.
_FACTORS = string.ascii_lowercase[:-1]


def free_axes(penalty: LeafPenalty | None, ndim: int) -> tuple[int, ...]:
  """The axes of a leaf that no group of ``penalty`` spans (all of them
  without a penalty)."""
  spanned = () if penalty is None else penalty.block_axes(ndim)
  return tuple(d for d in range(ndim) if d not in spanned)


def count_shape(penalty: LeafPenalty | None,
                shape: tuple[int, ...]) -> tuple[int, ...]:
  """The shape of the iterations :func:`by_shards` gives for a leaf of
  ``shape``: one count per entry of its first free axis, or one count
  where the leaf runs whole."""
  axes = free_axes(penalty, len(shape))
  return (shape[axes[0]],) if axes and len(shape) <= len(_FACTORS) else ()


def _kept(sharding, ndim: int, axes: Sequence[int]) -> PartitionSpec:
  """``sharding``'s partition of a leaf on ``axes``, none on the others."""
  spec = tuple(getattr(sharding, "spec", ()))
  spec += (None,) * (ndim - len(spec))
  return PartitionSpec(*(spec[d] if d in axes else None for d in range(ndim)))


def by_shards(step: GroupStep, penalty: LeafPenalty | None,
              across: Across | None = None) -> GroupStep:
  """``step`` (a leaf's kernel step) run by each device on its shard of
  the leaf along the axes no group spans; see the module docstring.

  ``step`` must act on a shard as on a leaf of the shard's shape, unless
  ``across`` is given: then a leaf whose groups are split over devices is
  stepped by ``across(axes)`` on each shard, and ``step`` runs only where
  a device holds the whole leaf's groups. A ``hint`` given to the step
  returned (a traced int32 scalar, the stop to aim the paper's rule at)
  reaches ``step`` and ``across``'s step as ``hint``. Leaves
  with no such axis (a group spanning the leaf, a scalar), and leaves of
  more than 25 axes, run whole. The iterations are not reduced here: the
  most of every leaf's is taken at once
  (:func:`ramda_optax.fused.most_per_leaf`)."""

  def partitioned(arrays, coefficients, restart, *, root, delta, hint=None):
    ndim = arrays[0].ndim
    axes = free_axes(penalty, ndim)
    hinted = {} if hint is None else {"hint": hint}
    if not count_shape(penalty, arrays[0].shape):
      return step(arrays, coefficients, restart, root=root, delta=delta,
                  **hinted)
    restarts = restart is not False
    dtype = arrays[0].dtype
    # The hint rides with the scalars (exact in float32 up to 2**24).
    scalars = jnp.stack([jnp.asarray(x, dtype) for x in (
        *coefficients, *((restart,) if restarts else ()),
        *((hint,) if hinted else ()))])
    first = axes[0]

    present = []  # which of the step's results are arrays (not None)

    def stepped(step):
      def local(*args):
        *leaves, scalars = args
        n = len(coefficients)
        *results, iters = step(
            tuple(leaves), tuple(scalars[i] for i in range(n)),
            scalars[n] > 0 if restarts else False, root=root, delta=delta,
            **({"hint": scalars[n + restarts].astype(jnp.int32)}
               if hinted else {}))
        present[:] = [x is not None for x in results]
        # One count per entry of the first free axis: an output that shards.
        return (*(x for x in results if x is not None),
                jnp.broadcast_to(iters, (leaves[0].shape[first],)))
      return local

    local = stepped(step)

    def shardings(mesh, arg_shapes):
      spec = _kept(arg_shapes[0].sharding, ndim, axes)
      leaf = NamedSharding(mesh, spec)
      count = NamedSharding(mesh, PartitionSpec(spec[first]))
      return leaf, count, NamedSharding(mesh, PartitionSpec())

    def infer(mesh, arg_shapes, result_shape):
      leaf, count, _ = shardings(mesh, arg_shapes)
      return (leaf,) * (len(result_shape) - 1) + (count,)

    def partition(mesh, arg_shapes, result_shape):
      leaf, count, replicated = shardings(mesh, arg_shapes)
      names = leaf.spec[first]
      shard = local if across is None or names is None else stepped(
          across(names if isinstance(names, tuple) else (names,)))
      return (mesh, shard, (leaf,) * (len(result_shape) - 1) + (count,),
              (leaf,) * len(arrays) + (replicated,))

    letters = _FACTORS[:ndim]
    dims = " ".join(letters)
    outputs = len(jax.eval_shape(local, *arrays, scalars)) - 1
    whole = custom_partitioning(local)
    whole.def_partition(
        partition, infer_sharding_from_operands=infer,
        sharding_rule=(f"{', '.join([dims] * len(arrays))}, z -> "
                       f"{', '.join([dims] * outputs)}, {letters[first]}"),
        need_replication_factors=tuple(
            [letters[d] for d in range(ndim) if d not in axes] + ["z"]))
    batched = custom_vmap(lambda *args: whole(*args))

    @batched.def_vmap
    def _(axis_size, in_batched, *args):
      del axis_size
      out = jax.vmap(local, in_axes=[0 if b else None for b in in_batched])(
          *args)
      return out, jax.tree.map(lambda _: True, out)

    *results, counts = batched(*arrays, scalars)
    results = iter(results)
    return (*(next(results) if p else None for p in present), counts)

  return partitioned
