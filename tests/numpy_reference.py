"""Float64 NumPy reference for RAMDA (Huang & Lee, NeurIPS 2024) and its baselines.

Numpy only; written for clarity, not speed.  Used by the tests of ramda_optax.

Notation (per leaf):
    Q(θ) = <v, θ - a> + ½ <θ - a, P (θ - a)> + τ Σ_g √|g| ‖θ_g‖₂,   P = diag(p)
A group g is the set of entries sharing the same index on the axes NOT in
`axes` (`axes` are the axes a group norm reduces over; `()` means every entry
is its own group, i.e. plain ℓ1).  κ = τ √|g| is the per-group threshold.

Sections 5-8 add the ℓ1 and nuclear-norm regularizers ("kinds"), closed-form
and PG solvers for them, the condition-(7) stop rule, and the paper's
baselines (RMDA, ProxGen, ProxSSI, ProxSGD).

What agreement with this module shows
-------------------------------------
It is written from the same specification as the library (the paper), not
from the library's code, group by group in NumPy.  Agreement to 1e-9
and in iteration counts therefore catches slips of implementation (an index,
a sign, a missing term, a schedule read at the wrong step), but not a
misreading of the specification: where the paper leaves a choice open, this
module makes the library's choice, and the tests that compare the two cannot
tell whether that choice is right.  The shared choices:

* Schedule indexing (Algorithm 1; App. A.1): the step taken after n steps
  uses η(n), λ(n) and the momentum at n (a schedule is read at the count of
  steps already taken, optax's convention); the paper's step t is n + 1.
* Dual-averaging weights (Algorithm 1): s = η(n) √k, with k counting the
  steps since the last restart; τ = α λ(n), α = Σ s since the last restart.
* Restart indexing (App. A.1): a restart at step r takes effect at the step
  with n = r: k, α, V (and U) are zeroed and W⁰ = W before that step adds its
  gradient, and ε is multiplied by γ from that step on,
  ε_n = ε γ^{#{r ≤ n}}.
* Momentum ramp (App. A.1): the j-th step of the last stage (j = 1 at the
  last milestone) averages with weight c_j = min(c √j, 1); the momentum
  passed here is the decay 1 − c.
* ε placement (Algorithm 1; the baselines' papers): RAMDA's P = ∛U + ε (not
  ε added to the learning rate, as optax's MADGRAD does); ProxGen's
  P = √(v/(1 − β₂ᵗ)) + ε; ProxSSI's ε on the raw √v, with the bias
  correction in the step size.
* Screening ties (Section 3, after Deleu & Bengio 2021): a group with
  ‖P a − v‖ = τ √|g| exactly is screened (zero iff ≤).
* The PG iteration (Algorithm 2): per-group step 1/max_{i∈g} P_i (one step
  for the whole leaf with the nuclear norm, which is not screened), warm
  start at the current W with the screened groups zeroed; without
  regularization, a coordinate with P = 0 stays at the anchor.
* The PG stopping rule of the experiments (App. A.1): tested after every
  iteration from the second on, (Q_{j−1} − Q_j)/(|Q_j| + 1) < rtol with Q
  summed over the non-screened groups only; max_iters caps the count.
* Condition (7) (Section 3): tested from the first iteration; the residual
  is sqrt(Σ_g (L_g + 1/η_g)² ‖z_j − z_{j−1}‖²_g) with L_g = max P over the
  group (one constant per group, not one for the leaf); ε_t = ε₀ / t^0.51
  with t the 1-based global step count (not reset at restarts); Q(z_j) over
  every group (a screened group contributes Q at 0) against Q at the warm
  start as given (its screened groups not zeroed).
* Iteration counts: the iterations (or Newton passes) run, 0 when τ = 0 or
  every group is screened.  A closed-form prox counts 1 (the library's
  too, ℓ1's included).  ProxSSI's Newton passes are
  not modelled (its counts are checked against its solution's zero groups).
* The nuclear norm's matrix view: the leading axes flattened, the last kept.
* ProxSGD's momentum: here the paper's weight m on the new gradient, the
  library's the decay 1 − m.

The oracles that share nothing with the library, and where they are used:

* optax.contrib.madgrad: RAMDA with λ = 0 follows it to float32 rounding
  (tests/test_optimizers.py, test_unregularized_equals_optax_madgrad).
* Optimality conditions: the prox, screening and subproblem solutions
  satisfy their KKT conditions on random shapes, groupings, strengths and
  metrics (tests/test_properties.py, tests/test_regularizers.py), and so do
  this module's solutions (tests/test_numpy_reference.py, condition (7)'s
  distance bound included).
* High-precision solves: exact_group_solution below (bisection on the group
  radius to machine precision) is the target of PG run to convergence, of
  the Newton solver and of screening (tests/test_solvers.py,
  tests/test_regularizers.py, tests/test_numpy_reference.py); a NumPy
  proximal-gradient solve of a least-squares group lasso gives the zero
  pattern that θ̂ must identify (tests/test_identification.py).
* Formulas written out by hand, step by step, for Adam, Hugging Face's
  AdamW, MADGRAD's closed form, RMDA and ProxSGD
  (tests/test_numpy_reference.py).
"""

