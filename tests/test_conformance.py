"""The optax conformance battery, run for every optimizer of the package.

Each optimizer must behave like any optax transformation: ignore extra
keyword arguments, keep a state whose structure and dtypes survive jit,
``lax.cond`` and ``eval_shape``, and compose with ``inject_hyperparams``,
``MultiSteps`` and ``apply_if_finite``. The end of the file pins the
behaviour with non-finite gradients documented in
:mod:`ramda_optax.debugging`, and tests that module's helpers.
"""

import collections
import functools
import os
import select
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

import ramda_optax as ro
from tests.problems import GROUPS, quadratic

LR = 0.1
STRENGTH = 0.05
NUM_STEPS = 4

_group_lasso = lambda: ro.group_lasso(STRENGTH, GROUPS)

# Factories of the learning rate (so that inject_hyperparams can wrap them).
FACTORIES = {
    "ramda_pg": lambda learning_rate: ro.ramda(
        learning_rate, regularizer=_group_lasso(), solver=ro.pg_solver()
    ),
    "ramda_exact": lambda learning_rate: ro.ramda(
        learning_rate, regularizer=_group_lasso(), solver=ro.exact_solver()
    ),
    "ramda_noreg": lambda learning_rate: ro.ramda(learning_rate),
    "rmda": lambda learning_rate: ro.rmda(
        learning_rate, regularizer=_group_lasso()
    ),
    "proxgen": lambda learning_rate: ro.proxgen(
        learning_rate, regularizer=_group_lasso()
    ),
    "prox_ssi": lambda learning_rate: ro.prox_ssi(
        learning_rate, regularizer=_group_lasso()
    ),
    "prox_sgd": lambda learning_rate: ro.prox_sgd(
        learning_rate, regularizer=_group_lasso()
    ),
    "ramda_l1": lambda learning_rate: ro.ramda(
        learning_rate,
        regularizer=ro.l1(
            STRENGTH, {"dense": True, "conv": True, "bias": False}
        ),
    ),
    "ramda_nuclear": lambda learning_rate: ro.ramda(
        learning_rate,
        regularizer=ro.nuclear_norm(STRENGTH),
        solver=ro.pg_solver(max_iters=5, rtol=1e-3),
    ),
}
NAMES = sorted(FACTORIES)

# Traces of the shared jitted steps, over the whole session.
TRACES = collections.Counter()


@functools.cache
def _optimizer(name):
  return FACTORIES[name](LR)


@functools.cache
def _step(name):
  """The optimizer's jitted update, shared by the tests (one compilation)."""
  opt = _optimizer(name)

  @jax.jit
  def step(grads, state, params):
    TRACES[name] += 1  # a Python side effect: runs only when tracing
    return opt.update(grads, state, params)

  return step


def _problem(seed=0):
  """float32 params (Dense kernel, Conv kernel, bias) and a gradient oracle."""
  init, grad_fn = quadratic(seed=seed, num_steps=3 * NUM_STEPS)
  params = {k: jnp.asarray(v, jnp.float32) for k, v in init.items()}
  grads = lambda p, n: {
      k: jnp.asarray(g, jnp.float32) for k, g in grad_fn(p, n).items()
  }
  return params, grads


def _assert_bitwise_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    x, y = np.asarray(x), np.asarray(y)
    assert x.dtype == y.dtype and x.shape == y.shape
    assert x.tobytes() == y.tobytes(), (x, y)


def _avals(tree):
  """(shape, dtype, weak_type) of every leaf."""
  types = map(jax.typeof, jax.tree.leaves(tree))
  return [(t.shape, t.dtype, t.weak_type) for t in types]


def _plain_run(name, num_steps=NUM_STEPS, seed=0):
  """Params and states of ``num_steps`` plain steps, with their gradients."""
  params, grads = _problem(seed)
  state = _optimizer(name).init(params)
  history = [(params, state, None)]
  for n in range(num_steps):
    g = grads(params, n)
    updates, state = _step(name)(g, state, params)
    params = optax.apply_updates(params, updates)
    history.append((params, state, g))
  return history


