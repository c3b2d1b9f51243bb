"""The tasks' settings against the paper's table, the authors' example
network and the normalised MNIST inputs."""

import jax
import numpy as np

import ramda_optax as ro
from benchmarks import data
from benchmarks.models import LENET_LAYERS, LeNet
from benchmarks.tasks import TASKS

# (learning rate, λ, c) per method, from the paper's experiment scripts.
LOGREG = {"prox_sgd": (0.1, 1e-3, None), "proxgen": (1e-3, 1e-3, None),
          "prox_ssi": (1e-3, 1e-3, None), "rmda": (0.1, 1e-3, 0.1),
          "ramda": (1e-2, 1e-3, 0.01)}
MLP = {"prox_sgd": (0.1, 5e-3, None), "proxgen": (1e-3, 3.5e-3, None),
       "rmda": (0.1, 5e-3, 0.1), "ramda": (1e-2, 1e-3, 0.1)}


def settings(name: str) -> dict:
  return {m: (h["learning_rate"], h.get("strength"), h.get("c"))
          for m, h in TASKS[name].hyper.items()}


def test_per_method_settings_are_the_papers():
  assert settings("logreg") == LOGREG
  assert settings("mlp") == MLP
  assert TASKS["mlp"].milestones == (1 / 3, 2 / 3)
  # The CNN: λ = 1e-3 with the logistic-regression rates, and two
  # unregularized baselines.
  assert settings("cnn") == {**LOGREG, "adam": (1e-3, None, None),
                             "madgrad": (1e-2, None, None)}


def test_every_task_has_three_seeds_and_every_method_of_the_family():
  for task in TASKS.values():
    assert task.seeds == (0, 1, 2), task.name
  assert set(TASKS["transformer"].hyper) == {
      "ramda", "rmda", "proxgen", "prox_ssi", "prox_sgd", "adamw"}
  assert "strength" not in TASKS["transformer"].hyper["adamw"]


def test_lenet_is_the_authors_example_network():
  params = LeNet().init(jax.random.key(0), np.zeros((1, 28, 28, 1)))["params"]
  shapes = {k: v["kernel"].shape for k, v in params.items()}
  assert shapes == {"Conv_0": (5, 5, 1, 20), "Conv_1": (5, 5, 20, 50),
                    "Dense_0": (800, 500), "Dense_1": (500, 10)}
  cost = ro.model_cost(params, LENET_LAYERS, (28, 28, 1))
  assert cost.params == sum(x.size for x in jax.tree.leaves(params))


def test_mnist_inputs_are_normalised():
  arrays = data.mnist_arrays(None)
  train = np.asarray(arrays.train_x)
  raw, _ = ro.datasets.load_mnist10k()
  np.testing.assert_allclose(train * data.MNIST_STD + data.MNIST_MEAN,
                             raw.images, atol=1e-6)
  assert abs(train.mean()) < 0.05 and abs(train.std() - 1) < 0.05
