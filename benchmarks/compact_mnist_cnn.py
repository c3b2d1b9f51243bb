"""Compacting the MNIST CNN after RAMDA training: smaller, same accuracy.

Trains the CNN of ``benchmarks.mnist_cnn`` with its defaults: RAMDA,
channel-wise group lasso and the stage-wise schedule on the bundled MNIST
subset. Then :func:`ramda_optax.compact` removes the units whose outgoing
weights are all zero from the trained weights W. The script prints the
widths, parameters and multiply-accumulates (MACs) of the original and the
compact model, their validation accuracies (equal, since compaction is
exact), the largest logit difference, and the time of a jitted forward
pass on the 2,000 validation images. Each time is the median of ``--runs``
runs after warm-up, with the two models alternating in the same process.

Run (about a minute on a 2-core CPU, compilation included):

    python -m benchmarks.compact_mnist_cnn
"""

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import ramda_optax
from benchmarks import mnist_cnn
from benchmarks.models import CNN, CNN_LAYERS


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
  train, valid = ramda_optax.datasets.load_mnist10k()
  params = CNN().init(jax.random.key(args.seed), train.images[:1])["params"]
  params = mnist_cnn.train(args, train.images, train.labels, params,
                           ramda_optax.groups.structured(params))
  print(f"trained in {time.perf_counter() - start:.1f} s ({jax.devices()[0]})")

  small = ramda_optax.compact(params, CNN_LAYERS)
  widths = [small.features[name] for name in ("Conv_0", "Conv_1")]
  models = {"original": (CNN(), params),
            "compact": (CNN(widths), small.params)}
  images = jax.device_put(valid.images)
  forward = {name: jax.jit(model.apply) for name, (model, _) in models.items()}
  logits = {name: forward[name]({"params": p}, images)
            for name, (_, p) in models.items()}
  costs = {name: ramda_optax.model_cost(p, CNN_LAYERS, valid.images.shape[1:])
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
