"""Independent float64 NumPy reference for RAMDA (see shared ALGORITHM.md §1-§5).

Numpy only; written for clarity, not speed.  Used by the tests of ramda_optax.

Notation (per leaf):
    Q(θ) = <v, θ - a> + ½ <θ - a, P (θ - a)> + τ Σ_g √|g| ‖θ_g‖₂,   P = diag(p)
A group g is the set of entries sharing the same index on the axes NOT in
`axes` (`axes` are the axes a group norm reduces over; `()` means every entry
is its own group, i.e. plain ℓ1).  κ = τ √|g| is the per-group threshold.
"""

import numpy as np

__all__ = [
    "group_lasso_value",
    "pg_solve",
    "exact_group_solution",
    "Ramda",
    "ramda_trajectory",
]


# --------------------------------------------------------------------------
# Grouping helpers: view a leaf as a (num_groups, group_size) matrix.
# --------------------------------------------------------------------------
def _perm(ndim, axes):
    """Permutation putting the non-reduced axes first, the reduced axes last."""
    axes = tuple(sorted(int(ax) % ndim for ax in axes)) if ndim else ()
    other = tuple(i for i in range(ndim) if i not in axes)
    return other + axes, axes


def _to_groups(x, axes):
    """Reshape x to (G, m): one row per group, m = |g| = prod(shape[axes])."""
    x = np.asarray(x, dtype=np.float64)
    perm, axes = _perm(x.ndim, axes)
    m = int(np.prod([x.shape[i] for i in axes], dtype=np.int64))
    return np.transpose(x, perm).reshape(-1, m)


def _from_groups(y, shape, axes):
    """Inverse of _to_groups."""
    perm, _ = _perm(len(shape), axes)
    y = y.reshape([shape[i] for i in perm])
    return np.transpose(y, np.argsort(perm))


def _group_size(shape, axes):
    _, axes = _perm(len(shape), axes)
    return int(np.prod([shape[i] for i in axes], dtype=np.int64))


# --------------------------------------------------------------------------
# 1. Group lasso value
# --------------------------------------------------------------------------
def group_lasso_value(x, axes):
    """Σ_g √|g| ‖x_g‖₂ (without the strength λ)."""
    xg = _to_groups(x, axes)
    return float(np.sqrt(xg.shape[1]) * np.sum(np.linalg.norm(xg, axis=1)))


def _unregularized_solution(a, v, p):
    """argmin <v, θ-a> + ½<θ-a, P(θ-a)>  =  a - v/p  (entries with p == 0 keep a)."""
    a, v, p = (np.asarray(t, dtype=np.float64) for t in (a, v, p))
    safe_p = np.where(p == 0, 1.0, p)
    return np.where(p == 0, a, a - v / safe_p)


# --------------------------------------------------------------------------
# 2. Inexact proximal-gradient solver (ALGORITHM.md §3)
# --------------------------------------------------------------------------
def pg_solve(a, v, p, tau, z0, axes, max_iters=100, rtol=1e-8):
    """Inexact PG on Q for one leaf.  Returns (theta, iters)."""
    a = np.asarray(a, dtype=np.float64)
    shape = a.shape
    if tau == 0:
        return _unregularized_solution(a, v, p), 0

    A, V, Pm, Z = (_to_groups(t, axes) for t in (a, v, p, z0))
    m = A.shape[1]
    kappa = tau * np.sqrt(m)  # κ = τ √|g|

    # Screening: θ*_g = 0  iff  ‖b_g‖ ≤ κ,  b = P a − v.
    B = Pm * A - V
    active = np.linalg.norm(B, axis=1) > kappa  # (G,)
    if not np.any(active):
        return np.zeros(shape), 0

    # Per-group step η_g = 1 / max_{i∈g} p_i  (0 if that max is 0).
    pmax = Pm.max(axis=1)
    eta = np.where(pmax > 0, 1.0 / np.where(pmax > 0, pmax, 1.0), 0.0)[:, None]

    # Warm start: z_0 = z0 with inactive groups zeroed.
    z = np.where(active[:, None], Z, 0.0)

    def Q_active(z):
        # Σ over ACTIVE groups of [Σ_i v_i d_i + ½ p_i d_i²] + κ ‖z_g‖,  d = z − a.
        d = z - A
        per_group = np.sum(V * d + 0.5 * Pm * d * d, axis=1) + kappa * np.linalg.norm(z, axis=1)
        return float(np.sum(per_group[active]))

    q_prev = None
    j = 0
    while True:
        j += 1
        # Gradient step on the smooth part: y = z − η_g (v + P (z − a)).
        y = z - eta * (V + Pm * (z - A))
        # Group soft-threshold: z = y · max(0, 1 − η_g κ / ‖y_g‖)  (0 if ‖y_g‖ = 0).
        ny = np.linalg.norm(y, axis=1, keepdims=True)
        shrink = np.where(ny > 0, np.maximum(0.0, 1.0 - eta * kappa / np.where(ny > 0, ny, 1.0)), 0.0)
        z = np.where(active[:, None], y * shrink, 0.0)

        q = Q_active(z)
        if j == max_iters:
            break
        if j >= 2 and (q_prev - q) / (abs(q) + 1.0) < rtol:
            break
        q_prev = q
    return _from_groups(z, shape, axes), j


