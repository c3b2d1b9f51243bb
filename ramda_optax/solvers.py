"""Solvers of the regularized quadratic subproblem.

Every method of the package forms, per leaf, the model

    Q(θ) = <v, θ − a> + ½ <θ − a, P (θ − a)> + τ ψ(θ)        (P diagonal)

(a :class:`ramda_optax.subproblem.Subproblem`) and asks a solver for
θ̂ ≈ argmin Q. A solver is an object with a ``solve(penalty, subproblem, z0,
count)`` method working on one leaf and returning ``(θ̂, iterations)``;
:func:`solve_tree` applies it to a pytree, handling unregularized leaves and
penalties with a closed form. The dual-averaging methods warm-start a solver
at the current parameters, or at the previous θ̂ if its ``start`` attribute
is ``"solution"``.

Reference: Huang & Lee, NeurIPS 2024 (arXiv 2403.14398), Section 3,
Algorithm 2 and App. A.
"""

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from ramda_optax import _numerics
from ramda_optax import _validation
from ramda_optax import blocks
from ramda_optax import cpu_kernel
from ramda_optax import group_kernels
from ramda_optax import partitioning
from ramda_optax.regularizers import GroupNorm
from ramda_optax.regularizers import LeafPenalty
from ramda_optax.regularizers import Regularizer
from ramda_optax.subproblem import Subproblem
from ramda_optax.subproblem import blockwise_prox_solution
from ramda_optax.subproblem import unregularized_solution


def _unless_unregularized(sub: Subproblem, solve):
  """``solve()`` when τ > 0, else the exact closed form a − v/P with no
  iteration; under jit only the branch taken runs."""
  return lax.cond(
      sub.threshold > 0, solve,
      lambda: (unregularized_solution(sub), jnp.zeros((), jnp.int32)),
  )


def _kernel_view(backend: str, penalty: LeafPenalty,
                 sub: Subproblem) -> group_kernels.View | None:
  """The leaf's (A, G, B) view when its blocks run as a Pallas kernel, else
  None (the XLA backend, or a penalty the kernels do not cover)."""
  if backend != "pallas":
    return None
  return group_kernels.leaf_view(penalty, sub.anchor.shape)


def _in_kernel(sub: Subproblem, solve):
  """``solve()`` (a kernel, which runs no iteration when τ = 0) where τ > 0,
  else the closed form a − v/P: a select, not a branch, which on a GPU
  would wait for τ on the host."""
  theta, iters = solve()
  regularized = sub.threshold > 0
  return (jnp.where(regularized, theta, unregularized_solution(sub)),
          jnp.where(regularized, iters, 0))


def _check_backend(backend: str, block_bytes: int | None,
                   accepted: tuple[str, ...] = ("xla", "pallas")) -> None:
  if backend not in accepted:
    names = ", ".join(repr(b) for b in accepted[:-1])
    raise ValueError(
        f"backend must be {names} or {accepted[-1]!r}; got {backend!r}.")
  if backend == "pallas" and block_bytes is None:
    raise ValueError(
        "backend='pallas' runs one kernel program per block of groups; "
        "pass block_bytes (the bytes of one array of a block), e.g. 32768."
    )


def _screening(penalty, sub):
  """(active-block mask, per-block step 1/max P, per-block max P)."""
  a, v, p, tau = sub
  active = penalty.screen(p * a - v, tau)
  block_p = penalty.block_max(p)
  return active, _numerics.safe_divide(1, block_p), block_p


