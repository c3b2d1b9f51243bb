"""Small problems shared by the tests: a Dense, a Conv and a bias leaf."""

import numpy as np

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