# --------------------------------------------------------------------------
# 3. Exact solution by bisection on r = ‖θ_g‖ (ALGORITHM.md §4)
# --------------------------------------------------------------------------
def exact_group_solution(a, v, p, tau, axes, bisection_steps=200):
    """High-precision argmin Q.

    Non-screened group: θ_i = b_i r / (p_i r + κ), r > 0 the root of the
    decreasing f(r) = Σ_i b_i² / (p_i r + κ)² − 1   (f(0) = ‖b‖²/κ² − 1 > 0).
    """
    a = np.asarray(a, dtype=np.float64)
    shape = a.shape
    if tau == 0:
        return _unregularized_solution(a, v, p)

    A, V, Pm = (_to_groups(t, axes) for t in (a, v, p))
    kappa = tau * np.sqrt(A.shape[1])
    B = Pm * A - V
    theta = np.zeros_like(A)

    for g in range(A.shape[0]):
        b, pg = B[g], Pm[g]
        nb = np.linalg.norm(b)
        if nb <= kappa:  # screened: θ_g = 0
            continue

        def f(r):
            return np.sum(b * b / (pg * r + kappa) ** 2) - 1.0

        # Bracket: f(lo) > 0 ≥ f(hi).  Since p_i r + κ > min(p) r,
        # f(‖b‖/min p) < 0 whenever min p > 0; otherwise (or as a safeguard) double.
        lo = 0.0
        hi = nb / pg.min() if pg.min() > 0 else 1.0
        for _ in range(2000):
            if f(hi) <= 0:
                break
            lo, hi = hi, 2.0 * hi
        else:
            raise ValueError(f"group {g}: Q is unbounded below (no root of f)")

        for _ in range(bisection_steps):
            mid = 0.5 * (lo + hi)
            if mid <= lo or mid >= hi:  # interval at machine precision
                break
            if f(mid) > 0:
                lo = mid
            else:
                hi = mid
        r = 0.5 * (lo + hi)
        theta[g] = b * r / (pg * r + kappa)
    return _from_groups(theta, shape, axes)


# --------------------------------------------------------------------------
# 4. RAMDA simulator (ALGORITHM.md §1, §5)
# --------------------------------------------------------------------------
def _as_schedule(x):
    return x if callable(x) else (lambda n, _x=x: _x)


class Ramda:
    """RAMDA on a dict of leaves (name -> float64 array).

    At global step n (steps already taken; schedules are evaluated at n):
      if n in restart_steps:  k = 0, α = 0, V = U = 0, W⁰ = W
      k += 1;  s = η(n) √k;  α += s;  V += s g;  U += s g²
      ε_n = eps · eps_decay^{#{r ∈ restart_steps : r ≤ n}}
      P = ∛U + ε_n;  τ = α λ(n)
      θ = W⁰ − V/P  (unregularized)  or  pg_solve(W⁰, V, P, τ, z0=W, axes)
      W ← momentum(n) W + (1 − momentum(n)) θ;   n += 1
    """

    def __init__(self, params, learning_rate, momentum, eps=1e-6, strength=0.0,
                 groups=None, restart_steps=(), eps_decay=0.1, max_iters=100, rtol=1e-8):
        self.params = {k: np.array(x, dtype=np.float64) for k, x in params.items()}
        self.learning_rate = _as_schedule(learning_rate)
        self.momentum = _as_schedule(momentum)
        self.strength = _as_schedule(strength)
        self.eps = eps
        self.eps_decay = eps_decay
        self.groups = dict(groups or {})
        self.restart_steps = tuple(restart_steps)
        self.max_iters = max_iters
        self.rtol = rtol
        # State.
        self.n = 0
        self.k = 0
        self.alpha = 0.0
        self.W0 = {k: x.copy() for k, x in self.params.items()}
        self.V = {k: np.zeros_like(x) for k, x in self.params.items()}
        self.U = {k: np.zeros_like(x) for k, x in self.params.items()}
        self.theta = {k: x.copy() for k, x in self.params.items()}
        self.iters = {k: 0 for k in self.params}

    def step(self, grads):
        n = self.n
        if n in self.restart_steps:  # dual-averaging restart
            self.k, self.alpha = 0, 0.0
            self.W0 = {k: x.copy() for k, x in self.params.items()}
            self.V = {k: np.zeros_like(x) for k, x in self.params.items()}
            self.U = {k: np.zeros_like(x) for k, x in self.params.items()}

        self.k += 1
        s = self.learning_rate(n) * np.sqrt(self.k)
        self.alpha += s
        eps_n = self.eps * self.eps_decay ** sum(1 for r in self.restart_steps if r <= n)
        tau = self.alpha * self.strength(n)
        beta = self.momentum(n)

        new_params, theta, iters = {}, {}, {}
        for name, W in self.params.items():
            g = np.asarray(grads[name], dtype=np.float64)
            self.V[name] = self.V[name] + s * g
            self.U[name] = self.U[name] + s * g * g
            P = np.cbrt(self.U[name]) + eps_n
            axes = self.groups.get(name)
            if axes is None:
                theta[name], iters[name] = _unregularized_solution(self.W0[name], self.V[name], P), 0
            else:
                theta[name], iters[name] = pg_solve(self.W0[name], self.V[name], P, tau, W, axes,
                                                    self.max_iters, self.rtol)
            new_params[name] = beta * W + (1.0 - beta) * theta[name]

        self.params, self.theta, self.iters = new_params, theta, iters
        self.n += 1
        return {k: x.copy() for k, x in new_params.items()}


def ramda_trajectory(params, grads_seq, **kwargs):
    """Run Ramda over a sequence of grads dicts (or a callable params -> grads
    together with kwarg `num_steps`).  Returns a list of per-step dicts
    {"params", "theta", "iters"}."""
    num_steps = kwargs.pop("num_steps", None)
    opt = Ramda(params, **kwargs)
    out = []
    steps = range(num_steps) if callable(grads_seq) else grads_seq
    for item in steps:
        grads = grads_seq(opt.params) if callable(grads_seq) else item
        p = opt.step(grads)
        out.append({"params": p, "theta": {k: x.copy() for k, x in opt.theta.items()},
                    "iters": dict(opt.iters)})
    return out
