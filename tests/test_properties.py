"""Property tests of the proxes and the subproblem solvers (hypothesis).

Random shapes (2 to 4 axes of size 1 to 6), random groupings (any subset of
the axes, the empty one giving ℓ1 and the full one a single group), random
strengths (0 in an explicit example of each test) and random metrics (some
entries 0, with a zero linear term there, as a coordinate that never had a
gradient has). Checked in float64 against the optimality conditions of

    Q(θ) = <v, θ − a> + ½ <θ − a, P (θ − a)> + τ ψ(θ).

The hypothesis profile (tests/conftest.py) sets the number of examples.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

import ramda_optax as ro
from ramda_optax import solvers

# A drawn strength is below every norm it is compared with, or at a uniform
# random quantile of those norms (so that some or every group falls below
# it; nudged off the quantile to avoid exact ties). Strength 0 is an explicit
# example of each test rather than a share of the draws.
_strength_kinds = st.sampled_from(["quantile", "below", "quantile"])


def _strength(kind, norms, rng, weight=1.0):
  if kind == "zero":
    return 0.0
  if kind == "below":
    return rng.uniform(0.01, 0.99) * float(np.min(norms)) / weight + 1e-9
  q = float(np.quantile(norms, rng.uniform()))
  return q * (1 + 1e-6) / weight + 1e-9


@st.composite
def _layouts(draw):
  ndim = draw(st.integers(2, 4))
  shape = tuple(draw(st.integers(1, 6)) for _ in range(ndim))
  axes = tuple(sorted(draw(st.sets(st.integers(0, ndim - 1)))))
  return shape, axes


def _subproblem(shape, axes, seed, dead_entries, strength_kind):
  """(shape, axes, a, v, p, τ, z0): p in [0.5, 2], or 0 on ~30% of the
  entries (with v = 0 there) with ``dead_entries``."""
  rng = np.random.default_rng(seed)
  a = rng.normal(size=shape)
  v = rng.normal(size=shape)
  p = rng.uniform(0.5, 2.0, size=shape)
  if dead_entries:
    dead = rng.random(shape) < 0.3
    p[dead], v[dead] = 0.0, 0.0
  z0 = a + 0.1 * rng.normal(size=shape)
  b = p * a - v
  tau = _strength(strength_kind, _norm(b, axes), rng,
                  math.sqrt(_group_size(shape, axes)))
  return shape, axes, a, v, p, tau, z0


@st.composite
def _subproblems(draw, zero_metric=True):
  """A random :func:`_subproblem`, with dead entries in one draw in three."""
  shape, axes = draw(_layouts())
  seed = draw(st.integers(0, 2**32 - 1))
  dead = zero_metric and draw(st.sampled_from([True, False, False]))
  return _subproblem(shape, axes, seed, dead, draw(_strength_kinds))


def _group_size(shape, axes):
  return math.prod(shape[i] for i in axes)


def _norm(x, axes):
  return np.sqrt(np.sum(x * x, axis=axes, keepdims=True))


def _objective(z, a, v, p, tau, axes, weight):
  d = z - a
  return float(
      np.sum(v * d + 0.5 * p * d * d) + tau * weight * np.sum(_norm(z, axes))
  )


def _scale(*xs):
  return 1.0 + max(float(np.max(np.abs(x))) for x in xs)


@given(_layouts(), st.integers(0, 2**32 - 1), st.booleans())
def test_group_prox_optimality(layout, seed, zero_strengths):
  shape, axes = layout
  with jax.enable_x64(True):
    penalty = ro.GroupNorm(axes, _group_size(shape, axes))
    rng = np.random.default_rng(seed)
    y = rng.normal(size=shape)
    # A strength per group, around the typical group norm; some are 0.
    t = rng.uniform(0.0, 1.5, size=penalty.block_shape(shape))
    if zero_strengths:
      t[rng.random(t.shape) < 0.5] = 0.0
    z, psi = map(np.asarray, jax.jit(penalty.prox)(y, t))
  kappa = t * penalty.weight
  norm_y, norm_z = _norm(y, axes), _norm(z, axes)
  assert np.all(np.isfinite(z)) and psi.shape == penalty.block_shape(shape)
  # Zero groups are exactly those with ‖y_g‖ <= t√|g|.
  np.testing.assert_array_equal(norm_z == 0, norm_y <= kappa)
  # Nonzero groups: z − y + t√|g| z/‖z‖ = 0, and ψ_g(z) = √|g| ‖z_g‖.
  nonzero = np.broadcast_to(norm_z > 0, shape)
  residual = z - y + kappa * z / np.where(norm_z > 0, norm_z, 1)
  np.testing.assert_allclose(residual[nonzero], 0, atol=1e-12 * _scale(y))
  np.testing.assert_allclose(psi, penalty.weight * norm_z, rtol=1e-12,
                             atol=1e-15)
  np.testing.assert_array_equal(z[np.broadcast_to(t == 0, shape)],
                                y[np.broadcast_to(t == 0, shape)])


@functools.cache
def _group_solvers(shape, axes):
  """All group-lasso solvers on one subproblem, in one compiled program."""
  penalty = ro.GroupNorm(axes, _group_size(shape, axes))
  exact = ro.exact_solver()
  pg = ro.pg_solver()
  pg_residual = ro.pg_solver(max_iters=1000, residual_tol=1e-8)
  prox = ro.prox_solver()

  @jax.jit
  def solve(a, v, p, tau, z0, p_scalar):
    one = jnp.int32(1)
    return {
        "exact": exact.solve(penalty, ro.Subproblem(a, v, p, tau), z0, one),
        "pg": pg.solve(penalty, ro.Subproblem(a, v, p, tau), z0, one),
        "pg_residual": pg_residual.solve(
            penalty, ro.Subproblem(a, v, p, tau), z0, one
        ),
        "prox_scalar": prox.solve(
            penalty, ro.Subproblem(a, v, p_scalar, tau), z0, one
        ),
        "active": penalty.screen(p * a - v, tau),
    }

  return penalty, solve


@pytest.mark.slow
@given(_subproblems(), st.floats(0.5, 2.0))
@example(_subproblem((3, 4, 2), (1,), 0, True, "zero"), 1.0)
def test_group_solvers_optimality(problem, p_scalar):
  shape, axes, a, v, p, tau, z0 = problem
  with jax.enable_x64(True):
    penalty, solve = _group_solvers(shape, axes)
    out = jax.device_get(solve(a, v, p, tau, z0, p_scalar))
  weight, kappa = penalty.weight, tau * penalty.weight
  well_conditioned = bool(np.all(p > 0))
  q = functools.partial(_objective, a=a, v=v, p=p, tau=tau, axes=axes,
                        weight=weight)
  for name in ("exact", "pg", "pg_residual", "prox_scalar"):
    theta, iters = out[name]
    assert np.all(np.isfinite(theta)) and theta.shape == shape, name
  # Iterations: none without τ or without a group left by screening; else
  # at least the two the relative-decrease rule needs, at least one for
  # condition (7) and for Newton (which converges well before its cap of
  # 50); the closed-form prox counts one whenever τ > 0.
  iters = {name: int(out[name][1]) for name in out if name != "active"}
  if tau == 0 or not np.any(out["active"]):
    assert iters["exact"] == iters["pg"] == iters["pg_residual"] == 0, iters
  else:
    assert 1 <= iters["exact"] < 50 and iters["pg"] >= 2, iters
    assert iters["pg_residual"] >= 1, iters
  assert iters["prox_scalar"] == int(tau > 0)
  theta_e = out["exact"][0]
  if tau == 0:
    # No regularization: every solver gives a − v/P (a where P = 0).
    free = a - np.where(p > 0, v / np.where(p > 0, p, 1), 0)
    for name in ("exact", "pg", "pg_residual"):
      np.testing.assert_allclose(out[name][0], free, rtol=1e-12, atol=1e-12)
      assert int(out[name][1]) == 0
    return

  b = p * a - v
  norm_b, norm_e = _norm(b, axes), _norm(theta_e, axes)
  screened = np.logical_not(out["active"])
  share = "none" if not screened.any() else "all" if screened.all() else "some"
  event(f"screened groups: {share}")
  event(f"metric: {'positive' if well_conditioned else 'some zeros'}")
  early = int(out["pg_residual"][1]) < 1000
  event(f"pg_residual stopped {'early' if early else 'at its cap'}")
  np.testing.assert_array_equal(screened, norm_b <= kappa)
  # Exact solver: zero groups iff ‖b_g‖ <= κ (so screening is sound and
  # complete), and v + P(θ − a) + κ θ_g/‖θ_g‖ = 0 on the nonzero groups.
  np.testing.assert_array_equal(norm_e == 0, screened)
  nonzero = np.broadcast_to(norm_e > 0, shape)
  safe_norm = np.where(norm_e > 0, norm_e, 1)
  kkt = v + p * (theta_e - a) + kappa * theta_e / safe_norm
  np.testing.assert_allclose(kkt[nonzero], 0, atol=1e-9 * _scale(b, kappa))
  q_exact = q(theta_e)

  # PG (default): screened groups exactly zero, never below the minimum,
  # never above its start, and (P >= 0.5 everywhere: linear rate <= 3/4, so
  # the relative-decrease rule stops within 4·rtol of the minimum) close.
  theta_p, iters_p = out["pg"]
  screened_full = np.broadcast_to(screened, shape)
  assert np.all(theta_p[screened_full] == 0)
  start = np.where(screened_full, 0.0, z0)
  tol = 1e-9 * (1 + abs(q_exact))
  assert q(theta_p) >= q_exact - tol
  assert q(theta_p) <= q(start) + tol
  if well_conditioned:
    assert q(theta_p) - q_exact <= 1e-6 * (1 + abs(q_exact))

  # PG with condition (7): screened groups zero; when it stopped before its
  # cap, Q(θ) <= Q(z0) and the subgradient residual is <= ε = 1e-8, so θ
  # is within ε / min P = 2e-8 of the minimiser.
  theta_r, iters_r = out["pg_residual"]
  assert np.all(theta_r[screened_full] == 0)
  assert q(theta_r) >= q_exact - tol
  if int(iters_r) < 1000:
    assert q(theta_r) <= q(z0) + tol
    if well_conditioned:
      np.testing.assert_allclose(theta_r, theta_e, atol=5e-8 * _scale(theta_e))

  # Scalar metric p: the closed-form prox is exact, block soft-thresholding
  # of y = a − v/p at κ/p.
  y = a - v / p_scalar
  norm_y = _norm(y, axes)
  safe_norm = np.where(norm_y > 0, norm_y, 1)
  expected = y * np.maximum(0, 1 - kappa / p_scalar / safe_norm)
  np.testing.assert_allclose(out["prox_scalar"][0], expected, rtol=1e-12,
                             atol=1e-14)
  assert int(out["prox_scalar"][1]) == 1


@given(_subproblems(zero_metric=False))
@example(_subproblem((3, 4), (), 1, False, "zero"))
def test_l1_closed_form_optimality(problem):
  shape, _, a, v, p, tau, z0 = problem
  y = a - v / p
  like = lambda x: {"w": x, "bias": x[0]}
  with jax.enable_x64(True):
    penalties = ro.l1(1.0, {"w": True, "bias": False}).layout(like(a))

    @jax.jit
    def solve(a, v, p, tau, z0, y, t):
      theta, iters = solvers.solve_tree(
          ro.pg_solver(), penalties,
          ro.Subproblem(like(a), like(v), like(p), tau), like(z0),
          jnp.int32(1),
      )
      return theta, iters, penalties[1].prox(y, t)

    theta, iters, (z, psi) = jax.device_get(solve(a, v, p, tau, z0, y, tau / p))
  assert penalties[0] is None and penalties[1].separable
  # The closed form counts one iteration where τ > 0, none without ψ.
  assert jax.device_get(iters) == {"bias": 0, "w": int(tau > 0)}
  # The unregularized leaf: a − v/P.
  np.testing.assert_allclose(theta["bias"], a[0] - v[0] / p[0], rtol=1e-12)
  # The ℓ1 leaf: zero iff |P a − v| <= τ, else v + P(θ − a) + τ sign θ = 0.
  w = theta["w"]
  b = p * a - v
  np.testing.assert_array_equal(w == 0, np.abs(b) <= tau)
  kkt = v + p * (w - a) + tau * np.sign(w)
  np.testing.assert_allclose(kkt[w != 0], 0, atol=1e-12 * _scale(b))
  # Its prox: soft-thresholding, z − y + t sign z = 0 where z ≠ 0.
  z, t = np.asarray(z), tau / p
  np.testing.assert_array_equal(z == 0, np.abs(y) <= t)
  np.testing.assert_allclose((z - y + t * np.sign(z))[z != 0], 0,
                             atol=1e-12 * _scale(y))
  np.testing.assert_allclose(np.asarray(psi), np.abs(z), rtol=1e-12)


def test_l1_closed_form_with_a_zero_metric_entry(x64):
  a = jnp.array([[1.0, -2.0], [0.5, 3.0]])
  v = jnp.array([[0.0, 0.3], [0.0, 0.2]])
  p = jnp.array([[0.0, 1.0], [0.0, 2.0]])  # column 0: never had a gradient
  tau = jnp.asarray(0.1)
  tree = {"w": a}
  theta, _ = solvers.solve_tree(
      ro.pg_solver(), ro.l1(1.0).layout(tree),
      ro.Subproblem(tree, {"w": v}, {"w": p}, tau), tree, jnp.int32(1),
  )
  # The group solvers agree that those entries are 0 (here ℓ1 as groups of
  # one entry, solved exactly).
  exact, _ = ro.exact_solver().solve(
      ro.GroupNorm((), 1), ro.Subproblem(a, v, p, tau), a, 1
  )
  np.testing.assert_array_equal(np.asarray(exact)[:, 0], 0)
  np.testing.assert_allclose(theta["w"], exact, atol=1e-12)


@functools.cache
def _nuclear_solvers(shape):
  penalty = ro.NuclearNorm()
  pg = ro.pg_solver(max_iters=20)

  @jax.jit
  def solve(a, v, p, tau, z0, y, t, p_scalar):
    one = jnp.int32(1)
    return {
        "prox": penalty.prox(y, t),
        "pg": pg.solve(penalty, ro.Subproblem(a, v, p, tau), z0, one),
        "pg_scalar": pg.solve(
            penalty, ro.Subproblem(a, v, p_scalar, tau), z0, one
        ),
        "value": penalty.value(z0),
    }

  return penalty, solve


def _nuclear(x):
  matrix = x.reshape(-1, x.shape[-1])
  return float(np.sum(np.linalg.svd(matrix, compute_uv=False)))


@pytest.mark.slow
@given(_subproblems(), _strength_kinds, _strength_kinds, st.floats(0.5, 2.0))
@example(_subproblem((3, 4, 2), (), 2, True, "zero"), "zero", "zero", 1.0)
def test_nuclear_norm_prox_and_pg_optimality(problem, prox_kind, pg_kind,
                                             p_scalar):
  shape, _, a, v, p, _, z0 = problem
  matrix = lambda x: x.reshape(-1, shape[-1])
  singular_values = lambda x: np.linalg.svd(matrix(x), compute_uv=False)
  y = a - v  # any point to take the prox of
  # Strengths at quantiles of the singular values they threshold.
  rng = np.random.default_rng(int(1e6 * p_scalar))
  t = _strength(prox_kind, singular_values(y), rng)
  tau = p_scalar * _strength(pg_kind, singular_values(a - v / p_scalar), rng)
  event(f"prox zeroes {np.sum(singular_values(y) <= t)} of "
        f"{min(matrix(y).shape)} singular values")
  with jax.enable_x64(True):
    penalty, solve = _nuclear_solvers(shape)
    out = jax.device_get(solve(a, v, p, tau, z0, y, t, p_scalar))
  # Prox: singular values max(σ(y) − t, 0), and G = (y − z)/t is a
  # subgradient of ‖·‖_* at z: ‖G‖₂ <= 1 and <G, z> = ‖z‖_*.
  z, psi = out["prox"]
  assert np.all(np.isfinite(z)) and psi.shape == (1,) * len(shape)
  sigma_y = np.linalg.svd(matrix(y), compute_uv=False)
  sigma_z = np.linalg.svd(matrix(z), compute_uv=False)
  scale = _scale(y)
  np.testing.assert_allclose(sigma_z, np.maximum(sigma_y - t, 0),
                             atol=1e-10 * scale)
  np.testing.assert_allclose(float(psi.sum()), np.sum(sigma_z),
                             atol=1e-10 * scale)
  np.testing.assert_allclose(float(out["value"]), _nuclear(z0), rtol=1e-10)
  if t > 0:
    g = matrix(y - z) / t
    assert np.linalg.norm(g, 2) <= 1 + 1e-9
    np.testing.assert_allclose(np.sum(g * matrix(z)), np.sum(sigma_z),
                               atol=1e-9 * scale)
  else:
    np.testing.assert_allclose(z, y, atol=1e-12 * scale)

  q = lambda x, p: float(
      np.sum(v * (x - a) + 0.5 * p * (x - a) ** 2) + tau * _nuclear(x)
  )
  # PG under a diagonal metric: finite, bounded, never above its start.
  theta, iters = out["pg"]
  assert np.all(np.isfinite(theta))
  # No screening for the nuclear norm: with τ > 0 the rule runs at least its
  # two iterations.
  assert int(iters) >= 2 if tau > 0 else int(iters) == 0
  assert q(theta, p) <= q(z0, p) + 1e-9 * (1 + abs(q(z0, p)))
  # Under a scalar metric one PG step is the exact prox, so PG stops at the
  # minimiser: prox_{τ/p ‖·‖_*}(a − v/p).
  theta, iters = out["pg_scalar"]
  assert int(iters) == (2 if tau > 0 else 0)  # the second makes no decrease
  target = a - v / p_scalar
  sigma_t = np.linalg.svd(matrix(target), compute_uv=False)
  np.testing.assert_allclose(
      np.linalg.svd(matrix(theta), compute_uv=False),
      np.maximum(sigma_t - tau / p_scalar, 0), atol=1e-9 * _scale(target),
  )
  if tau > 0:
    g = matrix(target - theta) * p_scalar / tau
    assert np.linalg.norm(g, 2) <= 1 + 1e-8
