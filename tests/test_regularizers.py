"""Group lasso: value, prox optimality, screening rule, layout."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ramda_optax as ro
from tests import numpy_reference as ref


def test_value_matches_reference_and_strength(x64):
  rng = np.random.default_rng(0)
  params = {"dense": rng.normal(size=(6, 4)), "conv": rng.normal(size=(3, 3, 4, 5)),
            "bias": rng.normal(size=5)}
  groups = {"dense": (1,), "conv": (0, 1, 3), "bias": None}
  expected = ref.group_lasso_value(params["dense"], (1,)) + ref.group_lasso_value(
      params["conv"], (0, 1, 3))
  reg = ro.group_lasso(0.3, groups)
  assert float(reg.value(params)) == pytest.approx(0.3 * expected, rel=1e-12)
  scheduled = ro.group_lasso(optax.linear_schedule(0.0, 1.0, 10), groups)
  assert float(scheduled.value(params, step=5)) == pytest.approx(0.5 * expected)


@pytest.mark.parametrize("axes", [(1,), (0,), (), (0, 1)])
def test_prox_satisfies_optimality(x64, axes):
  """z = prox_{tψ}(y): z_g = 0 iff ‖y_g‖ ≤ t√|g|, else z_g − y_g + t√|g| z_g/‖z_g‖ = 0."""
  rng = np.random.default_rng(1)
  y = rng.normal(size=(5, 6)) * rng.uniform(0.1, 2.0, size=(5, 1))
  pen = ro.GroupNorm(axes, int(np.prod([y.shape[i] for i in axes])))
  ny = np.sqrt(np.sum(y * y, axis=axes, keepdims=True))
  seen_zero = seen_nonzero = False
  for t in np.quantile(ny, [0.3, 0.7]) * [0.9, 1.1] / np.sqrt(pen.group_size):
    z, psi = pen.prox(jnp.asarray(y), jnp.asarray(t))
    z = np.asarray(z)
    kappa = t * np.sqrt(pen.group_size)
    nz = np.sqrt(np.sum(z * z, axis=axes, keepdims=True))
    zero = ny <= kappa
    seen_zero |= zero.any()
    seen_nonzero |= (~zero).any()
    assert np.all(np.where(zero, z, 0) == 0)
    residual = z - y + kappa * z / np.where(nz > 0, nz, 1)
    np.testing.assert_allclose(np.where(zero, 0, residual), 0, atol=1e-12)
    np.testing.assert_allclose(
        np.sum(psi), ref.group_lasso_value(z, axes), rtol=1e-12)
  assert seen_zero and seen_nonzero


def test_screen_is_the_zero_condition_of_the_exact_solution(x64):
  rng = np.random.default_rng(2)
  a, v = rng.normal(size=(8, 3)), rng.normal(size=(8, 3))
  p = rng.uniform(0.5, 2.0, size=(8, 3))
  tau = 0.6
  pen = ro.GroupNorm((1,), 3)
  keep = np.asarray(pen.screen(jnp.asarray(p * a - v), jnp.asarray(tau)))[:, 0]
  exact = ref.exact_group_solution(a, v, p, tau, (1,))
  np.testing.assert_array_equal(keep, np.any(exact != 0, axis=1))


def test_layout_normalizes_axes_and_skips_masked_leaves():
  params = {"k": jnp.ones((3, 4, 5)), "b": jnp.ones(5), "m": optax.MaskedNode()}
  reg = ro.group_lasso(1.0, {"k": (-1, 0), "b": None, "m": (0,)})
  assert reg.layout(params) == (None, ro.GroupNorm((0, 2), 15))
  reg = ro.group_lasso(1.0, lambda p: {"k": (1,), "b": None, "m": None})
  assert reg.layout(params) == (None, ro.GroupNorm((1,), 4))


def test_bad_group_leaves_raise():
  with pytest.raises(ValueError, match="groups"):
    ro.group_lasso(1.0, {"k": "channels"})
