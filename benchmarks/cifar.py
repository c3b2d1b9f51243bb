"""CIFAR-10 and CIFAR-100 from the official extracted Python folders
(``cifar-10-batches-py``, ``cifar-100-python``), normalised per channel, and
the standard augmentation (random crop with padding 4, horizontal flip)."""

import dataclasses
import pickle
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.data import Arrays

PADDING = 4  # pixels of the random crop's padding


@dataclasses.dataclass(frozen=True)
class Dataset:
  """An official CIFAR folder: its name, its training and test files, the
  label key and the per-channel mean and standard deviation."""

  folder: str
  train_files: tuple[str, ...]
  test_files: tuple[str, ...]
  label_key: bytes
  classes: int
  mean: tuple[float, float, float]
  std: tuple[float, float, float]


CIFAR10 = Dataset(
    "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
    ("test_batch",), b"labels", 10,
    (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
# The statistics commonly used for CIFAR-100 (the paper gives CIFAR-10's).
CIFAR100 = Dataset(
    "cifar-100-python", ("train",), ("test",), b"fine_labels", 100,
    (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))


def folder(dataset: Dataset, data_dir: Path) -> Path:
  """The extracted folder: ``data_dir/<dataset.folder>``, or ``data_dir``
  itself when it is that folder."""
  inside = Path(data_dir) / dataset.folder
  return inside if inside.is_dir() else Path(data_dir)


def read(root: Path, names: tuple[str, ...],
         label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
  """Images (N, 32, 32, 3) uint8 and int32 labels of the pickled batches."""
  images, labels = [], []
  for name in names:
    path = root / name
    if not path.is_file():
      raise FileNotFoundError(
          f"{path} not found: --data-dir must hold the extracted official "
          "Python version of the dataset (https://www.cs.toronto.edu/~kriz/"
          "cifar.html)")
    with path.open("rb") as f:
      batch = pickle.load(f, encoding="bytes")
    images.append(np.asarray(batch[b"data"], np.uint8))
    labels.append(np.asarray(batch[label_key], np.int32))
  # Rows are row-major (channel, row, column).
  chw = np.concatenate(images).reshape(-1, 3, 32, 32)
  return chw.transpose(0, 2, 3, 1), np.concatenate(labels)


def normalise(dataset: Dataset, images: np.ndarray) -> np.ndarray:
  """uint8 NHWC images to float32, (x / 255 − mean) / std per channel."""
  mean = np.asarray(dataset.mean, np.float32)
  std = np.asarray(dataset.std, np.float32)
  return (images.astype(np.float32) / 255 - mean) / std


def black(dataset: Dataset) -> jax.Array:
  """A black pixel, normalised: the value the crop pads with."""
  return jnp.asarray(normalise(dataset, np.zeros((3,), np.uint8)))


def load(dataset: Dataset, data_dir: Path) -> Arrays:
  """The training and test sets, normalised NHWC float32 images with int32
  labels, on the default device."""
  root = folder(dataset, data_dir)
  train = read(root, dataset.train_files, dataset.label_key)
  test = read(root, dataset.test_files, dataset.label_key)
  return Arrays(
      jnp.asarray(normalise(dataset, train[0])), jnp.asarray(train[1]),
      jnp.asarray(normalise(dataset, test[0])), jnp.asarray(test[1]))


def augment(key: jax.Array, images: jax.Array, fill: jax.Array) -> jax.Array:
  """Per image: a random 32×32 crop of the image padded by PADDING pixels of
  ``fill`` on every side, then a horizontal flip with probability ½."""
  n, height, width, channels = images.shape
  padded = jnp.broadcast_to(
      fill, (n, height + 2 * PADDING, width + 2 * PADDING, channels))
  padded = padded.at[:, PADDING:-PADDING, PADDING:-PADDING].set(images)
  crop_key, flip_key = jax.random.split(key)
  offsets = jax.random.randint(crop_key, (n, 2), 0, 2 * PADDING + 1)
  flips = jax.random.bernoulli(flip_key, shape=(n,))

  def one(image, offset, flip):
    crop = jax.lax.dynamic_slice(image, (offset[0], offset[1], 0),
                                 (height, width, channels))
    return jnp.where(flip, crop[:, ::-1], crop)

  return jax.vmap(one)(padded, offsets, flips)