class PGSolver(NamedTuple):
  """Inexact proximal gradient with exact screening and warm start.

  Attributes:
    max_iters: most iterations per leaf and step.
    rtol: relative-decrease stopping tolerance.
    residual_tol: None for the relative-decrease rule, else ε_t of the
      paper's condition (7): a number ε₀ (used as ε₀ / t^0.51) or a schedule
      of the 1-based step count t.
    block_bytes: None to solve a leaf whole (the paper's rule), else the
      bytes of one array of a block of whole groups solved on its own.
    backend: "kernel" (the per-leaf rule as a compiled CPU kernel where
      it applies), "xla" (the XLA path, blocks one after another in a
      loop) or "pallas" (one kernel program per block); see ``pg_solver``.
    start: the warm start it asks of the dual-averaging methods: the current
      parameters, as the paper does.
  """

  max_iters: int
  rtol: float
  residual_tol: Any = None
  block_bytes: int | None = None
  backend: str = "kernel"
  start = "params"

  def solve(
      self,
      penalty: LeafPenalty,
      sub: Subproblem,
      z0: jax.Array,
      count: jax.Array,
  ) -> tuple[jax.Array, jax.Array]:
    """Approximately minimises Q on one leaf.

    Args:
      penalty: the leaf's unit-strength ψ.
      sub: the leaf's subproblem (a, v, P >= 0 an array or a scalar, τ >= 0).
      z0: warm start (the current parameters).
      count: 1-based step count t (for condition (7)'s ε_t).

    Returns:
      ``(θ̂, iterations)``; by blocks, the iterations of the block that took
      most.
    """
    if self.block_bytes is None:
      xla = lambda: self._solve(penalty, sub, z0, count, self.rtol)
      view = self._cpu_view(penalty, sub, z0)
      if view is None:
        return xla()
      return lax.platform_dependent(
          cpu=lambda: _unless_unregularized(
              sub, lambda: self._kernel_solve(penalty, sub, z0)),
          default=xla)
    view = _kernel_view(self.backend, penalty, sub)
    if view is not None:
      return _in_kernel(sub, lambda: group_kernels.solve_pg(
          penalty, sub, z0, view, self.block_bytes, self.max_iters,
          self._block_rtol(sub)))
    return blocks.solve_in_blocks(self.solve_block, penalty, sub, z0, count,
                                  self.block_bytes)

  def solve_block(
      self,
      penalty: LeafPenalty,
      sub: Subproblem,
      z0: jax.Array,
      count: jax.Array,
      share: float,
  ) -> tuple[jax.Array, jax.Array]:
    """Minimises Q on one block of whole groups, ``share`` of its leaf's
    entries, stopping on the block's own decrease; returns ``(θ̂,
    iterations)``."""
    return self._solve(penalty, sub, z0, count, self._block_rtol(sub), share)

  def _kernel_solve(self, penalty, sub, z0):
    """The CPU kernel's solve of a leaf, by shards where the leaf's groups
    are split over devices (:mod:`ramda_optax.partitioning`)."""
    def whole(arrays, coefficients, restart, *, root, delta):
      del restart, root, delta
      a, v, p, z = arrays
      return (None, None, None, *cpu_kernel.pg_leaf(
          cpu_kernel.leaf_view(penalty, a.shape), penalty,
          Subproblem(a, v, p, coefficients[0]), z, max_iters=self.max_iters,
          rtol=self.rtol))

    def across(axes):
      def step(arrays, coefficients, restart, *, root, delta):
        del restart, root, delta
        a, v, p, z = arrays
        return (None, None, None, *cpu_kernel.pg_leaf_across(
            penalty, Subproblem(a, v, p, coefficients[0]), z, axes=axes,
            max_iters=self.max_iters, rtol=self.rtol))
      return step

    *_, theta, counts = partitioning.by_shards(whole, penalty, across)(
        (sub.anchor, sub.linear, jnp.broadcast_to(sub.metric, z0.shape), z0),
        (sub.threshold,), False, root=0, delta=False)
    return theta, jnp.max(counts)

  def _cpu_view(self, penalty, sub, z0) -> cpu_kernel.View | None:
    """The leaf's view where the compiled CPU kernel takes its per-leaf
    solve (``backend="kernel"``, the relative-decrease rule, a float32 group
    norm along one axis), else None."""
    if (self.backend != "kernel" or self.residual_tol is not None
        or not isinstance(penalty, GroupNorm)
        or jnp.result_type(sub.metric) != jnp.float32):
      return None
    return cpu_kernel.leaf_takes(penalty, (sub.anchor, sub.linear, z0))

  def _block_rtol(self, sub):
    # Below the dtype's resolution the decrease of Q is rounding. A
    # block's test (Q_prev − Q)/(|Q| + share) < rtol, with share its part of
    # the leaf, sums over the blocks to the leaf's test.
    return max(self.rtol, float(jnp.finfo(sub.linear.dtype).eps))

  def _solve(self, penalty, sub, z0, count, rtol, unit=1.0):
    sub = sub._replace(metric=jnp.broadcast_to(sub.metric, sub.anchor.shape))
    a, v, p, tau = sub
    active, step, block_p = _screening(penalty, sub)
    zero = jnp.zeros((), a.dtype)

    def smooth_and_psi(z, psi):
      d = z - a
      smooth = jnp.sum(jnp.where(active, v * d + 0.5 * p * d * d, zero))
      return smooth + tau * jnp.sum(jnp.where(active, psi, zero))

    def pg_step(z):
      y = z - step * (v + p * (z - a))
      z_new, psi = penalty.prox(y, step * tau)
      z_new = jnp.where(active, z_new, zero)
      return z_new, smooth_and_psi(z_new, psi)

    start = jnp.where(active, z0, zero)
    if self.residual_tol is None:
      def stop(j, z_prev, z, q_prev, q):
        del z_prev, z
        return jnp.logical_and(
            j >= 2, (q_prev - q) / (jnp.abs(q) + unit) < rtol)
    else:
      # Condition (7): (L + 1/η)‖z_j − z_{j−1}‖ ≤ ε_t and Q(z_j) ≤ Q(z0),
      # with Q over all blocks (screened ones contribute a constant).
      if callable(self.residual_tol):
        eps_t = self.residual_tol(count)
      else:
        eps_t = self.residual_tol / jnp.asarray(count, a.dtype) ** 0.51
      screened = jnp.logical_not(active)
      d0 = -a
      constant = jnp.sum(jnp.where(screened, v * d0 + 0.5 * p * d0 * d0, zero))
      q_start = (
          jnp.sum(v * (z0 - a) + 0.5 * p * (z0 - a) ** 2)
          + tau * penalty.value(z0)
      )
      lipschitz = 2 * block_p  # L_g + 1/η_g with η_g = 1/L_g

      def stop(j, z_prev, z, q_prev, q):
        del j, q_prev
        residual = jnp.sqrt(jnp.sum((lipschitz * (z - z_prev)) ** 2))
        return jnp.logical_and(residual <= eps_t, q + constant <= q_start)

    def cond(carry):
      j, z_prev, z, q_prev, q = carry
      return jnp.logical_and(
          j < self.max_iters,
          jnp.logical_not(jnp.logical_and(j > 0, stop(j, z_prev, z, q_prev, q))),
      )

    def body(carry):
      j, _, z, _, q = carry
      z_new, q_new = pg_step(z)
      return j + 1, z, z_new, q, q_new

    def regularized():
      init = (jnp.zeros((), jnp.int32), start, start, zero, zero)
      iters, _, z, _, _ = lax.cond(
          jnp.any(active), lambda c: lax.while_loop(cond, body, c),
          lambda c: c, init,
      )
      return z, iters

    return _unless_unregularized(sub, regularized)


