"""Compaction of group-sparse sequential models: exact, smaller, or refused."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ramda_optax as ro
from ramda_optax.compaction import (
    BatchNorm, Conv, Dense, Flatten, LayerNorm, Pool)


class MLP(nn.Module):
  """Dense → LayerNorm → relu → Dense → relu → Dense(3)."""

  widths: tuple[int, int]

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.LayerNorm()(nn.Dense(self.widths[0])(x)))
    x = nn.relu(nn.Dense(self.widths[1])(x))
    return nn.Dense(3)(x)


MLP_LAYERS = [Dense("Dense_0"), LayerNorm("LayerNorm_0"), Dense("Dense_1"),
              Dense("Dense_2")]


class CNN(nn.Module):
  """Conv → BatchNorm → relu → Conv (VALID) → relu → avg pool → flatten →
  Dense → relu → Dense(3), on 10×10×2 inputs."""

  widths: tuple[int, int, int]

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.widths[0], (3, 3))(x)
    x = nn.relu(nn.BatchNorm(use_running_average=True)(x))
    x = nn.relu(nn.Conv(self.widths[1], (3, 3), padding="VALID")(x))
    x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = nn.relu(nn.Dense(self.widths[2])(x.reshape(x.shape[0], -1)))
    return nn.Dense(3)(x)


CNN_LAYERS = [Conv("Conv_0"), BatchNorm("BatchNorm_0"),
              Conv("Conv_1", padding="VALID"), Pool((2, 2), (2, 2)), Flatten(),
              Dense("Dense_0"), Dense("Dense_1")]


def cnn_params(c0, c1, h):
  """Independent count: conv, BatchNorm scale/bias, conv, dense, dense."""
  return (9 * 2 * c0 + c0) + 2 * c0 + (9 * c0 * c1 + c1) + (16 * c1 * h + h) + (
      h * 3 + 3)


def cnn_macs(c0, c1, h):
  """10·10 SAME outputs, 8·8 VALID outputs, 4·4 after pooling."""
  return 100 * 9 * 2 * c0 + 64 * 9 * c0 * c1 + 16 * c1 * h + h * 3


def random_variables(model, input_shape, seed):
  """Random NumPy params (biases and norm offsets included) and running
  stats, with the shapes of ``model``'s."""
  shapes = jax.eval_shape(model.init, jax.random.key(0),
                          jnp.zeros((1, *input_shape)))
  rng = np.random.default_rng(seed)
  params = jax.tree.map(
      lambda s: rng.normal(size=s.shape).astype(np.float32), shapes["params"])
  stats = None
  if "batch_stats" in shapes:
    stats = {name: {"mean": rng.normal(size=s["mean"].shape).astype(np.float32),
                    "var": rng.uniform(0.2, 3.0, s["var"].shape).astype(np.float32)}
             for name, s in shapes["batch_stats"].items()}
  return params, stats


def apply(model, params, stats, x):
  variables = {"params": params}
  if stats is not None:
    variables["batch_stats"] = stats
  return jax.jit(model.apply)(variables, x)


def assert_same_outputs(y, y_small):
  assert y.shape == y_small.shape
  assert float(jnp.max(jnp.abs(y - y_small))) <= 1e-5 * float(jnp.max(jnp.abs(y)))


def assert_fits(model, params, stats, input_shape):
  """The compacted arrays have exactly the shapes of the smaller model's."""
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *input_shape)))
  expected = {"params": params} | ({} if stats is None else {"batch_stats": stats})
  assert jax.tree.map(lambda s: s.shape, shapes) == jax.tree.map(jnp.shape, expected)


def sparse_cnn():
  params, stats = random_variables(CNN((6, 5, 7)), (10, 10, 2), seed=1)
  conv1 = params["Conv_1"]["kernel"]
  conv1[:, :, [1, 4]] = 0  # two input groups
  conv1[0, 0, 3] = 0  # not a whole group
  conv1[:, :, 5, [0, 1, 4]] = 0  # input 5 feeds only outputs 2 and 3
  dense0 = params["Dense_0"]["kernel"].reshape(16, 5, 7)  # (position, channel)
  dense0[:, 2] = 0  # channel 2 is dead at every position
  dense0[:8, 0] = 0  # channel 0 lives on at positions 8..15
  dense0[:, 3, 1:6] = 0  # channel 3 feeds only units 0 and 6
  params["Dense_1"]["kernel"][[0, 6]] = 0  # units 0 and 6 are dead
  # So channel 3 of Conv_1 dies with units 0 and 6 of Dense_0, and channel 5
  # of Conv_0 with channels 2 and 3 of Conv_1.
  return params, stats


