"""Small problems shared by the tests (a Dense, a Conv and a bias leaf), and
a side-by-side run against the float64 reference."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ramda_optax as ro

GROUPS = {"dense": (1,), "conv": (0, 1, 3), "bias": None}
SHAPES = {"dense": (6, 4), "conv": (3, 3, 4, 5), "bias": (5,)}


def quadratic(seed: int = 0, noise: float = 0.3, num_steps: int = 60):
  """A stochastic quadratic ½ Σ h (W − T)² around a group-sparse target T.

  Returns ``(init, grad_fn)`` with ``grad_fn(params, n)`` the float64 NumPy
  gradient at step n (deterministic noise included).
  """
  rng = np.random.default_rng(seed)
  target, curv, init = {}, {}, {}
  for name, shape in SHAPES.items():
    t = rng.normal(size=shape)
    axes = GROUPS[name]
    if axes is not None:  # zero out half of the groups of the target
      keep_shape = [1 if i in axes else s for i, s in enumerate(shape)]
      t = t * (rng.random(keep_shape) < 0.5)
    target[name] = t
    curv[name] = rng.uniform(0.5, 2.0, size=shape)
    init[name] = rng.normal(size=shape)
  noises = [
      {n: noise * rng.normal(size=s) for n, s in SHAPES.items()}
      for _ in range(num_steps)
  ]

  def grad_fn(params, n):
    return {
        k: curv[k] * (np.asarray(params[k], np.float64) - target[k])
        + noises[n][k]
        for k in SHAPES
    }

  return init, grad_fn


def follow(opt, reference, grad_fn, num_steps, iteration_leaves=()):
  """Runs ``opt`` and a float64 reference optimizer side by side from the
  reference's params (with x64 enabled): the params, and θ̂ where the
  reference keeps one, to 1e-9, and the inner iteration counts of
  ``iteration_leaves`` exactly, at every step.

  Returns, per step, the library's counts (a dict) and the reference's params.
  """
  params = {k: jnp.asarray(v) for k, v in reference.params.items()}
  state = opt.init(params)
  step = jax.jit(opt.update)
  history = []
  for n in range(num_steps):
    updates, state = step(jax.tree.map(jnp.asarray, grad_fn(params, n)), state,
                          params)
    params = optax.apply_updates(params, updates)
    expected = reference.step(grad_fn(reference.params, n))
    theta = getattr(reference, "theta", None)
    solution = ro.subproblem_solution(state, params)
    iters = jax.device_get(ro.inner_iterations(state))
    for k in expected:
      np.testing.assert_allclose(params[k], expected[k], rtol=1e-9, atol=1e-9,
                                 err_msg=f"{k}@{n}")
      if theta is not None:
        np.testing.assert_allclose(solution[k], theta[k], rtol=1e-9,
                                   atol=1e-9, err_msg=f"θ̂ {k}@{n}")
    for k in iteration_leaves:
      assert int(iters[k]) == reference.iters[k], (k, n)
    history.append(({k: int(i) for k, i in iters.items()}, expected))
  return history