def pg_solver(
    max_iters: int = 100,
    rtol: float = 1e-8,
    residual_tol: Any = None,
    block_bytes: int | None = None,
    backend: str = "kernel",
) -> PGSolver:
  r"""The paper's inexact proximal-gradient subproblem solver.

  Per leaf: exact screening of groups that are zero at the optimum
  (‖P_g a_g − v_g‖ ≤ τ√|g|, Deleu & Bengio 2021), per-block step
  η_g = 1 / max_{i∈g} P_i, warm start at the current parameters, and the
  iteration

      z ← prox_{η_g τ ψ}(z − η_g (v + P (z − a))).

  By default (the rule of the paper's experiments) it stops after at least
  2 iterations once (Q_prev − Q)/(|Q| + 1) < rtol, Q summed over the
  non-screened groups, or after ``max_iters``. With ``residual_tol`` it
  stops instead by the paper's condition (7): the subgradient residual bound
  (L + 1/η)‖z_j − z_{j−1}‖ ≤ ε_t and Q(z_j) ≤ Q(z_0), with a summable
  schedule ε_t (ε₀ / t^0.51 for a number ε₀). It runs as a bounded
  ``lax.while_loop`` inside jit, without host synchronisation. With τ = 0, or
  when every group is screened, no iteration runs. The nuclear norm has one
  block per leaf; the paper uses ``max_iters=5, rtol=1e-3`` for it.

  With ``block_bytes`` the leaf is solved in blocks of whole groups, one
  after another (:mod:`ramda_optax.blocks`): each block, at most
  ``block_bytes`` per array, stays in cache through its iterations and
  stops on its own decrease, (Q_prev − Q)/(|Q| + share) < rtol with share
  its fraction of the leaf's entries and rtol at least the dtype's eps
  (below that the decrease is rounding). Leaves whose groups span every
  axis are solved whole. ``backend="pallas"`` runs every block of a
  group-lasso leaf as one program of a Pallas kernel
  (:mod:`ramda_optax.group_kernels`: on a GPU the block stays in registers
  through its iterations; elsewhere Pallas' interpreter runs it); other
  leaves take the XLA loop.

  With the default ``backend="kernel"``, on a CPU, the per-leaf rule of
  a float32 leaf grouped along one axis runs as a compiled kernel
  (:func:`ramda_optax.cpu_kernel.pg_leaf`): its blocks of groups run
  chunks of iterations in cache, recording their Q after each, and the
  leaf's test on the recorded sums stops the solve (the blocks rerun the
  last chunk to the stopping iteration). For the optimizers whose
  statistics have a :class:`ramda_optax.Moments` form (``ramda``,
  ``proxgen``, ``prox_ssi``) the kernel runs the whole step
  (:func:`ramda_optax.cpu_kernel.pg_step`): it updates the statistics in
  its first sweep and forms the subproblem in cache. It computes the XLA
  path's iterations; its Q is summed in another order, so where the decrease
  reaches float32's resolution the two may stop an iteration or a few
  apart. Everywhere else (other platforms, dtypes and penalties,
  ``residual_tol``, ``block_bytes``, no C++ compiler) it is the XLA path,
  the reference, which ``backend="xla"`` selects everywhere.

  Args:
    max_iters: most iterations per leaf (or block) and step, >= 1.
    rtol: relative-decrease tolerance, >= 0.
    residual_tol: None, a number ε₀ > 0, or a schedule t -> ε_t (per leaf
      only).
    block_bytes: None (per leaf, the paper's rule) or the bytes of one
      array of a block, >= 1.
    backend: "kernel" (the default), "xla" (the reference) or "pallas"
      (needs ``block_bytes``).

  Returns:
    A :class:`PGSolver`.

  References:
    Huang & Lee, NeurIPS 2024, Algorithm 2, condition (7) and App. A.1.
  """
  _validation.check_int("max_iters", max_iters, 1)
  _validation.check_range("rtol", rtol, 0.0)
  if residual_tol is not None:
    _validation.check_range("residual_tol", residual_tol, 0.0, low_open=True)
  if block_bytes is not None:
    _validation.check_int("block_bytes", block_bytes, 1)
    if residual_tol is not None:
      raise ValueError(
          "pg_solver: residual_tol (condition (7), a test over the whole "
          "leaf) cannot be combined with block_bytes; pass one of them."
      )
  _check_backend(backend, block_bytes, ("xla", "pallas", "kernel"))
  return PGSolver(max_iters=max_iters, rtol=float(rtol),
                  residual_tol=residual_tol, block_bytes=block_bytes,
                  backend=backend)


