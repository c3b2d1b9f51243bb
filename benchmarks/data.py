"""The reproduction's data: MNIST images or character streams, and the
indices of each epoch's batches."""

import importlib
import inspect
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import ramda_optax as ro
from benchmarks.models import CONTEXT

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # as the paper's code normalises
TEXT_MODULES = ("textwrap", "heapq", "shlex", "string", "queue", "glob",
                "fnmatch", "colorsys", "bisect")


class Arrays(NamedTuple):
  """Training and validation arrays (images and labels, or token streams
  with ``train_y``/``valid_y`` unused)."""

  train_x: jax.Array
  train_y: jax.Array
  valid_x: jax.Array
  valid_y: jax.Array


def mnist_arrays(train_size: int | None) -> Arrays:
  """The bundled MNIST subset, normalised with MNIST's mean and standard
  deviation (``train_size`` caps the training images)."""
  train, valid = ro.datasets.load_mnist10k()
  n = train_size or len(train.labels)
  normalise = lambda x: jnp.asarray((x - MNIST_MEAN) / MNIST_STD)
  return Arrays(normalise(train.images[:n]), jnp.asarray(train.labels[:n]),
                normalise(valid.images), jnp.asarray(valid.labels))


def text_arrays(train_size: int | None) -> Arrays:
  """The source of TEXT_MODULES as ASCII codes: first 90% for training,
  the rest for validation (``train_size`` caps the training characters)."""
  text = "\n".join(inspect.getsource(importlib.import_module(name))
                   for name in TEXT_MODULES)
  codes = np.frombuffer(text.encode("ascii", "replace"), np.uint8)
  cut = int(0.9 * len(codes))
  train = codes[:cut][:train_size] if train_size else codes[:cut]
  empty = jnp.zeros((0,), jnp.int32)
  return Arrays(jnp.asarray(train, jnp.int32), empty,
                jnp.asarray(codes[cut:], jnp.int32), empty)


def first_image(arrays: Arrays) -> jax.Array:
  """One validation image, to initialize a model."""
  return arrays.valid_x[:1]


def first_window(arrays: Arrays) -> jax.Array:
  """One validation window of CONTEXT characters, to initialize a model."""
  return arrays.valid_x[None, :CONTEXT]


def image_batches(key: jax.Array, arrays: Arrays, steps: int,
                  batch_size: int) -> jax.Array:
  """(steps, batch_size) indices of a fresh permutation (one epoch)."""
  order = jax.random.permutation(key, arrays.train_x.shape[0])
  return order[:steps * batch_size].reshape(steps, batch_size)


def text_batches(key: jax.Array, arrays: Arrays, steps: int,
                 batch_size: int) -> jax.Array:
  """(steps, batch_size) random window offsets into the training text."""
  high = arrays.train_x.shape[0] - CONTEXT - 1
  return jax.random.randint(key, (steps, batch_size), 0, high)


def windows(stream: jax.Array, offsets: jax.Array) -> jax.Array:
  """(len(offsets), CONTEXT + 1) windows of a token stream."""
  return jax.vmap(lambda o: jax.lax.dynamic_slice(stream, (o,), (CONTEXT + 1,))
                  )(offsets)