@pytest.mark.parametrize("name", NAMES)
def test_extra_args_are_accepted_and_ignored(name):
  opt = _optimizer(name)
  extra = jax.jit(
      lambda g, s, p: opt.update(
          g, s, p, loss=jnp.float32(3.0), key=jax.random.key(0), label=7
      )
  )
  history = _plain_run(name, num_steps=2)
  for (params, state, _), (_, next_state, g) in zip(history, history[1:]):
    u_plain, s_plain = _step(name)(g, state, params)
    u_extra, s_extra = extra(g, state, params)
    _assert_bitwise_equal(u_extra, u_plain)
    _assert_bitwise_equal(s_extra, s_plain)
    _assert_bitwise_equal(s_plain, next_state)


@pytest.mark.parametrize("name", NAMES)
def test_no_recompilation_on_later_steps(name):
  history = _plain_run(name, num_steps=NUM_STEPS)
  # The steps moved the parameters, and the state after a step is typed
  # exactly like the initial one (else the second step would retrace).
  assert not np.allclose(history[-1][0]["dense"], history[0][0]["dense"])
  assert _avals(history[-1][1]) == _avals(history[0][1])
  assert TRACES[name] == 1


@pytest.mark.parametrize("name", NAMES)
def test_inject_hyperparams_matches_plain(name):
  injected = optax.inject_hyperparams(FACTORIES[name])(learning_rate=LR)
  step = jax.jit(injected.update)
  history = _plain_run(name)
  params = history[0][0]
  state = injected.init(params)
  for (p_prev, s_prev, _), (expected_params, expected_state, g) in zip(
      history, history[1:]
  ):
    updates, state = step(g, state, params)
    expected_updates, _ = _step(name)(g, s_prev, p_prev)
    # (An update is a difference of params: atol at their float32 ulp.)
    chex.assert_trees_all_close(updates, expected_updates, rtol=1e-6, atol=1e-6)
    params = optax.apply_updates(params, updates)
    chex.assert_trees_all_close(params, expected_params, rtol=1e-6, atol=1e-7)
  chex.assert_trees_all_close(
      state.inner_state, expected_state, rtol=1e-6, atol=1e-7)
  lr = state.hyperparams["learning_rate"]
  assert lr.dtype == jnp.float32 and float(lr) == np.float32(LR)