class ExactSolver(NamedTuple):
  """Exact group-lasso subproblem solution (Newton on the group radius).

  Attributes:
    max_iters: most Newton passes per leaf and step.
    warm_start: start at the warm start's group radii (else at the lower
      bound r₀ of the root).
    block_bytes: None to solve a leaf whole, else the bytes of one array
      of a block of whole groups solved on its own.
    backend: how blocks run: "xla" (a loop), "pallas" (a kernel), "cpu"
      (the optimizer's whole step as a compiled CPU kernel where it
      applies, see ``exact_solver``; XLA elsewhere) or "kernel" (the CPU
      kernel on a CPU, the Pallas kernel of the whole step on a GPU).
    fallback: None, or the solver of the leaves whose penalty is not a
      group norm (warm-started at the previous θ̂ too).
    start: the warm start it asks of the dual-averaging methods: the
      previous solution θ̂, whose radii are closest to the new ones.
  """

  max_iters: int
  warm_start: bool = True
  block_bytes: int | None = None
  backend: str = "kernel"
  fallback: Any = None
  start = "solution"

  def check(self, penalty: LeafPenalty) -> None:
    if isinstance(penalty, GroupNorm):
      return
    if self.fallback is None:
      raise ValueError(
          f"exact_solver solves group norms (group lasso, l1) only; got "
          f"{type(penalty).__name__}. Use pg_solver for this regularizer, "
          f"or pass it as exact_solver's fallback."
      )
    check_solver(self.fallback, [penalty])

  def solve(
      self,
      penalty: LeafPenalty,
      sub: Subproblem,
      z0: jax.Array,
      count: jax.Array,
  ) -> tuple[jax.Array, jax.Array]:
    """Solves Q exactly on one group-norm leaf, starting Newton at the group
    radii of ``z0`` where they are valid; returns ``(θ̂, passes)`` (by
    blocks, the passes of the block that took most)."""
    self.check(penalty)
    if not isinstance(penalty, GroupNorm):
      return self.fallback.solve(penalty, sub, z0, count)
    if self.block_bytes is None:
      return self._solve(penalty, sub, z0, count)
    view = _kernel_view(self.backend, penalty, sub)
    if view is not None:
      return _in_kernel(sub, lambda: group_kernels.solve_newton(
          penalty, sub, z0, view, self.block_bytes, self.max_iters,
          self.warm_start))
    return blocks.solve_in_blocks(self.solve_block, penalty, sub, z0, count,
                                  self.block_bytes)

  def solve_block(
      self,
      penalty: LeafPenalty,
      sub: Subproblem,
      z0: jax.Array,
      count: jax.Array,
      share: float,
  ) -> tuple[jax.Array, jax.Array]:
    """Solves Q exactly on one block of whole groups (its ``share`` of the
    leaf does not matter: every group stops on its own radius); the
    fallback solves other penalties' blocks by its ``solve``."""
    del share
    if not isinstance(penalty, GroupNorm):
      return self.solve(penalty, sub, z0, count)
    return self._solve(penalty, sub, z0, count)

  def _solve(self, penalty, sub, z0, count):
    del count
    sub = sub._replace(metric=jnp.broadcast_to(sub.metric, sub.anchor.shape))
    a, v, p, tau = sub
    b = p * a - v
    b2 = b * b
    kappa = tau * penalty.weight
    group_sum = lambda x: jnp.sum(x, axis=penalty.axes, keepdims=True)
    norm_b = jnp.sqrt(group_sum(b2))
    active = norm_b > kappa  # the screening test ‖b_g‖ > τ√|g|
    # f(r) = Σ b²/(P r + κ)² − 1 is convex and decreasing on r > 0, and its
    # root lies right of r₀ = (‖b‖ − κ)/max P, where f(r₀) >= 0. A Newton
    # step from any r >= r₀ lands left of the root (convexity), so clamping
    # it at r₀ keeps every later iterate left of the root, increasing to it.
    # Starting at the warm start's radius ‖z0_g‖ (the previous step's group
    # norm, close to the root) takes fewer passes than starting at r₀.
    lower = jnp.where(
        active, _numerics.safe_divide(norm_b - kappa, penalty.block_max(p)), 0)
    start = jnp.maximum(lower, penalty.norm(z0)) if self.warm_start else lower
    rtol = jnp.sqrt(jnp.finfo(a.dtype).eps)

    def newton(carry):
      j, r, running = carry
      inv = 1 / (p * r + kappa)  # κ > 0 here: one reciprocal per entry
      b2_inv2 = b2 * inv * inv
      f = group_sum(b2_inv2) - 1
      df = 2 * group_sum(b2_inv2 * p * inv)  # −f'(r)
      delta = _numerics.safe_divide(f, df)
      # Near the root Newton's error after a step of δ is at most
      # (f''/2|f'|) δ² <= 1.5 δ²/r, as f''/|f'| <= 3/r: once |δ| <= √eps r,
      # the radius after the step is the root to rounding. After the first
      # step every iterate lies left of the root, so δ > 0: a step δ <= 0
      # then comes of f's rounding, r being the root to it (a small radius,
      # below f's resolution over √eps r, would otherwise oscillate). Each
      # group stops on its own radius.
      r_new = jnp.where(running, jnp.maximum(r + delta, lower), r)
      moved = (jnp.abs(delta) > rtol * r) & ((j == 0) | (delta > 0))
      return j + 1, r_new, running & moved

    def cond(carry):
      j, _, running = carry
      return jnp.logical_and(j < self.max_iters, jnp.any(running))

    def regularized():
      init = (jnp.zeros((), jnp.int32), jnp.where(active, start, 0), active)
      passes, r, _ = lax.while_loop(cond, newton, init)
      return jnp.where(active, b * r / (p * r + kappa), 0), passes

    return _unless_unregularized(sub, regularized)


