"""Times one jitted optimizer step, as ratios to optax.adam in the same process.

The parameter sets are the paper's VGG19 for CIFAR-10 in Flax layout (about
20M parameters; conv kernels grouped channel-wise, the dense head
input-wise) and a 1M-parameter MLP (dense kernels grouped input-wise). The
gradient stream comes from a consistent loss, ½ Σ h (W − T)² around a
group-sparse target T (half the groups zero) plus Gaussian noise.

Two regimes. ``early`` (the default) is the start of training, where the
subproblem moves most between steps and the solvers iterate most: each of
``--starts`` runs from a fresh state times its first ``--steps`` steps (the
step is compiled beforehand on a copy), and the mean step time is reported.
``late`` times ``--steps`` steps after ``--warmup`` steps and reports their
median. Each step is update and apply_updates, params and state donated
(``--no-donate``: not); its XLA scratch is reported beside that of a step
that computes its own gradients, as a training step does (whose gradients
a kernel may write into), and Adam's.
Every variant is timed beside an optax.adam run, their steps taken in turn
(each on its own params and state), and its ratio is to that run; the inner
iterations are reported per regularized leaf and step. ``--device-loop``
times the early regime without the host: each start's steps are recorded,
then replayed as one compiled scan (on an accelerator, the device's time
without each call's dispatch) or, with ``--replay calls``, as one call
each, enqueued without waiting (as a training loop dispatches); a
variant's and Adam's replays run in turn, ``--rounds`` of each per start,
and the ratio is the median of each replay's to Adam's beside it.
``--training-step`` times the whole training step of the CNN demo
instead (forward, backward, update), each variant's steps in turn with
Adam's, and gives the median of their step-by-step ratios.

    python -m benchmarks.step_time --model vgg19 --variants ramda,ramda_pg
"""

import argparse
import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

import ramda_optax as ro
from ramda_optax._numerics import cbrt
from benchmarks.mnist_cnn import make_step
from benchmarks.models import CNN, mlp1m_shapes, vgg19_shapes

MODELS = {"vgg19": vgg19_shapes, "mlp1m": mlp1m_shapes}


def floor(arithmetic: bool) -> optax.GradientTransformation:
  """Not an optimizer: the memory traffic of a fused regularized
  dual-averaging step, one pass reading g, V, U, W⁰ and W and writing V, U,
  θ̂ and the update. With ``arithmetic`` it also does RAMDA's least
  per-element arithmetic (the cube root and one division) and is the
  compute floor; without, adds and multiplies only (the memory floor)."""

  def init(params):
    zeros = lambda: jax.tree.map(jnp.zeros_like, params)
    return zeros(), zeros(), jax.tree.map(jnp.copy, params), zeros()

  def update(grads, state, params):
    v, u, anchor, _ = state

    def leaf(g, v, u, a, w):
      v, u = v + 0.1 * g, u + 0.1 * g * g
      p = cbrt(u) + 1e-6 if arithmetic else u + 1e-6
      theta = a - (v / p if arithmetic else v * p)
      return v, u, theta, 0.1 * (theta - w)

    out = jax.tree.map(leaf, grads, v, u, anchor, params)
    pick = lambda i: jax.tree.map(lambda _, o: o[i], params, out)
    return pick(3), (pick(0), pick(1), anchor, pick(2))

  return optax.GradientTransformation(init, update)


