"""The inexact PG solver: reference agreement and mathematical properties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ramda_optax as ro
from tests import numpy_reference as ref

CASES = [((6, 4), (1,)), ((3, 3, 4, 5), (0, 1, 3)), ((5, 7), ()), ((8, 3), (0,))]


def _subproblem(shape, axes, seed, screened_share=0.5):
  """A random subproblem whose threshold screens about ``screened_share``."""
  rng = np.random.default_rng(seed)
  a = rng.normal(size=shape)
  v = rng.normal(size=shape)
  p = rng.uniform(0.1, 3.0, size=shape)
  b = p * a - v
  norms = np.sqrt(np.sum(b * b, axis=axes))
  size = int(np.prod([shape[i] for i in axes]))
  tau = float(np.quantile(norms, screened_share)) / np.sqrt(size) * 1.0001
  z0 = a + 0.1 * rng.normal(size=shape)
  return a, v, p, tau, z0


def _penalty(shape, axes):
  return ro.GroupNorm(axes, int(np.prod([shape[i] for i in axes])))


def _objective(z, a, v, p, tau, axes):
  d = z - a
  return float(
      np.sum(v * d + 0.5 * p * d * d) + tau * ref.group_lasso_value(z, axes)
  )


def _solve(solver, shape, axes, a, v, p, tau, z0, count=1):
  solve = lambda penalty, a, v, p, tau, z0, count: solver.solve(
      penalty, ro.Subproblem(a, v, p, tau), z0, count
  )
  z, iters = jax.jit(solve, static_argnums=0)(
      _penalty(shape, axes), *map(jnp.asarray, (a, v, p, tau, z0)),
      jnp.int32(count),
  )
  return np.asarray(z), int(iters)


@pytest.mark.parametrize("shape, axes", CASES)
@pytest.mark.parametrize("max_iters, rtol", [(100, 1e-8), (7, 1e-8), (50, 1e-4)])
def test_matches_reference(x64, shape, axes, max_iters, rtol):
  a, v, p, tau, z0 = _subproblem(shape, axes, seed=0)
  z, iters = _solve(ro.pg_solver(max_iters, rtol), shape, axes, a, v, p, tau, z0)
  z_ref, iters_ref = ref.pg_solve(a, v, p, tau, z0, axes, max_iters, rtol)
  assert iters == iters_ref
  np.testing.assert_allclose(z, z_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape, axes", CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_screening_is_sound(x64, shape, axes, seed):
  """Screened groups are exactly the zero groups of a high-precision solve,
  and with enough iterations PG reaches that solve."""
  a, v, p, tau, z0 = _subproblem(shape, axes, seed)
  exact = ref.exact_group_solution(a, v, p, tau, axes)
  z, _ = _solve(ro.pg_solver(5000, 0.0), shape, axes, a, v, p, tau, z0)
  zero_exact = np.all(exact == 0, axis=axes)
  zero_pg = np.all(z == 0, axis=axes)
  assert 0 < zero_exact.sum() < zero_exact.size
  np.testing.assert_array_equal(zero_pg, zero_exact)
  np.testing.assert_allclose(z, exact, atol=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("shape, axes", CASES)
def test_objective_never_increases(x64, shape, axes):
  a, v, p, tau, z0 = _subproblem(shape, axes, seed=3)
  active = np.sqrt(np.sum((p * a - v) ** 2, axis=axes, keepdims=True)) > (
      tau * np.sqrt(_penalty(shape, axes).group_size))
  values = [_objective(np.where(active, z0, 0), a, v, p, tau, axes)]
  for j in range(1, 25):
    z, iters = _solve(ro.pg_solver(j, 0.0), shape, axes, a, v, p, tau, z0)
    values.append(_objective(z, a, v, p, tau, axes))
  diffs = np.diff(values)
  assert np.all(diffs <= 1e-12 * np.abs(values[1:]))
  assert values[-1] < values[0]


def test_zero_threshold_gives_closed_form_without_iterations(x64):
  shape, axes = (6, 4), (1,)
  a, v, p, _, z0 = _subproblem(shape, axes, seed=4)
  z, iters = _solve(ro.pg_solver(), shape, axes, a, v, p, 0.0, z0)
  assert iters == 0
  np.testing.assert_allclose(z, a - v / p, rtol=1e-14)


def test_all_screened_gives_zero_without_iterations(x64):
  shape, axes = (6, 4), (1,)
  a, v, p, _, z0 = _subproblem(shape, axes, seed=5)
  z, iters = _solve(ro.pg_solver(), shape, axes, a, v, p, 1e6, z0)
  assert iters == 0 and np.all(z == 0)


def test_iteration_cap_and_zero_metric_entries_stay_finite():
  """A metric with zero entries (eps = 0, no gradient yet) and a strength of 0
  never produce NaN, and the loop stops at max_iters."""
  shape, axes = (6, 4), (1,)
  a, v, p, tau, z0 = _subproblem(shape, axes, seed=6)
  p = np.where(np.arange(p.size).reshape(shape) % 3 == 0, 0.0, p)
  v = np.where(p == 0, 0.0, v)
  p[0] = 0.0
  for t in (tau, 0.0):
    z, iters = _solve(
        ro.pg_solver(3, 0.0), shape, axes, *(x.astype(np.float32) for x in
        (a, v, p)), np.float32(t), z0.astype(np.float32))
    assert np.all(np.isfinite(z))
    # With rtol 0 only an increase of Q would stop the loop before its cap;
    # with τ = 0 it does not run.
    assert iters == (3 if t > 0 else 0)


@pytest.mark.parametrize("shape, axes", CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_exact_solver_matches_high_precision_solve(x64, shape, axes, seed):
  a, v, p, tau, z0 = _subproblem(shape, axes, seed)
  z, passes = _solve(ro.exact_solver(), shape, axes, a, v, p, tau, z0)
  exact = ref.exact_group_solution(a, v, p, tau, axes)
  scale = np.sqrt(np.sum(exact**2, axis=axes, keepdims=True))
  err = np.sqrt(np.sum((z - exact) ** 2, axis=axes, keepdims=True))
  assert np.all(err <= 1e-10 * scale)  # (zero groups: exactly zero)
  np.testing.assert_array_equal(z == 0, exact == 0)
  assert 0 < passes < 50


@pytest.mark.parametrize("shape, axes", CASES)
@pytest.mark.parametrize("scale", [0.0, 0.5, 0.999, 1.001, 3.0, 1e3])
def test_exact_solver_from_any_warm_start(x64, shape, axes, scale):
  """Started left or right of the root, Newton reaches the same solution; a
  start near the solution's radii takes fewer passes than a cold one."""
  a, v, p, tau, _ = _subproblem(shape, axes, seed=3)
  exact = ref.exact_group_solution(a, v, p, tau, axes)
  group_scale = np.sqrt(np.sum(exact**2, axis=axes, keepdims=True))
  z, passes = _solve(ro.exact_solver(), shape, axes, a, v, p, tau, scale * exact)
  err = np.sqrt(np.sum((z - exact) ** 2, axis=axes, keepdims=True))
  assert np.all(err <= 1e-10 * group_scale)
  _, cold = _solve(ro.exact_solver(warm_start=False), shape, axes, a, v, p,
                   tau, scale * exact)
  if scale in (0.999, 1.001) and axes:
    # (single-entry groups are left out: there r₀ is already the root)
    assert passes < cold


