"""ramda_optax.groups: the axes chosen per Flax layer, and training."""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.core import FrozenDict
from flax.training import train_state

import ramda_optax as ro
from ramda_optax import groups

HEADS = 2


class LinenNet(nn.Module):
  """Conv, BatchNorm, a 1-D Conv, Embed, attention, LayerNorm, Dense."""

  @nn.compact
  def __call__(self, images, tokens):
    x = nn.Conv(4, (3, 3))(images)  # kernel (3, 3, 2, 4)
    x = nn.BatchNorm(use_running_average=True)(x)
    x = nn.Conv(3, (2,))(x.reshape(x.shape[0], -1, 4))  # kernel (2, 4, 3)
    h = nn.Embed(10, 6)(tokens)
    h = nn.MultiHeadDotProductAttention(num_heads=HEADS, qkv_features=8)(h)
    h = nn.LayerNorm()(h)
    x = jnp.concatenate(
        [x.reshape(x.shape[0], -1), h.reshape(h.shape[0], -1)], -1
    )
    return nn.Dense(3)(nn.relu(nn.Dense(5)(x)))


class NNXNet(nnx.Module):
  """The NNX counterparts, under attribute names chosen by the user."""

  def __init__(self, rngs: nnx.Rngs):
    self.conv = nnx.Conv(2, 4, (3, 3), rngs=rngs)
    self.bn = nnx.BatchNorm(4, rngs=rngs)
    self.embed = nnx.Embed(10, 6, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(
        num_heads=HEADS, in_features=6, qkv_features=8, decode=False,
        rngs=rngs,
    )
    self.norm = nnx.LayerNorm(6, rngs=rngs)
    self.linear = nnx.Linear(4 + 6, 3, rngs=rngs)


@functools.cache
def _linen_variables():
  """Abstract variables (``ShapeDtypeStruct`` leaves): nothing to compile."""
  return jax.eval_shape(
      LinenNet().init,
      jax.random.key(0), jnp.zeros((1, 4, 4, 2)), jnp.zeros((1, 3), int),
  )


def _random_like(shapes, seed: int = 0):
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda s: jnp.asarray(rng.normal(size=s.shape), jnp.float32), shapes
  )


def _flat(spec) -> dict[str, tuple[int, ...] | None]:
  """{path: axes}, with NNX variables unwrapped."""
  is_leaf = lambda x: x is None or isinstance(x, (tuple, nnx.Variable))
  flat, _ = jax.tree_util.tree_flatten_with_path(spec, is_leaf=is_leaf)
  return {
      groups.path_string(path): (
          leaf.get_value() if isinstance(leaf, nnx.Variable) else leaf
      )
      for path, leaf in flat
  }


def _regularized(spec) -> dict[str, tuple[int, ...]]:
  return {k: v for k, v in _flat(spec).items() if v is not None}


ATT = "MultiHeadDotProductAttention_0"
LINEN_DEFAULT = {
    "Conv_0/kernel": (0, 1, 3),
    "Conv_1/kernel": (0, 2),  # 3-D, not under attention: a 1-D Conv
    "Dense_0/kernel": (1,),
    "Dense_1/kernel": (1,),
    f"{ATT}/query/kernel": (1, 2),
    f"{ATT}/key/kernel": (1, 2),
    f"{ATT}/value/kernel": (1, 2),
    f"{ATT}/out/kernel": (2,),
}


def test_linen_default_is_the_papers():
  shapes = _linen_variables()["params"]
  spec = groups.structured(shapes)
  assert _regularized(spec) == LINEN_DEFAULT
  flat = _flat(spec)
  for path in ("Embed_0/embedding", "BatchNorm_0/scale", "BatchNorm_0/bias",
               "LayerNorm_0/scale", "Conv_0/bias", f"{ATT}/query/bias"):
    assert flat[path] is None
  # One group per input channel / feature: the kept axis is the input one.
  conv = jnp.zeros(shapes["Conv_0"]["kernel"].shape)
  assert jnp.sum(conv, axis=spec["Conv_0"]["kernel"]).shape == (2,)
  # group_lasso accepts the result as it is; its value matches a NumPy sum.
  params = _random_like(shapes)
  expected = 0.0
  for path, axes in LINEN_DEFAULT.items():
    x = np.asarray(functools.reduce(lambda t, k: t[k], path.split("/"), params))
    size = math.prod(x.shape[i] for i in axes)
    expected += math.sqrt(size) * np.sum(np.sqrt(np.sum(x * x, axis=axes)))
  value = jax.jit(ro.group_lasso(0.5, spec).value)(params)
  np.testing.assert_allclose(value, 0.5 * expected, rtol=1e-5)