def variants(groups: dict, strength: float,
             block_bytes: int = 2**20,
             kernel_block_bytes: int = 32 * 1024) -> dict[str, Callable]:
  reg = ro.group_lasso(strength, groups)
  return {
      "adam": lambda: optax.adam(1e-3),
      "madgrad": lambda: optax.contrib.madgrad(1e-2),
      "ramda_noreg": lambda: ro.ramda(1e-2),
      "ramda": lambda: ro.ramda(1e-2, regularizer=reg),  # default solver
      # The default's XLA path (whole leaves), where no kernel is used.
      "ramda_xla": lambda: ro.ramda(
          1e-2, regularizer=reg,
          solver=ro.exact_solver(backend="xla", fallback=ro.pg_solver())),
      "ramda_pg": lambda: ro.ramda(1e-2, regularizer=reg, solver=ro.pg_solver()),
      # The paper's rule on the XLA path, the reference.
      "ramda_pg_xla": lambda: ro.ramda(
          1e-2, regularizer=reg, solver=ro.pg_solver(backend="xla")),
      "ramda_pg1": lambda: ro.ramda(1e-2, regularizer=reg, solver=ro.pg_solver(1)),
      "ramda_pg10": lambda: ro.ramda(
          1e-2, regularizer=reg, solver=ro.pg_solver(10, rtol=0.0)),
      # The exact solver on the XLA path, the reference.
      "ramda_exact": lambda: ro.ramda(
          1e-2, regularizer=reg, solver=ro.exact_solver(backend="xla")),
      "rmda": lambda: ro.rmda(1e-1, regularizer=reg),
      "proxgen": lambda: ro.proxgen(1e-3, regularizer=reg),  # default solver
      "proxgen_xla": lambda: ro.proxgen(
          1e-3, regularizer=reg,
          solver=ro.exact_solver(backend="xla", fallback=ro.pg_solver())),
      "proxgen_pg": lambda: ro.proxgen(
          1e-3, regularizer=reg, solver=ro.pg_solver()),
      "proxgen_pg_xla": lambda: ro.proxgen(
          1e-3, regularizer=reg, solver=ro.pg_solver(backend="xla")),
      "prox_ssi": lambda: ro.prox_ssi(1e-3, regularizer=reg),
      "prox_ssi_xla": lambda: ro.prox_ssi(
          1e-3, regularizer=reg, solver=ro.exact_solver(backend="xla")),
      "prox_sgd": lambda: ro.prox_sgd(1e-1, regularizer=reg),
      "ramda_pg_blocks": lambda: ro.ramda(
          1e-2, regularizer=reg, solver=ro.pg_solver(block_bytes=block_bytes)),
      "proxgen_pg_blocks": lambda: ro.proxgen(
          1e-3, regularizer=reg, solver=ro.pg_solver(block_bytes=block_bytes)),
      # The CPU kernel held to 1 and to 8 Newton passes from cold starts:
      # the cost of one pass in cache, by difference.
      "ramda_passes1": lambda: ro.ramda(
          1e-2, regularizer=reg,
          solver=ro.exact_solver(backend="cpu", max_iters=1, warm_start=False)),
      "ramda_passes8": lambda: ro.ramda(
          1e-2, regularizer=reg,
          solver=ro.exact_solver(backend="cpu", max_iters=8, warm_start=False)),
      "ramda_exact_cold": lambda: ro.ramda(
          1e-2, regularizer=reg,
          solver=ro.exact_solver(backend="xla", warm_start=False)),
      "ramda_exact_blocks": lambda: ro.ramda(
          1e-2, regularizer=reg,
          solver=ro.exact_solver(backend="xla", block_bytes=block_bytes)),
      "ramda_pallas": lambda: ro.ramda(
          1e-2, regularizer=reg,
          solver=ro.pg_solver(block_bytes=kernel_block_bytes, backend="pallas")),
      "ramda_exact_pallas": lambda: ro.ramda(
          1e-2, regularizer=reg,
          solver=ro.exact_solver(block_bytes=kernel_block_bytes,
                                 backend="pallas")),
      "proxgen_pallas": lambda: ro.proxgen(
          1e-3, regularizer=reg,
          solver=ro.pg_solver(block_bytes=kernel_block_bytes, backend="pallas")),
      "ramda_exact_pallas_cold": lambda: ro.ramda(
          1e-2, regularizer=reg,
          solver=ro.exact_solver(block_bytes=kernel_block_bytes,
                                 backend="pallas", warm_start=False)),
      # The kernel that solves alone, the statistics and the averaging in
      # XLA (statistics without a Moments form).
      "ramda_exact_pallas_solve": lambda: ro.regularized_dual_averaging(
          1e-2, preconditioner=ro.cube_root(1e-6)._replace(moments=None),
          regularizer=reg,
          solver=ro.exact_solver(block_bytes=kernel_block_bytes,
                                 backend="pallas")),
      "proxgen_exact_pallas": lambda: ro.proxgen(
          1e-3, regularizer=reg,
          solver=ro.exact_solver(block_bytes=kernel_block_bytes,
                                 backend="pallas")),
      "floor_memory": lambda: floor(False),
      "floor_compute": lambda: floor(True),
  }


