"""Compiled CPU kernels: the step of an adaptive method on a group-lasso
leaf, and the paper's PG solve with its per-leaf stopping rule.

On XLA:CPU the step of a regularized leaf runs as many separate loops
(the statistics, each Newton pass, the solution), each crossing memory or,
by blocks, paying a loop's overhead per block. The kernel in
``csrc/ramda_group_step.cc`` runs the whole step of a leaf, block of whole
groups by block, for statistics of the :class:`ramda_optax.Moments` form
(RAMDA's cube root, ProxGen's and ProxSSI's Adam moments) and the exact
group-lasso solution: one pass reads g, the two statistics, the anchor and
the warm start and writes the statistics, Newton's passes run on the block
in cache, a last pass writes θ̂; blocks run on XLA's intra-op threads.
RAMDA's averaging of W stays in XLA, where it fuses with
``optax.apply_updates``. For ProxGen and ProxSSI, whose update θ̂ − W has
no buffer in the state, the kernel returns each group's offset κ/r in
place of θ̂ and skips the last pass; an XLA fusion forms θ̂ − W from the new
statistics, and fuses with ``optax.apply_updates`` too.

The PG kernel (``csrc/ramda_pg_leaf.cc``, :func:`pg_leaf`) runs the
paper's inexact solve of a leaf by blocks of groups kept in cache, a chunk
of iterations at a time: the leaf's stopping test needs the leaf's Q after
every iteration, so each block records its Q per iteration, and where the
leaf stops inside a chunk its blocks rerun the chunk to the stopping
iteration. As the optimizer's whole step (:func:`pg_step`, statistics of
the :class:`ramda_optax.Moments` form) its first sweep updates the
statistics, and every sweep forms a, v and P from them in cache. On a
shard of a leaf whose groups other devices hold too, the whole step runs
by sweeps under an XLA loop (:func:`pg_step_across`), each sweep a call
(``RamdaPgSweep``) that reports its groups' Q, which the devices gather
and test as one device's kernel would (``RamdaPgStop``), the first sweep aimed
at the previous step's stop.

They are built on first use with the system's C++ compiler (``$CXX``, else
``c++``) against the XLA FFI headers that jaxlib ships, cached under
``$RAMDA_OPTAX_CACHE`` (default ``~/.cache/ramda_optax``), and called
through ``jax.ffi``. Where they cannot be built (no compiler, a jaxlib without
the FFI) or ``RAMDA_OPTAX_CPU_KERNEL=0``, the optimizers take the XLA path,
which computes the same step (to float32 rounding) and remains the
reference.

References: Huang & Lee, NeurIPS 2024 (arXiv 2403.14398), Algorithm 1;
Yun, Lozano & Yang, NeurIPS 2021 (ProxGen).
"""

import ctypes
import functools
import hashlib
import importlib.resources
import math
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ramda_optax import _numerics
from ramda_optax.regularizers import GroupNorm
from ramda_optax.regularizers import LeafPenalty
from ramda_optax.subproblem import Subproblem

LIBRARY = "ramda_optax_kernels"
# The FFI targets of the optimizer's step (exact solution), of the paper's
# PG solve, and of the optimizer's step with the paper's PG solve.
STEP_TARGET = "ramda_group_step"
PG_TARGET = "ramda_pg_leaf"
PG_STEP_TARGET = "ramda_pg_step"
# The latter by sweeps, on a shard of a leaf: one sweep, and the test.
PG_SWEEP_TARGET = "ramda_pg_sweep"
PG_STOP_TARGET = "ramda_pg_stop"
PG_LEAF_SWEEP_TARGET = "ramda_pg_leaf_sweep"  # the same for the solve alone
# FFI target -> the library's handler symbol.
TARGETS = {STEP_TARGET: "RamdaGroupStep", PG_TARGET: "RamdaPgLeaf",
           PG_STEP_TARGET: "RamdaPgStep", PG_SWEEP_TARGET: "RamdaPgSweep",
           PG_STOP_TARGET: "RamdaPgStop",
           PG_LEAF_SWEEP_TARGET: "RamdaPgLeafSweep"}
