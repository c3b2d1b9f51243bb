"""Precision, for every optimizer: bfloat16 params keep float32 statistics,
float64 params (under x64) float64 ones, and updates keep the param dtype."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ramda_optax as ro
from tests.problems import GROUPS, SHAPES
from tests.test_conformance import NAMES, _optimizer, _step


def _params(dtypes):
  rng = np.random.default_rng(0)
  return {
      k: jnp.asarray(rng.normal(size=s), dtypes[k]) for k, s in SHAPES.items()
  }


def _floating_leaves(state):
  leaves = jax.tree_util.tree_flatten_with_path(state)[0]
  return {
      jax.tree_util.keystr(path): x.dtype
      for path, x in leaves
      if jnp.issubdtype(x.dtype, jnp.floating)
  }


def _statistics(state):
  """The accumulated statistics: V, U, α (dual averaging) or the moments."""
  if isinstance(state, ro.RamdaState):
    return [
        state.dual.alpha, state.damping, state.threshold,
        *jax.tree.leaves(state.dual.grad_sum),
        *jax.tree.leaves(state.precond),
    ]
  assert isinstance(state, ro.ProximalState)
  return jax.tree.leaves(state.stats)


def _check_step(name, params, stats_dtype):
  """One jitted step: the state's dtypes, the updates' dtypes and values."""
  opt = _optimizer(name)
  state = opt.init(params)
  stats = _statistics(state)
  assert stats and all(x.dtype == stats_dtype for x in stats)
  # Every other floating leaf is W⁰, a copy of the params in their dtypes.
  for path, dtype in _floating_leaves(state).items():
    if ".anchor" in path:
      assert dtype == params[path.split("'")[1]].dtype, path
    else:
      assert dtype == stats_dtype, path
  grads = jax.tree.map(lambda p: (0.5 * p + 0.1).astype(p.dtype), params)
  updates, new_state = jax.jit(opt.update)(grads, state, params)
  assert jax.tree.map(lambda u: u.dtype, updates) == jax.tree.map(
      lambda p: p.dtype, params
  )
  for u in jax.tree.leaves(updates):
    assert np.all(np.isfinite(np.asarray(u, np.float64)))
  assert np.any(np.asarray(updates["dense"], np.float64) != 0)
  # The new state is typed exactly like the initial one.
  typed = lambda t: [jax.typeof(x) for x in jax.tree.leaves(t)]
  assert typed(new_state) == typed(state)
  assert ro.nonfinite_leaves(new_state) == []
  return updates


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_params_get_float32_statistics(name):
  params = _params(dict.fromkeys(SHAPES, jnp.bfloat16))
  _check_step(name, params, jnp.float32)


@pytest.mark.parametrize("name", ["ramda_pg", "proxgen"])
def test_mixed_precision_params(name):
  params = _params({"dense": jnp.bfloat16, "conv": jnp.float16,
                    "bias": jnp.float32})
  _check_step(name, params, jnp.float32)


@pytest.mark.parametrize("name", NAMES)
def test_float64_params_get_float64_state_under_x64(x64, name):
  params = _params(dict.fromkeys(SHAPES, jnp.float64))
  updates = _check_step(name, params, jnp.float64)
  # The float64 step is computed in float64: it matches the float32 step of
  # the same problem only to float32 accuracy (the PG solver's stopping rule,
  # rtol 1e-8, is below float32's epsilon, so its float32 θ̂ is a few 1e-4
  # off), and not bit for bit.
  with jax.enable_x64(False):  # (the conformance tests' compiled step)
    params32 = jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params)
    grads32 = jax.tree.map(lambda p: 0.5 * p + 0.1, params32)
    state32 = _optimizer(name).init(params32)
    updates32, _ = jax.device_get(_step(name)(grads32, state32, params32))
  for k in SHAPES:
    np.testing.assert_allclose(updates[k], updates32[k], rtol=1e-2, atol=5e-4)
  assert any(
      np.any(np.asarray(updates[k]) != np.asarray(updates32[k], np.float64))
      for k in SHAPES
  )


def _quadratic():
  """½ Σ h (W − T)² around a group-sparse target T, evaluated in float32."""
  rng = np.random.default_rng(1)
  target, curv = {}, {}
  for k, shape in SHAPES.items():
    t = rng.normal(size=shape)
    if GROUPS[k] is not None:
      keep = [1 if i in GROUPS[k] else n for i, n in enumerate(shape)]
      t = t * (rng.random(keep) < 0.5)
    target[k] = jnp.asarray(t, jnp.float32)
    curv[k] = jnp.asarray(rng.uniform(0.5, 2.0, size=shape), jnp.float32)

  def loss(params):
    return sum(
        jnp.sum(0.5 * curv[k] * (params[k].astype(jnp.float32) - target[k])**2)
        for k in params
    )

  return loss


_LOSS = _quadratic()
_GRAD = jax.jit(jax.grad(_LOSS))


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_training_stays_finite_and_reduces_the_loss(name):
  opt = _optimizer(name)
  step = jax.jit(opt.update)
  params = _params(dict.fromkeys(SHAPES, jnp.bfloat16))
  state = opt.init(params)
  initial = float(_LOSS(params))
  for _ in range(25):
    grads = _GRAD(params)
    assert grads["dense"].dtype == jnp.bfloat16
    updates, state = step(grads, state, params)
    params = optax.apply_updates(params, updates)
  assert all(p.dtype == jnp.bfloat16 for p in jax.tree.leaves(params))
  assert ro.nonfinite_leaves(params) == []
  assert ro.nonfinite_leaves(state) == []
  assert float(_LOSS(params)) < 0.15 * initial