@pytest.mark.parametrize("shape, axes", CASES[:2])
def test_exact_solver_agrees_with_tight_pg(x64, shape, axes):
  a, v, p, tau, z0 = _subproblem(shape, axes, seed=7)
  z_exact, _ = _solve(ro.exact_solver(), shape, axes, a, v, p, tau, z0)
  z_pg, _ = _solve(ro.pg_solver(20000, 0.0), shape, axes, a, v, p, tau, z0)
  np.testing.assert_allclose(z_pg, z_exact, atol=1e-7)


def test_exact_solver_in_float32_is_finite_and_accurate():
  shape, axes = (3, 3, 4, 5), (0, 1, 3)
  a, v, p, tau, z0 = _subproblem(shape, axes, seed=8)
  z, _ = _solve(ro.exact_solver(), shape, axes,
                *(x.astype(np.float32) for x in (a, v, p)), np.float32(tau),
                z0.astype(np.float32))
  exact = ref.exact_group_solution(a, v, p, tau, axes)
  np.testing.assert_allclose(z, exact, atol=1e-5)


@pytest.mark.parametrize("block_bytes", [None, 96])
def test_exact_solver_stops_at_radii_below_float32_resolution(block_bytes):
  """Groups with ‖b‖ just above κ have radii r ≪ κ/P, where f's rounding
  gives Newton steps above √eps r: the solver stops on them in a few passes
  (at a step against the monotone increase), at the float64 solution."""
  rng = np.random.default_rng(0)
  groups, size, kappa = 512, 6, 0.25
  b = rng.normal(size=(groups, size))
  gap = 10.0 ** rng.uniform(-7, -2, size=(groups, 1))
  b *= kappa * np.sqrt(size) * (1 + gap) / np.linalg.norm(b, axis=1,
                                                           keepdims=True)
  p = rng.uniform(0.1, 0.6, size=(groups, size))
  a, v, tau = np.zeros_like(b), -b, kappa
  z0 = 0.2 * rng.normal(size=b.shape)  # radii right of the roots
  solver = ro.exact_solver(block_bytes=block_bytes)
  z, passes = _solve(solver, b.shape, (1,),
                     *(x.astype(np.float32) for x in (a, v, p)),
                     np.float32(tau), z0.astype(np.float32))
  assert passes <= 8
  exact = ref.exact_group_solution(a, v, p, tau, (1,))
  np.testing.assert_allclose(z, exact, atol=1e-6)
  assert np.count_nonzero(np.linalg.norm(exact, axis=1)) > groups // 2


