"""The bundled MNIST subset (10,000 images), for examples that need no download.

See ``ramda_optax/data/README.md`` for its source and licence (CC BY-SA 3.0).
"""

from importlib import resources
from typing import NamedTuple

import numpy as np


class Split(NamedTuple):
  """Images as float32 in [0, 1] with shape (N, 28, 28, 1), labels int32."""

  images: np.ndarray
  labels: np.ndarray


def load_mnist10k(
    num_validation: int = 2000, seed: int = 0
) -> tuple[Split, Split]:
  """The bundled MNIST subset, shuffled with ``seed`` and split in two.

  Args:
    num_validation: images held out for validation (0 to 10,000).
    seed: the shuffling seed; the default gives the project's fixed split
      of 8,000 training and 2,000 validation images.

  Returns:
    ``(train, validation)`` splits.
  """
  if not 0 <= num_validation <= 10_000:
    raise ValueError(
        f"num_validation must lie in [0, 10000]; got {num_validation}."
    )
  path = resources.files("ramda_optax") / "data" / "mnist10k.npz"
  with resources.as_file(path) as f, np.load(f) as data:
    images = data["images"].astype(np.float32)[..., None] / 255.0
    labels = data["labels"].astype(np.int32)
  order = np.random.default_rng(seed).permutation(len(labels))
  images, labels = images[order], labels[order]
  cut = len(labels) - num_validation
  return Split(images[:cut], labels[:cut]), Split(images[cut:], labels[cut:])