def test_linen_output_wise_and_per_head():
  shapes = _linen_variables()["params"]
  spec = groups.structured(
      shapes, conv="output", dense="output", attention="output"
  )
  assert _regularized(spec) == {
      "Conv_0/kernel": (0, 1, 2),
      "Conv_1/kernel": (0, 1),
      "Dense_0/kernel": (0,),
      "Dense_1/kernel": (0,),
      f"{ATT}/query/kernel": (0,),
      f"{ATT}/key/kernel": (0,),
      f"{ATT}/value/kernel": (0,),
      f"{ATT}/out/kernel": (0, 1),
  }
  spec = groups.structured(shapes, attention="head")
  for name in ("query", "key", "value", "out"):
    axes = spec[ATT][name]["kernel"]
    kernel = jnp.zeros(shapes[ATT][name]["kernel"].shape)
    assert axes == ((1, 2) if name == "out" else (0, 2))
    assert jnp.sum(kernel, axis=axes).shape == (HEADS,)
  # The other kinds keep their defaults.
  assert spec["Conv_0"]["kernel"] == (0, 1, 3)
  assert spec["Dense_0"]["kernel"] == (1,)


def test_none_options_leave_a_kind_unregularized():
  shapes = _linen_variables()["params"]
  spec = groups.structured(shapes, conv=None, attention=None)
  assert _regularized(spec) == {"Dense_0/kernel": (1,), "Dense_1/kernel": (1,)}
  spec = _regularized(groups.structured(shapes, dense=None))
  assert "Dense_0/kernel" not in spec and "Conv_0/kernel" in spec


def test_rules_take_precedence_in_order():
  shapes = _linen_variables()["params"]
  flat = _flat(groups.structured(
      shapes,
      rules=[
          (r"Dense_1/kernel", None),
          (r".*query/kernel", (-1,)),
          (r".*/kernel", (0,)),  # every other kernel
          (r"Embed_0/embedding", (1,)),  # one group per token
      ],
  ))
  assert flat["Dense_1/kernel"] is None
  assert flat[f"{ATT}/query/kernel"] == (2,)  # normalized
  assert flat["Conv_0/kernel"] == (0,)
  assert flat["Dense_0/kernel"] == (0,)
  assert flat["Embed_0/embedding"] == (1,)
  assert flat["Conv_0/bias"] is None
  # Patterns must match the whole path.
  with pytest.raises(ValueError, match="'kernel' matches no parameter path"):
    groups.structured(shapes, rules=[(r"kernel", None)])


def test_full_variables_and_frozen_dict():
  variables = _linen_variables()
  flat = _flat(groups.structured(variables))
  assert flat["params/Conv_0/kernel"] == (0, 1, 3)
  assert flat["batch_stats/BatchNorm_0/mean"] is None
  assert flat["batch_stats/BatchNorm_0/var"] is None
  frozen = FrozenDict(variables["params"])
  spec = groups.structured(frozen)
  assert isinstance(spec, FrozenDict)
  assert _regularized(spec) == LINEN_DEFAULT
  penalties = ro.group_lasso(1.0, spec).layout(frozen)
  assert sum(p is not None for p in penalties) == len(LINEN_DEFAULT)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"conv": "channel"}, "conv must be one of 'input', 'output' or None"),
        ({"dense": "in"}, "dense must be one of"),
        ({"attention": "heads"}, "attention must be one of 'head', 'input'"),
        ({"rules": [("Conv_0/kernel",)]}, "rules: each rule must be a"),
        ({"rules": [("Conv_0/kernel", [0])]}, "None or a tuple of ints"),
        ({"rules": [("Conv_0/kernel", (4,))]}, "axis 4 .* Conv_0/kernel"),
        ({"rules": [("Conv_0/kernel", (0, -4))]}, "repeated axis"),
    ],
)
def test_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    groups.structured(_linen_variables()["params"], **kwargs)