import numpy as np

__all__ = [
    "group_lasso_value",
    "pg_solve",
    "exact_group_solution",
    "Ramda",
    "ramda_trajectory",
    # Regularizer kinds (section 5 below).
    "check_kind",
    "matrix_view",
    "l1_value",
    "nuclear_value",
    "regularizer_value",
    "subproblem_value",
    "l1_prox",
    "group_prox",
    "nuclear_prox",
    "prox_solve",
    "pg_solve_nuclear",
    "pg_solve_condition7",
    # Reference optimizers (section 6 below).
    "Rmda",
    "ProxGen",
    "ProxSSI",
    "ProxSGD",
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
# 2. Inexact proximal-gradient solver (the paper's Algorithm 2)
# --------------------------------------------------------------------------
def pg_solve(a, v, p, tau, z0, axes, max_iters=100, rtol=1e-8, unit=1.0):
    """Inexact PG on Q for one leaf.  Returns (theta, iters).

    Stops once (Q_prev − Q)/(|Q| + unit) < rtol; unit is 1 for a leaf and a
    block's fraction of its leaf for a block."""
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
        if j >= 2 and (q_prev - q) / (abs(q) + unit) < rtol:
            break
        q_prev = q
    return _from_groups(z, shape, axes), j


# --------------------------------------------------------------------------
# 3. Exact solution by bisection on r = ‖θ_g‖
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
# 4. RAMDA simulator (Algorithm 1 and the stage-wise schedule, App. A.1)
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
      θ = W⁰ − V/P                                      unregularized
          pg_solve(W⁰, V, P, τ, z0=W, axes)              group (`groups`)
          prox_solve(("l1",), W⁰, V, P, τ)               ℓ1 (elementwise closed form)
          pg_solve_nuclear(W⁰, V, P, τ, z0=W, ...)       nuclear
      W ← momentum(n) W + (1 − momentum(n)) θ;   n += 1

    With solver="exact" a group leaf's θ is exact_group_solution (its
    iteration count is reported as None) and the nuclear PG starts at the
    previous θ instead of W.

    Leaves are regularized through `groups` (name -> axes, group lasso) or
    `kinds` (name -> kind, section 5 below); a leaf may not be in both.
    """

    def __init__(self, params, learning_rate, momentum, eps=1e-6, strength=0.0,
                 groups=None, restart_steps=(), eps_decay=0.1, max_iters=100, rtol=1e-8,
                 kinds=None, nuclear_max_iters=5, nuclear_rtol=1e-3, solver="pg"):
        if solver not in ("pg", "exact"):
            raise ValueError(f"solver must be 'pg' or 'exact'; got {solver!r}")
        self.solver = solver
        self.params = {k: np.array(x, dtype=np.float64) for k, x in params.items()}
        self.learning_rate = _as_schedule(learning_rate)
        self.momentum = _as_schedule(momentum)
        self.strength = _as_schedule(strength)
        self.eps = eps
        self.eps_decay = eps_decay
        self.groups = dict(groups or {})
        both = set(self.groups) & set(kinds or {})
        if both:
            raise ValueError(f"leaves given both groups and kinds: {sorted(both)}")
        self.kinds = {k: kind for k, kind in _kinds(self.params, kinds).items()
                      if kind is not None}
        self.restart_steps = tuple(restart_steps)
        self.max_iters = max_iters
        self.rtol = rtol
        self.nuclear_max_iters = nuclear_max_iters
        self.nuclear_rtol = nuclear_rtol
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
            kind = self.kinds.get(name)
            exact = self.solver == "exact"
            if axes is not None and exact:
                theta[name] = exact_group_solution(self.W0[name], self.V[name], P, tau, axes)
                iters[name] = None
            elif axes is not None:
                theta[name], iters[name] = pg_solve(self.W0[name], self.V[name], P, tau, W, axes,
                                                    self.max_iters, self.rtol)
            elif kind is None:
                theta[name], iters[name] = _unregularized_solution(self.W0[name], self.V[name], P), 0
            elif kind[0] == "l1":
                theta[name], iters[name] = prox_solve(kind, self.W0[name], self.V[name], P, tau)
            elif kind[0] == "nuclear":
                theta[name], iters[name] = pg_solve_nuclear(
                    self.W0[name], self.V[name], P, tau, self.theta[name] if exact else W,
                    self.nuclear_max_iters, self.nuclear_rtol)
            else:
                theta[name], iters[name] = pg_solve(self.W0[name], self.V[name], P, tau, W, kind[1],
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


# --------------------------------------------------------------------------
# 5. Regularizer kinds, their values and scalar-metric proxes
#
# A leaf's "kind" is one of
#     None                 unregularized
#     ("group", axes)      group lasso  ψ(θ) = Σ_g √|g| ‖θ_g‖₂   (groups as above)
#     ("l1",)              ℓ1           ψ(θ) = Σ_i |θ_i|
#     ("nuclear",)         nuclear norm ψ(θ) = Σ_i σ_i(mat(θ))
# where mat(θ) = θ.reshape(-1, θ.shape[-1]) (leading axes flattened, last axis
# kept: Dense (I, O) -> (I, O), Conv (H, W, I, O) -> (H·W·I, O)).  The strength
# λ is NOT part of ψ; it enters through τ.
# --------------------------------------------------------------------------
_KIND_NAMES = ("group", "l1", "nuclear")


def check_kind(kind):
    """Validate a kind; returns it unchanged (None, ("group", axes), ("l1",), ("nuclear",))."""
    if kind is None:
        return None
    if not isinstance(kind, tuple) or not kind or kind[0] not in _KIND_NAMES:
        raise ValueError(f"unknown regularizer kind {kind!r}")
    if kind[0] == "group" and len(kind) != 2:
        raise ValueError(f"group kind must be ('group', axes), got {kind!r}")
    if kind[0] in ("l1", "nuclear") and len(kind) != 1:
        raise ValueError(f"kind {kind!r} takes no arguments")
    return kind


def matrix_view(x):
    """mat(x) = x.reshape(-1, x.shape[-1])."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0:
        raise ValueError("the nuclear norm needs a leaf with at least one axis")
    return x.reshape(-1, x.shape[-1])