def make_variant(name: str, groups: dict, strength: float,
                 block_bytes: int = 2**20,
                 kernel_block_bytes: int = 32 * 1024) -> Callable:
  """The optimizer factory of a variant; ``name@N`` is variant ``name`` with
  its blocks (XLA's and the kernel's) of N bytes per array, so that one
  process sweeps block sizes."""
  base, _, size = name.partition("@")
  if size:
    block_bytes = kernel_block_bytes = int(size)
  return variants(groups, strength, block_bytes, kernel_block_bytes)[base]


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


def _regularized_leaves(groups: dict, params) -> np.ndarray:
  return np.array([p is not None
                   for p in ro.group_lasso(1.0, groups).layout(params)])


def time_variants(opts: Sequence[optax.GradientTransformation], init,
                  grad_fn, regularized: np.ndarray, regime: str, warmup: int,
                  steps: int, starts: int, donate: bool = True) -> list[dict]:
  """Times each of ``opts`` in ``regime`` (see the module docstring), params
  and state donated to the step unless ``donate`` is False. Their steps are
  taken in turn, each on its own params and state (the order reversed
  every other step), so that the machine's drift reaches all of them
  alike."""

  def compile_step(opt):
    def step(params, state, grads):
      updates, state = opt.update(grads, state, params)
      return optax.apply_updates(params, updates), state

    step = jax.jit(step, donate_argnums=(0, 1) if donate else ())
    return step.lower(fresh(), opt.init(fresh()), grad_fn(init, 0)).compile()

  # A copy: optax.contrib.madgrad keeps params themselves as x0, which
  # could not be donated together with them.
  fresh = lambda: jax.tree.map(jnp.copy, init)
  compiled = [compile_step(opt) for opt in opts]
  times = [[] for _ in opts]
  iters = [[] for _ in opts]
  runs = [(0, steps)] * starts if regime == "early" else [(warmup, steps)]
  for skip, count in runs:
    carry = [(fresh(), opt.init(fresh())) for opt in opts]

    def stepper(i, skip=skip):
      def run(n):
        params, state = carry[i]
        grads = jax.block_until_ready(grad_fn(params, n))
        start = time.perf_counter()
        params, state = jax.block_until_ready(
            compiled[i](params, state, grads))
        elapsed = time.perf_counter() - start
        carry[i] = params, state
        if n >= skip and isinstance(state, (ro.RamdaState, ro.ProximalState)):
          iters[i].append(np.asarray(state.inner_iters)[regularized].mean())
        return elapsed
      return run

    for i, t in enumerate(interleaved([stepper(i) for i in range(len(opts))],
                                      skip, count)):
      times[i] += t
  summary = np.mean if regime == "early" else np.median
  return [{"time_s": float(summary(t)),
           "inner_iters_per_leaf": float(np.mean(it)) if it else None,
           # XLA's buffer assignment: scratch memory of one step, beyond
           # its (donated) arguments and outputs.
           "temp_bytes": _scratch(c),
           "own_grads_temp_bytes": _scratch(own_grads_step(opt, init,
                                                            grad_fn))}
          for t, it, c, opt in zip(times, iters, compiled, opts)]


def _scratch(compiled) -> int | None:
  return getattr(compiled.memory_analysis(), "temp_size_in_bytes", None)


def own_grads_step(opt, init, grad_fn):
  """One step of ``opt`` that computes its gradients (``grad_fn``) itself,
  compiled, params and state donated: as in a training step, the gradients
  are the step's own, which a kernel may write into. Its scratch holds
  them (as Adam's does), and the variant's beyond them."""

  def step(params, state, n):
    updates, state = opt.update(grad_fn(params, n), state, params)
    return optax.apply_updates(params, updates), state

  fresh = jax.tree.map(jnp.copy, init)
  return jax.jit(step, donate_argnums=(0, 1)).lower(
      fresh, opt.init(fresh), 0).compile()


def scanned_steps(opt) -> tuple[Callable, Callable]:
  """``(step, replay)``: one step of ``opt`` on (params, state, grads),
  update and apply_updates, and its ``lax.scan`` over stacked grads."""

  def step(params, state, grads):
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  def replay(params, state, grads):
    return lax.scan(lambda c, g: (step(*c, g), None), (params, state), grads)[0]

  return step, replay


