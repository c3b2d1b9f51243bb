"""The dual-average accumulator and the preconditioners, on their own."""

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ramda_optax as ro
from ramda_optax import accumulator as da


def test_accumulates_weighted_gradients_and_restarts(x64):
  params = {"w": jnp.array([1.0, -2.0])}
  state = da.init(params)
  assert state.anchor["w"] is not params["w"]  # a buffer of its own
  grads = [{"w": jnp.array([0.5, 1.0]) * (n + 1)} for n in range(5)]
  lrs = [0.1, 0.2, 0.3, 0.4, 0.5]
  restarts = (3,)
  expected_v, expected_alpha, k = np.zeros(2), 0.0, 0
  for n, (g, lr) in enumerate(zip(grads, lrs)):
    stage = da.stage(state.count, restarts)
    assert bool(stage.restart) == (n == 3)
    assert int(stage.num_restarts) == (n >= 3)
    current = {"w": params["w"] + n}
    new, weight = da.advance(state, lr, stage.restart)
    state = new._replace(
        grad_sum={"w": da.accumulate(state.grad_sum["w"], g["w"],
                                     stage.restart, weight)},
        anchor={"w": da.reanchor(state.anchor["w"], current["w"],
                                 stage.restart)})
    if n == 3:
      expected_v, expected_alpha, k = np.zeros(2), 0.0, 0
    k += 1
    s = lr * np.sqrt(k)
    expected_v += s * np.asarray(g["w"])
    expected_alpha += s
    assert float(weight) == pytest.approx(s, rel=1e-14)
    assert int(state.stage_count) == k and int(state.count) == n + 1
    np.testing.assert_allclose(state.grad_sum["w"], expected_v, rtol=1e-14)
    assert float(state.alpha) == pytest.approx(expected_alpha, rel=1e-14)
  # The anchor moved to the params current at the restart step.
  np.testing.assert_array_equal(state.anchor["w"], params["w"] + 3)


def test_bfloat16_params_get_float32_statistics():
  params = {"w": jnp.ones(3, jnp.bfloat16)}
  state = da.init(params)
  assert state.grad_sum["w"].dtype == jnp.float32 and state.alpha.dtype == jnp.float32
  assert state.anchor["w"].dtype == jnp.bfloat16
  assert ro.cube_root().init(params)[0]["w"].dtype == jnp.float32


def test_restart_steps_are_checked():
  with pytest.raises(ValueError, match="restart_steps"):
    da.check_restart_steps((3, 2))
  with pytest.raises(ValueError, match="restart_steps"):
    da.check_restart_steps((2.5,))


def test_cube_root_preconditioner(x64):
  pre = ro.cube_root(eps=1e-3, eps_decay=0.5)
  params = {"w": jnp.zeros(3)}
  assert (pre.damping, pre.damping_decay) == (1e-3, 0.5)
  stats = pre.init(params)
  g = {"w": jnp.array([0.0, 2.0, -3.0])}
  step = lambda k, weight, restart: ro.Step(
      count=jnp.asarray(k - 1), stage_count=jnp.asarray(k),
      learning_rate=jnp.asarray(weight), weight=jnp.asarray(weight),
      restart=restart, damping=jnp.asarray(1e-3),
  )
  linear, _, stats = pre.update(g, stats, step(1, 0.5, False))
  assert linear is None  # the dual average gives the linear term
  _, metric, stats = pre.update(g, stats, step(2, 1.0, False))
  np.testing.assert_allclose(stats[0]["w"], 1.5 * np.array([0.0, 4.0, 9.0]))
  np.testing.assert_allclose(metric["w"], np.cbrt(stats[0]["w"]) + 1e-3, rtol=1e-14)
  assert float(metric["w"][0]) == 1e-3  # ∛0 is exactly 0
  _, _, stats = pre.update(g, stats, step(3, 1.0, True))  # a restart zeroes U
  np.testing.assert_allclose(stats[0]["w"], [0.0, 4.0, 9.0])
  with pytest.raises(ValueError, match="eps_decay"):
    ro.cube_root(eps_decay=1.5)


def test_sqrt_count_preconditioner(x64):
  pre = ro.sqrt_count()
  assert pre.init({"w": jnp.ones(2)}) == ()
  step = ro.Step(
      count=jnp.asarray(8), stage_count=jnp.asarray(9),
      learning_rate=jnp.asarray(0.1), weight=jnp.asarray(0.3), restart=False,
      damping=jnp.asarray(0.0),
  )
  assert float(pre.update({"w": jnp.ones(2)}, (), step)[1]) == 3.0


@pytest.mark.parametrize("name", ["cube_root", "adam_moments",
                                  "adamw_step_moments"])
def test_moments_describe_the_statistics(x64, name):
  """The :class:`ro.Moments` form of a statistics (what the CPU kernel
  computes) gives its buffers, metric and linear term at every step: V ←
  β₁V + w₁g, U ← β₂U + w₂g², P = root(cU) + ε, v = ℓV (for the cube root V
  is the dual average, v = V)."""
  stats_fn = getattr(ro, name)(eps=1e-3)
  moments = stats_fn.moments
  params = {"w": jnp.zeros(5)}
  stats = stats_fn.init(params)
  first, second = np.zeros(5), np.zeros(5)
  rng = np.random.default_rng(0)
  for k in range(1, 5):
    step = ro.Step(count=jnp.asarray(k - 1), stage_count=jnp.asarray(k),
                   learning_rate=jnp.asarray(0.1 * k),
                   weight=jnp.asarray(0.1 * k * np.sqrt(k)), restart=False,
                   damping=jnp.asarray(1e-3))
    g = rng.normal(size=5)
    linear, metric, stats = stats_fn.update({"w": jnp.asarray(g)}, stats, step)
    b1, w1, b2, w2, c, ell = (float(x) for x in moments.coefficients(step))
    first, second = b1 * first + w1 * g, b2 * second + w2 * g * g
    np.testing.assert_allclose(stats[-1]["w"], second, rtol=1e-13)
    root = np.cbrt if moments.root == 3 else np.sqrt
    np.testing.assert_allclose(metric["w"], root(c * second) + 1e-3,
                               rtol=1e-13)
    if linear is None:
      assert (b1, w1, ell) == (1.0, float(step.weight), 1.0)
    else:
      np.testing.assert_allclose(stats[0]["w"], first, rtol=1e-13)
      np.testing.assert_allclose(linear["w"], ell * first, rtol=1e-13)


def test_other_statistics_have_no_moments_form():
  assert ro.sqrt_count().moments is None
  assert ro.ema_momentum().moments is None


class _Shift(NamedTuple):
  """A solver returning its warm start plus one."""

  start: str

  def solve(self, penalty, sub, z0, count):
    del penalty, sub, count
    return z0 + 1, jnp.ones((), jnp.int32)


@pytest.mark.parametrize("start, second", [("params", 1.1), ("solution", 2.0)])
def test_solvers_choose_their_warm_start(start, second):
  """θ̂₁ = W₀ + 1 either way; then W₁ = W₀ + 0.1, so θ̂₂ is W₁ + 1 from the
  parameters and θ̂₁ + 1 from the previous solution."""
  params = {"w": jnp.zeros((2, 3))}
  opt = ro.ramda(1e-2, regularizer=ro.group_lasso(1e-3, {"w": (1,)}),
                 solver=_Shift(start))
  state = opt.init(params)
  grads = {"w": jnp.ones((2, 3))}
  for _ in range(2):
    updates, state = opt.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  np.testing.assert_allclose(state.solution["w"], second, rtol=1e-6)