def test_cnn_compacts_exactly_with_the_expected_savings():
  params, stats = sparse_cnn()
  small = ro.compact(params, CNN_LAYERS, stats)
  assert small.features == {"Conv_0": 3, "BatchNorm_0": 3, "Conv_1": 3,
                            "Dense_0": 5, "Dense_1": 3}
  np.testing.assert_array_equal(small.kept["Conv_0"], [0, 2, 3])
  np.testing.assert_array_equal(small.kept["BatchNorm_0"], [0, 2, 3])
  np.testing.assert_array_equal(small.kept["Conv_1"], [0, 1, 4])
  np.testing.assert_array_equal(small.kept["Dense_0"], [1, 2, 3, 4, 5])
  # The running statistics follow their channels.
  np.testing.assert_array_equal(small.batch_stats["BatchNorm_0"]["var"],
                                stats["BatchNorm_0"]["var"][[0, 2, 3]])

  model = CNN((3, 3, 5))
  assert_fits(model, small.params, small.batch_stats, (10, 10, 2))
  x = jax.random.normal(jax.random.key(7), (16, 10, 10, 2))
  assert_same_outputs(apply(CNN((6, 5, 7)), params, stats, x),
                      apply(model, small.params, small.batch_stats, x))

  before = ro.model_cost(params, CNN_LAYERS, (10, 10, 2))
  after = ro.model_cost(small.params, CNN_LAYERS, (10, 10, 2))
  assert before == (cnn_params(6, 5, 7), cnn_macs(6, 5, 7))
  assert after == (cnn_params(3, 3, 5), cnn_macs(3, 3, 5))
  assert before.macs - after.macs == 5400 + 64 * 9 * 21 + 16 * 20 + 6
  assert after.params == sum(x.size for x in jax.tree.leaves(small.params))


def test_mlp_compacts_but_not_across_the_layer_norm():
  params, _ = random_variables(MLP((5, 4)), (6,), seed=2)
  params["Dense_1"]["kernel"][[1, 3]] = 0
  params["Dense_2"]["kernel"][2] = 0
  small = ro.compact(params, MLP_LAYERS)
  assert small.features == {"Dense_0": 5, "LayerNorm_0": 5, "Dense_1": 3,
                            "Dense_2": 3}
  model = MLP((5, 3))
  assert_fits(model, small.params, None, (6,))
  x = jax.random.normal(jax.random.key(8), (32, 6))
  y = apply(MLP((5, 4)), params, None, x)
  assert_same_outputs(y, apply(model, small.params, None, x))
  before = ro.model_cost(params, MLP_LAYERS, (6,))
  after = ro.model_cost(small.params, MLP_LAYERS, (6,))
  # Dense_1 loses a column and its bias entry, Dense_2 a row.
  assert before.params - after.params == (5 + 1) + 3
  assert before.macs - after.macs == 5 + 3

  # Why: dropping features 1 and 3 of the LayerNorm changes its statistics,
  # and with them the outputs, although Dense_1 never reads those features.
  keep = np.array([0, 2, 4])
  naive = jax.tree.map(lambda x: x, params)
  naive["Dense_0"] = {k: v[..., keep] for k, v in params["Dense_0"].items()}
  naive["LayerNorm_0"] = {k: v[keep] for k, v in params["LayerNorm_0"].items()}
  naive["Dense_1"] = dict(params["Dense_1"], kernel=params["Dense_1"]["kernel"][keep])
  assert float(jnp.max(jnp.abs(y - apply(MLP((3, 4)), naive, None, x)))) > 1e-2


def test_a_layer_with_no_live_outputs_keeps_one_unit():
  params, _ = random_variables(MLP((5, 4)), (6,), seed=3)
  params["Dense_2"]["kernel"][:] = 0
  small = ro.compact(params, MLP_LAYERS)
  np.testing.assert_array_equal(small.kept["Dense_1"], [0])
  x = jax.random.normal(jax.random.key(9), (8, 6))
  assert_same_outputs(apply(MLP((5, 4)), params, None, x),
                      apply(MLP((5, 1)), small.params, None, x))


class FlatNet(nn.Module):
  """Conv → relu → flatten → BatchNorm → Dense(3), on 4×4×2 inputs."""

  width: int

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(self.width, (3, 3))(x))
    x = nn.BatchNorm(use_running_average=True)(x.reshape(x.shape[0], -1))
    return nn.Dense(3)(x)


def test_batch_norm_after_flatten_loses_every_position_of_a_channel():
  layers = [Conv("Conv_0"), Flatten(), BatchNorm("BatchNorm_0"), Dense("Dense_0")]
  params, stats = random_variables(FlatNet(4), (4, 4, 2), seed=4)
  params["Dense_0"]["kernel"].reshape(16, 4, 3)[:, 1] = 0
  small = ro.compact(params, layers, stats)
  assert small.features == {"Conv_0": 3, "BatchNorm_0": 48, "Dense_0": 3}
  assert 4 * 7 + 1 not in small.kept["BatchNorm_0"]
  assert 4 * 7 + 2 in small.kept["BatchNorm_0"]
  x = jax.random.normal(jax.random.key(10), (8, 4, 4, 2))
  assert_same_outputs(apply(FlatNet(4), params, stats, x),
                      apply(FlatNet(3), small.params, small.batch_stats, x))