def exact_solver(
    max_iters: int = 50,
    warm_start: bool = True,
    block_bytes: int | None = None,
    backend: str = "kernel",
    fallback: Any = None,
) -> ExactSolver:
  r"""The exact group-lasso subproblem solution, by Newton on the group radius.

  After screening, a group's solution is θ_i = b_i r / (P_i r + κ) with
  b = P a − v, κ = τ√|g| and r = ‖θ_g‖ > 0 the root of the decreasing convex
  function f(r) = Σ_i b_i² / (P_i r + κ)² − 1, and r >= r₀ = (‖b_g‖ − κ)/max
  P_g. Newton's method is started at the warm start's group radius (the
  previous solution's, close to the root) or at r₀; every step is clamped
  at r₀, so that after at most one step it increases monotonically to the
  root. It runs vectorised over groups until no radius moves by more than a
  few ulps or after ``max_iters`` passes; with ``block_bytes``, block by
  block, each block stopping on its own radii (as ``pg_solver``'s blocks,
  ``backend="pallas"`` making each block a program of a Pallas kernel).

  ``backend="cpu"`` runs the whole step of RAMDA, ProxGen and ProxSSI (of
  every optimizer whose statistics are :class:`ramda_optax.Moments`) on
  each float32 leaf grouped along one axis, and on each leaf without a
  penalty, as one compiled CPU kernel (:mod:`ramda_optax.cpu_kernel`): the
  statistics and this solve, block of groups by block (``block_bytes``,
  default 128 KiB), each group stopping on its own radius. Everywhere else
  (other platforms, dtypes, penalties and optimizers, or no C++ compiler)
  it is the XLA path above, whole leaves or ``block_bytes`` blocks.
  ``backend="kernel"`` is that on a CPU and, on a GPU, the same whole step
  of each group-norm leaf grouped along one axis as a Pallas kernel
  (:func:`ramda_optax.group_kernels.fused_step`, blocks of ``block_bytes``,
  default at most 32 KiB and at least 256 programs where a leaf has 256
  groups); ``backend="pallas"`` runs that kernel on every platform
  (interpreted off GPUs) and, for statistics of another form, the solve
  alone. The default is ``backend="kernel"``: the XLA path, the reference
  that the float64 tests follow, is ``backend="xla"``.

  Args:
    max_iters: most Newton passes per leaf (or block) and step, >= 1.
    warm_start: start at the warm start's group radii (True) or at r₀.
    block_bytes: None (whole leaves) or the bytes of one array of a block,
      >= 1.
    backend: "kernel" (the default: the compiled step where it applies,
      the XLA path elsewhere), "xla" (the XLA path everywhere, the
      reference), "pallas" (needs ``block_bytes``) or "cpu".
    fallback: None (other penalties are an error), or a solver for the
      leaves whose penalty is not a group norm (the nuclear norm, a user's
      own), e.g. :func:`pg_solver`; it is warm-started at the previous θ̂.

  Returns:
    An :class:`ExactSolver`.

  References:
    Huang & Lee, NeurIPS 2024, Section 3; Yun, Lozano & Yang, Adaptive
    proximal gradient methods for structured neural networks, NeurIPS 2021.
  """
  _validation.check_int("max_iters", max_iters, 1)
  if block_bytes is not None:
    _validation.check_int("block_bytes", block_bytes, 1)
  _check_backend(backend, block_bytes, ("xla", "pallas", "cpu", "kernel"))
  if fallback is not None and not hasattr(fallback, "solve"):
    raise TypeError(
        f"exact_solver: fallback must be None or a solver (an object with a "
        f"solve method); got {fallback!r}.")
  return ExactSolver(max_iters=max_iters, warm_start=bool(warm_start),
                     block_bytes=block_bytes, backend=backend,
                     fallback=fallback)