@pytest.mark.parametrize("name", NAMES)
def test_multisteps_equals_optimizer_on_the_mean_gradient(x64, name):
  # In float64: in float32 the PG solver's stopping rule (rtol 1e-8, below
  # float32's epsilon) makes its iteration count, and so θ̂ to about 1e-4,
  # depend on rounding, which differs between any two compiled programs.
  k = 3
  opt = _optimizer(name)
  # (MultiSteps accumulates in float32 unless told otherwise.)
  multi = optax.MultiSteps(
      opt, every_k_schedule=k, accumulator_dtype=jnp.float64
  )
  multi_step, plain_step = jax.jit(multi.update), jax.jit(opt.update)
  init, grad_fn = quadratic(seed=1, num_steps=3 * k)
  params = {key: jnp.asarray(v, jnp.float64) for key, v in init.items()}
  p_multi, s_multi = params, multi.init(params)
  state = opt.init(params)
  for block in range(3):
    gs = [
        jax.tree.map(jnp.asarray, grad_fn(params, k * block + i))
        for i in range(k)
    ]
    for i, g in enumerate(gs):
      updates, s_multi = multi_step(g, s_multi, p_multi)
      if i < k - 1:  # accumulating: no move
        for u in jax.tree.leaves(updates):
          assert not np.any(np.asarray(u))
      p_multi = optax.apply_updates(p_multi, updates)
    mean = jax.tree.map(lambda *g: sum(g) / k, *gs)
    updates, state = plain_step(mean, state, params)
    params = optax.apply_updates(params, updates)
    chex.assert_trees_all_close(p_multi, params, rtol=1e-9, atol=1e-12)
  assert int(s_multi.gradient_step) == 3
  chex.assert_trees_all_close(
      s_multi.inner_opt_state, state, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_state_is_stable_through_lax_cond(name):
  opt = _optimizer(name)

  @jax.jit
  def maybe_step(pred, grads, state, params):
    return lax.cond(
        pred, lambda s: opt.update(grads, s, params)[1], lambda s: s, state
    )

  (params, state, _), (_, expected, g) = _plain_run(name, num_steps=1)
  stepped = maybe_step(True, g, state, params)
  skipped = maybe_step(False, g, state, params)
  for out in (stepped, skipped):
    assert jax.tree.structure(out) == jax.tree.structure(state)
    assert [(x.shape, x.dtype) for x in jax.tree.leaves(out)] == [
        (x.shape, x.dtype) for x in jax.tree.leaves(state)
    ]
  _assert_bitwise_equal(skipped, state)
  chex.assert_trees_all_close(stepped, expected, rtol=1e-6, atol=1e-7)
  # The update alone types its state exactly like init (weak types too), so
  # the state can be carried by lax.cond, lax.scan and while loops.
  _, abstract = jax.eval_shape(opt.update, g, state, params)
  assert _avals(abstract) == _avals(state)


@pytest.mark.parametrize("name", NAMES)
def test_eval_shape_init_on_abstract_params(name):
  opt = _optimizer(name)
  params, grads = _problem()
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params
  )
  shapes = jax.eval_shape(opt.init, abstract)
  concrete = opt.init(params)
  assert jax.tree.structure(shapes) == jax.tree.structure(concrete)
  assert [(s.shape, s.dtype) for s in jax.tree.leaves(shapes)] == [
      (c.shape, c.dtype) for c in jax.tree.leaves(concrete)
  ]
  updates, new_state = jax.eval_shape(opt.update, abstract, shapes, abstract)
  assert jax.tree.map(lambda u: (u.shape, u.dtype), updates) == jax.tree.map(
      lambda p: (p.shape, p.dtype), params
  )
  assert jax.tree.structure(new_state) == jax.tree.structure(concrete)


@pytest.mark.parametrize("name", NAMES)
def test_apply_if_finite_skips_a_nan_gradient_and_continues(name):
  wrapped = optax.apply_if_finite(_optimizer(name), max_consecutive_errors=2)
  step = jax.jit(wrapped.update)
  history = _plain_run(name)
  params = history[0][0]
  state = wrapped.init(params)
  for n, (expected_params, _, g) in enumerate(history[1:]):
    if n == 2:  # a bad gradient before the third good one
      bad = dict(g)
      bad["dense"] = g["dense"].at[0, 0].set(jnp.nan)
      bad["conv"] = g["conv"].at[1, 2, 3, 4].set(-jnp.inf)
      updates, new_state = step(bad, state, params)
      new_params = optax.apply_updates(params, updates)
      _assert_bitwise_equal(new_params, params)
      _assert_bitwise_equal(new_state.inner_state, state.inner_state)
      assert int(new_state.notfinite_count) == 1
      assert not bool(new_state.last_finite)
      params, state = new_params, new_state
    updates, state = step(g, state, params)
    params = optax.apply_updates(params, updates)
    chex.assert_trees_all_close(params, expected_params, rtol=1e-6, atol=1e-7)
    assert ro.nonfinite_leaves(params) == []
  assert int(state.notfinite_count) == 0
  assert int(state.total_notfinite) == 1
  chex.assert_trees_all_close(
      state.inner_state, history[-1][1], rtol=1e-6, atol=1e-7)


# Non-finite gradients without apply_if_finite (the behaviour documented in
# ramda_optax.debugging).


def _nan_step(name, at=(0, 0), value=jnp.nan):
  """Three good steps, one whose Dense gradient holds ``value`` at ``at``."""
  *_, (params, state, _) = _plain_run(name, num_steps=3)
  _, grads = _problem()
  g = grads(params, 3)
  g["dense"] = g["dense"].at[at].set(value)
  updates, new_state = _step(name)(g, state, params)
  return params, state, optax.apply_updates(params, updates), new_state


