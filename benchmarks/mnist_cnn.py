"""Structured pruning of a small CNN on MNIST with RAMDA and group lasso.

Trains a two-layer Flax CNN on the bundled MNIST subset (8,000 training and
2,000 validation images) with :func:`ramda_optax.ramda` under the paper's
stage-wise schedule, with group lasso on the kernels: one group per input
channel of each Conv kernel and one per input feature of the Dense kernel
(biases are not regularized). Each epoch prints the training loss, the
validation accuracy, the weighted group sparsity of the parameters W and of
the subproblem solution θ̂, and the elapsed time. θ̂ carries the structure
during training; W takes it in the last stage, where the averaging weight
ramps up to 1. The run ends with the groups left alive in each layer.

Run (about a minute on a 2-core CPU, compilation included):

    python -m benchmarks.mnist_cnn
"""

import argparse
import time
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import ramda_optax
from benchmarks.losses import cross_entropy
from benchmarks.models import CNN

StepFn = Callable[
    [optax.Params, optax.OptState, jax.Array, jax.Array],
    tuple[optax.Params, optax.OptState, jax.Array],
]
# Called after each epoch with (epoch, step losses, params, opt_state).
EpochFn = Callable[[int, list[jax.Array], optax.Params, optax.OptState], None]


def make_step(model: nn.Module, optimizer: optax.GradientTransformation) -> StepFn:
  """One jitted training step; params and opt_state are donated."""

  def step(params, opt_state, images, labels):
    loss, grads = jax.value_and_grad(cross_entropy, argnums=1)(
        model, params, images, labels)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return jax.jit(step, donate_argnums=(0, 1))


def make_evaluate(model: nn.Module, groups: optax.Params) -> Callable[..., tuple]:
  """Jitted (accuracy, sparsity of W, sparsity of θ̂) on a labelled split."""

  def evaluate(params, opt_state, images, labels):
    logits = model.apply({"params": params}, images)
    theta = ramda_optax.subproblem_solution(opt_state, params)
    return (
        jnp.mean(jnp.argmax(logits, -1) == labels),
        ramda_optax.weighted_group_sparsity(params, groups),
        ramda_optax.weighted_group_sparsity(theta, groups),
    )

  return jax.jit(evaluate)


def training_arguments(description: str) -> argparse.ArgumentParser:
  """The demo's training flags, for this script and those built on it."""
  parser = argparse.ArgumentParser(description=description)
  parser.add_argument("--epochs", type=int, default=24)
  parser.add_argument("--batch-size", type=int, default=128)
  parser.add_argument("--lr", type=float, default=1e-2, help="RAMDA's η")
  parser.add_argument("--c", type=float, default=0.1,
                      help="averaging weight c = 1 − momentum")
  parser.add_argument("--strength", type=float, default=1e-4,
                      help="group lasso λ")
  parser.add_argument("--seed", type=int, default=0)
  return parser


def train(args: argparse.Namespace, images: np.ndarray, labels: np.ndarray,
          params: optax.Params, groups: optax.Params,
          on_epoch: EpochFn | None = None) -> optax.Params:
  """W after training the CNN from ``params`` with RAMDA, group lasso on
  ``groups`` and the stage-wise schedule, in a seeded order."""
  steps_per_epoch = len(labels) // args.batch_size
  # One restart, decaying η and ε, for the last quarter of training.
  last_stage = steps_per_epoch * (3 * args.epochs // 4)
  milestones = [last_stage] if last_stage else []
  optimizer = ramda_optax.ramda(
      **ramda_optax.stagewise_schedule(args.lr, args.c, milestones),
      regularizer=ramda_optax.group_lasso(args.strength, groups),
  )
  opt_state = optimizer.init(params)
  step = make_step(CNN(), optimizer)
  rng = np.random.default_rng(args.seed)
  for epoch in range(1, args.epochs + 1):
    order = rng.permutation(len(labels))
    losses = []
    for i in range(steps_per_epoch):
      batch = order[i * args.batch_size:(i + 1) * args.batch_size]
      params, opt_state, loss = step(
          params, opt_state, images[batch], labels[batch])
      losses.append(loss)
    if on_epoch is not None:
      on_epoch(epoch, losses, params, opt_state)
  return params


def main() -> None:
  args = training_arguments(__doc__.splitlines()[0]).parse_args()
  train_split, valid = ramda_optax.datasets.load_mnist10k()
  model = CNN()
  params = model.init(jax.random.key(args.seed), train_split.images[:1])["params"]
  # Conv kernels channel-wise, the Dense kernel input-wise, biases free.
  groups = ramda_optax.groups.structured(params)
  evaluate = make_evaluate(model, groups)

  def report(epoch, losses, params, opt_state):
    accuracy, sparsity_w, sparsity_theta = evaluate(
        params, opt_state, valid.images, valid.labels
    )
    print(
        f"{epoch:5d}  {np.mean(losses):10.4f}  {accuracy:7.2%}  "
        f"{sparsity_w:11.2%}  {sparsity_theta:11.2%}  "
        f"{time.perf_counter() - start:8.1f}"
    )

  start = time.perf_counter()
  print("epoch  train loss  val acc  sparsity(W)  sparsity(θ̂)  time (s)")
  params = train(args, train_split.images, train_split.labels, params, groups,
                 report)
  print(ramda_optax.structure_report(params, groups))


if __name__ == "__main__":
  main()
