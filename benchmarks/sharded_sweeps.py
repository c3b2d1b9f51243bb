"""The paper's PG rule on leaves whose groups are split over devices: its
solve by sweeps aimed at the last step's stop, against sweeps not aimed.

Trains the MNIST CNN of ``benchmarks.sharded_training --fsdp --by-groups
--paper-rule`` (a data axis and a model axis of 2, kernels split along the
axis of their groups) twice in one process, the steps taken in turn: one
run as the optimizer runs (each sharded leaf's first sweep aimed at the
stop of its last step, the state's ``inner_iters``), one with the state's
iterations zeroed before each update, which aims no sweep (its records
still have the aimed sweep's room, and a kept iterate its buffer). Prints the
median step time of each, whether the two runs' params and state are the
same floats, and, for each leaf stepped by sweeps, its mean stop and the
sweeps and iterations a solve ran either way
(:func:`ramda_optax.cpu_kernel.sweeps_to`, from the run's stops). On a CPU,
simulate devices with

    XLA_FLAGS=--xla_force_host_platform_device_count=8 \\
        python -m benchmarks.sharded_sweeps --steps 60

Simulated devices share the machine's cores, so their step times count
the work of all devices, not the time of one.
"""

import argparse
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import ramda_optax as ro
from benchmarks.losses import cross_entropy
from benchmarks.models import CNN
from ramda_optax import cpu_kernel


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=60)
  parser.add_argument("--batch-size", type=int, default=128)
  args = parser.parse_args()

  devices = np.array(jax.devices())
  if devices.size % 2:
    raise SystemExit("needs an even number of devices (see the docstring)")
  mesh = Mesh(devices.reshape(-1, 2), ("data", "model"))
  train, _ = ro.datasets.load_mnist10k()
  model = CNN()
  params = model.init(jax.random.key(0), train.images[:1])["params"]
  groups = ro.groups.structured(params)
  solver = ro.pg_solver()
  optimizer = ro.ramda(1e-2, momentum=0.9,
                       regularizer=ro.group_lasso(1e-4, groups), solver=solver)
  specs = ro.sharding.group_axis_specs(params, groups, "model", 2)
  param_sh = jax.tree.map(lambda s: NamedSharding(mesh, s), specs,
                          is_leaf=lambda x: isinstance(x, P))
  state_sh = ro.sharding.state_shardings(
      jax.eval_shape(optimizer.init, params), params, param_sh, mesh)
  batch_sh = NamedSharding(mesh, P("data"))

  def make(aimed):
    def step(params, state, images, labels):
      loss, grads = jax.value_and_grad(cross_entropy, argnums=1)(
          model, params, images, labels)
      if not aimed:
        state = state._replace(inner_iters=jnp.zeros_like(state.inner_iters))
      updates, state = optimizer.update(grads, state, params)
      return optax.apply_updates(params, updates), state, loss
    return jax.jit(step, in_shardings=(param_sh, state_sh, batch_sh, batch_sh),
                   out_shardings=(param_sh, state_sh, None))

  placed = jax.device_put(params, param_sh)
  runs = {aimed: [make(aimed), placed,
                  jax.jit(optimizer.init, out_shardings=state_sh)(placed)]
          for aimed in (True, False)}
  times = {aimed: [] for aimed in runs}
  stops = []
  rng = np.random.default_rng(0)
  order = rng.permutation(len(train.labels))
  for i in range(args.steps):
    batch = order[i * args.batch_size:(i + 1) * args.batch_size]
    for aimed in (True, False) if i % 2 else (False, True):
      step, p, s = runs[aimed]
      start = time.perf_counter()
      p, s, loss = step(p, s, train.images[batch], train.labels[batch])
      # Simulated CPU devices share one thread pool: wait for each step.
      loss.block_until_ready()
      times[aimed].append(time.perf_counter() - start)
      runs[aimed][1:] = p, s
    stops.append(np.asarray(runs[True][2].inner_iters))

  same = all(np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(runs[True][1:]), jax.tree.leaves(runs[False][1:])))
  # The first two steps of each compile.
  aimed, not_aimed = (np.median(times[a][2:]) for a in (True, False))
  print(f"{devices.size} devices, mesh {dict(mesh.shape)}, {args.steps} steps: "
        f"median step {aimed * 1e3:.1f} ms aimed, {not_aimed * 1e3:.1f} ms "
        f"not ({aimed / not_aimed:.3f}x); params and state the same floats: "
        f"{same}")
  paths = jax.tree_util.tree_leaves_with_path(params)
  axes = jax.tree.leaves(groups, is_leaf=lambda x: x is None or
                         isinstance(x, tuple))
  for i, ((path, leaf), spec, reduced) in enumerate(
      zip(paths, jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, P)),
          axes)):
    if reduced is None or "model" not in tuple(spec):
      continue  # not stepped by sweeps
    entries = math.prod(leaf.shape[d] for d in reduced)
    seq = [int(s[i]) for s in stops]
    taken = {a: [cpu_kernel.sweeps_to(
        stop, (seq[j - 1] if j else 0) if a else None, entries=entries,
        max_iters=solver.max_iters) for j, stop in enumerate(seq)]
             for a in (True, False)}
    mean = lambda a, k: np.mean([t[k] for t in taken[a]])
    print(f"{jax.tree_util.keystr(path)} ({leaf.size // entries} groups of "
          f"{entries}): stop {np.mean(seq):.1f} on average; a solve "
          f"ran {mean(True, 0):.2f} sweeps and {mean(True, 1):.1f} iterations "
          f"aimed, {mean(False, 0):.2f} and {mean(False, 1):.1f} not")


if __name__ == "__main__":
  main()
