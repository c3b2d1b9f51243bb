"""The benchmarks' models: Flax modules and, for timing optimizer steps
alone, parameter shapes with their groups."""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ramda_optax.compaction import Conv, Dense, Flatten, Pool

CONTEXT = 64  # characters the transformer sees at once


class LogReg(nn.Module):
  """784 → 10 Dense on the flattened image."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return nn.Dense(10)(x.reshape(x.shape[0], -1))


class MLP(nn.Module):
  """The paper's MLP, 784-512-256-128-64-32-16-10 with ReLU."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.reshape(x.shape[0], -1)
    for width in (512, 256, 128, 64, 32, 16):
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(10)(x)


class CNN(nn.Module):
  """Conv(16) → max pool → Conv(32) → max pool → Dense(10); ``widths`` sets
  the conv widths (as :func:`ramda_optax.compact` leaves them)."""

  widths: Sequence[int] = (16, 32)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for features in self.widths:
      x = nn.relu(nn.Conv(features, (3, 3))(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    return nn.Dense(10)(x.reshape(x.shape[0], -1))


# The CNN's layers, in order, for ramda_optax.compact and model_cost.
CNN_LAYERS = (Conv("Conv_0"), Pool((2, 2), (2, 2)), Conv("Conv_1"),
              Pool((2, 2), (2, 2)), Flatten(), Dense("Dense_0"))


class LeNet(nn.Module):
  """The paper authors' example network for MNIST: Conv 20@5×5 → max pool
  2 → Conv 50@5×5 → max pool 2 → Dense 500 → Dense 10, ReLU after each
  hidden layer, convolutions without padding."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for features in (20, 50):
      x = nn.relu(nn.Conv(features, (5, 5), padding="VALID")(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = nn.relu(nn.Dense(500)(x.reshape(x.shape[0], -1)))
    return nn.Dense(10)(x)


# LeNet's layers, in order, for ramda_optax.compact and model_cost.
LENET_LAYERS = (Conv("Conv_0", padding="VALID"), Pool((2, 2), (2, 2)),
                Conv("Conv_1", padding="VALID"), Pool((2, 2), (2, 2)),
                Flatten(), Dense("Dense_0"), Dense("Dense_1"))


class Block(nn.Module):
  """Pre-norm causal self-attention and a 4× GELU MLP."""

  width: int
  heads: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    mask = nn.make_causal_mask(jnp.ones(x.shape[:2]))
    x = x + nn.MultiHeadDotProductAttention(self.heads)(
        nn.LayerNorm()(x), mask=mask)
    hidden = nn.gelu(nn.Dense(4 * self.width)(nn.LayerNorm()(x)))
    return x + nn.Dense(self.width)(hidden)


class CharTransformer(nn.Module):
  """Byte embedding + learned positions, 2 blocks, a Dense head."""

  vocab: int = 128
  width: int = 64
  heads: int = 4
  layers: int = 2

  @nn.compact
  def __call__(self, tokens: jax.Array) -> jax.Array:
    x = nn.Embed(self.vocab, self.width)(tokens)
    position = self.param("position", nn.initializers.normal(0.02),
                          (CONTEXT, self.width))
    x = x + position[:tokens.shape[1]]
    for _ in range(self.layers):
      x = Block(self.width, self.heads)(x)
    return nn.Dense(self.vocab)(nn.LayerNorm()(x))


VGG19 = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
         512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


def vgg19_shapes() -> tuple[dict, dict]:
  """Shapes of VGG19 for CIFAR-10 (Flax layout) and their groups: conv
  kernels channel-wise, the dense head input-wise."""
  shapes, groups, cin, i = {}, {}, 3, 0
  for width in VGG19:
    if width == "M":
      continue
    shapes[f"conv{i:02d}"] = {"kernel": (3, 3, cin, width), "bias": (width,)}
    groups[f"conv{i:02d}"] = {"kernel": (0, 1, 3), "bias": None}
    cin, i = width, i + 1
  shapes["head"] = {"kernel": (512, 10), "bias": (10,)}
  groups["head"] = {"kernel": (1,), "bias": None}
  return shapes, groups


def mlp1m_shapes() -> tuple[dict, dict]:
  """Shapes of a 1M-parameter MLP 784-1024-256-10 and their groups (dense
  kernels input-wise)."""
  widths = (784, 1024, 256, 10)
  shapes = {f"dense{i}": {"kernel": (a, b), "bias": (b,)}
            for i, (a, b) in enumerate(zip(widths, widths[1:]))}
  groups = {k: {"kernel": (1,), "bias": None} for k in shapes}
  return shapes, groups


def batch_norm(train: bool) -> nn.BatchNorm:
  """BatchNorm with PyTorch's defaults (running-average momentum 0.1,
  ε = 1e-5): batch statistics in training, running averages otherwise."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9,
                      epsilon=1e-5)


class VGG19BN(nn.Module):
  """VGG19 with BatchNorm for 32×32 images: the VGG19 configuration of 3×3
  convolutions, each followed by BatchNorm and ReLU, with 2×2 max pools, and
  a single Dense(512 → classes) head. The convolutions have no bias, which
  the BatchNorm after them would cancel."""

  classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    for width in VGG19:
      if width == "M":
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
      else:
        x = nn.Conv(width, (3, 3), padding=1, use_bias=False)(x)
        x = nn.relu(batch_norm(train)(x))
    return nn.Dense(self.classes)(x.reshape(x.shape[0], -1))


class Bottleneck(nn.Module):
  """ResNet's bottleneck: 1×1, 3×3 (with the stride), 1×1 to 4 × planes,
  BatchNorm after each; a 1×1 projection on the shortcut where the shape
  changes."""

  planes: int
  stride: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    out = 4 * self.planes
    y = nn.Conv(self.planes, (1, 1), use_bias=False)(x)
    y = nn.relu(batch_norm(train)(y))
    y = nn.Conv(self.planes, (3, 3), self.stride, padding=1, use_bias=False)(y)
    y = nn.relu(batch_norm(train)(y))
    y = batch_norm(train)(nn.Conv(out, (1, 1), use_bias=False)(y))
    if self.stride != 1 or x.shape[-1] != out:
      x = nn.Conv(out, (1, 1), self.stride, use_bias=False)(x)
      x = batch_norm(train)(x)
    return nn.relu(x + y)


class ResNet50(nn.Module):
  """ResNet50 adapted to 32×32 images as is common for CIFAR: a 3×3 stride-1
  stem convolution without max pool, bottleneck stages [3, 4, 6, 3] of
  widths 64-512 (strides 1, 2, 2, 2), global average pool, Dense(2048 →
  classes)."""

  classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = nn.Conv(64, (3, 3), padding=1, use_bias=False)(x)
    x = nn.relu(batch_norm(train)(x))
    for stage, (blocks, planes) in enumerate(zip((3, 4, 6, 3),
                                                 (64, 128, 256, 512))):
      for block in range(blocks):
        stride = 2 if stage > 0 and block == 0 else 1
        x = Bottleneck(planes, stride)(x, train)
    return nn.Dense(self.classes)(jnp.mean(x, axis=(1, 2)))