def default_solver() -> ExactSolver:
  r"""RAMDA's and ProxGen's default solver: the exact group-norm solution
  (:func:`exact_solver`, whole leaves; on a CPU and a GPU, the optimizer's
  whole step as a compiled kernel, ``backend="kernel"``), with the paper's
  inexact PG
  (:func:`pg_solver`) for every other penalty.

  Chosen by measurement over the paper's PG rule: on the subproblems of a
  training run it is exact where the paper's rule stops at a mean relative
  objective gap of 3e-4, and its step costs a quarter of the rule's on
  VGG19 early in training on the XLA path, about a thirtieth with the CPU
  kernel (``benchmarks/solver_accuracy.py``, ``benchmarks/step_time.py``;
  see the README). ``solver=pg_solver()`` selects the paper's rule.

  Returns:
    An :class:`ExactSolver` with a :class:`PGSolver` fallback.
  """
  return exact_solver(backend="kernel", fallback=pg_solver())


class ProxSolver(NamedTuple):
  """Closed-form scalar-metric prox: θ̂ = prox_{τ/P ψ}(a − v/P)."""

  def solve(
      self,
      penalty: LeafPenalty,
      sub: Subproblem,
      z0: jax.Array,
      count: jax.Array,
  ) -> tuple[jax.Array, jax.Array]:
    """Exact when P is constant on every block; returns ``(θ̂, 1)`` (0 when
    τ = 0)."""
    del z0, count
    theta = blockwise_prox_solution(penalty, sub)
    return theta, (sub.threshold > 0).astype(jnp.int32)