def l1_value(x):
    """Σ_i |x_i| (without λ)."""
    return float(np.sum(np.abs(np.asarray(x, dtype=np.float64))))


def nuclear_value(x):
    """Σ_i σ_i(mat(x)) (without λ)."""
    return float(np.sum(np.linalg.svd(matrix_view(x), compute_uv=False)))


def regularizer_value(kind, x):
    """ψ(x) for a kind (0 for None)."""
    kind = check_kind(kind)
    if kind is None:
        return 0.0
    if kind[0] == "group":
        return group_lasso_value(x, kind[1])
    if kind[0] == "l1":
        return l1_value(x)
    return nuclear_value(x)


def subproblem_value(kind, theta, a, v, p, tau):
    """Q(θ) = <v, θ−a> + ½<θ−a, P(θ−a)> + τ ψ(θ), summed over the whole leaf.

    p may be a scalar (P = p·I) or an array of the leaf's shape (P = diag(p)).
    """
    theta, a, v, p = (np.asarray(t, dtype=np.float64) for t in (theta, a, v, p))
    d = theta - a
    smooth = float(np.sum(v * d + 0.5 * p * d * d))
    return smooth + (float(tau) * regularizer_value(kind, theta) if tau != 0 else 0.0)


def l1_prox(y, t):
    """Soft threshold: argmin_θ ½‖θ − y‖² + Σ_i t_i |θ_i|, i.e. sign(y)·max(|y| − t, 0).

    t may be a scalar or an array broadcastable to y.
    """
    y = np.asarray(y, dtype=np.float64)
    return np.sign(y) * np.maximum(np.abs(y) - np.asarray(t, dtype=np.float64), 0.0)


