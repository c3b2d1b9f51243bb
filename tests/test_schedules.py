"""The paper's stage-wise schedule."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ramda_optax as ro
from tests.problems import GROUPS, quadratic


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