def prox_solver() -> ProxSolver:
  r"""The closed-form solver for scalar metrics: θ̂ = prox_{τ/P ψ}(a − v/P).

  Exact when P is constant on every block of ψ: RMDA's √t·I, ProxSGD's I,
  or any diagonal metric for a separable ψ such as ℓ1.

  Returns:
    A :class:`ProxSolver`.
  """
  return ProxSolver()


def check_solver(solver: Any, penalties: Sequence[LeafPenalty | None]) -> None:
  """Checks that ``solver`` can solve every non-separable leaf penalty.

  Raises:
    TypeError: if ``solver`` has no ``solve`` method.
    ValueError: if ``solver`` cannot handle one of the penalties.
  """
  if not hasattr(solver, "solve"):
    raise TypeError(f"solver must have a solve method; got {solver!r}.")
  check = getattr(solver, "check", None)
  if check is not None:
    for penalty in penalties:
      if penalty is not None and not penalty.separable:
        check(penalty)


def leaf_penalties(
    regularizer: Regularizer | None, solver: Any, params: optax.Params
) -> tuple[LeafPenalty | None, ...]:
  """The leaf penalties of ``params`` (None for each leaf without a
  regularizer), checked against ``solver`` (see :func:`check_solver`)."""
  if regularizer is None:
    return (None,) * len(jax.tree.leaves(params))
  penalties = regularizer.layout(params)
  check_solver(solver, penalties)
  return penalties


