"""Sharded training on 8 simulated CPU devices vs one device.

Run by tests/test_sharding.py in a subprocess with
XLA_FLAGS=--xla_force_host_platform_device_count=8; exits non-zero on a
mismatch. The training runs in float64: sharding changes the order of the
gradient reductions, and in float32 the PG solver's relative-decrease rule
(rtol 1e-8, below float32's resolution) turns those roundings into
different iteration counts; in float64 the trajectories agree to 1e-6 as
they should. The kernels' steps (float32: the CPU kernel, the Pallas
kernel in its interpreter) are checked on given gradients: on shards that
hold whole groups each device steps its own shard, with no gather, bit for
bit as one device; where a sharding cuts groups the leaf is gathered.
"""

import os
import re
import sys

assert "--xla_force_host_platform_device_count=8" in os.environ.get("XLA_FLAGS", "")

import jax  # pylint: disable=g-import-not-at-top

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import ramda_optax as ro

GROUPS = {"l1": {"kernel": (1,), "bias": None}, "l2": {"kernel": (1,), "bias": None},
          "conv": {"kernel": (0, 1, 3), "bias": None}}


def init_params(key):
  k1, k2, k3 = jax.random.split(key, 3)
  return {
      "conv": {"kernel": 0.3 * jax.random.normal(k3, (3, 3, 1, 8)), "bias": jnp.zeros(8)},
      "l1": {"kernel": 0.1 * jax.random.normal(k1, (8 * 8 * 8, 32)), "bias": jnp.zeros(32)},
      "l2": {"kernel": 0.1 * jax.random.normal(k2, (32, 8)), "bias": jnp.zeros(8)},
  }


def loss_fn(params, x, y):
  h = jax.lax.conv_general_dilated(
      x, params["conv"]["kernel"], (1, 1), "SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC")) + params["conv"]["bias"]
  h = jax.nn.relu(h).reshape(x.shape[0], -1)
  h = jax.nn.relu(h @ params["l1"]["kernel"] + params["l1"]["bias"])
  logits = h @ params["l2"]["kernel"] + params["l2"]["bias"]
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def optimizers():
  reg = ro.group_lasso(2e-2, GROUPS)
  return {
      "ramda": ro.ramda(1e-2, momentum=0.9, regularizer=reg, restart_steps=(3,)),
      # The exact solver's XLA path (the default backend is the CPU kernel).
      "ramda_exact": ro.ramda(1e-2, regularizer=reg,
                              solver=ro.exact_solver(backend="xla")),
      # Blocks of whole groups, by XLA and by the Pallas kernel (the
      # interpreter here): groups split across shards stay whole.
      "ramda_blocks": ro.ramda(1e-2, regularizer=reg,
                               solver=ro.pg_solver(block_bytes=256)),
      "ramda_exact_kernel": ro.ramda(1e-2, regularizer=reg, solver=ro.exact_solver(
          block_bytes=256, backend="pallas")),
      "proxgen": ro.proxgen(1e-2, regularizer=ro.group_lasso(0.1, GROUPS)),
      "nuclear": ro.proxgen(1e-3, regularizer=ro.nuclear_norm(
          1e-2, {"conv": {"kernel": False, "bias": False},
                 "l1": {"kernel": True, "bias": False},
                 "l2": {"kernel": True, "bias": False}}),
                            solver=ro.pg_solver(5, 1e-3)),
  }


def train(opt, params, batches, param_sh=None, batch_sh=None, mesh=None):
  def step(params, state, x, y):
    grads = jax.grad(loss_fn)(params, x, y)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  if mesh is None:
    state = opt.init(params)
    step = jax.jit(step)
  else:
    abstract = jax.eval_shape(opt.init, params)
    state_sh = ro.sharding.state_shardings(abstract, params, param_sh, mesh)
    params = jax.device_put(params, param_sh)
    state = jax.jit(opt.init, out_shardings=state_sh)(params)
    step = jax.jit(step, in_shardings=(param_sh, state_sh, batch_sh, batch_sh),
                   out_shardings=(param_sh, state_sh))
  for x, y in batches:
    if mesh is not None:
      x, y = jax.device_put(x, batch_sh), jax.device_put(y, batch_sh)
    # Wait for each step: simulated CPU devices share one thread pool, and
    # steps running ahead can deadlock XLA:CPU's collectives.
    params, state = jax.block_until_ready(step(params, state, x, y))
  if mesh is not None:
    expected = jax.tree.leaves(state_sh)
    for leaf, sh in zip(jax.tree.leaves(state), expected):
      assert leaf.sharding.is_equivalent_to(sh, leaf.ndim), (leaf.sharding, sh)
    for leaf, sh in zip(jax.tree.leaves(params), jax.tree.leaves(param_sh)):
      assert leaf.sharding.is_equivalent_to(sh, leaf.ndim), (leaf.sharding, sh)
  return params, state


KERNEL_GROUPS = {"conv": {"kernel": (0, 1, 3), "bias": None},
                 "dense": {"kernel": (1,), "bias": None}}