def test_a_model_without_zero_groups_compacts_to_itself():
  params, stats = random_variables(CNN((6, 5, 7)), (10, 10, 2), seed=5)
  params["Dense_0"]["kernel"][:40] = 0  # rows, but no whole channel
  small = ro.compact(params, CNN_LAYERS, stats)
  assert small.features == {"Conv_0": 6, "BatchNorm_0": 6, "Conv_1": 5,
                            "Dense_0": 7, "Dense_1": 3}
  same = jax.tree.map(np.array_equal, small.params, params)
  assert all(jax.tree.leaves(same))
  assert all(jax.tree.leaves(jax.tree.map(np.array_equal, small.batch_stats, stats)))


def _drop(tree, name):
  return {k: v for k, v in tree.items() if k != name}


ERRORS = {
    "not a spec": (lambda L, p, s: ([("Conv_0", "conv")] + L[1:], p, s),
                   r"layers\[0\]"),
    "missing entry": (lambda L, p, s: (L[:-1] + [Dense("Dense_9")], p, s),
                      "Dense_9"),
    "unlisted entry": (lambda L, p, s: (L, p | {"Dense_skip": p["Dense_1"]}, s),
                       "Dense_skip"),
    "listed twice": (lambda L, p, s: (L + [Dense("Dense_1")], p, s), "Dense_1"),
    "no flatten": (lambda L, p, s: (L[:4] + L[5:], p, s), "Dense_0"),
    "two flattens": (lambda L, p, s: (L[:5] + L[4:], p, s), "Dense_0"),
    "pool after flatten": (lambda L, p, s: (L[:3] + L[4:5] + L[3:4] + L[5:], p, s),
                           "Dense_0"),
    "flatten before conv": (lambda L, p, s: (L[:2] + [Flatten()] + L[2:], p, s),
                            "Conv_1"),
    "no batch_stats": (lambda L, p, s: (L, p, None), "BatchNorm_0"),
    "stats of another size": (
        lambda L, p, s: (L, p, {"BatchNorm_0": {"mean": jnp.zeros(5),
                                                "var": jnp.ones(5)}}),
        "BatchNorm_0"),
    "norm in the wrong place": (
        lambda L, p, s: (L[:1] + L[2:5] + L[1:2] + L[5:], p, s), "BatchNorm_0"),
    "unexpected array": (
        lambda L, p, s: (L, p | {"Conv_1": p["Conv_1"] | {"scale": 1.0}}, s),
        "Conv_1"),
}


@pytest.mark.parametrize("case", ERRORS)
def test_models_it_cannot_describe_are_refused_by_name(case):
  params, stats = sparse_cnn()
  edit, name = ERRORS[case]
  layers, params, stats = edit(CNN_LAYERS, params, stats)
  with pytest.raises(ValueError, match=name):
    ro.compact(params, layers, stats)


def test_model_cost_refuses_shapes_that_do_not_chain():
  params, _ = sparse_cnn()
  without_pool = CNN_LAYERS[:3] + CNN_LAYERS[4:]
  ro.compact(params, without_pool, sparse_cnn()[1])  # fine for compaction
  with pytest.raises(ValueError, match="Dense_0"):
    ro.model_cost(params, without_pool, (10, 10, 2))
  with pytest.raises(ValueError, match="Conv_0"):
    ro.model_cost(params, CNN_LAYERS, (10, 10, 3))
  with pytest.raises(ValueError, match="Pool"):
    ro.model_cost(params, CNN_LAYERS[:5] + [Pool((2, 2))] + CNN_LAYERS[5:],
                  (10, 10, 2))


def test_model_cost_follows_strides_dilation_and_padding():
  params = {"Conv_0": {"kernel": jnp.ones((3, 3, 2, 4))},
            "Conv_1": {"kernel": jnp.ones((3, 3, 4, 5))}}
  conv0 = 36 * 9 * 2 * 4  # 11×11, SAME, stride 2: 6×6 outputs
  layers = [Conv("Conv_0", strides=2), Pool((3, 3), (2, 2), padding="SAME"),
            Conv("Conv_1", padding=((1, 0), (2, 2)))]
  # Pooled to 3×3, padded to 4×7: 2×5 outputs.
  assert ro.model_cost(params, layers, (11, 11, 2)).macs == conv0 + 10 * 180
  layers[2] = Conv("Conv_1", padding=2, kernel_dilation=(1, 2))
  # Padded to 7×7, spans 3 and 5: 5×3 outputs.
  assert ro.model_cost(params, layers, (11, 11, 2)).macs == conv0 + 15 * 180
