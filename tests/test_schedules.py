"""The paper's stage-wise schedule."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ramda_optax as ro
from tests import numpy_reference as ref
from tests.problems import GROUPS, follow, quadratic


def test_values():
  s = ro.stagewise_schedule(0.1, 0.25, milestones=(10, 20), gamma=0.5)
  assert s["restart_steps"] == (10, 20) and s["eps_decay"] == 0.5
  np.testing.assert_allclose(
      [s["learning_rate"](n) for n in (0, 9, 10, 19, 20, 40)],
      [0.1, 0.1, 0.05, 0.05, 0.025, 0.025], rtol=1e-6)
  # Constant momentum 1 − c until the last stage, then 1 − min(c √j, 1).
  np.testing.assert_allclose(
      [s["momentum"](n) for n in (0, 19, 20, 21, 22, 35, 100)],
      [0.75, 0.75, 0.75, 1 - 0.25 * math.sqrt(2), 1 - 0.25 * math.sqrt(3), 0, 0],
      rtol=1e-6, atol=1e-7)


def test_method_variants():
  rmda = ro.stagewise_schedule(0.1, 0.25, (10,), method="rmda")
  assert set(rmda) == {"learning_rate", "momentum", "restart_steps"}
  ro.rmda(**rmda)
  decay = ro.stagewise_schedule(0.1, None, (10,), gamma=0.5, method="lr_decay")
  assert set(decay) == {"learning_rate"}
  assert float(decay["learning_rate"](10)) == pytest.approx(0.05)
  ro.prox_sgd(**decay)
  with pytest.raises(ValueError, match="method"):
    ro.stagewise_schedule(0.1, 0.1, (10,), method="adam")
  with pytest.raises(ValueError, match="c must"):
    ro.stagewise_schedule(0.1, None, (10,))


def test_no_milestones_ramps_from_the_start():
  s = ro.stagewise_schedule(0.1, 0.5, milestones=())
  np.testing.assert_allclose([s["momentum"](n) for n in (0, 1, 3)],
                             [0.5, 1 - 0.5 * math.sqrt(2), 0], atol=1e-7)


def test_ramda_with_schedule_ends_exactly_at_theta_hat():
  init, grad_fn = quadratic(seed=7, num_steps=40)
  params = {k: jnp.asarray(v, jnp.float32) for k, v in init.items()}
  s = ro.stagewise_schedule(0.3, 0.25, milestones=(10, 20))
  opt = ro.ramda(**s, eps=1e-6, regularizer=ro.group_lasso(0.05, GROUPS))
  state = opt.init(params)
  step = jax.jit(opt.update)
  for n in range(40):
    grads = {k: jnp.asarray(g, jnp.float32) for k, g in grad_fn(params, n).items()}
    updates, state = step(grads, state, params)
    params = optax.apply_updates(params, updates)
    if n == 9:
      assert float(state.damping) == pytest.approx(1e-6)
    if n == 10:  # the restart zeroed the statistics before this step's add
      assert int(state.dual.stage_count) == 1
      assert float(state.damping) == pytest.approx(1e-7)
  # c_j = 1 from j = 16 of the last stage on: W is θ̂, exactly structured.
  assert float(state.damping) == pytest.approx(1e-8)
  assert 0 < float(ro.group_sparsity(params, GROUPS)) < 1
  theta = ro.subproblem_solution(state, params)
  for k in params:
    np.testing.assert_array_equal(params[k] == 0, theta[k] == 0)


@pytest.mark.parametrize(
    "kwargs, name",
    [({"c": 0.0}, "c"), ({"c": 1.5}, "c"), ({"gamma": 0.0}, "gamma"),
     ({"learning_rate": -1.0}, "learning_rate"),
     ({"milestones": (5, 5)}, "restart_steps|milestones")],
)
def test_bad_input_raises(kwargs, name):
  args = {"learning_rate": 0.1, "c": 0.1, "milestones": (10,)} | kwargs
  with pytest.raises(ValueError, match=name):
    ro.stagewise_schedule(**args)


# The float64 reference driven by the same schedules: stage-wise learning rate
# decay, restarts, ε decay and the last stage's momentum ramp, and a strength
# staircase that steps up every few steps, so that reading any of them one
# step early or late moves the trajectory.
KINDS = {k: None if a is None else ("group", a) for k, a in GROUPS.items()}
NUM_STEPS, MILESTONES = 28, (8, 16)
LEAVES = ("dense", "conv")  # the regularized leaves


def _float(schedule):
  # At the int32 step count the optimizers pass (optax's linear schedule
  # then computes in float32, even with x64 enabled).
  return lambda n: float(schedule(jnp.int32(n)))


def test_momentum_ramp_computes_in_float64_under_x64(x64):
  """1 − c until the last milestone, then 1 − min(c √j, 1) at the j-th step
  of the last stage, in float64 at the optimizers' int32 step count."""
  momentum = ro.stagewise_schedule(0.1, 0.3, (4,))["momentum"]
  for n in range(16):
    m = momentum(jnp.int32(n))
    assert m.dtype == jnp.float64
    expected = 1 - (min(0.3 * math.sqrt(n - 3), 1.0) if n >= 4 else 0.3)
    assert float(m) == pytest.approx(expected, rel=1e-15, abs=1e-16)