def kernel_steps(opt, params, grads, shardings=None):
  """Three jitted updates of ``opt`` on float32 ``grads``, sharded by
  ``shardings`` if given; returns params, state and the compiled update's
  HLO text."""
  if shardings is not None:
    params = jax.device_put(params, shardings)
    grads = [jax.device_put(g, shardings) for g in grads]
  state = opt.init(params)

  def step(params, state, g):
    updates, state = opt.update(g, state, params)
    return optax.apply_updates(params, updates), state

  step = jax.jit(step)
  hlo = step.lower(params, state, grads[0]).compile().as_text()
  for g in grads:
    params, state = jax.block_until_ready(step(params, state, g))
  return params, state, hlo


def check_kernel_shards():
  rng = np.random.default_rng(1)
  shapes = {"conv": {"kernel": (3, 3, 8, 16), "bias": (16,)},
            "dense": {"kernel": (64, 32), "bias": (32,)}}
  f32 = lambda: jax.tree.map(
      lambda shape: jnp.asarray(rng.normal(size=shape), jnp.float32), shapes,
      is_leaf=lambda x: isinstance(x, tuple))
  params, grads = f32(), [f32() for _ in range(3)]
  mesh = Mesh(np.array(jax.devices()), ("model",))
  sharded = lambda specs: jax.tree.map(
      lambda spec: NamedSharding(mesh, spec), specs,
      is_leaf=lambda x: isinstance(x, P))
  # Along the axis that indexes the groups (input channels, input
  # features), and along the axis that every group spans.
  whole = sharded({"conv": {"kernel": P(None, None, "model"), "bias": P("model")},
                   "dense": {"kernel": P("model"), "bias": P("model")}})
  cut = sharded({"conv": {"kernel": P(None, None, None, "model"), "bias": P()},
                 "dense": {"kernel": P(None, "model"), "bias": P()}})
  reg = ro.group_lasso(0.5, KERNEL_GROUPS)
  # (optimizer, whether its kernel steps whole-group shards in place): the
  # paper's PG rule, whose test sums Q over the whole leaf, gathers only
  # the groups' Q.
  for name, (opt, by_shards) in {
      "cpu kernel, ramda": (ro.ramda(1e-1, regularizer=reg, restart_steps=(2,)),
                            True),
      "cpu kernel, proxgen": (ro.proxgen(1e-1, regularizer=reg), True),
      "pallas kernel, ramda": (ro.ramda(1e-1, regularizer=reg, solver=ro.exact_solver(
          block_bytes=256, backend="pallas")), True),
      "cpu kernel, the paper's rule": (ro.ramda(
          1e-1, regularizer=reg, restart_steps=(2,),
          solver=ro.pg_solver(rtol=1e-4)), True),
      "cpu kernel, proxgen, the paper's rule": (ro.proxgen(
          1e-1, regularizer=reg, solver=ro.pg_solver(rtol=1e-4)), True)}.items():
    reference, ref_state, _ = kernel_steps(opt, params, grads)
    assert int(np.max(ref_state.inner_iters)) > 0, name
    for layout, shardings, cut_groups in (("whole groups", whole, False),
                                          ("cut groups", cut, True)):
      gathers = cut_groups or not by_shards
      out, state, hlo = kernel_steps(opt, params, grads, shardings)
      for a, b in zip(jax.tree.leaves((reference, ref_state)),
                      jax.tree.leaves((out, state))):
        np.testing.assert_array_equal(np.asarray(b), np.asarray(a),
                                      err_msg=f"{name}/{layout}")
      for leaf, sh in zip(jax.tree.leaves(out), jax.tree.leaves(shardings)):
        assert leaf.sharding.is_equivalent_to(sh, leaf.ndim), (name, layout)
      # Gathers of leaf data (floats); the steps' iteration counts (int32,
      # one per shard) are gathered to be maximised with every leaf's at
      # once (ramda_optax.fused.most_per_leaf).
      gathered = re.search(r"= f\d+\[[\d,]*\]\{[\d,]*\} all-gather\(", hlo)
      assert (gathered is not None) == gathers, (name, layout)
      if "rule" in name and not cut_groups:
        # The conv's first sweep, aimed at the last step's stop, has room
        # in its records (its shard's one group) for 72 iterations.
        assert re.search(r"u32\[1,72,2\]", hlo), name
      print(f"{name}/{layout}: ok")