class DeviceLoop(NamedTuple):
  """The early regime of an optimizer with the host out of the loop
  (:func:`device_loop`): ``start()``, the scratch of the replay and of
  one step, and (``calls`` replays) the share of each replay's time that
  the host took to enqueue its calls."""
  start: Callable[[], tuple[Callable[[int], float], list[float]]]
  temp_bytes: int | None
  step_temp_bytes: int | None
  enqueue_shares: list[float]


# How a device loop replays the recorded steps.
REPLAYS = ("scan", "calls")


def device_loop(opt, init, grad_fn, regularized: np.ndarray,
                steps: int, replay: str = "scan") -> DeviceLoop:
  """The early regime of ``opt`` with the host out of the loop, compiled
  once. Each call of ``start`` starts afresh: it runs ``steps`` steps one
  by one, recording their gradients and inner iterations per regularized
  leaf (untimed), and returns ``(replay, iterations)``; ``replay(n)`` replays
  the recorded steps from the same fresh state and returns the seconds per
  step, without waiting for each step and without the gradients' cost.

  ``replay="scan"``: the steps as one compiled ``lax.scan`` over the
  stacked gradients, on an accelerator the device's time per step; but a
  kernel (a custom call) takes its gradient's slice as a copy, which a
  training step, whose gradients are buffers of their own, does not make.
  ``"calls"``: each step its own call of the jitted step, enqueued
  without waiting, the gradients donated copies (buffers of their own),
  as in a training loop; ``enqueue_shares`` tell whether the host kept
  ahead of the device.
  ``temp_bytes`` is the replay's scratch (of a scan: on a GPU, with the
  copies of the gradients' slices), ``step_temp_bytes`` one step's (as
  :func:`time_variants` reports it where the gradients are not donated)."""
  if replay not in REPLAYS:
    raise ValueError(f"replay must be one of {REPLAYS}; got {replay!r}")
  step, scanned = scanned_steps(opt)
  fresh = lambda: jax.tree.map(jnp.copy, init)
  grads0 = grad_fn(init, 0)
  calls = replay == "calls"
  with warnings.catch_warnings():
    # A step whose outputs cannot reuse the gradients' buffers (Adam's).
    warnings.filterwarnings("ignore", "Some donated buffers were not usable")
    one = jax.jit(step, donate_argnums=(0, 1, 2) if calls else (0, 1)).lower(
        fresh(), opt.init(fresh()), grads0).compile()
  many = None
  if not calls:
    stacked = jax.tree.map(
        lambda g: jnp.zeros((steps, *g.shape), g.dtype), grads0)
    many = jax.jit(scanned, donate_argnums=(0, 1)).lower(
        fresh(), opt.init(fresh()), stacked).compile()
  enqueue_shares = []

  def start():
    params, state, recorded, iters = fresh(), opt.init(fresh()), [], []
    for n in range(steps):
      recorded.append(grad_fn(params, n))
      params, state = one(params, state, jax.tree.map(jnp.copy, recorded[-1])
                          if calls else recorded[-1])
      if isinstance(state, (ro.RamdaState, ro.ProximalState)):
        iters.append(float(np.asarray(state.inner_iters)[regularized].mean()))
    del params, state

    def run_scan(n):
      del n
      params, state = jax.block_until_ready((fresh(), opt.init(fresh())))
      begin = time.perf_counter()
      jax.block_until_ready(many(params, state, grads))
      return (time.perf_counter() - begin) / steps

    def run_calls(n):
      del n
      params, state, grads = jax.block_until_ready((
          fresh(), opt.init(fresh()),
          [jax.tree.map(jnp.copy, g) for g in recorded]))
      begin = time.perf_counter()
      for g in grads:
        params, state = one(params, state, g)
      enqueued = time.perf_counter() - begin
      jax.block_until_ready((params, state))
      elapsed = time.perf_counter() - begin
      enqueue_shares.append(enqueued / elapsed)
      return elapsed / steps

    if calls:
      return run_calls, iters
    grads = jax.block_until_ready(
        jax.tree.map(lambda *g: jnp.stack(g), *recorded))
    recorded.clear()
    return run_scan, iters

  return DeviceLoop(start, _scratch(many) if many is not None else None,
                    _scratch(one), enqueue_shares)


