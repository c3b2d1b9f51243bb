"""Group-lasso subproblems, and whole optimizer steps, as Pallas kernels,
one program per block of whole groups.

A leaf whose groups are the indices of one axis is viewed as an array of
shape (A, G, B), the g-th group being ``x[:, g, :]``: a conv kernel
(kh, kw, in, out) grouped per input channel is (kh·kw, in, out), a dense
kernel grouped per input feature is (1, in, out). Each program of the
kernel loads a block of whole groups (its A rows, each a (groups, B) tile,
B padded to a power of two and masked) once, runs the whole solve on it in
registers, stopping on its own progress, and writes θ̂ once: the leaf
crosses memory twice, whatever the number of iterations. :func:`fused_step`
runs an adaptive method's whole step the same way: the statistics of the
block, its solve and θ̂ (or θ̂ − W) in one program, each array read and
written once.

On a GPU the kernel compiles through Triton; elsewhere it runs in Pallas'
interpret mode, which is what the tests compare with the XLA solvers of
:mod:`ramda_optax.solvers`.

Reference: Huang & Lee, NeurIPS 2024 (arXiv 2403.14398), Section 3,
Algorithm 2 (proximal gradient) and App. A (screening).
"""

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plt

from ramda_optax import _numerics
from ramda_optax.regularizers import GroupNorm
from ramda_optax.regularizers import LeafPenalty
from ramda_optax.subproblem import Subproblem

# The kernel unrolls its loads and arithmetic over a group's A rows; leaves
# with more rows per group take the XLA path.
MAX_ROWS = 32
# Bytes of one array of a block when the solver names none (the fused
# step's default on a GPU), at most.
BLOCK_BYTES = 32 * 1024
# With the default block size, a leaf of at least this many groups spreads
# over at least this many programs (about two per multiprocessor of an
# H100): one program of all 512 groups of the VGG19 benchmark's head (512
# by 10) took 19 µs on an H100, a 3×3×512×512 conv leaf's 512 programs 50.
MIN_PROGRAMS = 256
# Entries of a block's array per thread of its program (which sets its
# warps): 64 took a 3×3×512×512 conv leaf's step (one group a program) in
# 39 µs on an H100, 16 (16 warps) in 50 µs.
ENTRIES_PER_THREAD = 64

View = tuple[int, int, int]


def leaf_view(penalty: LeafPenalty, shape: tuple[int, ...]) -> View | None:
  """(A, G, B) such that ``x.reshape(A, G, B)[:, g, :]`` is group g, or None
  when the penalty is not a group norm over all axes but one (or has more
  than ``MAX_ROWS`` rows per group)."""
  if not isinstance(penalty, GroupNorm) or not shape:
    return None
  free = [d for d in range(len(shape)) if d not in penalty.axes]
  if len(free) != 1:
    return None
  k = free[0]
  view = math.prod(shape[:k]), shape[k], math.prod(shape[k + 1:])
  return view if view[0] <= MAX_ROWS else None


