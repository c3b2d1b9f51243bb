"""The paper's PG rule on leaves whose groups are split over devices: its
solve by sweeps aimed at the optimizer's stop hints, against sweeps not
aimed.

With ``--model cnn`` (the default), trains the MNIST CNN of
``benchmarks.sharded_training --fsdp --by-groups --paper-rule`` (a data
axis and a model axis of 2, kernels split along the axis of their groups)
twice in one process, the steps taken in turn: one run as the optimizer
runs (each sharded leaf's first sweep aimed at
:func:`ramda_optax.fused.stop_hint`: its stop at the last step, the
state's ``inner_iters``, scaled by the move of the leaf before it), one
with the state's iterations zeroed before each update, which aims no
sweep (its records still have the aimed sweep's room, and a kept iterate
its buffer). Prints the median step time of each and whether the two
runs' params and state are the same floats. On a CPU, simulate devices
with

    XLA_FLAGS=--xla_force_host_platform_device_count=8 \\
        python -m benchmarks.sharded_sweeps --steps 60

Simulated devices share the machine's cores, so their step times count
the work of all devices, not the time of one. With ``--model vgg19`` it
takes one device's first ``--steps`` steps of ``benchmarks.step_time``'s
VGG19 problem from a fresh start (its early regime), where the stops
fall at every step. Either way, for each leaf it prints its mean
stop and the sweeps and iterations a solve by sweeps runs to those stops
(:func:`ramda_optax.cpu_kernel.sweeps_to`) aimed by the optimizer's hints,
aimed at the leaf's last stop alone (0 at a first step), and not aimed: for the CNN the
leaves split over the devices, for VGG19 every regularized leaf as if it
were.
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
from benchmarks import step_time
from benchmarks.losses import cross_entropy
from benchmarks.models import CNN
from benchmarks.models import vgg19_shapes
from ramda_optax import cpu_kernel


def cnn_stops(steps: int, batch_size: int, solver) -> tuple:
  """The CNN's runs aimed and not (see the module docstring): the stops of
  each step, the groups, the params and which leaves the model axis splits
  along their groups."""
  devices = np.array(jax.devices())
  if devices.size % 2:
    raise SystemExit("needs an even number of devices (see the docstring)")
  mesh = Mesh(devices.reshape(-1, 2), ("data", "model"))
  train, _ = ro.datasets.load_mnist10k()
  model = CNN()
  params = model.init(jax.random.key(0), train.images[:1])["params"]
  groups = ro.groups.structured(params)
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
  order = np.random.default_rng(0).permutation(len(train.labels))
  for i in range(steps):
    batch = order[i * batch_size:(i + 1) * batch_size]
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
  print(f"{devices.size} devices, mesh {dict(mesh.shape)}, {steps} steps: "
        f"median step {aimed * 1e3:.1f} ms aimed, {not_aimed * 1e3:.1f} ms "
        f"not ({aimed / not_aimed:.3f}x); params and state the same floats: "
        f"{same}")
  split = ["model" in tuple(s) for s in jax.tree.leaves(
      specs, is_leaf=lambda x: isinstance(x, P))]
  return stops, groups, params, split


def vgg19_stops(steps: int, solver) -> tuple:
  """One device's stops on VGG19's problem in the early regime, the first
  ``steps`` steps from a fresh start (step_time's starts are all alike),
  the groups, the params and every leaf as split."""
  shapes, groups = vgg19_shapes()
  init, grad_fn = step_time.problem(shapes, groups)
  optimizer = ro.ramda(1e-2, regularizer=ro.group_lasso(1e-4, groups),
                       solver=solver)

  @jax.jit
  def step(params, state, grads):
    updates, state = optimizer.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  params, state, stops = init, optimizer.init(init), []
  for n in range(steps):
    params, state = step(params, state, grad_fn(params, n))
    stops.append(np.asarray(state.inner_iters))
  print(f"VGG19, one device, the first {steps} steps")
  return stops, groups, init, [True] * len(jax.tree.leaves(init))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", choices=("cnn", "vgg19"), default="cnn")
  parser.add_argument("--steps", type=int, default=60)
  parser.add_argument("--batch-size", type=int, default=128)
  args = parser.parse_args()
  solver = ro.pg_solver()
  if args.model == "cnn":
    stops, groups, params, split = cnn_stops(args.steps, args.batch_size,
                                             solver)
  else:
    stops, groups, params, split = vgg19_stops(args.steps, solver)
  axes = jax.tree.leaves(groups, is_leaf=lambda x: x is None or
                         isinstance(x, tuple))
  # Each step's hints: the optimizer's (fused.stop_hint, from the last
  # step's stops and this step's so far), and the last stop alone.
  hints = {"aimed": [], "at the last stop": []}
  last = np.zeros_like(stops[0])
  for now in stops:
    latest, aims = None, {}
    for i, reduced in enumerate(axes):
      if reduced is not None:
        aims[i] = int(ro.fused.stop_hint(last[i], latest))
        latest = (now[i], last[i])
    hints["aimed"].append(aims)
    hints["at the last stop"].append(dict(enumerate(last.tolist())))
    last = now
  hints["not aimed"] = [{} for _ in stops]
  paths = jax.tree_util.tree_leaves_with_path(params)
  # Per hint, the leaves' sizes and mean sweeps and iterations a solve.
  totals = {name: [] for name in hints}
  for i, ((path, leaf), reduced, shards) in enumerate(zip(paths, axes, split)):
    if reduced is None or not shards:
      continue  # not stepped by sweeps
    entries = math.prod(leaf.shape[d] for d in reduced)
    seq = [int(now[i]) for now in stops]
    for name, aims in hints.items():
      taken = np.array([cpu_kernel.sweeps_to(
          stop, aim.get(i), entries=entries, max_iters=solver.max_iters)
                        for stop, aim in zip(seq, aims)])
      totals[name].append((leaf.size, *taken.mean(axis=0)))
    print(f"{jax.tree_util.keystr(path)} ({leaf.size // entries} groups of "
          f"{entries}): stop {np.mean(seq):.1f} on average; sweeps / "
          f"iterations a solve: " + ", ".join(
              f"{name} {rows[-1][1]:.2f} / {rows[-1][2]:.1f}"
              for name, rows in totals.items()))
  weighted = {name: np.average(np.array(rows)[:, 1:], axis=0,
                               weights=np.array(rows)[:, 0])
              for name, rows in totals.items()}
  print("weighted by the leaves' sizes: " + ", ".join(
      f"{name} {s:.2f} / {n:.1f}" for name, (s, n) in weighted.items()))


if __name__ == "__main__":
  main()
