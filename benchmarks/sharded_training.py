"""Data-parallel and FSDP-style training of the MNIST CNN with RAMDA.

Shards the batch over a ``data`` mesh axis and, with ``--fsdp``, every kernel
along its output axis over a ``model`` axis, with the optimizer state
sharded like the params (:func:`ramda_optax.sharding.state_shardings`).
With ``--fsdp --by-groups`` each kernel is split along the axis that indexes
its groups instead (input channels, input features; where the model axis
divides it: :func:`ramda_optax.sharding.group_axis_specs`): the optimizer's
kernel then steps each device's shard, where output-axis shards, which cut
every group, are gathered for it (:mod:`ramda_optax.partitioning`). With
``--paper-rule`` the solver is the paper's PG rule (``pg_solver()``),
whose kernel steps such shards by sweeps, gathering only its groups' Q
(:func:`ramda_optax.cpu_kernel.pg_step_across`). On a CPU, simulate
devices with

    XLA_FLAGS=--xla_force_host_platform_device_count=8 \
        python -m benchmarks.sharded_training --fsdp --by-groups

On several hosts, call ``jax.distributed.initialize()`` first (see README).
"""

import argparse
import time

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import ramda_optax as ro
from benchmarks.losses import cross_entropy
from benchmarks.models import CNN


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=3)
  parser.add_argument("--batch-size", type=int, default=128)
  parser.add_argument("--fsdp", action="store_true",
                      help="also shard kernels over a 'model' axis of size 2")
  parser.add_argument("--by-groups", action="store_true",
                      help="with --fsdp, split kernels along the axis that "
                           "indexes their groups, not their output axis")
  parser.add_argument("--paper-rule", action="store_true",
                      help="solve by the paper's PG rule (pg_solver()), not "
                           "the default exact solver")
  args = parser.parse_args()

  devices = np.array(jax.devices())
  model_axis = 2 if args.fsdp and devices.size % 2 == 0 else 1
  mesh = Mesh(devices.reshape(-1, model_axis), ("data", "model"))
  train, valid = ro.datasets.load_mnist10k()
  model = CNN()
  params = model.init(jax.random.key(0), train.images[:1])["params"]
  groups = ro.groups.structured(params)
  optimizer = ro.ramda(1e-2, momentum=0.9,
                       regularizer=ro.group_lasso(1e-4, groups),
                       solver=ro.pg_solver() if args.paper_rule else None)

  def spec(p):  # kernels split along their output axis; the rest replicated
    return P(*([None] * (p.ndim - 1)), "model") if p.ndim > 1 else P()

  if args.by_groups:
    specs = ro.sharding.group_axis_specs(params, groups, "model", model_axis)
  else:
    specs = jax.tree.map(spec, params)
  param_sh = jax.tree.map(lambda s: NamedSharding(mesh, s), specs,
                          is_leaf=lambda x: isinstance(x, P))
  state_sh = ro.sharding.state_shardings(
      jax.eval_shape(optimizer.init, params), params, param_sh, mesh)
  batch_sh = NamedSharding(mesh, P("data"))
  params = jax.device_put(params, param_sh)
  opt_state = jax.jit(optimizer.init, out_shardings=state_sh)(params)

  def step(params, opt_state, images, labels):
    loss, grads = jax.value_and_grad(cross_entropy, argnums=1)(
        model, params, images, labels)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  step = jax.jit(step, in_shardings=(param_sh, state_sh, batch_sh, batch_sh),
                 out_shardings=(param_sh, state_sh, None), donate_argnums=(0, 1))
  print(f"{devices.size} devices, mesh {dict(mesh.shape)}")
  rng = np.random.default_rng(0)
  steps = len(train.labels) // args.batch_size
  start = time.perf_counter()
  for epoch in range(1, args.epochs + 1):
    order = rng.permutation(len(train.labels))
    for i in range(steps):
      batch = order[i * args.batch_size:(i + 1) * args.batch_size]
      params, opt_state, loss = step(
          params, opt_state, train.images[batch], train.labels[batch])
      # Simulated CPU devices share one thread pool: letting many steps run
      # ahead can deadlock XLA:CPU's collectives, so wait for each one.
      loss.block_until_ready()
    logits = model.apply({"params": params}, valid.images)
    accuracy = float(np.mean(np.argmax(logits, -1) == valid.labels))
    theta = ro.subproblem_solution(opt_state, params)
    print(f"epoch {epoch}: loss {float(loss):.4f}, val acc {accuracy:.2%}, "
          f"weighted group sparsity of θ̂ "
          f"{float(ro.weighted_group_sparsity(theta, groups)):.2%}, "
          f"{time.perf_counter() - start:.1f} s")
  kernel = params["Conv_1"]["kernel"]
  print(f"Conv_1 kernel sharding: {kernel.sharding.spec}; state V: "
        f"{opt_state.dual.grad_sum['Conv_1']['kernel'].sharding.spec}")


if __name__ == "__main__":
  main()