# Bytes of one array of a block of groups: b and P of a block, in scratch,
# stay in a core's 512 KiB L2 beside the streamed arrays (32 KiB, 128 KiB and
# 512 KiB measured on VGG19: 128 KiB fastest).
BLOCK_BYTES = 128 * 1024
# The same for the PG kernels, whose blocks also prefetch the next block
# while they iterate: a block's a, v, P and iterate in scratch beside the
# next block's arrays. On VGG19's largest leaf the step's sweep of one
# iteration took 3.59 ms with 64 KiB, 3.96, 3.72 and 3.85 ms with 32, 96
# and 128 KiB; of 40 iterations, 11.0 to 11.5 ms with each.
PG_BLOCK_BYTES = 64 * 1024
# Iterations of a chunk of the PG solve where no earlier stop is
# remembered: its blocks run a chunk in cache, and rerun it to the stop
# when the leaf stops inside it.
PG_CHUNK = 16
# -fno-math-errno and -fno-trapping-math let the loops vectorise (2x on
# the VGG19 step); neither changes a result. -ffp-contract=off keeps a
# product rounded where it is also stored: the PG kernel's iterate, written
# at a chunk's end and read back, is then the one its next pass would use.
FLAGS = ("-std=c++17", "-O3", "-march=native", "-fPIC", "-shared", "-w",
         "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off",
         "-fopenmp-simd")

# (rows, groups, cols): x.reshape(rows, groups, cols)[:, g, :] is group g.
View = tuple[int, int, int]


def _sources() -> dict[str, bytes]:
  """The kernels' C++ files, by name."""
  folder = importlib.resources.files("ramda_optax") / "csrc"
  return {f.name: f.read_bytes() for f in sorted(folder.iterdir(),
                                                  key=lambda f: f.name)
          if f.name.endswith((".cc", ".h"))}


def _cpu_flags() -> str:
  """The CPU's feature flags (an object built with -march=native runs only
  where they are the same)."""
  try:
    with open("/proc/cpuinfo") as f:
      return next((line for line in f if line.startswith("flags")), "")
  except OSError:
    return platform.processor()


def _build(compiler: str) -> str:
  """Compiles the kernels into one library (once per source, flags, jaxlib
  and CPU) and returns its path."""
  include = jax.ffi.include_dir()
  sources = _sources()
  key = hashlib.sha256(b"\0".join([
      *(name.encode() + b"\0" + text for name, text in sources.items()),
      " ".join(FLAGS).encode(), jax.__version__.encode(),
      include.encode(), _cpu_flags().encode(), compiler.encode(),
  ])).hexdigest()[:16]
  cache = os.environ.get("RAMDA_OPTAX_CACHE",
                         os.path.join(os.path.expanduser("~"), ".cache",
                                      "ramda_optax"))
  path = os.path.join(cache, f"{LIBRARY}-{key}.so")
  if os.path.exists(path):
    return path
  os.makedirs(cache, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=cache) as tmp:
    for name, text in sources.items():
      with open(os.path.join(tmp, name), "wb") as f:
        f.write(text)
    built = os.path.join(tmp, f"{LIBRARY}.so")
    subprocess.run([compiler, *FLAGS, f"-I{include}",
                    *(os.path.join(tmp, name) for name in sources
                      if name.endswith(".cc")), "-o", built],
                   check=True, capture_output=True, text=True)
    os.replace(built, path)  # atomic: concurrent builds agree
  return path


@functools.cache
def library() -> tuple[ctypes.CDLL | None, str]:
  """``(the loaded, registered kernel library, "")``, or ``(None, why
  not)``."""
  if os.environ.get("RAMDA_OPTAX_CPU_KERNEL", "1") == "0":
    return None, "RAMDA_OPTAX_CPU_KERNEL=0"
  if not hasattr(jax, "ffi") or not hasattr(jax.ffi, "include_dir"):
    return None, f"jax {jax.__version__} has no jax.ffi"
  compiler = shutil.which(os.environ.get("CXX", "c++"))
  if compiler is None:
    return None, "no C++ compiler ($CXX or c++) on PATH"
  try:
    lib = ctypes.cdll.LoadLibrary(_build(compiler))
  except subprocess.CalledProcessError as e:
    return None, f"the kernel did not compile:\n{e.stderr[-2000:]}"
  except OSError as e:
    return None, f"the kernel could not be built or loaded: {e}"
  for target, symbol in TARGETS.items():
    jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)),
                                platform="cpu")
  return lib, ""