def check_sweeps():
  """The paper's rule by sweeps on 8 shards of a leaf's groups (2 each,
  blocks of 3 groups straddling shards), sweeps of 2 and 16 iterations, the
  groups over one mesh axis or two, the first sweep aimed at no hint, at
  the stop (the kept iterate's rerun) or short of it: the whole leaf's
  step, bit for bit, the stop past several sweeps; and its solve alone."""
  from ramda_optax import cpu_kernel  # pylint: disable=g-import-not-at-top
  from tests.test_pg_step import COEFFICIENTS, _leaf  # pylint: disable=g-import-not-at-top
  arrays, penalty = _leaf(seed=7, shape=(3, 3, 16, 512))
  view = cpu_kernel.leaf_view(penalty, arrays[0].shape)
  mesh = Mesh(np.array(jax.devices()), ("model",))
  spec = P(None, None, "model")
  # The groups over one mesh axis of 8, and over two (2 × 4, gathered in
  # the order of the sharding).
  two = Mesh(np.array(jax.devices()).reshape(2, 4), ("a", "b"))
  runs = [(False, 2, mesh, ("model",), None),
          (False, 16, mesh, ("model",), None),
          (True, 2, mesh, ("model",), None),
          (True, 16, mesh, ("model",), None),
          (True, 2, two, ("a", "b"), None),
          (True, 2, two, ("a", "b"), 0),
          (False, 16, mesh, ("model",), -9)]
  for restart, chunk, on, axes, hint in runs:
    flag = jnp.asarray(restart)
    whole = jax.jit(lambda x, r: cpu_kernel.pg_step(
        view, penalty, x, COEFFICIENTS, r, root=3, delta=True, max_iters=60,
        rtol=1e-5, remember=False))(arrays, flag)
    assert 2 < int(whole[4]) < 60
    split = P(None, None, axes)
    aim = {} if hint is None else {"hint": int(whole[4]) + hint}
    swept = jax.jit(jax.shard_map(
        lambda x, r, axes=axes, chunk=chunk, aim=aim: cpu_kernel.pg_step_across(
            penalty, x, COEFFICIENTS, r, axes=axes, root=3, delta=True,
            max_iters=60, rtol=1e-5, chunk=chunk, **aim),
        mesh=on, in_specs=((split,) * 6, P()),
        out_specs=(split, split, split, split, P()), check_vma=False))(
            arrays, flag)
    for a, b in zip(whole, swept):
      np.testing.assert_array_equal(np.asarray(b), np.asarray(a))
    print(f"sweeps of {chunk} over {axes}, restart {restart}, hint "
          f"{aim.get('hint')}, {int(whole[4])} iterations: ok")
  # The rule's solve alone (pg_solver's kernel on a given subproblem), its
  # leaf sharded along the groups: by sweeps, no gather of the leaf.
  from ramda_optax.subproblem import Subproblem  # pylint: disable=g-import-not-at-top
  sub = Subproblem(arrays[4], arrays[2], jnp.sqrt(arrays[3]), jnp.float32(0.05))
  solve = jax.jit(lambda s, z: ro.pg_solver(rtol=1e-5).solve(penalty, s, z, 1))
  theta, iters = solve(sub, arrays[1])
  assert 2 < int(iters) < 100
  leaf, scalar = NamedSharding(mesh, spec), NamedSharding(mesh, P())
  placed = jax.device_put((sub, arrays[1]), (
      Subproblem(leaf, leaf, leaf, scalar), leaf))
  out = solve(*placed)
  np.testing.assert_array_equal(np.asarray(out[0]), np.asarray(theta))
  assert int(out[1]) == int(iters) and out[0].sharding.is_equivalent_to(leaf, 4)
  hlo = solve.lower(*placed).compile().as_text()
  assert not re.search(r"= f\d+\[[\d,]*\]\{[\d,]*\} all-gather\(", hlo)
  print(f"the solve alone by sweeps, {int(iters)} iterations: ok")


def main():
  assert len(jax.devices()) == 8
  check_kernel_shards()
  check_sweeps()
  params = init_params(jax.random.key(0))
  rng = np.random.default_rng(0)
  batches = [(rng.normal(size=(32, 8, 8, 1)),
              rng.integers(0, 8, size=32)) for _ in range(6)]
  layouts = {
      # Data parallel: params replicated, batch split over 8 devices.
      "dp": (Mesh(np.array(jax.devices()), ("data",)),
             lambda path, p: P()),
      # FSDP-style: kernels split along the grouped (reduced) axis too, so
      # group norms span shards; batch over 'data'.
      "fsdp": (Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "model")),
               lambda path, p: P(*([None] * (p.ndim - 1)), "model") if p.ndim > 1 else P()),
  }
  for name, opt in optimizers().items():
    reference, _ = train(opt, params, batches)
    for layout, (mesh, spec) in layouts.items():
      param_sh = jax.tree_util.tree_map_with_path(
          lambda path, p: NamedSharding(mesh, spec(path, p)), params)
      batch_sh = NamedSharding(mesh, P("data"))
      sharded, state = train(opt, params, batches, param_sh, batch_sh, mesh)
      for a, b in zip(jax.tree.leaves(reference), jax.tree.leaves(sharded)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-6, atol=1e-6,
                                   err_msg=f"{name}/{layout}")
      theta = ro.subproblem_solution(state, sharded) if name.startswith(("ramda", "rmda")) else sharded
      sparsity = float(ro.weighted_group_sparsity(theta, GROUPS))
      assert name == "nuclear" or 0 < sparsity < 1, (name, sparsity)  # screening ran
      print(f"{name}/{layout}: ok, weighted group sparsity {sparsity:.3f}")
  print("all ok")


if __name__ == "__main__":
  sys.exit(main())