def group_prox(y, t, axes):
    """argmin_θ ½‖θ − y‖² + t Σ_g √|g| ‖θ_g‖:  θ_g = y_g · max(0, 1 − κ/‖y_g‖),  κ = t √|g|.

    (θ_g = 0 when ‖y_g‖ = 0.)  t is a scalar.
    """
    y = np.asarray(y, dtype=np.float64)
    Y = _to_groups(y, axes)
    kappa = float(t) * np.sqrt(Y.shape[1])
    ny = np.linalg.norm(Y, axis=1, keepdims=True)
    shrink = np.where(ny > 0, np.maximum(0.0, 1.0 - kappa / np.where(ny > 0, ny, 1.0)), 0.0)
    return _from_groups(Y * shrink, y.shape, axes)


def nuclear_prox(y, t):
    """argmin_θ ½‖θ − y‖² + t ‖mat(θ)‖_*  (SVD soft-threshold), reshaped back to y's shape.

    mat(y) = U diag(σ) Vᵀ  ->  mat(θ) = U diag(max(σ − t, 0)) Vᵀ.  t is a scalar.
    """
    y = np.asarray(y, dtype=np.float64)
    U, s, Vt = np.linalg.svd(matrix_view(y), full_matrices=False)
    return ((U * np.maximum(s - float(t), 0.0)) @ Vt).reshape(y.shape)


def _scalar_prox(kind, y, t):
    """prox of t·ψ for a kind at y (identity for None)."""
    if kind is None:
        return np.asarray(y, dtype=np.float64)
    if kind[0] == "group":
        return group_prox(y, t, kind[1])
    if kind[0] == "l1":
        return l1_prox(y, t)
    return nuclear_prox(y, t)