NNX_DEFAULT = {
    "conv/kernel": (0, 1, 3),
    "linear/kernel": (1,),
    "attn/query/kernel": (1, 2),
    "attn/key/kernel": (1, 2),
    "attn/value/kernel": (1, 2),
    "attn/out/kernel": (2,),
}


def test_nnx_state():
  model = nnx.eval_shape(lambda: NNXNet(nnx.Rngs(0)))
  shapes = nnx.state(model, nnx.Param)
  spec = groups.structured(shapes)
  assert isinstance(spec, nnx.State)
  assert isinstance(spec["conv"]["kernel"], nnx.Param)
  assert _regularized(spec) == NNX_DEFAULT
  assert _flat(spec)["embed/embedding"] is None
  assert _flat(spec)["bn/scale"] is None
  # group_lasso accepts it with the state, and likewise for the pure form.
  state = _random_like(shapes)
  pure = nnx.as_pure(state)
  pure_spec = groups.structured(pure)
  assert _regularized(pure_spec) == NNX_DEFAULT
  value = ro.group_lasso(1.0, spec).value(state)
  assert value > 0
  assert ro.group_lasso(1.0, pure_spec).value(pure) == value
  # Options and rules, on NNX paths.
  spec = groups.structured(
      shapes, conv="output", dense="output", attention="head",
      rules=[(r"attn/out/kernel", None)],
  )
  assert _regularized(spec) == {
      "conv/kernel": (0, 1, 2),
      "linear/kernel": (0,),
      "attn/query/kernel": (0, 2),
      "attn/key/kernel": (0, 2),
      "attn/value/kernel": (0, 2),
  }
  # The whole state: batch statistics are not regularized.
  flat = _flat(groups.structured(nnx.state(model)))
  assert flat["bn/mean"] is None and flat["bn/var"] is None
  assert flat["conv/kernel"] == (0, 1, 3)


def test_callable_form_inside_partition():
  # optax.partition hands each part params with optax.MaskedNode elsewhere.
  params = {
      "Conv_0": {"kernel": jnp.ones((3, 3, 2, 4)), "bias": jnp.ones(4)},
      "Dense_0": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones(3)},
  }
  labels = {
      k: jax.tree.map(lambda _: "ramda" if k == "Conv_0" else "sgd", v)
      for k, v in params.items()
  }
  regularizer = ro.group_lasso(100.0, groups.structured)
  opt = optax.partition(
      {"ramda": ro.ramda(1e-2, regularizer=regularizer),
       "sgd": optax.sgd(1e-2)},
      labels,
  )
  state = opt.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  _, state = jax.jit(opt.update)(grads, state, params)
  masked = {"Conv_0": params["Conv_0"], "Dense_0": jax.tree.map(
      lambda _: optax.MaskedNode(), params["Dense_0"])}
  assert groups.structured(masked) == {
      "Conv_0": {"bias": None, "kernel": (0, 1, 3)},
      "Dense_0": {"bias": None, "kernel": None},
  }
  theta = ro.subproblem_solution(state, params)
  # λ = 100 zeroes every input channel of the conv kernel at the first step.
  assert not theta["Conv_0"]["kernel"].any()
  assert theta["Conv_0"]["bias"].all()


# Training: 3 classes, decided by the first 2 of 8 input channels; the other
# 6 are noise, whose channel groups the group lasso should remove.
LEARNING_RATE = 0.1
STRENGTH = 5e-3
STEPS = 40


def _data():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(128, 4, 4, 8)).astype(np.float32)
  score = x[..., :2].mean((1, 2))
  y = np.where(score[:, 0] > 0.3, 0, np.where(score[:, 1] > 0, 1, 2))
  return jnp.asarray(x), jnp.asarray(y)


class LinenClassifier(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(8, (3, 3))(x))
    return nn.Dense(3)(x.mean((1, 2)))


class NNXClassifier(nnx.Module):

  def __init__(self, rngs: nnx.Rngs):
    self.conv = nnx.Conv(8, 8, (3, 3), rngs=rngs)
    self.linear = nnx.Linear(8, 3, rngs=rngs)

  def __call__(self, x):
    return self.linear(nnx.relu(self.conv(x)).mean((1, 2)))