def available() -> bool:
  """Whether the kernel is built and registered (building it if needed);
  warns once with the reason when it is not."""
  lib, why = library()
  if lib is None and why != "RAMDA_OPTAX_CPU_KERNEL=0":
    _warn_once(why)
  return lib is not None


@functools.cache
def _warn_once(why: str) -> None:
  warnings.warn(f"ramda_optax: the CPU kernel is unavailable, the XLA path "
                f"runs instead ({why})", RuntimeWarning, stacklevel=3)


def leaf_view(penalty: LeafPenalty | None,
              shape: tuple[int, ...]) -> View | None:
  """(rows, groups, cols) of a leaf whose groups are the indices of one
  axis, or of a leaf without a penalty (its last axis' runs as groups);
  else None (ℓ1, other penalties, groups spanning several axes, or no
  entries)."""
  if not math.prod(shape):
    return None
  if penalty is None:
    return 1, math.prod(shape[:-1]), (shape[-1] if shape else 1)
  if not isinstance(penalty, GroupNorm) or penalty.separable:
    return None
  free = [d for d in range(len(shape)) if d not in penalty.axes]
  if len(free) != 1:
    return None
  k = free[0]
  return math.prod(shape[:k]), shape[k], math.prod(shape[k + 1:])


def leaf_takes(penalty: LeafPenalty | None,
               arrays: tuple[jax.Array, ...]) -> View | None:
  """The view of a leaf the kernel takes (float32 arrays, a group norm
  along one axis or no penalty, the kernel built), else None."""
  view = leaf_view(penalty, arrays[0].shape)
  if (view is None or any(x.dtype != jnp.float32 for x in arrays)
      or not available()):
    return None
  return view