def test_ramda_nan_gradient_screens_out_its_group():
  params, _, new_params, state = _nan_step("ramda_pg")
  # NaN enters V and U of that leaf only, and not the parameters.
  assert ro.nonfinite_leaves(state) == [
      ".dual.grad_sum['dense']", ".precond[0]['dense']"
  ]
  assert ro.nonfinite_leaves(new_params) == []
  assert int(ro.inner_iterations(state)["dense"]) <= 100
  # The group of the NaN (input feature 0 of the Dense kernel) is screened
  # out: θ̂ is zero on it, and W shrinks by the momentum factor 0.9.
  zero = ro.subproblem_zero_groups(state, GROUPS)["dense"]
  assert bool(zero[0])
  theta = ro.subproblem_solution(state, new_params)
  np.testing.assert_array_equal(theta["dense"][0], 0)
  assert np.any(theta["dense"][1:] != 0)
  np.testing.assert_allclose(new_params["dense"][0], 0.9 * params["dense"][0],
                             rtol=1e-6)
  # Later good gradients do not bring it back (V, U stay NaN).
  _, grads = _problem()
  p = new_params
  for n in range(4, 7):
    updates, state = _step("ramda_pg")(grads(p, n), state, p)
    p = optax.apply_updates(p, updates)
    assert bool(ro.subproblem_zero_groups(state, GROUPS)["dense"][0])
  assert ro.nonfinite_leaves(p) == []
  np.testing.assert_allclose(p["dense"][0], 0.9**4 * params["dense"][0],
                             rtol=1e-5)


def test_ramda_infinite_gradient_depends_on_the_signs():
  *_, (_, state, _) = _plain_run("ramda_pg", num_steps=3)
  sign = float(np.sign(state.dual.anchor["dense"][0, 0]))
  # g_i with the sign of W⁰_i: P W⁰ − V = ∞ − ∞ = NaN, the group is
  # screened out as for a NaN.
  params, _, new_params, new_state = _nan_step("ramda_pg", value=sign * jnp.inf)
  assert ro.nonfinite_leaves(new_params) == []
  assert bool(ro.subproblem_zero_groups(new_state, GROUPS)["dense"][0])
  np.testing.assert_allclose(new_params["dense"][0], 0.9 * params["dense"][0],
                             rtol=1e-6)
  # The opposite sign: the group stays active, W_i becomes NaN and the PG
  # loop runs to its cap.
  _, _, p, state = _nan_step("ramda_pg", value=-sign * jnp.inf)
  nan = np.isnan(np.asarray(p["dense"]))
  assert nan[0, 0] and nan.sum() == 1
  assert ro.nonfinite_leaves(p) == ["['dense']"]
  assert int(ro.inner_iterations(state)["dense"]) == 100
  # The next gradient, at the NaN W_i, is NaN there: V_i turns NaN, the
  # group is screened out and W_i stays NaN.
  _, grads = _problem()
  g = grads(p, 4)
  assert np.isnan(g["dense"][0, 0])
  before = p["dense"][0, 1:]
  updates, state = _step("ramda_pg")(g, state, p)
  p = optax.apply_updates(p, updates)
  assert int(ro.inner_iterations(state)["dense"]) < 100
  assert bool(ro.subproblem_zero_groups(state, GROUPS)["dense"][0])
  assert np.isnan(p["dense"][0, 0])
  np.testing.assert_allclose(p["dense"][0, 1:], 0.9 * before, rtol=1e-6)