def _strength(start):
  # (A piecewise constant schedule computes in float64 under x64; optax's
  # linear schedule would round λ to float32 at the int32 step count.)
  return optax.piecewise_constant_schedule(
      start, {n: 1.25 for n in (3, 6, 11, 13, 19, 22, 25)})


def test_ramda_stagewise_and_strength_schedules_match_reference(x64):
  init, grad_fn = quadratic(seed=21, num_steps=NUM_STEPS)
  s = ro.stagewise_schedule(0.3, 0.25, MILESTONES)
  strength = _strength(0.05)
  opt = ro.ramda(**s, eps=1e-6, regularizer=ro.group_lasso(strength, GROUPS),
                 solver=ro.pg_solver())
  reference = ref.Ramda(
      init, _float(s["learning_rate"]), _float(s["momentum"]), eps=1e-6,
      strength=_float(strength), groups=GROUPS, restart_steps=MILESTONES,
      eps_decay=s["eps_decay"])
  history = follow(opt, reference, grad_fn, NUM_STEPS, LEAVES)
  assert sum(iters["conv"] for iters, _ in history) > 2 * NUM_STEPS
  assert 0 < float(ro.group_sparsity(reference.theta, GROUPS)) < 1


def test_rmda_stagewise_and_strength_schedules_match_reference(x64):
  init, grad_fn = quadratic(seed=22, num_steps=NUM_STEPS)
  s = ro.stagewise_schedule(0.1, 0.25, MILESTONES, method="rmda")
  strength = _strength(1.0)
  opt = ro.rmda(**s, regularizer=ro.group_lasso(strength, GROUPS))
  reference = ref.Rmda(init, _float(s["learning_rate"]), _float(s["momentum"]),
                       strength=_float(strength), kinds=KINDS,
                       restart_steps=MILESTONES)
  follow(opt, reference, grad_fn, NUM_STEPS, LEAVES)
  assert 0 < float(ro.group_sparsity(reference.theta, GROUPS)) < 1


@pytest.mark.parametrize("method", ["proxgen", "prox_ssi", "prox_sgd"])
def test_learning_rate_decay_and_strength_schedule_match_reference(x64, method):
  seed = {"proxgen": 23, "prox_ssi": 24, "prox_sgd": 25}[method]
  init, grad_fn = quadratic(seed=seed, num_steps=NUM_STEPS)
  lr = ro.stagewise_schedule(0.1 if method == "prox_sgd" else 0.05, None,
                             MILESTONES, gamma=0.5,
                             method="lr_decay")["learning_rate"]
  if method == "proxgen":
    strength = _strength(0.6)
    opt = ro.proxgen(lr, regularizer=ro.group_lasso(strength, GROUPS),
                     solver=ro.pg_solver())
    reference = ref.ProxGen(init, _float(lr), strength=_float(strength),
                            kinds=KINDS)
  elif method == "prox_ssi":
    # λ = 0 for the first three steps, then stepping up.
    strength = optax.join_schedules(
        [optax.constant_schedule(0.0), _strength(0.1)], [3])
    opt = ro.prox_ssi(lr, regularizer=ro.group_lasso(strength, GROUPS))
    reference = ref.ProxSSI(init, _float(lr), strength=_float(strength),
                            kinds=KINDS)
  else:
    strength = _strength(0.2)
    # The library's momentum is the decay of the average, the reference's
    # the weight on the new gradient (the paper's m).
    opt = ro.prox_sgd(lr, momentum=0.7,
                      regularizer=ro.group_lasso(strength, GROUPS))
    reference = ref.ProxSGD(init, _float(lr), momentum=0.3,
                            strength=_float(strength), kinds=KINDS)
  if method != "prox_ssi":
    history = follow(opt, reference, grad_fn, NUM_STEPS, LEAVES)
  else:
    # The reference does not count Newton passes (the library stops them at
    # a few ulps); the counts are checked against its solution instead: no
    # pass with λ = 0 or when every group of the leaf is zero, else at least
    # one and fewer than the cap of 50.
    history = follow(opt, reference, grad_fn, NUM_STEPS)
    for n, (iters, expected) in enumerate(history):
      for k in LEAVES:
        if n < 3 or np.all(expected[k] == 0):
          assert iters[k] == 0, (k, n)
        else:
          assert 1 <= iters[k] < 50, (k, n)
  if method == "proxgen":
    assert sum(iters["conv"] for iters, _ in history) > 2 * NUM_STEPS
  assert 0 < float(ro.group_sparsity(reference.params, GROUPS)) < 1
