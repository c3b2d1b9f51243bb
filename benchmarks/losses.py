"""Training losses and validation metrics."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from benchmarks.data import Arrays, windows
from benchmarks.models import CONTEXT


def cross_entropy(model: nn.Module, params: optax.Params, inputs: jax.Array,
                  labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy of the model's logits on integer labels."""
  logits = model.apply({"params": params}, inputs)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def image_loss(model: nn.Module, params: optax.Params, arrays: Arrays,
               index: jax.Array) -> jax.Array:
  """Cross-entropy on the training images at ``index``."""
  return cross_entropy(model, params, arrays.train_x[index],
                       arrays.train_y[index])


def lm_loss(model: nn.Module, params: optax.Params, tokens: jax.Array) -> jax.Array:
  """Next-token cross-entropy on (batch, CONTEXT + 1) windows."""
  return cross_entropy(model, params, tokens[:, :-1], tokens[:, 1:])


def text_loss(model: nn.Module, params: optax.Params, arrays: Arrays,
              index: jax.Array) -> jax.Array:
  """Next-token cross-entropy on the training windows at offsets ``index``."""
  return lm_loss(model, params, windows(arrays.train_x, index))


def accuracy(model: nn.Module, params: optax.Params, arrays: Arrays) -> jax.Array:
  """Validation accuracy in percent."""
  logits = model.apply({"params": params}, arrays.valid_x)
  return 100 * jnp.mean(jnp.argmax(logits, -1) == arrays.valid_y)


def perplexity(model: nn.Module, params: optax.Params, arrays: Arrays) -> jax.Array:
  """exp of the mean loss over non-overlapping validation windows."""
  count = (arrays.valid_x.shape[0] - 1) // CONTEXT
  offsets = jnp.arange(count) * CONTEXT
  return jnp.exp(lm_loss(model, params, windows(arrays.valid_x, offsets)))