@pytest.mark.parametrize("value", [jnp.nan, jnp.inf, -jnp.inf])
def test_ramda_without_regularizer_and_a_nonfinite_gradient(value):
  _, _, new_params, state = _nan_step("ramda_noreg", value=value)
  expected = [".dual.grad_sum['dense']", ".precond[0]['dense']"]
  if not np.isnan(value):  # θ̂_i = W⁰_i − V_i / P_i = ∞ / ∞, kept in the state
    expected.append(".solution['dense']")
  assert ro.nonfinite_leaves(state) == expected
  theta = ro.subproblem_solution(state, new_params)
  if np.isnan(value):
    # NaN P_i counts as "no curvature": θ̂_i = W⁰_i, W stays finite.
    assert ro.nonfinite_leaves(new_params) == []
    anchor = state.dual.anchor["dense"]
    assert float(theta["dense"][0, 0]) == float(anchor[0, 0])
    assert np.all(theta["dense"][0, 1:] != anchor[0, 1:])
  else:
    # V_i / P_i = ∞ / ∞: W_i is NaN.
    nan = np.isnan(np.asarray(new_params["dense"]))
    assert nan[0, 0] and nan.sum() == 1


def test_nuclear_norm_nan_gradient_poisons_the_leaf():
  _, _, new_params, state = _nan_step("ramda_nuclear")
  assert np.all(np.isnan(new_params["dense"]))
  assert ro.nonfinite_leaves(new_params) == ["['dense']"]
  assert int(ro.inner_iterations(state)["dense"]) <= 5


@pytest.mark.parametrize("name", ["proxgen", "prox_ssi"])
def test_adam_methods_keep_nan_moments_and_zero_the_group(name):
  _, _, p, state = _nan_step(name)
  _, grads = _problem()
  for n in range(4, 7):
    assert ro.nonfinite_leaves(state) == [
        ".stats[0]['dense']", ".stats[1]['dense']"
    ]
    assert ro.nonfinite_leaves(p) == []
    np.testing.assert_array_equal(p["dense"][0], 0)
    assert np.any(p["dense"][1:] != 0)
    updates, state = _step(name)(grads(p, n), state, p)
    p = optax.apply_updates(p, updates)


@pytest.mark.parametrize("name", ["rmda", "prox_sgd"])
def test_scalar_metric_nan_gradient_reaches_the_parameter(name):
  _, _, new_params, state = _nan_step(name)
  dense = np.asarray(new_params["dense"])
  assert np.isnan(dense[0, 0]) and np.isnan(dense).sum() == 1
  if name == "rmda":
    theta = np.asarray(ro.subproblem_solution(state, new_params)["dense"])
  else:  # ProxSGD: W = θ̂
    theta = dense
  assert np.isnan(theta[0, 0])
  np.testing.assert_array_equal(theta[0, 1:], 0)
  assert not np.any(np.isnan(theta[1:]))


_SOLVERS = {
    "pg": ro.pg_solver(max_iters=7),
    "pg_residual": ro.pg_solver(max_iters=7, residual_tol=1e-3),
    "exact": ro.exact_solver(max_iters=7),
    "prox": ro.prox_solver(),
}


@functools.cache
def _jitted_solve(solver_name, penalty):
  solver = _SOLVERS[solver_name]
  return jax.jit(
      lambda a, v, p, tau, z0, count: solver.solve(
          penalty, ro.Subproblem(a, v, p, tau), z0, count
      )
  )