def _loss(logits, y):
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _assert_noise_channels_removed(conv_kernel):
  zero = np.asarray(jnp.all(conv_kernel == 0, axis=(0, 1, 3)))
  assert zero[2:].any(), zero
  assert not zero[:2].any(), zero


def test_train_state_linen():
  x, y = _data()
  model = LinenClassifier()
  params = model.init(jax.random.key(1), x[:1])["params"]
  spec = groups.structured(params)
  state = train_state.TrainState.create(
      apply_fn=model.apply,
      params=params,
      tx=ro.ramda(LEARNING_RATE, regularizer=ro.group_lasso(STRENGTH, spec)),
  )

  @jax.jit
  def step(state):
    loss_fn = lambda p: _loss(state.apply_fn({"params": p}, x), y)
    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss

  losses = []
  for _ in range(STEPS):
    state, loss = step(state)
    losses.append(float(loss))
  assert losses[-1] < 0.8 * losses[0]
  theta = ro.subproblem_solution(state.opt_state, state.params)
  assert jax.tree.structure(theta) == jax.tree.structure(state.params)
  _assert_noise_channels_removed(theta["Conv_0"]["kernel"])
  assert 0 < ro.weighted_group_sparsity(theta, spec) < 1


def test_nnx_optimizer():
  x, y = _data()
  model = NNXClassifier(nnx.Rngs(1))
  # nnx.Optimizer initialises with Param-wrapped state but updates with bare
  # arrays, so groups take the callable form.
  tx = ro.ramda(
      LEARNING_RATE, regularizer=ro.group_lasso(STRENGTH, groups.structured)
  )
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer):
    loss, grads = nnx.value_and_grad(lambda m: _loss(m(x), y))(model)
    optimizer.update(model, grads)
    return loss

  losses = [float(step(model, optimizer)) for _ in range(STEPS)]
  assert losses[-1] < 0.8 * losses[0]
  theta = ro.subproblem_solution(optimizer.opt_state)
  kernel = theta["conv"]["kernel"]
  _assert_noise_channels_removed(kernel)
  assert 0 < ro.weighted_group_sparsity(theta, groups.structured) < 1
  # Warm-started at the current params, as nnx.Optimizer holds them.
  theta = ro.subproblem_solution(optimizer.opt_state, nnx.state(model, nnx.Param))
  np.testing.assert_array_equal(theta["conv"]["kernel"] == 0, kernel == 0)


def test_nnx_optimizer_static_spec():
  """A fixed groups pytree built from nnx.state fits nnx.Optimizer's init
  (Param-wrapped params) and its update (pure arrays) alike."""
  model = NNXClassifier(nnx.Rngs(1))
  spec = groups.structured(nnx.state(model, nnx.Param))
  regularizer = ro.group_lasso(STRENGTH, spec)
  optimizer = nnx.Optimizer(
      model, ro.ramda(LEARNING_RATE, regularizer=regularizer), wrt=nnx.Param
  )
  grads = jax.tree.map(jnp.ones_like, nnx.state(model, nnx.Param))
  optimizer.update(model, grads)
  iters = ro.inner_iterations(optimizer.opt_state)
  assert int(iters["conv"]["kernel"]) > 0 and int(iters["conv"]["bias"]) == 0


def test_nnx_subproblem_solution_with_params():
  """nnx.Optimizer's OptVariable-wrapped state and Param-wrapped params are
  accepted as they are, with the same result as their pure forms."""
  model = NNXClassifier(nnx.Rngs(1))
  tx = ro.ramda(
      LEARNING_RATE, regularizer=ro.group_lasso(STRENGTH, groups.structured)
  )
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  optimizer.update(model, jax.tree.map(jnp.ones_like, nnx.state(model, nnx.Param)))
  theta = ro.subproblem_solution(optimizer.opt_state, nnx.state(model, nnx.Param))
  pure = ro.subproblem_solution(
      nnx.as_pure(optimizer.opt_state), nnx.as_pure(nnx.state(model, nnx.Param)))
  for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(pure)):
    np.testing.assert_array_equal(a, b)