@pytest.mark.parametrize("shape, axes", CASES[:2])
@pytest.mark.parametrize("eps0, count", [(1e-3, 1), (1e-3, 40), (1e-6, 5)])
def test_condition7_matches_reference_and_holds_at_exit(x64, shape, axes, eps0, count):
  a, v, p, tau, z0 = _subproblem(shape, axes, seed=9)
  eps_t = eps0 / count**0.51
  solver = ro.pg_solver(max_iters=500, residual_tol=eps0)
  z, iters = _solve(solver, shape, axes, a, v, p, tau, z0, count)
  z_ref, iters_ref = ref.pg_solve_condition7(a, v, p, tau, z0, axes, eps_t, 500)
  assert 1 < iters == iters_ref < 500
  np.testing.assert_allclose(z, z_ref, rtol=1e-12, atol=1e-12)
  # At exit: (L + 1/η)‖z_j − z_{j−1}‖ ≤ ε_t and Q(z_j) ≤ Q(z0).
  # z_{j−1}: the same iteration stopped one earlier (an unreachable ε).
  z_prev, _ = _solve(ro.pg_solver(max_iters=iters - 1, residual_tol=1e-300),
                     shape, axes, a, v, p, tau, z0)
  lip = 2 * np.max(p, axis=axes, keepdims=True)
  assert np.sqrt(np.sum((lip * (z - z_prev)) ** 2)) <= eps_t
  assert _objective(z, a, v, p, tau, axes) <= _objective(z0, a, v, p, tau, axes)