def prox_solve(kind, a, v, p, tau):
    """Closed-form argmin Q.  Returns (theta, iters).

    * scalar p (Python float or 0-d), any kind: completing the square,
          Q(θ) = (p/2) ‖θ − y‖² + τ ψ(θ) + const,   y = a − v/p,
      so θ = prox_{(τ/p) ψ}(y): group soft-threshold with κ = (τ/p)√|g|,
      soft threshold by τ/p for ℓ1, SVD soft-threshold by τ/p for nuclear.
    * array p (any diagonal metric), kind ℓ1 only: Q separates per entry,
          θ_i = soft(a_i − v_i/p_i, τ/p_i).
    iters = 1 for a regularized leaf with τ > 0, else 0 (and then θ = a − v/p).
    """
    kind = check_kind(kind)
    a = np.asarray(a, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if kind is None or tau == 0:
        return _unregularized_solution(a, v, np.broadcast_to(p, a.shape)), 0
    if np.any(p <= 0):
        raise ValueError("prox_solve needs a positive metric p")
    if p.ndim != 0 and kind[0] != "l1":
        raise ValueError(f"prox_solve: kind {kind[0]!r} has a closed form only for a scalar p")
    y = a - np.asarray(v, dtype=np.float64) / p
    return _scalar_prox(kind, y, tau / p), 1


# --------------------------------------------------------------------------
# 6. PG for the nuclear norm (one global step, SVD soft-thresholding)
# --------------------------------------------------------------------------
def pg_solve_nuclear(a, v, p, tau, z0, max_iters=5, rtol=1e-3):
    """Inexact PG on Q with ψ = nuclear norm, P = diag(p).  Returns (theta, iters).

    One global step η = 1/max(p) (0 if max p == 0); no screening.
      z_0 = z0;  z_j = nuclear_prox(z_{j−1} − η (v + p (z_{j−1} − a)), η τ);  Q_j = Q(z_j)
    stop after iteration j if j == max_iters or (j ≥ 2 and (Q_{j−1} − Q_j)/(|Q_j| + 1) < rtol).
    τ == 0: θ = a − v/p (a where p == 0), 0 iterations.
    """
    a = np.asarray(a, dtype=np.float64)
    v, p = (np.broadcast_to(np.asarray(t, dtype=np.float64), a.shape) for t in (v, p))
    if tau == 0:
        return _unregularized_solution(a, v, p), 0
    pmax = float(np.max(p))
    eta = 1.0 / pmax if pmax > 0 else 0.0
    kind = ("nuclear",)

    z = np.array(z0, dtype=np.float64)
    q_prev = None
    j = 0
    while True:
        j += 1
        z = nuclear_prox(z - eta * (v + p * (z - a)), eta * tau)
        q = subproblem_value(kind, z, a, v, p, tau)
        if j == max_iters:
            break
        if j >= 2 and (q_prev - q) / (abs(q) + 1.0) < rtol:
            break
        q_prev = q
    return z, j


# --------------------------------------------------------------------------
# 7. Group-lasso PG with the paper's theoretical stop rule, condition (7) (§3.6)
# --------------------------------------------------------------------------
def pg_solve_condition7(a, v, p, tau, z0, axes, eps_t, max_iters=100):
    """Group-lasso PG as pg_solve (screening, η_g = 1/max p_g, warm start z0 with
    screened groups zeroed, same iteration map, same τ == 0 / all-screened early
    returns with 0 iterations), stopped by condition (7).  Returns (theta, iters).

    After iteration j, with Δ = z_j − z_{j−1} and L_g = max_{i∈g} p_i,
        R_j = sqrt( Σ_g (L_g + 1/η_g)² ‖Δ_g‖² ) = sqrt( Σ_g (2 L_g)² ‖Δ_g‖² );
    stop when R_j ≤ eps_t and Qfull(z_j) ≤ Qfull(z0), or when j == max_iters.
    Qfull is Q over ALL groups (screened ones included) and z0 is the warm start
    as given (not zeroed).
    """
    if max_iters < 1:
        raise ValueError("max_iters must be >= 1")
    a = np.asarray(a, dtype=np.float64)
    shape = a.shape
    if tau == 0:
        return _unregularized_solution(a, v, p), 0

    A, V, Pm, Z = (_to_groups(t, axes) for t in (a, v, p, z0))
    m = A.shape[1]
    kappa = tau * np.sqrt(m)  # κ = τ √|g|

    # Screening: θ*_g = 0  iff  ‖P_g a_g − v_g‖ ≤ κ.
    active = np.linalg.norm(Pm * A - V, axis=1) > kappa
    if not np.any(active):
        return np.zeros(shape), 0

    # L_g = max_{i∈g} p_i;  η_g = 1/L_g (0 if L_g == 0);  L_g + 1/η_g = 2 L_g.
    L = Pm.max(axis=1)
    eta = np.where(L > 0, 1.0 / np.where(L > 0, L, 1.0), 0.0)[:, None]
    weight = 2.0 * L  # (L_g + 1/η_g), taken as 0 when L_g == 0 (then Δ_g == 0 anyway)

    def Q_full(zg):
        # Q over every group of the leaf, in group layout.
        d = zg - A
        return float(np.sum(V * d + 0.5 * Pm * d * d) + kappa * np.sum(np.linalg.norm(zg, axis=1)))

    q_start = Q_full(Z)  # Q(W^{t−1}) at the given warm start, NOT zeroed

    z = np.where(active[:, None], Z, 0.0)
    j = 0
    while True:
        j += 1
        y = z - eta * (V + Pm * (z - A))
        ny = np.linalg.norm(y, axis=1, keepdims=True)
        shrink = np.where(ny > 0, np.maximum(0.0, 1.0 - eta * kappa / np.where(ny > 0, ny, 1.0)), 0.0)
        z_new = np.where(active[:, None], y * shrink, 0.0)

        delta = z_new - z
        R = np.sqrt(np.sum(weight ** 2 * np.sum(delta * delta, axis=1)))
        z = z_new
        if j == max_iters:
            break
        if R <= eps_t and Q_full(z) <= q_start:
            break
    return _from_groups(z, shape, axes), j


# --------------------------------------------------------------------------
# 8. Reference optimizers with regularizer kinds (the paper's baselines)
#
# Each takes params (dict name -> array), kinds (dict name -> kind or None;
# missing names are unregularized), has .params, .iters (name -> int, 0 for
# unregularized leaves), .n (steps taken) and step(grads) -> new params dict.
# Schedules are floats or callables of n (steps already taken), evaluated at n.
# --------------------------------------------------------------------------
def _copy(d):
    return {k: np.array(x, dtype=np.float64) for k, x in d.items()}


def _kinds(params, kinds):
    kinds = dict(kinds or {})
    unknown = set(kinds) - set(params)
    if unknown:
        raise ValueError(f"kinds for unknown leaves: {sorted(unknown)}")
    return {name: check_kind(kinds.get(name)) for name in params}


class Rmda:
    """RMDA: RAMDA's dual averaging with the scalar metric P = √k (no U, no ε).

    At step n:
      if n in restart_steps:  k = 0, α = 0, V = 0, W⁰ = W
      k += 1;  s = η(n) √k;  α += s;  V += s g;  τ = α λ(n)
      θ = prox_solve(kind, W⁰, V, √k, τ)        (unregularized: W⁰ − V/√k)
      W ← momentum(n) W + (1 − momentum(n)) θ;   n += 1
    """

    def __init__(self, params, learning_rate, momentum, strength=0.0, kinds=None, restart_steps=()):
        self.params = _copy(params)
        self.learning_rate = _as_schedule(learning_rate)
        self.momentum = _as_schedule(momentum)
        self.strength = _as_schedule(strength)
        self.kinds = _kinds(self.params, kinds)
        self.restart_steps = tuple(restart_steps)
        self.n = 0
        self.k = 0
        self.alpha = 0.0
        self.W0 = _copy(self.params)
        self.V = {k: np.zeros_like(x) for k, x in self.params.items()}
        self.theta = _copy(self.params)
        self.iters = {k: 0 for k in self.params}

    def step(self, grads):
        n = self.n
        if n in self.restart_steps:  # dual-averaging restart
            self.k, self.alpha = 0, 0.0
            self.W0 = _copy(self.params)
            self.V = {k: np.zeros_like(x) for k, x in self.params.items()}

        self.k += 1
        s = self.learning_rate(n) * np.sqrt(self.k)
        self.alpha += s
        tau = self.alpha * self.strength(n)
        beta = self.momentum(n)
        P = float(np.sqrt(self.k))  # scalar metric √k

        new_params, theta, iters = {}, {}, {}
        for name, W in self.params.items():
            g = np.asarray(grads[name], dtype=np.float64)
            self.V[name] = self.V[name] + s * g
            theta[name], iters[name] = prox_solve(self.kinds[name], self.W0[name], self.V[name], P, tau)
            new_params[name] = beta * W + (1.0 - beta) * theta[name]

        self.params, self.theta, self.iters = new_params, theta, iters
        self.n += 1
        return _copy(new_params)


class _AdamMoments:
    """Shared state of the Adam-based references, and their moments
    m ← b1 m + (1−b1) g,  v2 ← b2 v2 + (1−b2) g²."""

    def __init__(self, params, learning_rate, b1, b2, eps, strength, kinds):
        self.params = _copy(params)
        self.learning_rate = _as_schedule(learning_rate)
        self.strength = _as_schedule(strength)
        self.eps = float(eps)
        self.kinds = _kinds(self.params, kinds)
        self.b1, self.b2 = float(b1), float(b2)
        self.m = {k: np.zeros_like(x) for k, x in self.params.items()}
        self.v2 = {k: np.zeros_like(x) for k, x in self.params.items()}
        self.n = 0
        self.iters = {k: 0 for k in self.params}

    def _update_moments(self, name, g):
        self.m[name] = self.b1 * self.m[name] + (1.0 - self.b1) * g
        self.v2[name] = self.b2 * self.v2[name] + (1.0 - self.b2) * g * g


class ProxGen(_AdamMoments):
    """ProxGen (ProxAdamW) with the inexact PG solver (or, with
    solver="exact", the exact group solution).

    At step n (t = n + 1), per leaf:
      m, v2 Adam moments;  lin = η(n) m/(1 − b1^t);  P = sqrt(v2/(1 − b2^t)) + eps
      τ = η(n) λ(n);  anchor a = W;  warm start z0 = W
      θ = pg_solve(a, lin, P, τ, W, axes)          group (solver="pg")
          exact_group_solution(a, lin, P, τ, axes)  group (solver="exact")
          prox_solve(("l1",), a, lin, P, τ)         ℓ1 (elementwise closed form)
          pg_solve_nuclear(a, lin, P, τ, W, ...)    nuclear
          a − lin/P                                 unregularized
      W ← θ
    """

    def __init__(self, params, learning_rate, b1=0.9, b2=0.999, eps=1e-8, strength=0.0, kinds=None,
                 max_iters=100, rtol=1e-8, nuclear_max_iters=5, nuclear_rtol=1e-3,
                 solver="pg"):
        super().__init__(params, learning_rate, b1, b2, eps, strength, kinds)
        if solver not in ("pg", "exact"):
            raise ValueError(f"solver must be 'pg' or 'exact', got {solver!r}")
        self.solver = solver
        self.max_iters, self.rtol = max_iters, rtol
        self.nuclear_max_iters, self.nuclear_rtol = nuclear_max_iters, nuclear_rtol

    def step(self, grads):
        n = self.n
        t = n + 1
        lr = self.learning_rate(n)
        tau = lr * self.strength(n)

        new_params, iters = {}, {}
        for name, W in self.params.items():
            g = np.asarray(grads[name], dtype=np.float64)
            self._update_moments(name, g)
            lin = lr * self.m[name] / (1.0 - self.b1 ** t)
            P = np.sqrt(self.v2[name] / (1.0 - self.b2 ** t)) + self.eps
            kind = self.kinds[name]
            if kind is None:
                theta, it = _unregularized_solution(W, lin, P), 0
            elif kind[0] == "group" and self.solver == "exact":
                theta, it = exact_group_solution(W, lin, P, tau, kind[1]), 0
            elif kind[0] == "group":
                theta, it = pg_solve(W, lin, P, tau, W, kind[1], self.max_iters, self.rtol)
            elif kind[0] == "l1":
                theta, it = prox_solve(kind, W, lin, P, tau)
            else:
                theta, it = pg_solve_nuclear(W, lin, P, tau, W, self.nuclear_max_iters, self.nuclear_rtol)
            new_params[name], iters[name] = theta, it

        self.params, self.iters = new_params, iters
        self.n += 1
        return _copy(new_params)


class ProxSSI(_AdamMoments):
    """ProxSSI: the authors' AdamW step (no weight decay), then the exact weighted prox.

    At step n (t = n + 1), per leaf:
      m, v2 Adam moments
      Δ = η(n) sqrt(1 − b2^t)/(1 − b1^t) · m / (sqrt(v2) + eps);   y = W − Δ
        (eps on the raw sqrt(v2), bias correction in the step size, as in
        Deleu & Bengio's optimizer)
      P = sqrt(v2) + eps   (raw second moment, no bias correction);  τ = η(n) λ(n)
      θ = argmin ½‖θ − y‖²_P + τ ψ(θ)
        = argmin <P Δ, θ − W> + ½<θ − W, P(θ − W)> + τ ψ(θ)      (Q with a = W, v = P Δ)
      group: exact_group_solution(W, P Δ, P, τ, axes);  ℓ1: prox_solve (elementwise);
      unregularized: y;  nuclear: not supported.
      W ← θ.  iters are not tracked (always 0).
    """

    def __init__(self, params, learning_rate, b1=0.9, b2=0.999, eps=1e-6, strength=0.0, kinds=None):
        super().__init__(params, learning_rate, b1, b2, eps, strength, kinds)
        for name, kind in self.kinds.items():
            if kind is not None and kind[0] == "nuclear":
                raise ValueError(f"ProxSSI does not support the nuclear norm (leaf {name!r})")

    def step(self, grads):
        n = self.n
        t = n + 1
        lr = self.learning_rate(n)
        tau = lr * self.strength(n)

        new_params = {}
        for name, W in self.params.items():
            g = np.asarray(grads[name], dtype=np.float64)
            self._update_moments(name, g)
            step_size = lr * np.sqrt(1.0 - self.b2 ** t) / (1.0 - self.b1 ** t)
            delta = step_size * self.m[name] / (np.sqrt(self.v2[name]) + self.eps)
            P = np.sqrt(self.v2[name]) + self.eps
            kind = self.kinds[name]
            if kind is None or tau == 0:
                theta = W - delta
            elif kind[0] == "group":
                theta = exact_group_solution(W, P * delta, P, tau, kind[1])
            else:  # ℓ1
                theta, _ = prox_solve(kind, W, P * delta, P, tau)
            new_params[name] = theta

        self.params = new_params
        self.n += 1
        return _copy(new_params)


class ProxSGD:
    """Proximal SGD with an EMA momentum buffer.

    At step n, per leaf:  μ = momentum(n);  b ← (1 − μ) b + μ g  (b starts at 0)
      θ = prox_solve(kind, W, η(n) b, 1.0, η(n) λ(n))  = prox_{ηλψ}(W − η b)
      W ← θ
    """

    def __init__(self, params, learning_rate, momentum=0.1, strength=0.0, kinds=None):
        self.params = _copy(params)
        self.learning_rate = _as_schedule(learning_rate)
        self.momentum = _as_schedule(momentum)
        self.strength = _as_schedule(strength)
        self.kinds = _kinds(self.params, kinds)
        self.buf = {k: np.zeros_like(x) for k, x in self.params.items()}
        self.n = 0
        self.iters = {k: 0 for k in self.params}

    def step(self, grads):
        n = self.n
        lr = self.learning_rate(n)
        mu = self.momentum(n)
        tau = lr * self.strength(n)

        new_params, iters = {}, {}
        for name, W in self.params.items():
            g = np.asarray(grads[name], dtype=np.float64)
            self.buf[name] = (1.0 - mu) * self.buf[name] + mu * g
            new_params[name], iters[name] = prox_solve(self.kinds[name], W, lr * self.buf[name], 1.0, tau)

        self.params, self.iters = new_params, iters
        self.n += 1
        return _copy(new_params)
