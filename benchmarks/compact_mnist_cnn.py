"""Compacting the MNIST CNN after RAMDA training: smaller, same accuracy.

Trains the CNN of ``benchmarks/mnist_cnn.py`` with its defaults: RAMDA,
channel-wise group lasso and the stage-wise schedule on the bundled MNIST
subset. Then :func:`ramda_optax.compact` removes the units whose outgoing
weights are all zero from the trained weights W. The script prints the
widths, parameters and multiply-accumulates (MACs) of the original and the
compact model, their validation accuracies (equal, since compaction is
exact), the largest logit difference, and the time of a jitted forward
pass on the 2,000 validation images. Each time is the median of ``--runs``
runs after warm-up, with the two models alternating in the same process.

Run (about a minute on a 2-core CPU, compilation included):

    python benchmarks/compact_mnist_cnn.py
"""

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import mnist_cnn
import ramda_optax
from ramda_optax.compaction import Conv, Dense, Flatten, Pool

LAYERS = (Conv("Conv_0"), Pool((2, 2), (2, 2)), Conv("Conv_1"),
          Pool((2, 2), (2, 2)), Flatten(), Dense("Dense_0"))


class CNN(nn.Module):
  """``mnist_cnn.CNN`` with its conv widths as a field (same param names)."""

  widths: Sequence[int] = (16, 32)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for features in self.widths:
      x = nn.relu(nn.Conv(features, (3, 3))(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    return nn.Dense(10)(x.reshape(x.shape[0], -1))


def train(args: argparse.Namespace) -> mnist_cnn.Params:
  """W after ``mnist_cnn``'s training run (same model, optimizer, order)."""
  train_split, _ = ramda_optax.datasets.load_mnist10k()
  steps_per_epoch = len(train_split.labels) // args.batch_size
  model = mnist_cnn.CNN()
  params = model.init(jax.random.key(args.seed), train_split.images[:1])["params"]
  groups = ramda_optax.groups.structured(params)
  last_stage = steps_per_epoch * (3 * args.epochs // 4)
  optimizer = ramda_optax.ramda(
      **ramda_optax.stagewise_schedule(
          args.lr, args.c, [last_stage] if last_stage else []),
      regularizer=ramda_optax.group_lasso(args.strength, groups),
  )
  opt_state = optimizer.init(params)
  step = mnist_cnn.make_step(model, optimizer)
  rng = np.random.default_rng(args.seed)
  for _ in range(args.epochs):
    order = rng.permutation(len(train_split.labels))
    for i in range(steps_per_epoch):
      batch = order[i * args.batch_size:(i + 1) * args.batch_size]
      params, opt_state, _ = step(params, opt_state, train_split.images[batch],
                                  train_split.labels[batch])
  return params


def median_times(
    fns: Sequence[Callable[[], jax.Array]], runs: int
) -> list[float]:
  """Median seconds of each fn over ``runs`` alternating runs, after 3
  warm-up runs each."""
  for fn in fns:
    for _ in range(3):
      jax.block_until_ready(fn())
  times = [[] for _ in fns]
  for _ in range(runs):
    for fn, out in zip(fns, times):
      start = time.perf_counter()
      jax.block_until_ready(fn())
      out.append(time.perf_counter() - start)
  return [statistics.median(t) for t in times]


def parse_args() -> argparse.Namespace:
  parser = mnist_cnn.training_arguments(__doc__.splitlines()[0])
  parser.add_argument("--runs", type=int, default=50,
                      help="timed forward passes per model")
  return parser.parse_args()


def main() -> None:
  args = parse_args()
  start = time.perf_counter()
  params = train(args)
  print(f"trained in {time.perf_counter() - start:.1f} s ({jax.devices()[0]})")

  small = ramda_optax.compact(params, LAYERS)
  widths = [small.features[name] for name in ("Conv_0", "Conv_1")]
  models = {"original": (mnist_cnn.CNN(), params),
            "compact": (CNN(widths), small.params)}
  _, valid = ramda_optax.datasets.load_mnist10k()
  images = jax.device_put(valid.images)
  forward = {name: jax.jit(model.apply) for name, (model, _) in models.items()}
  logits = {name: forward[name]({"params": p}, images)
            for name, (_, p) in models.items()}
  costs = {name: ramda_optax.model_cost(p, LAYERS, valid.images.shape[1:])
           for name, (_, p) in models.items()}
  seconds = dict(zip(models, median_times(
      [lambda n=name: forward[n]({"params": models[n][1]}, images)
       for name in models], args.runs)))

  print(f"widths (Conv_0, Conv_1): (16, 32) -> {tuple(widths)}; Dense_0 "
        f"inputs {params['Dense_0']['kernel'].shape[0]} -> "
        f"{small.params['Dense_0']['kernel'].shape[0]}")
  print(f"{'':9s} {'params':>8s} {'MACs':>10s} {'val acc':>8s} "
        f"{'forward (ms)':>13s}")
  for name in models:
    accuracy = np.mean(np.argmax(logits[name], -1) == valid.labels)
    print(f"{name:9s} {costs[name].params:8,d} {costs[name].macs:10,d} "
          f"{accuracy:8.2%} {1e3 * seconds[name]:13.2f}")
  original, compact = costs["original"], costs["compact"]
  print(f"compact / original: params {compact.params / original.params:.3f}, "
        f"MACs {compact.macs / original.macs:.3f}, forward time "
        f"{seconds['compact'] / seconds['original']:.3f} "
        f"(median of {args.runs} runs)")
  gap = jnp.max(jnp.abs(logits["compact"] - logits["original"]))
  same = np.array_equal(np.argmax(logits["compact"], -1),
                        np.argmax(logits["original"], -1))
  print(f"max |Δ logit| = {float(gap):.2e} (max |logit| = "
        f"{float(jnp.max(jnp.abs(logits['original']))):.1f}); same "
        f"predictions: {same}; total {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
  main()