@pytest.mark.parametrize(
    "solver_name, penalty",
    [(s, ro.GroupNorm((1,), 4)) for s in _SOLVERS]
    + [("pg", ro.NuclearNorm()), ("pg_residual", ro.NuclearNorm())],
)
@pytest.mark.parametrize("where", ["a", "v", "p", "z0", "tau"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_solvers_stay_bounded_on_nonfinite_input(
    solver_name, penalty, where, value
):
  rng = np.random.default_rng(0)
  args = {
      "a": rng.normal(size=(6, 4)), "v": rng.normal(size=(6, 4)),
      "p": rng.uniform(0.5, 2.0, size=(6, 4)), "z0": rng.normal(size=(6, 4)),
      "tau": np.float64(0.1),
  }
  args[where] = np.where(
      np.arange(np.size(args[where])).reshape(np.shape(args[where])) == 0,
      value, args[where],
  )
  args = {k: jnp.asarray(v, jnp.float32) for k, v in args.items()}
  theta, iters = _jitted_solve(solver_name, penalty)(
      args["a"], args["v"], args["p"], args["tau"], args["z0"], jnp.int32(1)
  )
  max_iters = getattr(_SOLVERS[solver_name], "max_iters", 1)
  assert theta.shape == (6, 4)
  assert 0 <= int(iters) <= max_iters
  if where == "z0" and solver_name.startswith("pg"):
    # A non-finite warm start in a group that stays active: the iterates
    # are NaN, no stopping test holds, and the loop ends at its cap.
    assert int(iters) == max_iters


_SVD_OF_INF = """
import jax, jax.numpy as jnp, numpy as np
import ramda_optax as ro
y = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
y[0, 0] = np.inf
prox = jax.jit(ro.NuclearNorm().prox)
args = (jnp.asarray(y), jnp.float32(0.1))
prox.lower(*args).compile()
print("start", flush=True)
z, _ = prox(*args)
print("done", bool(jnp.all(jnp.isnan(z))), flush=True)
"""


def _returns_within(script, seconds):
  """Runs ``script`` in a fresh interpreter; whether the part after its
  "start" line ends within ``seconds`` (the process is killed if not)."""
  proc = subprocess.Popen(
      [sys.executable, "-c", script], stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True,
      env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  try:
    if proc.stdout.readline().strip() != "start":
      raise RuntimeError(f"the script failed: {proc.communicate()[1]}")
    ready, _, _ = select.select([proc.stdout], [], [], seconds)
    return bool(ready) and proc.stdout.readline().startswith("done")
  finally:
    proc.kill()
    proc.wait()


def test_nuclear_prox_returns_on_an_infinite_input():
  assert _returns_within(_SVD_OF_INF, seconds=5)


# The debugging helpers.


def test_nonfinite_leaves_names_the_bad_leaves_of_a_nested_state():
  params, grads = _problem()
  opt = optax.partition(
      {"ramda": _optimizer("ramda_pg"), "adam": optax.adam(1e-2)},
      {"dense": "ramda", "conv": "ramda", "bias": "adam"},
  )
  state = opt.init(params)
  assert ro.nonfinite_leaves(state) == []
  g = grads(params, 0)
  g["bias"] = g["bias"].at[2].set(jnp.inf)
  g["conv"] = g["conv"].at[0, 0, 0, 0].set(jnp.nan)
  assert ro.nonfinite_leaves(g) == ["['bias']", "['conv']"]
  _, state = jax.jit(opt.update)(g, state, params)
  bad = ro.nonfinite_leaves(state)
  assert bad and all("conv" in p or "bias" in p for p in bad)
  assert any("grad_sum" in p for p in bad) and any("mu" in p for p in bad)
  # Integer and boolean leaves, and None, are skipped.
  assert ro.nonfinite_leaves(
      {"n": jnp.int32(3), "b": jnp.ones(2, bool), "x": None,
       "h": jnp.array([jnp.nan], jnp.bfloat16)}
  ) == ["['h']"]


def test_check_finite_is_jittable_and_per_leaf():
  tree = {
      "a": jnp.array([1.0, jnp.nan]), "b": jnp.ones((2, 2), jnp.bfloat16),
      "c": (jnp.array(jnp.inf), jnp.arange(3)),
  }
  flags = jax.jit(ro.check_finite)(tree)
  assert jax.tree.structure(flags) == jax.tree.structure(tree)
  assert [bool(f) for f in jax.tree.leaves(flags)] == [False, True, False, True]
  for f in jax.tree.leaves(flags):
    assert f.dtype == jnp.bool_ and f.shape == ()


def test_report_nonfinite_names_the_leaves_from_inside_jit():
  messages = []
  name = "ramda_pg"
  opt = _optimizer(name)

  @jax.jit
  def step(grads, state, params):
    ro.report_nonfinite(grads, name="grads", callback=messages.append)
    updates, state = opt.update(grads, state, params)
    ro.report_nonfinite(state, name="state", callback=messages.append)
    return updates, state

  params, grads = _problem()
  state = opt.init(params)
  step(grads(params, 0), state, params)
  jax.effects_barrier()
  assert messages == []
  g = grads(params, 0)
  g["dense"] = g["dense"].at[1, 1].set(jnp.nan)
  step(g, state, params)
  jax.effects_barrier()
  assert sorted(messages) == [
      "grads: non-finite values at [\"['dense']\"]",
      "state: non-finite values at "
      "[\".dual.grad_sum['dense']\", \".precond[0]['dense']\"]",
  ]


# A state of arrays only: factories built anew on every step (as
# inject_hyperparams does), with closures inside, keep the state's tree
# structure; lax.scan carries it; optax.tree_utils maps over its
# params-shaped parts; the inspection helpers read every optimizer's state.


def _closure_statistics(base):
  """``base`` behind closures made anew on every call."""
  return ro.Statistics(
      init=lambda params: base.init(params),
      update=lambda grads, stats, step: base.update(grads, stats, step),
      damping=base.damping,
      damping_decay=base.damping_decay,
  )


CLOSURE_FACTORIES = {
    "ramda_residual_schedule": lambda learning_rate: ro.ramda(
        learning_rate, regularizer=_group_lasso(),
        solver=ro.pg_solver(residual_tol=lambda t: 1e-3 / t),
    ),
    "rda_closure_metric": lambda learning_rate: ro.regularized_dual_averaging(
        learning_rate, preconditioner=_closure_statistics(ro.cube_root()),
        regularizer=_group_lasso(),
    ),
    "proxgen_residual_schedule": lambda learning_rate: ro.proxgen(
        learning_rate, regularizer=_group_lasso(),
        solver=ro.pg_solver(residual_tol=lambda t: 1e-3 / t),
    ),
    "proximal_closure_statistics": lambda learning_rate: ro.regularized_proximal(
        learning_rate, statistics=_closure_statistics(ro.adam_moments()),
        regularizer=_group_lasso(), solver=ro.pg_solver(),
    ),
}
ALL_FACTORIES = {**FACTORIES, **CLOSURE_FACTORIES}
ALL_NAMES = sorted(ALL_FACTORIES)
SCAN_STEPS = 5


def _gradient_sequence():
  """Params and ``SCAN_STEPS`` gradients stacked on a leading axis."""
  params, grads = _problem()
  gs = [grads(params, n) for n in range(SCAN_STEPS)]
  return params, jax.tree.map(lambda *g: jnp.stack(g), *gs)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_inject_hyperparams_traces_once_and_scans(name):
  injected = optax.inject_hyperparams(ALL_FACTORIES[name])(learning_rate=LR)
  traces = collections.Counter()

  @jax.jit
  def step(grads, state, params):
    traces[name] += 1
    updates, state = injected.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  params, stacked = _gradient_sequence()
  state = injected.init(params)
  p, s = params, state
  for n in range(SCAN_STEPS):
    p, s = step(jax.tree.map(lambda g: g[n], stacked), s, p)
  assert traces[name] == 1

  def body(carry, grads):
    return step(grads, *carry)[::-1], None

  (s_scan, p_scan), _ = jax.jit(lambda c, g: lax.scan(body, c, g))(
      (state, params), stacked
  )
  chex.assert_trees_all_close(p_scan, p, rtol=1e-5, atol=1e-6)
  assert jax.tree.structure(s_scan) == jax.tree.structure(s)
  assert not np.allclose(p["dense"], params["dense"])


def _params_shaped_paths(state, params):
  """Key paths of the state's leaves that sit in params-shaped subtrees."""
  treedef = jax.tree.structure(params)
  found = []

  def visit(path, node):
    if jax.tree.structure(node) == treedef:
      found.extend(
          jax.tree_util.keystr(path + p)
          for p, _ in jax.tree_util.tree_flatten_with_path(node)[0]
      )
      return
    children = jax.tree_util.tree_flatten_with_path(
        node, is_leaf=lambda x: x is not node
    )[0]
    for p, child in children:
      if child is not node and jax.tree.leaves(child):
        visit(path + p, child)

  visit((), state)
  return found


@pytest.mark.parametrize("name", ALL_NAMES)
def test_tree_map_params_maps_the_params_shaped_buffers(name):
  opt = ALL_FACTORIES[name](LR)
  params, stacked = _gradient_sequence()
  state = opt.init(params)
  _, state = jax.jit(opt.update)(
      jax.tree.map(lambda g: g[0], stacked), state, params
  )
  mapped = optax.tree_utils.tree_map_params(
      opt, lambda p: p + 1, state,
      transform_non_params=lambda x: x,
  )
  params_shaped = set(_params_shaped_paths(state, params))
  assert params_shaped  # W⁰, V, U, θ̂ or the moments
  before = dict(jax.tree_util.tree_flatten_with_path(state)[0])
  after = jax.tree_util.tree_flatten_with_path(mapped)[0]
  assert jax.tree.structure(mapped) == jax.tree.structure(state)
  for path, leaf in after:
    old = before[path]
    expected = old + 1 if jax.tree_util.keystr(path) in params_shaped else old
    np.testing.assert_array_equal(leaf, expected, err_msg=str(path))
  # The per-leaf iteration counts are not params-shaped: left alone.
  assert not any("inner_iters" in p for p in params_shaped)
  # Shardings follow: a tree of params' shardings maps onto the state.
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  shardings = optax.tree_utils.tree_map_params(
      opt, lambda _: sharding, state,
      transform_non_params=lambda _: None,
  )
  assert jax.tree.structure(
      shardings, is_leaf=lambda x: x is None
  ).num_leaves == len(jax.tree.leaves(state))


def _nestings(name):
  """Optimizer ``name`` inside optax's combinators."""
  opt = _optimizer(name)
  groups = {"dense": "reg", "conv": "reg", "bias": "plain"}
  return {
      "inject_hyperparams": optax.inject_hyperparams(FACTORIES[name])(
          learning_rate=LR
      ),
      "chain": optax.chain(optax.clip_by_global_norm(1e3), opt),
      "partition": optax.partition(
          {"reg": opt, "plain": optax.sgd(0.0)}, groups
      ),
      "multisteps": optax.MultiSteps(opt, every_k_schedule=1),
      "apply_if_finite": optax.apply_if_finite(opt, 3),
  }


@pytest.mark.parametrize("name", NAMES)
def test_inspection_reads_every_optimizer_when_nested(name):
  history = _plain_run(name, num_steps=2)
  (params, state, _), (new_params, expected_state, g) = history[-2:]
  plain_iters = jax.device_get(ro.inner_iterations(expected_state))
  plain_theta = ro.subproblem_solution(expected_state, new_params)
  # θ̂ is exactly group-sparse where the regularizer zeroes a group.
  zero = ro.subproblem_zero_groups(expected_state, GROUPS, new_params)
  assert zero["bias"] is None
  for k in ("dense", "conv"):
    np.testing.assert_array_equal(
        zero[k], np.all(np.asarray(plain_theta[k]) == 0, axis=GROUPS[k])
    )
  for how, nested in _nestings(name).items():
    state = nested.init(history[0][0])
    p = history[0][0]
    for _, _, grads in history[1:]:
      updates, state = jax.jit(nested.update)(grads, state, p)
      p = optax.apply_updates(p, updates)
    iters = jax.device_get(ro.inner_iterations(state))
    theta = ro.subproblem_solution(state, p)
    if how == "partition":
      assert isinstance(iters["bias"], optax.MaskedNode)
      assert theta["bias"] is p["bias"]  # filled from params
      keys = ("dense", "conv")
    else:
      keys = ("dense", "conv", "bias")
    for k in keys:
      assert int(iters[k]) == int(plain_iters[k]), (how, k)
      np.testing.assert_allclose(
          theta[k], plain_theta[k], rtol=1e-5, atol=1e-6, err_msg=how
      )
