"""Times one jitted optimizer step, as ratios to optax.adam in the same process.

The parameter sets are the paper's VGG19 for CIFAR-10 in Flax layout (about
20M parameters; conv kernels grouped channel-wise, the dense head
input-wise) and a 1M-parameter MLP (dense kernels grouped input-wise). The
gradient stream comes from a consistent loss, ½ Σ h (W − T)² around a
group-sparse target T plus Gaussian noise, so that warm starts and screening
behave as in training. Each step (update and apply_updates, params and
state donated) is timed after a warm-up; the median of ``--steps`` is
reported with the solver's inner iterations per step (summed over leaves).

    python -m benchmarks.step_time --model vgg19 --variants adam,ramda,ramda_exact
"""

import argparse
import json
import math
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ramda_optax as ro
from benchmarks.mnist_cnn import make_step
from benchmarks.models import CNN, mlp1m_shapes, vgg19_shapes

MODELS = {"vgg19": vgg19_shapes, "mlp1m": mlp1m_shapes}


def bare_passes(count: int) -> optax.GradientTransformation:
  """Not an optimizer: per leaf, ``count`` passes z ← z − (P z − b)/max P,
  each reading z, P and b and writing z (P and b held in the state). The
  least memory traffic of ``count`` PG iterations, as a floor to compare
  the solvers with."""

  def init(params):
    return (jax.tree.map(lambda x: jnp.abs(x) + 0.5, params),
            jax.tree.map(jnp.copy, params))

  def update(grads, state, params):
    del grads

    def passes(w, p, b):
      step = 1 / jnp.max(p)
      z = jax.lax.fori_loop(0, count, lambda _, z: z - step * (p * z - b), w)
      return z - w

    return jax.tree.map(passes, params, *state), state

  return optax.GradientTransformation(init, update)


def variants(groups: dict, strength: float) -> dict[str, Callable]:
  reg = ro.group_lasso(strength, groups)
  return {
      "adam": lambda: optax.adam(1e-3),
      "madgrad": lambda: optax.contrib.madgrad(1e-2),
      "ramda_noreg": lambda: ro.ramda(1e-2),
      "ramda": lambda: ro.ramda(1e-2, regularizer=reg),
      "ramda_pg1": lambda: ro.ramda(1e-2, regularizer=reg, solver=ro.pg_solver(1)),
      "ramda_pg10": lambda: ro.ramda(
          1e-2, regularizer=reg, solver=ro.pg_solver(10, rtol=0.0)),
      "ramda_exact": lambda: ro.ramda(1e-2, regularizer=reg, solver=ro.exact_solver()),
      "rmda": lambda: ro.rmda(1e-1, regularizer=reg),
      "proxgen": lambda: ro.proxgen(1e-3, regularizer=reg),
      "prox_ssi": lambda: ro.prox_ssi(1e-3, regularizer=reg),
      "prox_sgd": lambda: ro.prox_sgd(1e-1, regularizer=reg),
      "floor11": lambda: bare_passes(11),
  }


def problem(shapes: dict, groups: dict, seed: int = 0):
  """Initial params and a jitted gradient function of (params, step)."""
  leaves, treedef = jax.tree.flatten(
      shapes, is_leaf=lambda x: isinstance(x, tuple) and all(
          isinstance(i, int) for i in x))
  group_leaves = treedef.flatten_up_to(groups)
  keys = jax.random.split(jax.random.key(seed), 3 * len(leaves))
  init, target, curv = [], [], []
  for i, (shape, axes) in enumerate(zip(leaves, group_leaves)):
    k1, k2, k3 = keys[3 * i: 3 * i + 3]
    scale = 1 / math.sqrt(max(math.prod(shape[:-1]), 1))
    w = scale * jax.random.normal(k1, shape)
    t = scale * jax.random.normal(k2, shape)
    if axes is not None:
      keep = [1 if d in axes else s for d, s in enumerate(shape)]
      t = t * (jax.random.uniform(k3, keep) < 0.5)
    init.append(w)
    target.append(t)
    curv.append(jax.random.uniform(k3, shape, minval=0.5, maxval=2.0))
  init, target, curv = (treedef.unflatten(x) for x in (init, target, curv))

  @jax.jit
  def grad_fn(params, step):
    noise_keys = jax.random.split(jax.random.fold_in(jax.random.key(seed + 1), step),
                                  len(leaves))
    noise = treedef.unflatten([
        0.1 * jax.random.normal(k, p.shape)
        for k, p in zip(noise_keys, treedef.flatten_up_to(params))])
    return jax.tree.map(lambda h, w, t, n: h * (w - t) + n, curv, params, target, noise)

  return init, grad_fn