def _view_attributes(view: View, block_bytes: int, max_iters: int) -> dict:
  """The kernels' shared attributes (``csrc/step_binding.h``, WithView):
  the leaf's view, its groups per block (``block_bytes`` per array of a
  block) and the most iterations."""
  rows, groups, cols = view
  block = max(1, block_bytes // (rows * cols * 4))
  return dict(rows=np.int64(rows), groups=np.int64(groups),
              cols=np.int64(cols), block=np.int64(block),
              max_iters=np.int64(max_iters))


def group_step(
    view: View,
    penalty: GroupNorm | None,
    arrays: tuple[jax.Array, ...],
    coefficients: tuple[jax.Array | float, ...],
    restart: jax.Array | bool,
    *,
    root: int,
    delta: bool,
    max_iters: int,
    warm_start: bool,
    block_bytes: int | None,
) -> tuple[jax.Array, jax.Array, jax.Array | None, jax.Array, jax.Array]:
  """The kernel on one float32 leaf.

  Args:
    view: the leaf's (rows, groups, cols).
    penalty: its group norm, or None (τ is then 0).
    arrays: (g, W, V, U, a, warm start), float32, of the leaf's shape: the
      statistics' two buffers, the anchor (W⁰, or W) and the point whose
      group radii start Newton (the previous θ̂, or W).
    coefficients: (β₁, w₁, β₂, w₂, c, ℓ, ε, τ): V ← β₁V + w₁g,
      U ← β₂U + w₂g², P = root(c U) + ε, v = ℓV, and the threshold.
    restart: whether this step restarts the statistics (V, U ← 0) and
      re-anchors a at W; False when the optimizer has no restarts (the
      anchor is then not an output).
    root: 3 (cube root) or 2 (square root).
    delta: return θ̂ − W, formed by XLA from the new statistics and the
      groups' offsets that the kernel returns (else θ̂, which the kernel
      writes in the warm start's buffer).
    max_iters: most Newton passes per group.
    warm_start: start Newton at the warm start's group radii.
    block_bytes: bytes of one array of a block (None: ``BLOCK_BYTES``).

  Returns:
    ``(V, U, a or None, θ̂ or θ̂ − W, passes)``; V and U, a, and θ̂ (without
    ``delta``) are written in the buffers of the ones given (donate them to
    avoid copies).
  """
  g, w, v, u, anchor, start = arrays
  if penalty is None:
    coefficients = (*coefficients[:-1], 0.0)
  coefficients = jnp.stack([jnp.asarray(x, jnp.float32) for x in coefficients])
  leaf = jax.ShapeDtypeStruct(g.shape, jnp.float32)
  restarts = restart is not False
  if restarts and delta:
    raise ValueError("cpu_kernel.group_step: restarts need delta=False.")
  aliases = {2: 0, 3: 1, **({4: 2} if restarts else {}),
             **({} if delta else {5: 3})}
  call = jax.ffi.ffi_call(
      STEP_TARGET,
      (leaf, leaf, leaf if restarts else jax.ShapeDtypeStruct((0,), jnp.float32),
       jax.ShapeDtypeStruct((view[1],), jnp.float32) if delta else leaf,
       jax.ShapeDtypeStruct((), jnp.int32)),
      input_output_aliases=aliases,
      vmap_method="sequential",
  )
  v, u, new_anchor, theta, passes = call(
      g, w if restarts or delta else anchor, v, u, anchor, start,
      coefficients, jnp.asarray(restart, jnp.bool_),
      **_view_attributes(view, block_bytes or BLOCK_BYTES, max_iters),
      group_weight=np.float32(1.0 if penalty is None else penalty.weight),
      warm_start=bool(warm_start),
      root=np.int64(root), offsets=bool(delta))
  if delta:
    theta = _difference(coefficients, root, w, anchor, v, u,
                        None if penalty is None else _along_groups(
                            theta, view, w.shape))
  return v, u, new_anchor if restarts else None, theta, passes


def pg_step(
    view: View,
    penalty: GroupNorm,
    arrays: tuple[jax.Array, ...],
    coefficients: tuple[jax.Array | float, ...],
    restart: jax.Array | bool,
    *,
    root: int,
    delta: bool,
    max_iters: int,
    rtol: float,
    chunk: int | None = None,
    block_bytes: int | None = None,
    remember: bool = True,
) -> tuple[jax.Array, jax.Array, jax.Array | None, jax.Array, jax.Array]:
  """The step of an adaptive method on one float32 group-lasso leaf with the
  paper's PG solve and per-leaf stopping rule (:func:`pg_leaf`), its
  statistics updated in the solve's first sweep: :func:`group_step`'s
  arguments and results, with the PG solver's.

  Args:
    view: the leaf's (rows, groups, cols).
    penalty: its group norm.
    arrays: (g, W, V, U, a, z⁰), float32, of the leaf's shape.
    coefficients: (β₁, w₁, β₂, w₂, c, ℓ, ε, τ), as :func:`group_step`'s;
      τ <= 0 gives the closed form a − v/P and no iteration.
    restart: as :func:`group_step`'s.
    root: 3 (cube root) or 2 (square root).
    delta: return θ̂ − W (else θ̂).
    max_iters: most iterations.
    rtol: the relative-decrease tolerance.
    chunk, block_bytes, remember: as :func:`pg_leaf`'s.

  Returns:
    ``(V, U, a or None, θ̂ or θ̂ − W, iterations)``; V, U and a are written
    in the buffers of the ones given (donate them to avoid copies).
  """
  g, w, v, u, anchor, start = arrays
  coefficients = jnp.stack([jnp.asarray(x, jnp.float32) for x in coefficients])
  leaf = jax.ShapeDtypeStruct(g.shape, jnp.float32)
  restarts = restart is not False
  call = jax.ffi.ffi_call(
      PG_STEP_TARGET,
      (leaf, leaf, leaf if restarts else jax.ShapeDtypeStruct((0,), jnp.float32),
       leaf, jax.ShapeDtypeStruct((), jnp.int32)),
      input_output_aliases={2: 0, 3: 1, **({4: 2} if restarts else {})},
      vmap_method="sequential",
  )
  v, u, new_anchor, theta, iterations = call(
      g, w, v, u, anchor, start, coefficients,
      jnp.asarray(restart, jnp.bool_),
      **_view_attributes(view, block_bytes or PG_BLOCK_BYTES,
                         max_iters),
      chunk=np.int64(chunk or PG_CHUNK), rtol=np.float32(rtol),
      group_weight=np.float32(penalty.weight), remember=bool(remember),
      root=np.int64(root))
  return (v, u, new_anchor if restarts else None,
          theta - w if delta else theta, iterations)


def pg_step_across(
    penalty: GroupNorm,
    arrays: tuple[jax.Array, ...],
    coefficients: tuple[jax.Array | float, ...],
    restart: jax.Array | bool,
    *,
    axes: str | tuple[str, ...],
    root: int,
    delta: bool,
    max_iters: int,
    rtol: float,
    chunk: int | None = None,
    hint: jax.Array | int | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array | None, jax.Array, jax.Array]:
  """:func:`pg_step` on one device's shard of a leaf whose groups are split
  over the mesh axes ``axes`` (in a partitioned custom call, or under
  ``shard_map`` with ``check_vma=False``: the FFI calls' results carry no
  varying axes), with the same floats and iterations as on the whole
  leaf.

  The rule's test needs the leaf's Q after every iteration, so the solve
  runs by sweeps under an XLA loop: each sweep records every group's Q
  after each of its iterations, the shards' records are gathered (a
  double per group and iteration, not the leaf) and summed as the whole
  leaf's solve sums them, and where the leaf stops inside a sweep its
  shard reruns the sweep to the stopping iteration. Sweeps run ``chunk``
  iterations; given a ``hint`` h > 0 of the stop (the previous step's),
  the first runs to h + m (m = max(2, h // 16)) and keeps its iterate
  after iteration h − m (the whole leaf's kernel keeps every iterate from
  there), so that a stop within m of h takes one sweep and a rerun of
  fewer than 2m iterations. Its records then have room for up to ``max_iters``
  iterations where that takes no more bytes than the group's floats.

  Args:
    penalty, arrays, coefficients, restart, root, delta, max_iters, rtol:
      as :func:`pg_step`'s, the arrays a shard's that holds a range of the
      leaf's groups.
    axes: the mesh axes that split the groups, in the order of the
      sharding.
    chunk: iterations of a sweep (None: ``PG_CHUNK``).
    hint: None, or an int32 scalar: the stop to aim the first sweep at (0:
      none), the same on every shard.

  Returns:
    As :func:`pg_step`'s.
  """
  g, w, v, u, anchor, start = arrays
  coefficients = jnp.stack([jnp.asarray(x, jnp.float32) for x in coefficients])
  restarts = restart is not False
  rows, groups, cols = leaf_view(penalty, g.shape)
  plan = _Sweeps.of(rows * cols, chunk, max_iters, hint)
  leaf = jax.ShapeDtypeStruct(g.shape, jnp.float32)
  none = lambda dtype: jax.ShapeDtypeStruct((0,), dtype)
  attributes = dict(
      **_view_attributes((rows, groups, cols), PG_BLOCK_BYTES, max_iters),
      group_weight=np.float32(penalty.weight), root=np.int64(root))
  flag = jnp.asarray(restart, jnp.bool_)

  def sweep(first, v, u, anchor, z, screening, steps, count, snap, room):
    keep = first and plan.keeps
    call = jax.ffi.ffi_call(
        PG_SWEEP_TARGET,
        (leaf if first else none(jnp.float32),
         leaf if first else none(jnp.float32),
         leaf if first and restarts else none(jnp.float32), leaf,
         leaf if keep else none(jnp.float32),
         jax.ShapeDtypeStruct((groups, room, 2), jnp.uint32),
         jax.ShapeDtypeStruct((groups,) if first else (0,), jnp.uint8),
         jax.ShapeDtypeStruct((groups,) if first else (0,), jnp.float32)),
        input_output_aliases=(
            {2: 0, 3: 1, **({4: 2} if restarts else {})} if first else {}),
        vmap_method="sequential")
    return call(g, w, v, u, anchor, z, coefficients, flag, screening, steps,
                jnp.asarray(count, jnp.int32), jnp.asarray(snap, jnp.int32),
                **attributes, chunk=np.int64(room), first=bool(first))

  v, u, new_anchor, *first = sweep(
      True, v, u, anchor, start, jnp.zeros([0], jnp.uint8),
      jnp.zeros([0], jnp.float32), plan.count, plan.snap, plan.room)
  a = new_anchor if restarts else anchor
  theta, stop = _by_sweeps(
      first, lambda z, screening, steps, count, room: sweep(
          False, v, u, a, z, screening, steps, count, 0, room)[3:6:2],
      start, plan, axes=axes, view=(rows, groups, cols), max_iters=max_iters,
      rtol=rtol)
  return (v, u, new_anchor if restarts else None,
          theta - w if delta else theta, stop)


def pg_leaf_across(
    penalty: GroupNorm,
    sub: Subproblem,
    z0: jax.Array,
    *,
    axes: str | tuple[str, ...],
    max_iters: int,
    rtol: float,
    chunk: int | None = None,
    hint: jax.Array | int | None = None,
) -> tuple[jax.Array, jax.Array]:
  """:func:`pg_leaf` on one device's shard of a leaf whose groups are split
  over the mesh axes ``axes``, by sweeps as :func:`pg_step_across`, with
  the same floats and iterations as on the whole leaf.

  Args:
    penalty, sub, z0, max_iters, rtol: as :func:`pg_leaf`'s, the arrays a
      shard's that holds a range of the leaf's groups.
    axes: the mesh axes that split the groups, in the order of the
      sharding.
    chunk, hint: as :func:`pg_step_across`'s.

  Returns:
    ``(θ̂, iterations)``.
  """
  a, v = sub.anchor, sub.linear
  p = jnp.broadcast_to(sub.metric, a.shape)
  tau = jnp.asarray(sub.threshold, jnp.float32)
  view = leaf_view(penalty, a.shape)
  plan = _Sweeps.of(view[0] * view[2], chunk, max_iters, hint)
  leaf = jax.ShapeDtypeStruct(a.shape, jnp.float32)

  def sweep(first, z, screening, steps, count, snap, room):
    groups = view[1] if first else 0
    call = jax.ffi.ffi_call(
        PG_LEAF_SWEEP_TARGET,
        (leaf, leaf if first and plan.keeps
         else jax.ShapeDtypeStruct((0,), jnp.float32),
         jax.ShapeDtypeStruct((view[1], room, 2), jnp.uint32),
         jax.ShapeDtypeStruct((groups,), jnp.uint8),
         jax.ShapeDtypeStruct((groups,), jnp.float32)),
        vmap_method="sequential")
    return call(a, v, p, z, tau, screening, steps,
                jnp.asarray(count, jnp.int32), jnp.asarray(snap, jnp.int32),
                **_view_attributes(view, PG_BLOCK_BYTES, max_iters),
                chunk=np.int64(room), group_weight=np.float32(penalty.weight),
                first=bool(first))

  first = sweep(True, z0, jnp.zeros([0], jnp.uint8),
                jnp.zeros([0], jnp.float32), plan.count, plan.snap, plan.room)
  return _by_sweeps(
      first, lambda z, screening, steps, count, room: sweep(
          False, z, screening, steps, count, 0, room)[0:3:2],
      z0, plan, axes=axes, view=view, max_iters=max_iters, rtol=rtol)


class _Sweeps(NamedTuple):
  """How a solve by sweeps runs (:func:`pg_step_across`): ``chunk``
  iterations a sweep after the first, which runs ``count`` and keeps its
  iterate after iteration ``snap`` (0: none) where ``keeps``; ``room``:
  the iterations its records (and a rerun's) have room for."""
  chunk: int
  count: jax.Array | int
  snap: jax.Array | int
  room: int
  keeps: bool

  @classmethod
  def of(cls, entries: int, chunk: int | None, max_iters: int,
         hint: jax.Array | int | None) -> "_Sweeps":
    """The sweeps of a leaf of groups of ``entries`` floats, aimed at
    ``hint`` (see :func:`pg_step_across`)."""
    chunk = min(chunk or PG_CHUNK, max_iters)
    # Records of at most a group's bytes: a double per iteration for two
    # of its floats.
    room = max(chunk, min(max_iters, entries // 2))
    if hint is None:
      return cls(chunk, chunk, 0, chunk, False)
    hint = jnp.asarray(hint, jnp.int32)
    margin = jnp.maximum(2, hint // 16)  # as the whole leaf's kernel's
    count = jnp.where(hint > 0, jnp.minimum(hint + margin, room), chunk)
    snap = jnp.where((hint > 0) & (count > 2 * margin), count - 2 * margin, 0)
    return cls(chunk, count, snap, room, True)


def sweeps_to(stop: int, hint: int | None, *, entries: int, max_iters: int,
              chunk: int | None = None) -> tuple[int, int]:
  """``(sweeps, iterations)`` that :func:`pg_step_across` runs on a leaf of
  groups of ``entries`` floats to a stop after ``stop`` iterations (0:
  every group screened), aimed at ``hint`` (None: not aimed), reruns
  included."""
  plan = _Sweeps.of(entries, chunk, max_iters, hint)
  count, snap = int(plan.count), int(plan.snap)
  sweeps, iterations, done, before = 1, count, count, 0
  while stop > done:
    before, count = done, min(plan.chunk, max_iters - done)
    sweeps, iterations, done = sweeps + 1, iterations + count, done + count
  if 0 < stop < done:
    if plan.keeps and before == 0 and 0 < snap <= stop:
      sweeps, iterations = sweeps + (stop > snap), iterations + stop - snap
    else:
      sweeps, iterations = sweeps + 1, iterations + stop - before
  return sweeps, iterations


def _by_sweeps(first, sweep, start, plan, *, axes, view, max_iters, rtol):
  """The paper's rule on a shard by sweeps (:func:`pg_step_across`): given
  the first sweep's ``(end, kept, records, screening, steps)`` from
  ``start``, run as ``plan`` says, and ``sweep(z, screening, steps, count,
  room) -> (end, records)`` for the later ones, ``(θ̂, iterations)``."""
  rows, _, cols = view
  end, kept, records, screening, steps = first

  def test(records, count, before, done):
    call = jax.ffi.ffi_call(
        PG_STOP_TARGET, (jax.ShapeDtypeStruct((), jnp.int32),
                         jax.ShapeDtypeStruct((), jnp.float32)),
        vmap_method="sequential")
    return call(jax.lax.all_gather(records, axes, axis=0, tiled=True),
                jnp.asarray(count, jnp.int32), before,
                jnp.asarray(done, jnp.int32),
                block=np.int64(max(1, PG_BLOCK_BYTES // (rows * cols * 4))),
                max_iters=np.int64(max_iters), rtol=np.float32(rtol))

  # Every group of the leaf screened (or no threshold): no iteration.
  live = jax.lax.psum(jnp.sum(screening, dtype=jnp.int32), axes) > 0
  stop, last = test(records, plan.count, jnp.float32(jnp.nan), 0)

  def next_sweep(carry):
    _, end, _, done, last, _ = carry
    count = jnp.minimum(plan.chunk, max_iters - done)
    new_end, records = sweep(end, screening, steps, count, plan.chunk)
    stop, last = test(records, count, last, done)
    return end, new_end, done, done + count, last, stop

  begin, end, before, done, _, stop = jax.lax.while_loop(
      lambda carry: live & (carry[-1] == 0), next_sweep,
      (start, end, jnp.int32(0), jnp.asarray(plan.count, jnp.int32), last,
       jnp.where(live, stop, 0)))

  def rerun(z, count):
    return lambda: sweep(z, screening, steps, count, plan.room)[0]

  # The stop inside the last sweep: the iterate the first sweep kept, or a
  # rerun from it or from the sweep's first iterate.
  to_stop = rerun(begin, stop - before)
  if plan.keeps:
    kept_before = (before == 0) & (plan.snap > 0) & (stop >= plan.snap)
    to_stop = functools.partial(
        jax.lax.cond, kept_before,
        lambda: jax.lax.cond(stop == plan.snap, lambda: kept,
                             rerun(kept, stop - plan.snap)),
        to_stop)
  theta = jax.lax.cond(live & (stop < done), to_stop, lambda: end)
  return theta, stop


def pg_leaf(
    view: View,
    penalty: GroupNorm,
    sub: Subproblem,
    z0: jax.Array,
    *,
    max_iters: int,
    rtol: float,
    chunk: int | None = None,
    block_bytes: int | None = None,
    remember: bool = True,
) -> tuple[jax.Array, jax.Array]:
  """The paper's PG solve of one float32 group-lasso leaf, with its
  per-leaf stopping rule (:class:`ramda_optax.solvers.PGSolver`).

  Its blocks of groups (``block_bytes`` per array of a block) run a chunk
  of iterations at a time in cache, recording their Q after each; the
  leaf's test on the sum then stops the solve, the blocks rerunning the
  last chunk to the stopping iteration. With ``remember``, the kernel keeps
  (in the process, per view and ``max_iters``) the iteration at which the
  last solve stopped, and the next solve's first chunk runs just past it,
  keeping its iterate from just short of it, from which a stop between
  reruns; the stop moves little from step to step.
  Only the chunks depend on it: θ̂ and the iterations are the same floats
  whatever the chunks.

  Args:
    view: the leaf's (rows, groups, cols).
    penalty: its group norm.
    sub: its subproblem (a, v, P, τ), float32; P may be a scalar.
    z0: the warm start.
    max_iters: most iterations.
    rtol: the relative-decrease tolerance.
    chunk: iterations of a chunk where no stop is remembered, or past it
      (None: ``PG_CHUNK``).
    block_bytes: bytes of one array of a block (None:
      ``PG_BLOCK_BYTES``).
    remember: aim the chunks at the last solve's stop for this view.

  Returns:
    ``(θ̂, iterations)``.
  """
  a, v = sub.anchor, sub.linear
  call = jax.ffi.ffi_call(
      PG_TARGET,
      (jax.ShapeDtypeStruct(a.shape, jnp.float32),
       jax.ShapeDtypeStruct((), jnp.int32)),
      vmap_method="sequential",
  )
  return call(
      a, v, jnp.broadcast_to(sub.metric, a.shape), z0,
      jnp.asarray(sub.threshold, jnp.float32),
      **_view_attributes(view, block_bytes or PG_BLOCK_BYTES,
                         max_iters),
      chunk=np.int64(chunk or PG_CHUNK), rtol=np.float32(rtol),
      group_weight=np.float32(penalty.weight), remember=bool(remember))


def _along_groups(x: jax.Array, view: View,
                  shape: tuple[int, ...]) -> jax.Array:
  """One value per group, shaped to broadcast along the leaf's group axis
  (in the leaf's own shape, a fusion of it stays elementwise in the leaf's
  arrays, and XLA writes its result in place)."""
  rows, groups, _ = view
  axis = next(d for d in range(len(shape))
              if math.prod(shape[:d]) == rows and shape[d] == groups)
  return x.reshape([groups if d == axis else 1 for d in range(len(shape))])


def _difference(coefficients: jax.Array, root: int, w: jax.Array,
                anchor: jax.Array, v: jax.Array, u: jax.Array,
                offsets: jax.Array | None) -> jax.Array:
  """θ̂ − W from the kernel's statistics and its groups' offsets q = κ/r:
  θ̂ = b/(P + q) (0 where q = ∞, a where P + q = 0), b = P a − ℓV,
  P = root(c U) + ε; for a leaf without a penalty (``offsets`` None),
  θ̂ = a − ℓV/P (a where P = 0).

  An XLA fusion rather than an output of the kernel, so that it fuses with
  ``optax.apply_updates`` and the update takes no buffer of its own."""
  scale, linear, damping = coefficients[4], coefficients[5], coefficients[6]
  p = (_numerics.cbrt if root == 3 else jnp.sqrt)(scale * u) + damping
  if offsets is None:
    return anchor - _numerics.safe_divide(linear * v, p) - w
  d = p + offsets
  theta = jnp.where(d > 0, (p * anchor - linear * v) / d, anchor)
  # A screened group (q = ∞) is 0, NaN statistics included.
  return jnp.where(offsets < jnp.inf, theta, 0) - w