def groups_per_block(view: View, itemsize: int, block_bytes: int) -> int:
  """The power of two of groups per program with at most ``block_bytes``
  per array (at least one group, at most the leaf's groups rounded up)."""
  rows, groups, cols = view
  per_group = rows * pl.next_power_of_2(cols) * itemsize
  fit = max(1, block_bytes // per_group)
  return min(1 << (fit.bit_length() - 1), pl.next_power_of_2(groups))


def default_block_bytes(view: View, itemsize: int) -> int:
  """The bytes of one array of a block where the solver names none:
  ``BLOCK_BYTES``, or less, so that a leaf of at least ``MIN_PROGRAMS``
  groups is spread over at least ``MIN_PROGRAMS`` programs (and at least
  one group a program)."""
  rows, groups, cols = view
  per_group = rows * pl.next_power_of_2(cols) * itemsize
  return min(BLOCK_BYTES, per_group * max(1, groups // MIN_PROGRAMS))


def _block_rows(view: View, groups: int):
  """The block of the current program: ``(load, store, share)``, ``load(ref,
  r)`` and ``store(ref, r, x)`` reading and writing its r-th row, a masked
  (groups, B') tile (only ``when``, a scalar, is true: a load masked off
  reads no memory and gives 0), and ``share`` its fraction of the leaf's
  groups."""
  num_groups, cols = view[1], view[2]
  width = pl.next_power_of_2(cols)
  first = pl.program_id(0) * groups
  index = first + lax.broadcasted_iota(jnp.int32, (groups, width), 0)
  column = lax.broadcasted_iota(jnp.int32, (groups, width), 1)
  mask = (index < num_groups) & (column < cols)
  # int32 indices throughout (the interpreter wants one index type).
  at = lambda ref, r: ref.at[jnp.int32(r), pl.ds(first, groups),
                             pl.ds(jnp.int32(0), width)]
  load = lambda ref, r, when=True: plt.load(at(ref, r), mask=mask & when,
                                           other=0)
  store = lambda ref, r, x, when=True: plt.store(at(ref, r), x,
                                                 mask=mask & when)
  share = jnp.minimum(num_groups - first, groups) / num_groups
  return load, store, share


def _block_solver(body: Callable, view: View, groups: int) -> Callable:
  """A ``pallas_call`` kernel over blocks of ``groups`` groups of a leaf of
  shape ``view``. ``body(tau, rows, start, share)`` gets the block's rows
  of a, v and P (per input, a list of A masked (groups, B') tiles) and
  ``start()``, which reads those of the warm start, and returns (θ̂ rows,
  iterations)."""

  def kernel(tau_ref, a_ref, v_ref, p_ref, z_ref, theta_ref, iters_ref):
    load, store, share = _block_rows(view, groups)
    rows = [[load(ref, r) for r in range(view[0])]
            for ref in (a_ref, v_ref, p_ref)]
    start = lambda: [load(z_ref, r) for r in range(view[0])]
    theta, iters = body(tau_ref[0], rows, start, share.astype(tau_ref.dtype))
    for r in range(view[0]):
      store(theta_ref, r, theta[r])
    iters_ref[pl.program_id(0)] = iters

  return kernel


# PTX of the float32 approximations that a kernel compiled by Triton takes
# (``hardware=True`` below): the multi-function unit's reciprocal and square
# root, one instruction each where Triton's division (``div.full.f32``)
# takes about five. The cube root is :func:`ramda_optax._numerics.cbrt`, the
# XLA path's, with x·rcp(y²) for x/y² in its Newton steps. Largest relative
# errors over float32 values from 1e-37 to 1e37 against float64, measured
# on an NVIDIA H200 (``tests.test_group_kernels.approximation_errors``):
# reciprocal 9.5e-8, square root 9.9e-8 (both within an ulp), cube root
# 1.1e-6, every value equal to the XLA path's on that GPU.
# 2^(log₂(x)/3) from the unit's lg2 and ex2 was 4% faster on the VGG19
# step's largest kernels there, but 1.9e-6 off, and the fused PG step then
# left the iterations of the solve-alone kernel (the cube root in XLA).
_PTX = {
    "reciprocal": "rcp.approx.ftz.f32 $0, $1;",
    "sqrt": "sqrt.approx.f32 $0, $1;",
}


def _hardware(name: str, x: jax.Array) -> jax.Array:
  return plt.elementwise_inline_asm(
      _PTX[name], args=[x], constraints="=f,f", pack=1,
      result_shape_dtypes=[jax.ShapeDtypeStruct(x.shape, x.dtype)])[0]


def _reciprocal(x: jax.Array, hardware: bool) -> jax.Array:
  """1/x (x > 0)."""
  return _hardware("reciprocal", x) if hardware else 1 / x


def _root(root: int, x: jax.Array, hardware: bool) -> jax.Array:
  if root == 3:
    return _numerics.cbrt(
        x, functools.partial(_hardware, "reciprocal") if hardware else None)
  return _hardware("sqrt", x) if hardware else jnp.sqrt(x)


def _uses_hardware(interpret: bool, dtype: jnp.dtype) -> bool:
  """Whether a kernel takes the PTX approximations above: compiled (not
  interpreted) and of float32."""
  return not interpret and jnp.dtype(dtype) == jnp.float32


def _step_kernel(body: Callable, view: View, groups: int, root: int,
                 restarts: bool, delta: bool, hardware: bool) -> Callable:
  """A ``pallas_call`` kernel of the whole step (see :func:`fused_step`)
  over blocks of ``groups`` groups: the statistics of each row, then
  ``body`` on the block's subproblem, then θ̂ (or θ̂ − W)."""

  def kernel(scalars_ref, g_ref, w_ref, v_ref, u_ref, a_ref, z_ref, *outs):
    v_out, u_out = outs[:2]
    a_out = outs[2] if restarts else None
    theta_ref, iters_ref = outs[-2:]
    decay1, weight1, decay2, weight2, scale, linear, damping, tau, restart = (
        scalars_ref[i] for i in range(9))
    restart = restart > 0
    load, store, share = _block_rows(view, groups)
    regularized = tau > 0
    anchors, linears, metrics, params = [], [], [], []

    def output(r, theta):
      # W is read here where no restart read it above, so that it does not
      # hold registers through the solve.
      if delta:
        theta = theta - (params[r] if restarts else load(w_ref, r))
      store(theta_ref, r, theta)

    # A restart reads W into W⁰'s place and neither V nor U (V, U ← 0);
    # another step reads V, U and W⁰ and neither reads W (unless for θ̂ − W)
    # nor writes W⁰, whose buffer is its output's.
    kept = jnp.logical_not(restart) if restarts else True
    for r in range(view[0]):
      g = load(g_ref, r)
      v, u = load(v_ref, r, kept), load(u_ref, r, kept)
      v = decay1 * v + weight1 * g
      u = decay2 * u + weight2 * (g * g)
      store(v_out, r, v)
      store(u_out, r, u)
      a = load(a_ref, r, kept)
      if restarts:
        w = load(w_ref, r, True if delta else restart)
        a = jnp.where(restart, w, a)
        store(a_out, r, a, restart)
        params.append(w)
      anchors.append(a)
      linears.append(linear * v)
      metrics.append(_root(root, scale * u, hardware) + damping)

      @pl.when(jnp.logical_not(regularized))
      def _():
        # τ = 0 (no iteration runs): the closed form a − v/P, written row by
        # row so that no row's a and v is held past its own.
        output(r, anchors[r] - _numerics.safe_divide(linears[r], metrics[r]))

    # The warm start is read after the statistics' stores (the compiler
    # does not move a load past a store to a buffer it may alias), so that
    # it is not held through them.
    start = lambda: [load(z_ref, r) for r in range(view[0])]
    theta, iters = body(tau, [anchors, linears, metrics], start,
                        share.astype(tau.dtype))

    @pl.when(regularized)
    def _():
      for r in range(view[0]):
        output(r, theta[r])

    # (A product, not a select: Triton's lowering of a select between an
    # int32 loop result and a literal fails to verify.)
    iters_ref[pl.program_id(0)] = iters * regularized.astype(iters.dtype)

  return kernel


# A group's A rows are combined entry by entry first, then reduced once: one
# reduction across a program's threads per group sum, not A.
def _group_sum(rows):
  return jnp.sum(functools.reduce(jnp.add, rows), axis=1)


def _group_max(rows):
  return jnp.max(functools.reduce(jnp.maximum, rows), axis=1)


def _any(mask):
  return jnp.sum(jnp.where(mask, 1, 0)) > 0


def _pg_body(weight: float, max_iters: int, rtol: float):
  """The proximal-gradient solve of one block (see ``pg_solver``)."""

  def body(tau, rows, z0, share):
    a, v, p = rows
    zero = jnp.zeros((), tau.dtype)
    b = [pi * ai - vi for pi, ai, vi in zip(p, a, v)]
    active = jnp.sqrt(_group_sum([x * x for x in b])) > tau * weight
    step = _numerics.safe_divide(jnp.ones((), tau.dtype), _group_max(p))
    step = step[:, None]
    on = active[:, None]

    def pg_step(z):
      y = [zi - step * (vi + pi * (zi - ai))
           for zi, vi, pi, ai in zip(z, v, p, a)]
      norm = jnp.sqrt(_group_sum([x * x for x in y]))
      shrunk = jnp.maximum(norm - step[:, 0] * tau * weight, 0)
      scale = _numerics.safe_divide(shrunk, norm)[:, None]
      z = [jnp.where(on, x * scale, zero) for x in y]
      d = [zi - ai for zi, ai in zip(z, a)]
      smooth = _group_sum([jnp.where(on, vi * di + 0.5 * pi * di * di, zero)
                           for vi, pi, di in zip(v, p, d)])
      psi = jnp.where(active, weight * shrunk, zero)
      return z, jnp.sum(smooth) + tau * jnp.sum(psi)

    go = _any(active) & (tau > 0)

    def cond(carry):
      j, _, q_prev, q = carry
      done = (j >= 2) & ((q_prev - q) / (jnp.abs(q) + share) < rtol)
      return go & (j < max_iters) & jnp.logical_not(done)

    def loop(carry):
      j, z, _, q = carry
      z, q_new = pg_step(z)
      return j + 1, z, q, q_new

    start = [jnp.where(on, x, zero) for x in z0()]
    iters, z, _, _ = lax.while_loop(cond, loop, (0, start, zero, zero))
    return z, iters

  return body


def _newton_body(weight: float, max_iters: int, warm_start: bool,
                 hardware: bool):
  """Newton on the group radius for one block (see ``exact_solver``); with
  ``hardware``, one approximate reciprocal per entry and pass (above)."""

  def body(tau, rows, z0, share):
    del share
    a, v, p = rows
    rtol = jnp.sqrt(jnp.finfo(tau.dtype).eps)
    b = [pi * ai - vi for pi, ai, vi in zip(p, a, v)]
    kappa = tau * weight
    norm_b = jnp.sqrt(_group_sum([x * x for x in b]))
    active = norm_b > kappa
    lower = jnp.where(
        active, _numerics.safe_divide(norm_b - kappa, _group_max(p)), 0)
    start = lower
    if warm_start:
      start = jnp.maximum(lower, jnp.sqrt(_group_sum([x * x for x in z0()])))

    def newton(carry):
      j, r, running = carry
      # Σ x² and Σ x² P/(P r + κ), x = b/(P r + κ), summed row by row (as
      # _group_sum does) so that only b and P are held through the loop.
      f, df = 0, 0
      for bi, pi in zip(b, p):
        inv = _reciprocal(pi * r[:, None] + kappa, hardware)
        x2 = (bi * inv) * (bi * inv)
        f, df = f + x2, df + x2 * pi * inv
      f = jnp.sum(f, axis=1) - 1
      df = 2 * jnp.sum(df, axis=1)
      delta = _numerics.safe_divide(f, df)
      r_new = jnp.where(running, jnp.maximum(r + delta, lower), r)
      moved = (jnp.abs(delta) > rtol * r) & ((j == 0) | (delta > 0))
      return j + 1, r_new, running & moved

    cond = lambda carry: (carry[0] < max_iters) & _any(carry[2])
    init = (0, jnp.where(active, start, 0), active & (tau > 0))
    iters, r, _ = lax.while_loop(cond, newton, init)
    on, r = active[:, None], r[:, None]
    theta = [jnp.where(on, bi * r * _reciprocal(pi * r + kappa, hardware), 0)
             for bi, pi in zip(b, p)]
    return theta, iters

  return body


def _compiler_params(view: View, groups: int) -> plt.CompilerParams:
  # About ENTRIES_PER_THREAD entries of each array per thread, 1 to 16 warps.
  entries = view[0] * groups * pl.next_power_of_2(view[2])
  return plt.CompilerParams(num_warps=min(16, max(
      1, pl.next_power_of_2(entries) // (32 * ENTRIES_PER_THREAD))))


def _solve(make_body: Callable[[bool], Callable], sub: Subproblem,
           z0: jax.Array, view: View,
           block_bytes: int) -> tuple[jax.Array, jax.Array]:
  """One ``pallas_call`` of ``make_body(hardware)`` over the leaf's blocks;
  returns θ̂ and the most iterations of a block."""
  a, v, tau = sub.anchor, sub.linear, sub.threshold
  dtype = v.dtype
  interpret = jax.default_backend() != "gpu"
  p = jnp.broadcast_to(sub.metric, a.shape)
  groups = groups_per_block(view, dtype.itemsize, block_bytes)
  num_blocks = pl.cdiv(view[1], groups)
  kernel = _block_solver(
      make_body(_uses_hardware(interpret, dtype)), view, groups)
  theta, iters = pl.pallas_call(
      kernel,
      out_shape=(jax.ShapeDtypeStruct(view, dtype),
                 jax.ShapeDtypeStruct((num_blocks,), jnp.int32)),
      grid=(num_blocks,),
      interpret=interpret,
      compiler_params=_compiler_params(view, groups),
  )(jnp.reshape(tau, (1,)).astype(dtype),
    *(x.astype(dtype).reshape(view) for x in (a, v, p, z0)))
  return theta.reshape(a.shape), jnp.max(iters)


def solve_pg(penalty: GroupNorm, sub: Subproblem, z0: jax.Array, view: View,
             block_bytes: int, max_iters: int, rtol: float
             ) -> tuple[jax.Array, jax.Array]:
  """θ̂ by proximal gradient, each block of whole groups stopping after at
  least 2 iterations once (Q_prev − Q)/(|Q| + share) < rtol (share: the
  block's fraction of the groups) or after ``max_iters``; returns ``(θ̂,
  iterations of the block that took most)``. τ > 0 is assumed."""
  return _solve(lambda _: _pg_body(penalty.weight, max_iters, rtol), sub, z0,
                view, block_bytes)


def solve_newton(penalty: GroupNorm, sub: Subproblem, z0: jax.Array,
                 view: View, block_bytes: int, max_iters: int,
                 warm_start: bool) -> tuple[jax.Array, jax.Array]:
  """θ̂ by Newton on each group's radius, a block stopping once none of its
  radii moves by more than √eps of itself or after ``max_iters`` passes;
  returns ``(θ̂, passes of the block that took most)``. τ > 0 is assumed."""
  return _solve(functools.partial(_newton_body, penalty.weight, max_iters,
                                  warm_start), sub, z0, view, block_bytes)


def fused_step(
    view: View,
    penalty: GroupNorm,
    arrays: tuple[jax.Array, ...],
    coefficients: tuple[jax.Array | float, ...],
    restart: jax.Array | bool,
    *,
    root: int,
    delta: bool,
    block_bytes: int | None,
    max_iters: int,
    newton: bool,
    warm_start: bool = True,
    rtol: float = 0.0,
    interpret: bool | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array | None, jax.Array, jax.Array]:
  """The whole step of an adaptive method on one group-norm leaf, one
  program per block of whole groups: the statistics of
  :class:`ramda_optax.Moments` form,

      V ← β₁ V + w₁ g,  U ← β₂ U + w₂ g²,  P = root(c U) + ε,  v = ℓ V,

  (V, U ← 0 and a ← W first on a restart), then the block's subproblem
  solved in registers (Newton on the group radii as :func:`solve_newton`,
  or PG as :func:`solve_pg`; a − v/P when τ = 0), then θ̂ (or θ̂ − W): every
  array is read and written once. The arguments and results are those of
  :func:`ramda_optax.cpu_kernel.group_step`, the C++ kernel of the same
  step; V, U, a and θ̂ (θ̂ − W: g) are written in the buffers of the ones
  given (donate them to avoid copies), θ̂ in a new one when the warm start
  is W itself.

  Args:
    view: the leaf's (A, G, B) (:func:`leaf_view`).
    penalty: its group norm.
    arrays: (g, W, V, U, a, warm start), of the leaf's shape and one dtype.
    coefficients: (β₁, w₁, β₂, w₂, c, ℓ, ε, τ).
    restart: whether this step restarts (False: the optimizer has none, and
      a is not an output).
    root: 3 (cube root) or 2 (square root).
    delta: return θ̂ − W (else θ̂).
    block_bytes: the most bytes of one array of a block (None:
      :func:`default_block_bytes`).
    max_iters: most iterations (Newton passes or PG steps) of a block.
    newton: Newton (exact) if True, else PG.
    warm_start: Newton starts at the warm start's group radii (PG always
      starts at the warm start).
    rtol: PG's relative-decrease tolerance (floored at the dtype's eps).
    interpret: run Pallas' interpreter (None: unless the default backend
      is a GPU; False for a step lowered for a GPU only). Compiled, a
      float32 step takes the GPU's approximate reciprocal (Newton's passes,
      the cube root's steps) and square root, within an ulp.

  Returns:
    ``(V, U, a or None, θ̂ or θ̂ − W, iterations)``, the iterations one
    int32 per group (its block's).
  """
  g = arrays[0]
  dtype = g.dtype
  restarts = restart is not False
  if interpret is None:
    interpret = jax.default_backend() != "gpu"
  hardware = _uses_hardware(interpret, dtype)
  if newton:
    body = _newton_body(penalty.weight, max_iters, warm_start, hardware)
  else:
    body = _pg_body(penalty.weight, max_iters,
                    max(rtol, float(jnp.finfo(dtype).eps)))
  if block_bytes is None:
    block_bytes = default_block_bytes(view, dtype.itemsize)
  groups = groups_per_block(view, dtype.itemsize, block_bytes)
  num_blocks = pl.cdiv(view[1], groups)
  leaf = jax.ShapeDtypeStruct(view, dtype)
  out_shape = ((leaf, leaf) + ((leaf,) if restarts else ())
               + (leaf, jax.ShapeDtypeStruct((num_blocks,), jnp.int32)))
  # Inputs (scalars, g, W, V, U, a, z): V, U, a and θ̂ (in z's place, or
  # g's for θ̂ − W) are updated in place; not θ̂ in z's place when z is W
  # (PG's start), which the caller still reads: XLA would copy W first.
  aliases = {3: 0, 4: 1, **({5: 2} if restarts else {})}
  if delta:
    aliases[1] = 2 + restarts
  elif arrays[5] is not arrays[1]:
    aliases[6] = 2 + restarts
  scalars = jnp.stack([jnp.asarray(x, dtype) for x in (
      *coefficients, jnp.asarray(restart, dtype))])
  out = pl.pallas_call(
      _step_kernel(body, view, groups, root, restarts, delta, hardware),
      out_shape=out_shape,
      grid=(num_blocks,),
      input_output_aliases=aliases,
      interpret=interpret,
      compiler_params=_compiler_params(view, groups),
  )(scalars, *(x.reshape(view) for x in arrays))
  v, u = out[0].reshape(g.shape), out[1].reshape(g.shape)
  anchor = out[2].reshape(g.shape) if restarts else None
  # Each group's count is its block's; their most is taken with every
  # other leaf's (ramda_optax.fused.most_per_leaf), not by a reduction of
  # its own.
  counts = jnp.broadcast_to(out[-1][:, None], (num_blocks, groups))
  return (v, u, anchor, out[-2].reshape(g.shape),
          counts.reshape(-1)[:view[1]])