def _iterates(a, v, p, tau, z0, axes, num):
  """z_0 (the warm start, screened groups zeroed), z_1, …, z_num of the PG
  iteration, from the reference run without a stopping rule."""
  kappa = tau * np.sqrt(_penalty(a.shape, axes).group_size)
  active = np.sqrt(np.sum((p * a - v) ** 2, axis=axes, keepdims=True)) > kappa
  return [np.where(active, z0, 0.0)] + [
      ref.pg_solve(a, v, p, tau, z0, axes, j, -np.inf)[0]
      for j in range(1, num + 1)
  ]


def test_condition7_tolerance_is_eps0_over_t_to_the_0_51(x64):
  """At t = 10⁴, t^0.51 and t^0.5 differ by 10%: ε₀ is set so that the
  residual of iteration J lies between ε₀/t^0.51 and ε₀/t^0.5."""
  shape, axes = (6, 4), (1,)
  a, v, p, tau, z0 = _subproblem(shape, axes, seed=10)
  t, big_j = 10_000, 5
  zs = _iterates(a, v, p, tau, z0, axes, big_j)
  lip = 2 * np.max(p, axis=axes, keepdims=True)  # L_g + 1/η_g
  residual = np.sqrt(np.sum((lip * (zs[big_j] - zs[big_j - 1])) ** 2))
  eps0 = residual * t**0.505
  z, iters = _solve(ro.pg_solver(max_iters=200, residual_tol=eps0), shape,
                    axes, a, v, p, tau, z0, count=t)
  z_ref, iters_ref = ref.pg_solve_condition7(a, v, p, tau, z0, axes,
                                             eps0 / t**0.51, 200)
  _, iters_sqrt = ref.pg_solve_condition7(a, v, p, tau, z0, axes,
                                          eps0 / t**0.5, 200)
  assert iters_sqrt <= big_j < iters_ref < 200
  assert iters == iters_ref
  np.testing.assert_allclose(z, z_ref, rtol=1e-12, atol=1e-12)


def test_condition7_objective_counts_the_screened_groups(x64):
  """Q(z_j) ≤ Q(z_0) compares Q over every group: the screened groups, zero
  in z_j, contribute their Q(0). Here they contribute a large negative
  constant, the warm start is zero on the screened groups and within 1e-3 of
  the minimiser on the others, and the residual bound holds at once: the rule
  stops after one iteration, which it would not if the active groups' Q alone
  were compared with Q(z_0)."""
  shape, axes = (6, 4), (1,)
  rng = np.random.default_rng(11)
  a = rng.normal(size=shape)
  p = rng.uniform(0.5, 2.0, size=shape)
  v = rng.normal(size=shape)
  a[:3] = 3.0 + rng.uniform(size=(3, 4))  # rows 0-2: b = P a − v ≈ 0
  v[:3] = p[:3] * a[:3] + 0.01 * rng.normal(size=(3, 4))
  tau = 0.3
  exact = ref.exact_group_solution(a, v, p, tau, axes)
  screened = np.all(exact == 0, axis=1)
  np.testing.assert_array_equal(screened, [True] * 3 + [False] * 3)
  z0 = exact + 1e-3 * rng.normal(size=shape) * ~screened[:, None]
  d = -a[screened]
  constant = np.sum(v[screened] * d + 0.5 * p[screened] * d * d)
  assert constant < -10
  z, iters = _solve(ro.pg_solver(max_iters=50, residual_tol=0.1), shape, axes,
                    a, v, p, tau, z0)
  z_ref, iters_ref = ref.pg_solve_condition7(a, v, p, tau, z0, axes, 0.1, 50)
  assert iters == iters_ref == 1
  np.testing.assert_allclose(z, z_ref, rtol=1e-12, atol=1e-12)
  # Without the constant the objective clause fails: the active groups' Q
  # after one iteration is above Q(z_0).
  q_active = lambda x: _objective(np.where(screened[:, None], 0.0, x),
                                  a, v, p, tau, axes) - constant
  assert q_active(z) > _objective(z0, a, v, p, tau, axes)
