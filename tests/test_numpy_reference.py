"""Self-checks of the NumPy reference (numpy_reference.py) itself."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from numpy_reference import (  # noqa: E402
    Ramda,
    _to_groups,
    exact_group_solution,
    group_lasso_value,
    pg_solve,
)

CASES = [((6, 4), (1,)), ((3, 3, 4, 5), (0, 1, 3)), ((6, 4), ()), ((5, 7), (0,))]


def _problem(shape, axes, seed):
    """Random subproblem whose τ puts about half the groups below the screening threshold."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=shape)
    v = rng.normal(size=shape)
    p = rng.uniform(0.5, 2.0, size=shape)
    B = _to_groups(p * a - v, axes)
    ratio = np.sort(np.linalg.norm(B, axis=1) / np.sqrt(B.shape[1]))  # ‖b_g‖/√|g|
    if len(ratio) > 1:  # τ midway between two neighbouring groups: no group on the boundary
        i = len(ratio) // 2
        tau = 0.5 * (ratio[i - 1] + ratio[i])
    else:
        tau = 0.5 * ratio[0]
    return a, v, p, tau


def test_group_lasso_value_by_hand():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])
    assert group_lasso_value(x, (1,)) == pytest.approx(np.sqrt(2) * (5 + 0 + 1))
    assert group_lasso_value(x, (0,)) == pytest.approx(np.sqrt(3) * (np.sqrt(10) + 4))
    assert group_lasso_value(x, ()) == pytest.approx(8.0)
    assert group_lasso_value(x, (0, 1)) == pytest.approx(np.sqrt(6) * np.sqrt(26))
    # Conv layout, channel-wise groups: one group per input channel (axis 2).
    w = np.zeros((3, 3, 2, 4))
    w[..., 0, :] = 1.0  # ‖w_0‖ = 6, |g| = 36
    assert group_lasso_value(w, (0, 1, 3)) == pytest.approx(6.0 * 6.0)


@pytest.mark.parametrize("shape,axes", CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_solution_optimality(shape, axes, seed):
    a, v, p, tau = _problem(shape, axes, seed)
    theta = exact_group_solution(a, v, p, tau, axes)
    kappa = tau * np.sqrt(_to_groups(a, axes).shape[1])
    T, A, V, P = (_to_groups(t, axes) for t in (theta, a, v, p))
    nb = np.linalg.norm(P * A - V, axis=1)
    nt = np.linalg.norm(T, axis=1)
    assert np.any(nt == 0) and np.any(nt > 0)  # the problem exercises both cases
    for g in range(T.shape[0]):
        if nt[g] == 0:
            assert nb[g] <= kappa
        else:  # v_g + P_g(θ_g − a_g) + κ θ_g/‖θ_g‖ = 0
            res = V[g] + P[g] * (T[g] - A[g]) + kappa * T[g] / nt[g]
            assert np.max(np.abs(res)) < 1e-12 * (1 + np.max(np.abs(V[g])))


@pytest.mark.parametrize("shape,axes", CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pg_matches_exact_and_screening(shape, axes, seed):
    a, v, p, tau = _problem(shape, axes, seed)
    exact = exact_group_solution(a, v, p, tau, axes)
    z0 = np.random.default_rng(seed + 100).normal(size=shape)
    # (a) The PG fixed point is the exact solution: run without the stop rule.
    theta, iters = pg_solve(a, v, p, tau, z0, axes, max_iters=2000, rtol=-np.inf)
    assert iters == 2000
    np.testing.assert_allclose(theta, exact, atol=1e-12, rtol=0)
    # (b) With the paper's relative-decrease stop rule, even rtol = 1e-14 only
    # reaches ~1e-7: Q's decrease is quadratic in the step, so the rule fires
    # once ‖z_j − z_{j−1}‖ ~ sqrt(rtol) (and Q stalls at float64 rounding).
    theta, iters = pg_solve(a, v, p, tau, z0, axes, max_iters=10000, rtol=1e-14)
    assert 2 <= iters < 10000
    np.testing.assert_allclose(theta, exact, atol=1e-6, rtol=0)
    # Screened groups are exactly the zero groups of the exact solution.
    kappa = tau * np.sqrt(_to_groups(a, axes).shape[1])
    screened = np.linalg.norm(_to_groups(p * a - v, axes), axis=1) <= kappa
    np.testing.assert_array_equal(screened, np.linalg.norm(_to_groups(exact, axes), axis=1) == 0)
    np.testing.assert_array_equal(np.linalg.norm(_to_groups(theta, axes), axis=1)[screened], 0.0)


def test_pg_special_cases():
    a, v, p, _ = _problem((6, 4), (1,), 0)
    # τ = 0: closed form a − v/p, no iterations; p == 0 entries keep a.
    p0 = p.copy()
    p0[0, 0] = 0.0
    theta, iters = pg_solve(a, v, p0, 0.0, a, (1,))
    assert iters == 0 and theta[0, 0] == a[0, 0]
    np.testing.assert_allclose(theta[1:], (a - v / p)[1:])
    # Everything screened: zeros, no iterations.
    theta, iters = pg_solve(a, v, p, 1e6, a, (1,))
    assert iters == 0 and np.all(theta == 0)
    # max_iters is respected.
    _, iters = pg_solve(a, v, p, 0.3, a, (1,), max_iters=1, rtol=0.0)
    assert iters == 1


def test_ramda_unregularized_and_restart():
    rng = np.random.default_rng(0)
    w = {"k": rng.normal(size=(6, 4)), "b": rng.normal(size=(4,))}
    grads = [{n: rng.normal(size=x.shape) for n, x in w.items()} for _ in range(4)]
    opt = Ramda(w, learning_rate=0.1, momentum=0.9, strength=0.0, groups={"k": (1,)},
                restart_steps=(2,))
    W = {n: x.copy() for n, x in w.items()}
    for n, g in enumerate(grads):
        if n in (0, 2):  # start / restart: W⁰ = W, V = U = 0, k = 0
            W0, V, U, k = {n_: x.copy() for n_, x in W.items()}, {}, {}, 0
        k += 1
        s = 0.1 * np.sqrt(k)
        eps_n = 1e-6 * (0.1 if n >= 2 else 1.0)
        for name in W:
            V[name] = V.get(name, 0.0) + s * g[name]
            U[name] = U.get(name, 0.0) + s * g[name] ** 2
            theta = W0[name] - V[name] / (np.cbrt(U[name]) + eps_n)
            W[name] = 0.9 * W[name] + 0.1 * theta
        out = opt.step(g)
        assert opt.iters == {"k": 0, "b": 0}
        for name in W:
            np.testing.assert_allclose(out[name], W[name], rtol=1e-14, atol=1e-14)
    assert opt.k == 2 and opt.n == 4


def test_ramda_group_sparsity_last_stage():
    """With momentum 0 the iterate is θ̂ itself, so screened groups are exactly zero."""
    rng = np.random.default_rng(1)
    w = {"k": rng.normal(size=(6, 4))}
    opt = Ramda(w, learning_rate=0.1, momentum=0.0, strength=0.5, groups={"k": (1,)})
    for _ in range(5):
        out = opt.step({"k": w["k"] + rng.normal(size=(6, 4))})
    assert opt.iters["k"] >= 0
    norms = np.linalg.norm(out["k"], axis=1)
    assert np.any(norms == 0)
    np.testing.assert_array_equal(out["k"], opt.theta["k"])