def time_device_loops(opts: Sequence[optax.GradientTransformation], init,
                      grad_fn, regularized: np.ndarray, steps: int,
                      starts: int, rounds: int,
                      replay: str = "scan") -> list[dict]:
  """Times each of ``opts`` by :func:`device_loop` (its ``replay``): per
  start, every optimizer records its steps, then their replays run in
  turn for ``rounds`` rounds after one untimed round (:func:`interleaved`).
  Each result holds the median replay's seconds per step and every
  replay's (``times_s``, round by round, start after start), so that
  paired ratios come from replays taken one after the other, and of
  ``calls`` replays the median share of a replay's time that the host
  took to enqueue its calls, untimed rounds included (``enqueue_share``:
  near 1, the host, not the device, set the pace)."""
  loops = [device_loop(opt, init, grad_fn, regularized, steps, replay)
           for opt in opts]
  times = [[] for _ in opts]
  iters = [[] for _ in opts]
  for _ in range(starts):
    replays = []
    for i, loop in enumerate(loops):
      replay, it = loop.start()
      replays.append(replay)
      iters[i] += it
    for i, t in enumerate(interleaved(replays, 1, rounds)):
      times[i] += t
  return [{"time_s": float(np.median(t)), "times_s": t,
           "inner_iters_per_leaf": float(np.mean(it)) if it else None,
           "temp_bytes": loop.temp_bytes,
           "step_temp_bytes": loop.step_temp_bytes,
           "enqueue_share": (float(np.median(loop.enqueue_shares))
                             if loop.enqueue_shares else None)}
          for t, it, loop in zip(times, iters, loops)]


def interleaved(steps: Sequence[Callable[[int], float]], warmup: int,
                count: int) -> list[list[float]]:
  """Runs ``steps`` in turn, round by round (the order reversed every other
  round), so that the machine's drift reaches all of them alike.

  Each ``step(n)`` runs round n's step and returns the seconds it timed.
  Returns each step's times of the ``count`` rounds after ``warmup``."""
  times = [[] for _ in steps]
  for n in range(warmup + count):
    for i in range(len(steps)) if n % 2 == 0 else reversed(range(len(steps))):
      elapsed = steps[i](n)
      if n >= warmup:
        times[i].append(elapsed)
  return times


