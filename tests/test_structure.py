"""Structure metrics and the bundled data."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ramda_optax as ro


def test_sparsity_metrics_on_a_hand_built_example():
  conv = np.ones((3, 3, 4, 2))
  conv[:, :, 1] = 0  # one of 4 input channels removed
  conv[0, 0, 0, 0] = 0  # a stray zero does not make a group
  dense = np.ones((5, 3))
  dense[[0, 2, 3]] = 0  # 3 of 5 input features removed
  params = {"conv": jnp.asarray(conv), "dense": jnp.asarray(dense),
            "bias": jnp.zeros(3)}
  groups = {"conv": (0, 1, 3), "dense": (1,), "bias": None}
  assert float(ro.group_sparsity(params, groups)) == pytest.approx(4 / 9)
  assert float(ro.weighted_group_sparsity(params, groups)) == pytest.approx(
      (18 + 9) / (72 + 15))
  assert float(ro.unstructured_sparsity(params)) == pytest.approx(
      (18 + 1 + 9 + 3) / (72 + 15 + 3))
  jitted = jax.jit(lambda p: ro.weighted_group_sparsity(p, groups))
  assert float(jitted(params)) == pytest.approx((18 + 9) / (72 + 15))


def test_metrics_need_a_regularized_leaf():
  with pytest.raises(ValueError, match="groups"):
    ro.group_sparsity({"b": jnp.zeros(3)}, {"b": None})


def test_bundled_mnist_split():
  train, val = ro.datasets.load_mnist10k()
  assert train.images.shape == (8000, 28, 28, 1) and val.labels.shape == (2000,)
  assert train.images.dtype == np.float32 and 0 <= train.images.min() <= train.images.max() <= 1
  # Shuffled: every class in both splits; the split is fixed by the seed.
  assert set(np.unique(val.labels)) == set(range(10))
  again, _ = ro.datasets.load_mnist10k()
  np.testing.assert_array_equal(again.labels, train.labels)
  with pytest.raises(ValueError, match="num_validation"):
    ro.datasets.load_mnist10k(num_validation=20000)


def test_low_rank_level_counts_zero_singular_values():
  rng = np.random.default_rng(0)
  rank2 = rng.normal(size=(6, 2)) @ rng.normal(size=(2, 4))  # 2 of 4 zero
  conv = rng.normal(size=(3, 3, 2, 5))  # view (18, 5): full rank
  params = {"a": jnp.asarray(rank2, jnp.float32), "c": jnp.asarray(conv), "b": jnp.ones(3)}
  assert float(ro.low_rank_level(params)) == pytest.approx(2 / 9)
  mask = {"a": True, "c": False, "b": False}
  assert float(jax.jit(lambda p: ro.low_rank_level(p, mask))(params)) == pytest.approx(0.5)
  with pytest.raises(ValueError, match="mask"):
    ro.low_rank_level({"b": jnp.ones(3)})


def test_structure_report_counts_and_jit():
  w = jnp.array([[1.0, 2.0], [0.0, 0.0], [3.0, 0.0]])
  conv = jnp.zeros((3, 3, 4, 2)).at[:, :, 1].set(1.0)
  params = {"w": w, "conv": conv, "b": jnp.ones(2)}
  groups = {"w": (1,), "conv": (0, 1, 3), "b": None}
  report = jax.jit(lambda p: ro.structure_report(p, groups))(params)
  rows = {r.path: r for r in report.layers}
  assert set(rows) == {"['w']", "['conv']"}
  assert (int(rows["['conv']"].groups_alive), rows["['conv']"].groups_total) == (1, 4)
  assert (int(rows["['conv']"].params_alive), rows["['conv']"].params_total) == (18, 72)
  assert str(report).splitlines()[-1].split() == ["total", "3", "/", "7", "22", "/", "78"]


def test_zero_groups_pattern():
  params = {"w": jnp.array([[0.0, 0.0], [1.0, 0.0]]), "b": jnp.zeros(2)}
  pattern = ro.zero_groups(params, {"w": (1,), "b": None})
  assert pattern["b"] is None
  np.testing.assert_array_equal(pattern["w"], [True, False])
