"""Group lasso: value, prox optimality, screening rule, layout."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ramda_optax as ro
from tests import numpy_reference as ref


def test_value_matches_reference_and_strength(x64):
  rng = np.random.default_rng(0)
  params = {"dense": rng.normal(size=(6, 4)), "conv": rng.normal(size=(3, 3, 4, 5)),
            "bias": rng.normal(size=5)}
  groups = {"dense": (1,), "conv": (0, 1, 3), "bias": None}
  expected = ref.group_lasso_value(params["dense"], (1,)) + ref.group_lasso_value(
      params["conv"], (0, 1, 3))
  reg = ro.group_lasso(0.3, groups)
  assert float(reg.value(params)) == pytest.approx(0.3 * expected, rel=1e-12)
  scheduled = ro.group_lasso(optax.linear_schedule(0.0, 1.0, 10), groups)
  assert float(scheduled.value(params, step=5)) == pytest.approx(0.5 * expected)


@pytest.mark.parametrize("axes", [(1,), (0,), (), (0, 1)])
def test_prox_satisfies_optimality(x64, axes):
  """z = prox_{tψ}(y): z_g = 0 iff ‖y_g‖ ≤ t√|g|, else z_g − y_g + t√|g| z_g/‖z_g‖ = 0."""
  rng = np.random.default_rng(1)
  y = rng.normal(size=(5, 6)) * rng.uniform(0.1, 2.0, size=(5, 1))
  pen = ro.GroupNorm(axes, int(np.prod([y.shape[i] for i in axes])))
  ny = np.sqrt(np.sum(y * y, axis=axes, keepdims=True))
  seen_zero = seen_nonzero = False
  for t in np.quantile(ny, [0.3, 0.7]) * [0.9, 1.1] / np.sqrt(pen.group_size):
    z, psi = pen.prox(jnp.asarray(y), jnp.asarray(t))
    z = np.asarray(z)
    kappa = t * np.sqrt(pen.group_size)
    nz = np.sqrt(np.sum(z * z, axis=axes, keepdims=True))
    zero = ny <= kappa
    seen_zero |= zero.any()
    seen_nonzero |= (~zero).any()
    assert np.all(np.where(zero, z, 0) == 0)
    residual = z - y + kappa * z / np.where(nz > 0, nz, 1)
    np.testing.assert_allclose(np.where(zero, 0, residual), 0, atol=1e-12)
    np.testing.assert_allclose(
        np.sum(psi), ref.group_lasso_value(z, axes), rtol=1e-12)
  assert seen_zero and seen_nonzero


@pytest.mark.parametrize("axes", [(1,), (0,), ()])
def test_screen_is_the_zero_condition_of_the_exact_solution(x64, axes):
  rng = np.random.default_rng(2)
  a, v = rng.normal(size=(8, 3)), rng.normal(size=(8, 3))
  p = rng.uniform(0.5, 2.0, size=(8, 3))
  pen = ro.GroupNorm(axes, int(np.prod([a.shape[i] for i in axes])))
  b = p * a - v
  # τ midway between two neighbouring ‖b_g‖/√|g|: about half the groups are
  # screened, none is at the boundary.
  ratios = np.sort(np.sqrt(np.sum(b * b, axis=axes)).ravel()) / pen.weight
  middle = len(ratios) // 2
  tau = 0.5 * (ratios[middle - 1] + ratios[middle])
  keep = np.asarray(pen.screen(jnp.asarray(b), jnp.asarray(tau)))
  assert keep.shape == pen.block_shape(a.shape)
  assert 0 < keep.sum() < keep.size
  exact = ref.exact_group_solution(a, v, p, tau, axes)
  np.testing.assert_array_equal(keep, np.any(exact != 0, axis=axes,
                                             keepdims=True))


def test_screen_ties_are_screened(x64):
  """A group with ‖b_g‖ = τ√|g| exactly is zero at the optimum (zero iff
  ‖b_g‖ ≤ τ√|g|, Deleu & Bengio 2021): screened, and no iteration spent on
  it. The values are exact in floating point: ‖(1, 2, 2, 4)‖ = 5 = 2.5 √4."""
  row = np.array([1.0, 2.0, 2.0, 4.0])
  b = np.stack([row, 0.5 * row, 2.0 * row])  # at, below and above the tie
  pen = ro.GroupNorm((1,), 4)
  keep = np.asarray(pen.screen(jnp.asarray(b), jnp.asarray(2.5)))[:, 0]
  np.testing.assert_array_equal(keep, [False, False, True])
  z, _ = pen.prox(jnp.asarray(b), jnp.asarray(2.5))
  np.testing.assert_array_equal(np.asarray(z)[:2], 0)
  # ℓ1: |b_i| = τ is screened too.
  l1 = ro.GroupNorm((), 1)
  keep = np.asarray(l1.screen(jnp.asarray(row), jnp.asarray(2.0)))
  np.testing.assert_array_equal(keep, [False, False, False, True])
  # The solvers on Q with P = I, v = 0, a = b (so that P a − v = b): the
  # group at the tie is zero; with every group at or below it, no iteration
  # or Newton pass runs.
  for rows in (2, 3):
    a = b[:rows]
    exact = ref.exact_group_solution(a, 0 * a, np.ones_like(a), 2.5, (1,))
    _, iters_ref = ref.pg_solve(a, 0 * a, np.ones_like(a), 2.5, a, (1,))
    for solver in (ro.pg_solver(), ro.exact_solver()):
      solve = jax.jit(lambda a, solver=solver: solver.solve(
          pen, ro.Subproblem(a, jnp.zeros_like(a), jnp.ones_like(a),
                             jnp.asarray(2.5)), a, jnp.int32(1)))
      z, iters = solve(jnp.asarray(a))
      np.testing.assert_array_equal(np.asarray(z)[:2], 0)
      np.testing.assert_allclose(z, exact, atol=1e-12)
      assert (int(iters) == 0) == (rows == 2) == (iters_ref == 0)


def test_layout_normalizes_axes_and_skips_masked_leaves():
  params = {"k": jnp.ones((3, 4, 5)), "b": jnp.ones(5), "m": optax.MaskedNode()}
  reg = ro.group_lasso(1.0, {"k": (-1, 0), "b": None, "m": (0,)})
  assert reg.layout(params) == (None, ro.GroupNorm((0, 2), 15))
  reg = ro.group_lasso(1.0, lambda p: {"k": (1,), "b": None, "m": None})
  assert reg.layout(params) == (None, ro.GroupNorm((1,), 4))


def test_bad_group_leaves_raise():
  with pytest.raises(ValueError, match="groups"):
    ro.group_lasso(1.0, {"k": "channels"})


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (3, 3, 2, 4)])
def test_nuclear_prox_soft_thresholds_singular_values(x64, shape):
  rng = np.random.default_rng(3)
  y = rng.normal(size=shape)
  m = y.reshape(-1, shape[-1])
  sigma = np.linalg.svd(m, compute_uv=False)
  t = float(np.median(sigma))
  z, psi = ro.NuclearNorm().prox(jnp.asarray(y), jnp.asarray(t))
  assert z.shape == y.shape
  zm = np.asarray(z).reshape(m.shape)
  np.testing.assert_allclose(
      np.linalg.svd(zm, compute_uv=False), np.maximum(sigma - t, 0), atol=1e-12)
  # Optimality: y − z ∈ t ∂‖z‖_*, i.e. y − z = t U Vᵀ on z's range plus a
  # part of spectral norm ≤ t orthogonal to it.
  u, s, vt = np.linalg.svd(zm, full_matrices=False)
  k = int(np.sum(s > 1e-12))
  g = (m - zm) / t
  np.testing.assert_allclose(u[:, :k].T @ g @ vt[:k].T, np.eye(k), atol=1e-10)
  assert np.linalg.norm(g, 2) <= 1 + 1e-10
  assert float(jnp.sum(psi)) == pytest.approx(ref.nuclear_value(np.asarray(z)), rel=1e-10)
  assert float(ro.NuclearNorm().value(jnp.asarray(y))) == pytest.approx(sigma.sum())


def test_l1_prox_and_screening(x64):
  rng = np.random.default_rng(4)
  y, t = rng.normal(size=(7, 5)), 0.5
  pen = ro.l1(1.0).layout({"w": jnp.asarray(y)})[0]
  assert pen.separable
  z, _ = pen.prox(jnp.asarray(y), jnp.asarray(t))
  np.testing.assert_allclose(z, ref.l1_prox(y, t), rtol=1e-14)
  # Optimality: z_i = 0 iff |y_i| ≤ t, else y_i − z_i = t sign(z_i).
  zero = np.abs(y) <= t
  np.testing.assert_array_equal(np.asarray(z) == 0, zero)
  np.testing.assert_allclose(np.where(zero, 0, y - z - t * np.sign(z)), 0, atol=1e-14)
  np.testing.assert_array_equal(np.asarray(pen.screen(jnp.asarray(y), t)), ~zero)
  params = {"w": jnp.asarray(y), "b": jnp.ones(3)}
  assert float(ro.l1(0.2, {"w": True, "b": False}).value(params)) == pytest.approx(
      0.2 * np.abs(y).sum())
  assert float(ro.nuclear_norm(0.2).value(params)) == pytest.approx(
      0.2 * ref.nuclear_value(y))