def training_step(variant: str) -> Callable[[int], float]:
  """Step n of the CNN of benchmarks.mnist_cnn trained with ``variant``
  (forward, backward, update; jitted, params and state donated) on batch n
  of 128 bundled MNIST images, waited for; returns its seconds."""
  train, _ = ro.datasets.load_mnist10k()
  model = CNN()
  params = model.init(jax.random.key(0), train.images[:1])["params"]
  opt = make_variant(variant, ro.groups.structured(params), 1e-4)()
  step = make_step(model, opt)
  carry = [params, opt.init(jax.tree.map(jnp.copy, params))]

  def run(n):
    batch = slice(128 * n % 7936, 128 * n % 7936 + 128)
    start = time.perf_counter()
    params, state, _ = jax.block_until_ready(
        step(*carry, train.images[batch], train.labels[batch]))
    carry[:] = params, state
    return time.perf_counter() - start

  return run


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model", choices=MODELS, default="vgg19")
  parser.add_argument("--variants", default="adam,madgrad,ramda,ramda_pg",
                      help="comma-separated; name@N gives a variant blocks "
                           "of N bytes per array (a sweep in one process)")
  parser.add_argument("--strength", type=float, default=1e-4)
  parser.add_argument("--block-bytes", type=int, default=2**20,
                      help="_blocks variants (XLA): bytes of one array of a "
                           "block")
  parser.add_argument("--kernel-block-bytes", type=int, default=32 * 1024,
                      help="_pallas variants: bytes of one array of a "
                           "kernel program's block")
  parser.add_argument("--regime", choices=("early", "late"), default="early")
  parser.add_argument("--warmup", type=int, default=10,
                      help="late regime: steps before timing")
  parser.add_argument("--steps", type=int, default=5,
                      help="steps timed per start (early) or in all (late)")
  parser.add_argument("--starts", type=int, default=3,
                      help="early regime: fresh starts")
  parser.add_argument("--device-loop", action="store_true",
                      help="early regime, each start's recorded gradients "
                           "replayed as one compiled scan (for GPUs)")
  parser.add_argument("--rounds", type=int, default=5,
                      help="device loop: replays per start of each variant "
                           "and of Adam, in turn")
  parser.add_argument("--replay", choices=REPLAYS, default="scan",
                      help="device loop: the recorded steps as one compiled "
                           "scan, or as one call each, enqueued without "
                           "waiting (the gradients buffers of their own)")
  parser.add_argument("--no-donate", action="store_true",
                      help="do not donate params and state to the step "
                           "(every variant, Adam included)")
  parser.add_argument("--json", default=None, help="write results here")
  parser.add_argument("--training-step", action="store_true",
                      help="time the mnist_cnn CNN's whole training step instead")
  args = parser.parse_args()
  if args.training_step:
    print("CNN training step (forward + backward + update), batch 128, "
          "each variant's steps taken in turn with Adam's:")
    for name in args.variants.split(","):
      if name != "adam":
        base, t = (np.asarray(x) for x in interleaved(
            [training_step("adam"), training_step(name)], args.warmup,
            args.steps))
        ratio, base, t = np.median(t / base), np.median(base), np.median(t)
        print(f"{name:12s} {1e3 * t:9.2f} ms   {ratio:6.2f}x adam "
              f"({1e3 * base:.2f} ms)", flush=True)
    return
  shapes, groups = MODELS[args.model]()
  init, grad_fn = problem(shapes, groups)
  size = sum(x.size for x in jax.tree.leaves(init))
  regularized = _regularized_leaves(groups, init)
  make = lambda name: make_variant(name, groups, args.strength,
                                  args.block_bytes, args.kernel_block_bytes)()
  names = [n for n in args.variants.split(",") if n != "adam"]
  regime = (f"early (device loop, {args.replay})" if args.device_loop
            else args.regime)
  print(f"{args.model}: {size / 1e6:.2f}M parameters, "
        f"{jax.devices()[0].device_kind}, {regime} regime, "
        f"λ = {args.strength:g}")
  if args.device_loop:
    timed = lambda name: time_device_loops(
        [make("adam"), make(name)], init, grad_fn, regularized, args.steps,
        args.starts, args.rounds, args.replay)
  else:
    timed = lambda name: time_variants(
        [make("adam"), make(name)], init, grad_fn, regularized, args.regime,
        args.warmup, args.steps, args.starts, donate=not args.no_donate)
  results = {}
  for name in names:
    adam, r = timed(name)
    r["adam_time_s"] = adam["time_s"]
    if args.device_loop:
      # Each replay against Adam's just before or after it.
      r["ratio"] = float(np.median(np.asarray(r["times_s"])
                                   / np.asarray(adam["times_s"])))
      span = (f"; Adam {1e3 * min(adam['times_s']):.3f} to "
              f"{1e3 * max(adam['times_s']):.3f} ms over its replays")
      if r["enqueue_share"] is not None:
        span += (f"; enqueued in {100 * adam['enqueue_share']:.0f}% (Adam) "
                 f"and {100 * r['enqueue_share']:.0f}% of the replay")
    else:
      r["ratio"] = r["time_s"] / adam["time_s"]
      span = ""
    results[name] = r
    its = r["inner_iters_per_leaf"]
    its = "" if its is None else f"   inner iters per leaf and step {its:5.1f}"
    temp = "" if r["temp_bytes"] is None else f"   scratch {r['temp_bytes'] / 2**20:7.1f} MiB"
    if r.get("step_temp_bytes") is not None:
      temp += f" (one step {r['step_temp_bytes'] / 2**20:.1f} MiB)"
    if r.get("own_grads_temp_bytes") is not None:
      temp += (f" (with its own gradients "
               f"{r['own_grads_temp_bytes'] / 2**20:.1f} MiB, Adam's "
               f"{adam['own_grads_temp_bytes'] / 2**20:.1f} MiB)")
    print(f"{name:16s} {1e3 * r['time_s']:9.3f} ms   "
          f"{r['ratio']:6.2f}x adam ({1e3 * adam['time_s']:.3f} ms{span})"
          f"{temp}{its}", flush=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"model": args.model, "parameters": size, "regime": args.regime,
                 "strength": args.strength, "results": results}, f, indent=1)


if __name__ == "__main__":
  main()
