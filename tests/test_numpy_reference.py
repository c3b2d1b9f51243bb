"""Self-checks of the NumPy reference (numpy_reference.py) itself."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from numpy_reference import (  # noqa: E402
    ProxGen,
    ProxSGD,
    ProxSSI,
    Ramda,
    Rmda,
    _from_groups,
    _to_groups,
    exact_group_solution,
    group_lasso_value,
    l1_prox,
    l1_value,
    nuclear_prox,
    nuclear_value,
    pg_solve,
    pg_solve_condition7,
    pg_solve_nuclear,
    prox_solve,
    subproblem_value,
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
    norms = np.linalg.norm(out["k"], axis=1)
    assert np.any(norms == 0) and np.any(norms > 0)
    np.testing.assert_array_equal(out["k"], opt.theta["k"])
    # Some group is active, so the relative-decrease rule ran at least its two
    # iterations, and stopped before the cap; the zero groups are those of the
    # high-precision solution.
    assert 2 <= opt.iters["k"] < 100
    exact = exact_group_solution(opt.W0["k"], opt.V["k"], np.cbrt(opt.U["k"]) + 1e-6,
                                 opt.alpha * 0.5, (1,))
    np.testing.assert_array_equal(norms == 0, np.linalg.norm(exact, axis=1) == 0)


# --------------------------------------------------------------------------
# Regularizer kinds, proxes and solvers
# --------------------------------------------------------------------------
def test_l1_and_nuclear_values_by_hand():
    assert l1_value(np.array([[1.0, -2.0], [0.0, 3.5]])) == pytest.approx(6.5)
    # mat(diag) has singular values |d_i|.
    assert nuclear_value(np.diag([3.0, -2.0, 0.5])) == pytest.approx(5.5)
    # Conv (H, W, I, O) -> (H·W·I, O): a rank-one kernel u ⊗ w has ‖·‖_* = ‖u‖ ‖w‖.
    rng = np.random.default_rng(0)
    u, w = rng.normal(size=(3, 3, 2)), rng.normal(size=4)
    x = u[..., None] * w
    assert nuclear_value(x) == pytest.approx(np.linalg.norm(u) * np.linalg.norm(w))


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (3, 3, 2, 4)])
def test_nuclear_prox_optimality(shape):
    rng = np.random.default_rng(sum(shape))
    y = rng.normal(size=shape)
    Y = y.reshape(-1, shape[-1])
    U, s, Vt = np.linalg.svd(Y, full_matrices=False)
    t = 0.5 * (s[1] + s[2])  # keeps exactly two singular values
    x = nuclear_prox(y, t)
    assert x.shape == shape
    X = x.reshape(-1, shape[-1])
    shrunk = np.maximum(s - t, 0.0)
    # Singular values max(σ − t, 0) ...
    np.testing.assert_allclose(np.linalg.svd(X, compute_uv=False), shrunk, atol=1e-12)
    # ... with y's singular vectors: Uᵀ X V = diag(max(σ − t, 0)).
    np.testing.assert_allclose(U.T @ X @ Vt.T, np.diag(shrunk), atol=1e-12)
    # Optimality: G = (Y − X)/t ∈ ∂‖X‖_*  ⇔  ‖G‖_op ≤ 1 and <G, X> = ‖X‖_*.
    G = (Y - X) / t
    assert np.linalg.norm(G, 2) <= 1 + 1e-12
    assert np.sum(G * X) == pytest.approx(nuclear_value(x), rel=1e-12)
    # t = 0 is the identity; t ≥ σ_max gives 0.
    np.testing.assert_allclose(nuclear_prox(y, 0.0), y, atol=1e-12)
    assert np.all(nuclear_prox(y, s[0]) == 0)


def test_l1_prox_elementwise():
    y = np.array([3.0, -0.5, -2.0, 0.2, 0.0])
    np.testing.assert_array_equal(l1_prox(y, 1.0), [2.0, 0.0, -1.0, 0.0, 0.0])
    np.testing.assert_allclose(l1_prox(y, np.array([0.0, 0.1, 3.0, 0.1, 1.0])),
                               [3.0, -0.4, 0.0, 0.1, 0.0])
    # prox_solve with an array metric: θ_i = soft(a_i − v_i/p_i, τ/p_i); check the KKT conditions
    #   θ_i ≠ 0: v_i + p_i(θ_i − a_i) + τ sign θ_i = 0;   θ_i = 0: |p_i a_i − v_i| ≤ τ.
    rng = np.random.default_rng(3)
    a, v, p = rng.normal(size=(5, 7)), rng.normal(size=(5, 7)), rng.uniform(0.5, 2.0, size=(5, 7))
    tau = 0.8
    theta, iters = prox_solve(("l1",), a, v, p, tau)
    assert iters == 1 and np.any(theta == 0) and np.any(theta != 0)
    nz = theta != 0
    np.testing.assert_allclose((v + p * (theta - a) + tau * np.sign(theta))[nz], 0.0, atol=1e-13)
    assert np.all(np.abs(p * a - v)[~nz] <= tau)
    # τ = 0: a − v/p, no iterations.
    theta, iters = prox_solve(("l1",), a, v, p, 0.0)
    assert iters == 0
    np.testing.assert_allclose(theta, a - v / p, rtol=1e-15)


@pytest.mark.parametrize("shape,axes", CASES)
def test_prox_solve_scalar_metric_matches_pg(shape, axes):
    a, v, _, tau = _problem(shape, axes, 0)
    c = 1.7
    z0 = np.random.default_rng(5).normal(size=shape)
    theta, iters = prox_solve(("group", axes), a, v, c, tau)
    assert iters == 1
    pg, _ = pg_solve(a, v, np.full(shape, c), tau, z0, axes, max_iters=50, rtol=-np.inf)
    np.testing.assert_allclose(theta, pg, atol=1e-13, rtol=0)
    exact = exact_group_solution(a, v, np.full(shape, c), tau, axes)
    np.testing.assert_allclose(theta, exact, atol=1e-12, rtol=0)
    if axes == ():  # singleton groups are ℓ1
        l1, _ = prox_solve(("l1",), a, v, c, tau)
        np.testing.assert_allclose(theta, l1, atol=1e-15, rtol=0)
    # Unregularized / τ = 0.
    for kind, t in ((None, tau), (("group", axes), 0.0), (("nuclear",), 0.0)):
        theta, iters = prox_solve(kind, a, v, c, t)
        assert iters == 0
        np.testing.assert_allclose(theta, a - v / c, rtol=1e-15)


def test_prox_solve_nuclear_scalar_metric():
    rng = np.random.default_rng(7)
    a, v = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    c, tau = 2.0, 0.9
    theta, iters = prox_solve(("nuclear",), a, v, c, tau)
    assert iters == 1
    np.testing.assert_allclose(theta, nuclear_prox(a - v / c, tau / c), atol=1e-15)
    # With a constant metric, one PG step from anywhere is the exact solution.
    z, iters = pg_solve_nuclear(a, v, np.full(a.shape, c), tau, rng.normal(size=a.shape), max_iters=1)
    assert iters == 1
    np.testing.assert_allclose(z, theta, atol=1e-13)
    with pytest.raises(ValueError):
        prox_solve(("nuclear",), a, v, np.full(a.shape, c), tau)  # no closed form for an array metric


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (3, 3, 2, 4)])
def test_pg_solve_nuclear_monotone(shape):
    rng = np.random.default_rng(11)
    a, v, z0 = (rng.normal(size=shape) for _ in range(3))
    p = rng.uniform(0.5, 2.0, size=shape)
    tau = 1.0
    kind = ("nuclear",)
    qs = [subproblem_value(kind, z0, a, v, p, tau)]
    prev = None
    for k in range(1, 11):
        # rtol = 0 stops only on an increase of Q, which PG with step 1/max p never makes.
        z, iters = pg_solve_nuclear(a, v, p, tau, z0, max_iters=k, rtol=0.0)
        assert iters == k
        if prev is not None:  # iterates are a prefix of one sequence
            z_again, _ = pg_solve_nuclear(a, v, p, tau, prev, max_iters=1)
            np.testing.assert_allclose(z, z_again, atol=1e-13)
        qs.append(subproblem_value(kind, z, a, v, p, tau))
        prev = z
    assert np.all(np.diff(qs) <= 1e-12 * (1 + np.abs(qs[1:])))
    assert qs[-1] < qs[0]
    # Default rule stops early; τ = 0 is the closed form.
    _, iters = pg_solve_nuclear(a, v, p, tau, z0)
    assert 2 <= iters <= 5
    z, iters = pg_solve_nuclear(a, v, p, 0.0, z0)
    assert iters == 0
    np.testing.assert_allclose(z, a - v / p, rtol=1e-15)


@pytest.mark.parametrize("shape,axes", CASES)
@pytest.mark.parametrize("eps_t", [1e-1, 1e-4, 1e-8])
def test_pg_condition7_stop(shape, axes, eps_t):
    a, v, p, tau = _problem(shape, axes, 1)
    z0 = np.random.default_rng(2).normal(size=shape)
    kind = ("group", axes)
    theta, iters = pg_solve_condition7(a, v, p, tau, z0, axes, eps_t, max_iters=1000)
    assert 1 <= iters < 1000

    Pm = _to_groups(p, axes)
    two_L = 2 * Pm.max(axis=1)  # L_g + 1/η_g
    screened = np.linalg.norm(_to_groups(p * a - v, axes), axis=1) <= tau * np.sqrt(Pm.shape[1])
    z0_zeroed = _to_groups(z0, axes) * ~screened[:, None]
    q0 = subproblem_value(kind, z0, a, v, p, tau)

    def iterate(j):  # z_j in group layout (z_0 is the warm start with screened groups zeroed)
        return z0_zeroed if j == 0 else _to_groups(
            pg_solve_condition7(a, v, p, tau, z0, axes, eps_t, max_iters=j)[0], axes)

    def stops(z_prev, z):
        R = np.sqrt(np.sum(two_L ** 2 * np.sum((z - z_prev) ** 2, axis=1)))
        return R, R <= eps_t and subproblem_value(kind, _from_groups(z, shape, axes), a, v, p, tau) <= q0

    zs = [iterate(j) for j in range(iters + 1)]
    np.testing.assert_array_equal(zs[-1], _to_groups(theta, axes))
    R, ok = stops(zs[-2], zs[-1])
    assert ok  # both conditions hold at exit ...
    assert not any(stops(zs[j - 1], zs[j])[1] for j in range(1, iters))  # ... and at no earlier j
    # R bounds dist(0, ∂Q(z)), and Q is (min p)-strongly convex: ‖z − θ*‖ ≤ R / min p.
    exact = exact_group_solution(a, v, p, tau, axes)
    assert np.linalg.norm(theta - exact) <= R / p.min() * (1 + 1e-9) + 1e-14


def test_pg_condition7_special_cases():
    a, v, p, tau = _problem((6, 4), (1,), 0)
    theta, iters = pg_solve_condition7(a, v, p, 0.0, a, (1,), 1e-3)
    assert iters == 0
    np.testing.assert_allclose(theta, a - v / p, rtol=1e-15)
    theta, iters = pg_solve_condition7(a, v, p, 1e6, a, (1,), 1e-3)
    assert iters == 0 and np.all(theta == 0)
    _, iters = pg_solve_condition7(a, v, p, tau, a, (1,), 0.0, max_iters=7)
    assert iters == 7


# --------------------------------------------------------------------------
# Reference optimizers
# --------------------------------------------------------------------------
KINDS = {"dense": ("group", (1,)), "conv": ("nuclear",), "l1": ("l1",), "bias": None}


def _params_and_grads(seed, steps):
    rng = np.random.default_rng(seed)
    w = {"dense": rng.normal(size=(6, 4)), "conv": rng.normal(size=(3, 3, 2, 4)),
         "l1": rng.normal(size=(5,)), "bias": rng.normal(size=(4,))}
    grads = [{n: rng.normal(size=x.shape) for n, x in w.items()} for _ in range(steps)]
    return w, grads


def _lr(n):
    return 1e-2 if n < 2 else 5e-3


def test_proxgen_strength0_is_adam():
    w, grads = _params_and_grads(0, 4)
    opt = ProxGen(w, learning_rate=_lr, strength=0.0, kinds=KINDS)
    W = {n: x.copy() for n, x in w.items()}
    m = {n: 0.0 for n in w}
    v = {n: 0.0 for n in w}
    for n, g in enumerate(grads):
        t = n + 1
        for name in W:
            m[name] = 0.9 * m[name] + 0.1 * g[name]
            v[name] = 0.999 * v[name] + 0.001 * g[name] ** 2
            mhat, vhat = m[name] / (1 - 0.9 ** t), v[name] / (1 - 0.999 ** t)
            W[name] = W[name] - _lr(n) * mhat / (np.sqrt(vhat) + 1e-8)
        out = opt.step(g)
        assert opt.iters == {name: 0 for name in w}
        for name in W:
            np.testing.assert_allclose(out[name], W[name], rtol=1e-14, atol=1e-14)
    assert opt.n == 4


def test_proxgen_regularized():
    w, grads = _params_and_grads(1, 3)
    lam = 2.0
    opt = ProxGen(w, learning_rate=0.1, strength=lam, kinds=KINDS)
    # Same method with PG run to convergence: the group leaf is the exact argmin of Q(·; a = W).
    tight = ProxGen(w, learning_rate=0.1, strength=lam, kinds=KINDS, max_iters=3000, rtol=-np.inf)
    m = {n: 0.0 for n in w}
    v = {n: 0.0 for n in w}
    for n, g in enumerate(grads):
        W = {k: x.copy() for k, x in opt.params.items()}
        W_tight = tight.params["dense"].copy()
        out = opt.step(g)
        out_tight = tight.step(g)
        t = n + 1
        for name in w:
            m[name] = 0.9 * m[name] + 0.1 * g[name]
            v[name] = 0.999 * v[name] + 0.001 * g[name] ** 2
        P = np.sqrt(v["dense"] / (1 - 0.999 ** t)) + 1e-8
        lin = 0.1 * m["dense"] / (1 - 0.9 ** t)
        np.testing.assert_allclose(out_tight["dense"],
                                   exact_group_solution(W_tight, lin, P, 0.1 * lam, (1,)), atol=1e-12)
        # ℓ1: elementwise closed form  θ = soft(W − lin/P, τ/P).
        P = np.sqrt(v["l1"] / (1 - 0.999 ** t)) + 1e-8
        lin = 0.1 * m["l1"] / (1 - 0.9 ** t)
        np.testing.assert_allclose(out["l1"], l1_prox(W["l1"] - lin / P, 0.1 * lam / P), atol=1e-15)
        assert opt.iters["l1"] == 1 and opt.iters["bias"] == 0
        assert 1 <= opt.iters["conv"] <= 5 and opt.iters["dense"] >= 1
    assert np.any(np.linalg.norm(out["dense"], axis=1) == 0)  # some input groups are exactly zero


def test_proxssi_strength0_is_hf_adamw():
    w, grads = _params_and_grads(2, 4)
    kinds = {"dense": ("group", (1,)), "l1": ("l1",)}
    opt = ProxSSI(w, learning_rate=_lr, strength=0.0, kinds=kinds)
    W = {n: x.copy() for n, x in w.items()}
    m = {n: 0.0 for n in w}
    v = {n: 0.0 for n in w}
    for n, g in enumerate(grads):
        t = n + 1
        for name in W:  # transformers.AdamW (no weight decay, correct_bias=True, eps 1e-6)
            m[name] = 0.9 * m[name] + 0.1 * g[name]
            v[name] = 0.999 * v[name] + 0.001 * g[name] ** 2
            denom = np.sqrt(v[name]) + 1e-6  # ε on the raw √v
            step_size = _lr(n) * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
            W[name] = W[name] - step_size * m[name] / denom
        out = opt.step(g)
        for name in W:
            np.testing.assert_allclose(out[name], W[name], rtol=1e-14, atol=1e-14)
    with pytest.raises(ValueError):
        ProxSSI(w, learning_rate=0.1, kinds={"conv": ("nuclear",)})


def test_proxssi_weighted_prox_optimality():
    """θ = argmin ½‖θ − y‖²_P + τψ(θ):  P_g(θ_g − y_g) + κ θ_g/‖θ_g‖ = 0, or ‖P_g y_g‖ ≤ κ."""
    w, grads = _params_and_grads(3, 2)
    lam, lr = 0.1, 0.1
    opt = ProxSSI(w, learning_rate=lr, strength=lam, kinds={"dense": ("group", (1,))})
    opt.step(grads[0])
    W = opt.params["dense"].copy()
    out = opt.step(grads[1])["dense"]
    m, v = opt.m["dense"], opt.v2["dense"]
    y = W - lr * np.sqrt(1 - 0.999 ** 2) / (1 - 0.9 ** 2) * m / (np.sqrt(v) + 1e-6)
    P = np.sqrt(v) + 1e-6
    kappa = lr * lam * np.sqrt(W.shape[1])
    norms = np.linalg.norm(out, axis=1)
    assert np.any(norms == 0) and np.any(norms > 0)
    for g in range(W.shape[0]):
        if norms[g] == 0:
            assert np.linalg.norm(P[g] * y[g]) <= kappa
        else:
            res = P[g] * (out[g] - y[g]) + kappa * out[g] / norms[g]
            assert np.max(np.abs(res)) < 1e-12


def test_rmda_closed_form_and_restart():
    w, grads = _params_and_grads(4, 5)
    restarts = (3,)
    # Strength 0, momentum 0: W = θ = W⁰ − V/√k.
    opt = Rmda(w, learning_rate=_lr, momentum=0.0, strength=0.0, kinds=KINDS, restart_steps=restarts)
    W = {n: x.copy() for n, x in w.items()}
    for n, g in enumerate(grads):
        if n in (0,) + restarts:
            W0, V, k = {n_: x.copy() for n_, x in W.items()}, {n_: 0.0 for n_ in W}, 0
        k += 1
        for name in W:
            V[name] = V[name] + _lr(n) * np.sqrt(k) * g[name]
            W[name] = W0[name] - V[name] / np.sqrt(k)
        out = opt.step(g)
        assert opt.iters == {name: 0 for name in w}
        for name in W:
            np.testing.assert_allclose(out[name], W[name], rtol=1e-14, atol=1e-14)
    assert opt.k == 2 and opt.n == 5

    # Regularized, with momentum: θ = prox_{(τ/√k)ψ}(W⁰ − V/√k), τ = αλ;  W ← βW + (1−β)θ.
    lam, beta = 0.3, 0.9
    opt = Rmda(w, learning_rate=0.1, momentum=beta, strength=lam, kinds=KINDS)
    W = {n: x.copy() for n, x in w.items()}
    V, alpha = {n: 0.0 for n in w}, 0.0
    for n, g in enumerate(grads):
        k = n + 1
        s = 0.1 * np.sqrt(k)
        alpha += s
        t = alpha * lam / np.sqrt(k)
        for name in W:
            V[name] = V[name] + s * g[name]
        y = {name: w[name] - V[name] / np.sqrt(k) for name in W}
        theta = {"dense": y["dense"] * np.maximum(0, 1 - t * 2 / np.linalg.norm(y["dense"], axis=1,
                                                                                keepdims=True)),
                 "conv": nuclear_prox(y["conv"], t), "l1": l1_prox(y["l1"], t), "bias": y["bias"]}
        out = opt.step(g)
        for name in W:
            W[name] = beta * W[name] + (1 - beta) * theta[name]
            np.testing.assert_allclose(opt.theta[name], theta[name], rtol=1e-13, atol=1e-14)
            np.testing.assert_allclose(out[name], W[name], rtol=1e-13, atol=1e-14)
        assert opt.iters == {"dense": 1, "conv": 1, "l1": 1, "bias": 0}


def test_proxsgd():
    w, grads = _params_and_grads(5, 4)
    lam = 0.4
    opt = ProxSGD(w, learning_rate=_lr, momentum=0.1, strength=lam, kinds=KINDS)
    W = {n: x.copy() for n, x in w.items()}
    b = {n: 0.0 for n in w}
    for n, g in enumerate(grads):
        lr = _lr(n)
        for name in W:
            b[name] = 0.9 * b[name] + 0.1 * g[name]
        y = {name: W[name] - lr * b[name] for name in W}
        t = lr * lam
        W = {"dense": y["dense"] * np.maximum(0, 1 - t * 2 / np.linalg.norm(y["dense"], axis=1,
                                                                            keepdims=True)),
             "conv": nuclear_prox(y["conv"], t), "l1": l1_prox(y["l1"], t), "bias": y["bias"]}
        out = opt.step(g)
        for name in W:
            np.testing.assert_allclose(out[name], W[name], rtol=1e-13, atol=1e-14)
    # Strength 0: plain SGD with the EMA buffer.
    opt = ProxSGD(w, learning_rate=0.1, momentum=0.5, kinds=KINDS)
    W, b = {n: x.copy() for n, x in w.items()}, {n: 0.0 for n in w}
    for g in grads:
        out = opt.step(g)
        for name in W:
            b[name] = 0.5 * b[name] + 0.5 * g[name]
            W[name] = W[name] - 0.1 * b[name]
            np.testing.assert_allclose(out[name], W[name], rtol=1e-14, atol=1e-14)
