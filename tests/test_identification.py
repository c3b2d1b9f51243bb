"""θ̂ identifies the zero pattern of a group-sparse minimiser and keeps it."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ramda_optax as ro

STRENGTH = 0.05


def _least_squares(seed=0, n=512, d=12, k=3):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d))
  w_true = rng.normal(size=(d, k)) * (np.arange(d) % 2 == 0)[:, None]
  y = x @ w_true + 0.1 * rng.normal(size=(n, k))
  return x, y


def _minimiser(x, y, strength, iters=20000):
  """F(W) = ‖XW − Y‖²/(2n) + λ Σ_rows √k ‖W_row‖ by NumPy proximal gradient."""
  n, k = len(x), y.shape[1]
  step = n / np.linalg.norm(x, 2) ** 2
  w = np.zeros((x.shape[1], k))
  for _ in range(iters):
    z = w - step * x.T @ (x @ w - y) / n
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    w = z * np.maximum(0, 1 - step * strength * np.sqrt(k) / np.maximum(norm, 1e-300))
  return w


@pytest.mark.slow
def test_theta_hat_zero_pattern_settles_on_the_minimisers():
  x, y = _least_squares()
  target = np.all(_minimiser(x, y, STRENGTH) == 0, axis=1)
  assert 0 < target.sum() < len(target)

  groups = {"w": (1,)}
  opt = ro.ramda(0.05, momentum=0.9, regularizer=ro.group_lasso(STRENGTH, groups))
  params = {"w": jnp.zeros((x.shape[1], y.shape[1]))}
  xs, ys = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)

  @jax.jit
  def step(params, state, history, key):
    idx = jax.random.choice(key, len(xs), (64,), replace=False)
    loss = lambda p: jnp.mean(jnp.sum((xs[idx] @ p["w"] - ys[idx]) ** 2, 1)) / 2
    updates, state = opt.update(jax.grad(loss)(params), state, params)
    params = optax.apply_updates(params, updates)
    zero = ro.subproblem_zero_groups(state, groups)
    return params, state, ro.identification.update(history, zero)

  state = opt.init(params)
  history = ro.identification.init(ro.subproblem_zero_groups(state, groups))
  flips_per_interval = []
  for i, key in enumerate(jax.random.split(jax.random.key(0), 600)):
    params, state, history = step(params, state, history, key)
    if i % 100 == 99:
      flips_per_interval.append(int(history.flips))
      history = ro.identification.new_interval(history)
  # Identified early, then kept: no flips in the later intervals.
  np.testing.assert_array_equal(history.pattern["w"], target)
  assert 0 < int(history.last_change) < 150
  assert flips_per_interval[0] > 0 and flips_per_interval[2:] == [0] * 4
  # Screening's pattern is θ̂'s.
  theta = ro.subproblem_solution(state, params)
  np.testing.assert_array_equal(np.all(theta["w"] == 0, axis=1), target)