def time_variant(opt, init, grad_fn, warmup: int, steps: int) -> dict:
  params = jax.tree.map(jnp.copy, init)
  # A copy: optax.contrib.madgrad keeps params themselves as x0, which
  # could not be donated together with them.
  state = opt.init(jax.tree.map(jnp.copy, params))

  def step(params, state, grads):
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  step = jax.jit(step, donate_argnums=(0, 1))
  memory = step.lower(params, state, grad_fn(params, 0)).compile().memory_analysis()
  times, iters = [], []
  for n in range(warmup + steps):
    grads = jax.block_until_ready(grad_fn(params, n))
    start = time.perf_counter()
    params, state = jax.block_until_ready(step(params, state, grads))
    if n >= warmup:
      times.append(time.perf_counter() - start)
      if isinstance(state, (ro.RamdaState, ro.ProximalState)):
        iters.append(int(np.sum(state.inner_iters)))
  return {"median_s": float(np.median(times)),
          "inner_iters": float(np.mean(iters)) if iters else None,
          # XLA's buffer assignment: scratch memory of one step, beyond its
          # (donated) arguments and outputs.
          "temp_bytes": getattr(memory, "temp_size_in_bytes", None)}


def time_training_step(variant: str, warmup: int, steps: int) -> float:
  """Median time of one jitted training step (forward, backward, update) of
  the CNN of benchmarks.mnist_cnn on batches of 128 bundled MNIST images."""
  train, _ = ro.datasets.load_mnist10k()
  model = CNN()
  params = model.init(jax.random.key(0), train.images[:1])["params"]
  groups = ro.groups.structured(params)
  opt = variants(groups, 1e-4)[variant]()
  state = opt.init(jax.tree.map(jnp.copy, params))
  step = make_step(model, opt)
  times = []
  for n in range(warmup + steps):
    batch = slice(128 * n % 7936, 128 * n % 7936 + 128)
    start = time.perf_counter()
    params, state, loss = jax.block_until_ready(
        step(params, state, train.images[batch], train.labels[batch]))
    if n >= warmup:
      times.append(time.perf_counter() - start)
  return float(np.median(times))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model", choices=MODELS, default="vgg19")
  parser.add_argument("--variants", default="adam,madgrad,ramda,ramda_exact")
  parser.add_argument("--strength", type=float, default=1e-4)
  parser.add_argument("--warmup", type=int, default=10)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--json", default=None, help="write results here")
  parser.add_argument("--training-step", action="store_true",
                      help="time the mnist_cnn CNN's whole training step instead")
  args = parser.parse_args()
  if args.training_step:
    names = args.variants.split(",")
    base = time_training_step("adam", args.warmup, args.steps)
    print("CNN training step (forward + backward + update), batch 128:")
    print(f"{'adam':12s} {1e3 * base:9.2f} ms")
    for name in names:
      if name != "adam":
        t = time_training_step(name, args.warmup, args.steps)
        print(f"{name:12s} {1e3 * t:9.2f} ms   {t / base:6.2f}x adam", flush=True)
    return
  shapes, groups = MODELS[args.model]()
  init, grad_fn = problem(shapes, groups)
  size = sum(x.size for x in jax.tree.leaves(init))
  table = variants(groups, args.strength)
  names = args.variants.split(",")
  if "adam" not in names:
    names = ["adam"] + names
  print(f"{args.model}: {size / 1e6:.2f}M parameters, {jax.devices()[0].device_kind}")
  results = {}
  for name in names:
    results[name] = time_variant(table[name](), init, grad_fn, args.warmup, args.steps)
    r = results[name]
    ratio = r["median_s"] / results["adam"]["median_s"]
    its = "" if r["inner_iters"] is None else f"   inner iters/step {r['inner_iters']:.1f}"
    temp = "" if r["temp_bytes"] is None else f"   scratch {r['temp_bytes'] / 2**20:7.1f} MiB"
    print(f"{name:12s} {1e3 * r['median_s']:9.1f} ms   {ratio:6.2f}x adam{temp}{its}",
          flush=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"model": args.model, "parameters": size, "results": results}, f, indent=1)


if __name__ == "__main__":
  main()