def metric_leaves(metric: Any, treedef: Any) -> list[jax.Array]:
  """P per leaf: ``metric`` is a pytree like params, or one array for all."""
  if jax.tree.structure(metric) == treedef:
    return treedef.flatten_up_to(metric)
  return [jnp.asarray(metric)] * treedef.num_leaves


def solve_leaf(
    solver: Any,
    penalty: LeafPenalty | None,
    sub: Subproblem,
    warm_start: jax.Array,
    count: jax.Array,
    share: float | None = None,
) -> tuple[jax.Array, jax.Array]:
  """θ̂ ≈ argmin Q on one leaf: a − v/P without a penalty (0 iterations),
  the closed form under the diagonal metric for a separable one (ℓ1; 1
  iteration where τ > 0, as :class:`ProxSolver`'s), else ``solver``.

  Args:
    solver: the solver for non-separable penalties.
    penalty: the leaf's penalty, or None.
    sub: the leaf's subproblem (or one block's of whole groups); v's dtype
      is the computation's.
    warm_start: z0, like ``sub.anchor``.
    count: 1-based step count, for solvers that schedule tolerances.
    share: None for a whole leaf, else the block's share of its leaf's
      entries (``solver.solve_block`` solves it).

  Returns:
    ``(θ̂, iterations)``, θ̂ in the dtype of ``sub.linear``.
  """
  dtype = sub.linear.dtype
  sub = Subproblem(sub.anchor.astype(dtype), sub.linear,
                   jnp.asarray(sub.metric).astype(dtype),
                   jnp.asarray(sub.threshold).astype(dtype))
  if penalty is None:
    return unregularized_solution(sub), jnp.zeros((), jnp.int32)
  if penalty.separable:  # one closed-form evaluation, as ProxSolver's
    return (blockwise_prox_solution(penalty, sub),
            (sub.threshold > 0).astype(jnp.int32))
  if share is None:
    return solver.solve(penalty, sub, warm_start.astype(dtype), count)
  return solver.solve_block(penalty, sub, warm_start.astype(dtype), count,
                            share)


def solve_tree(
    solver: Any,
    penalties: Sequence[LeafPenalty | None],
    sub: Subproblem,
    warm_start: optax.Params,
    count: jax.Array,
) -> tuple[optax.Params, Any]:
  """θ̂ ≈ argmin <v, θ − a> + ½‖θ − a‖²_P + τψ(θ), leaf by leaf
  (:func:`solve_leaf`).

  Args:
    solver: the solver for non-separable penalties.
    penalties: one leaf penalty or None per leaf of ``sub.anchor``.
    sub: the subproblem, with pytrees a and v (v's dtypes are the
      computation's) and a metric like them or one array for every leaf.
    warm_start: z0, like ``sub.anchor``.
    count: 1-based step count, for solvers that schedule tolerances.

  Returns:
    ``(θ̂, iterations)``: θ̂ in the dtypes of ``sub.linear``, and a pytree
    like it of int32 iteration counts.
  """
  leaves, treedef = jax.tree.flatten(sub.anchor)
  check_leaf_count(penalties, len(leaves))
  thetas, iters = [], []
  for penalty, a, v, p, z0 in zip(
      penalties, leaves, treedef.flatten_up_to(sub.linear),
      metric_leaves(sub.metric, treedef), treedef.flatten_up_to(warm_start),
  ):
    theta, it = solve_leaf(solver, penalty,
                           Subproblem(a, v, p, sub.threshold), z0, count)
    thetas.append(theta)
    iters.append(it)
  return treedef.unflatten(thetas), treedef.unflatten(iters)


def check_leaf_count(penalties: Sequence[LeafPenalty | None],
                     num_leaves: int) -> None:
  """Raises a ValueError unless there is one penalty per leaf."""
  if len(penalties) != num_leaves:
    raise ValueError(
        f"the regularizer describes {len(penalties)} leaves but params "
        f"have {num_leaves}."
    )
