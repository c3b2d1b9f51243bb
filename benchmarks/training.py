"""Training a task's methods: optimizers, the per-epoch loop and what it
records."""

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ramda_optax as ro
from benchmarks.data import Arrays
from benchmarks.models import LENET_LAYERS
from benchmarks.methods import DUAL_AVERAGING, LABELS
from benchmarks.tasks import Settings, Task

# Called after every epoch with "<task>/<method>".
Progress = Callable[[str], None]


def kernel_mask(params: optax.Params) -> optax.Params:
  """True on Dense/Conv kernels: the leaves the nuclear norm regularizes."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: path[-1].key == "kernel", params)


def milestone_steps(fractions: Sequence[float], total: int) -> list[int]:
  """The steps at ``fractions`` of ``total``, without 0 and ``total``."""
  return sorted({round(f * total) for f in fractions} - {0, total})


def ramp_c(c: float, last_stage: int) -> float:
  """c, raised to the next 0.01 above 1/√last_stage when smaller, so that
  the last stage has the ⌈1/c²⌉ steps after which W = θ̂."""
  floor = 1 / math.sqrt(last_stage)
  return c if c >= floor else math.ceil(100 * floor) / 100


def regularizer(task: Task, params: optax.Params,
                strength: float | jax.Array) -> ro.Regularizer:
  """The task's regularizer at ``strength`` (a traced value is fine)."""
  if task.structure_name == "low_rank_level":
    return ro.nuclear_norm(strength, kernel_mask)
  return ro.group_lasso(strength, ro.groups.structured(params))


def make_optimizer(task: Task, method: str, hyper: dict[str, float],
                   milestones: list[int], params: optax.Params,
                   strength: float | jax.Array
                   ) -> optax.GradientTransformation:
  """``method`` with the task's regularizer at ``strength`` under the
  stage-wise schedule, its subproblems by the paper's PG solver (for the
  nuclear norm at most 5 iterations, rtol 1e-3)."""
  solver = (ro.pg_solver(max_iters=5, rtol=1e-3)
            if task.structure_name == "low_rank_level" else None)
  return build_optimizer(method, hyper, milestones,
                         regularizer(task, params, strength), solver)


def build_optimizer(method: str, hyper: dict[str, float],
                    milestones: list[int], regularizer: ro.Regularizer,
                    solver: ro.PGSolver | None = None
                    ) -> optax.GradientTransformation:
  """``method`` with ``regularizer`` (the unregularized methods ignore it)
  under the stage-wise schedule, RAMDA's and ProxGen's subproblems by
  ``solver`` (the paper's PG rule by default); ``"sgd"`` is momentum SGD
  (0.9) with weight decay ``hyper["weight_decay"]``."""
  lr = hyper["learning_rate"]
  solver = ro.pg_solver() if solver is None else solver
  if method == "ramda":
    return ro.ramda(**ro.stagewise_schedule(lr, hyper["c"], milestones),
                    regularizer=regularizer, solver=solver)
  if method == "rmda":
    return ro.rmda(**ro.stagewise_schedule(lr, hyper["c"], milestones,
                                           method="rmda"),
                   regularizer=regularizer)
  schedule = ro.stagewise_schedule(lr, None, milestones,
                                   method="lr_decay")["learning_rate"]
  builders = {
      "proxgen": lambda: ro.proxgen(schedule, regularizer=regularizer,
                                    solver=solver),
      "prox_ssi": lambda: ro.prox_ssi(schedule, regularizer=regularizer),
      "prox_sgd": lambda: ro.prox_sgd(schedule, regularizer=regularizer),
      "adam": lambda: optax.adam(schedule),
      "madgrad": lambda: optax.contrib.madgrad(schedule),
      "adamw": lambda: optax.adamw(schedule),
      "sgd": lambda: optax.chain(
          optax.add_decayed_weights(hyper["weight_decay"]),
          optax.sgd(schedule, momentum=0.9)),
  }
  return builders[method]()


def structure_fn(task: Task, params: optax.Params
                 ) -> Callable[[optax.Params], jax.Array]:
  """The task's structure measure in percent: low-rank level of the kernels
  or weighted group sparsity of the structured groups."""
  if task.structure_name == "low_rank_level":
    mask = kernel_mask(params)
    return lambda p: 100 * ro.low_rank_level(p, mask)
  groups = ro.groups.structured(params)
  return lambda p: 100 * ro.weighted_group_sparsity(p, groups)


def lenet_cost(params: optax.Params) -> dict[str, int]:
  """Parameters and MACs of LeNet before and after compaction."""
  small = ro.compact(params, LENET_LAYERS).params
  full = ro.model_cost(params, LENET_LAYERS, (28, 28, 1))
  compact = ro.model_cost(small, LENET_LAYERS, (28, 28, 1))
  return {"params": full.params, "macs": full.macs,
          "compact_params": compact.params, "compact_macs": compact.macs}


class Compiled(NamedTuple):
  """A task's jitted functions, shared by its methods: the initial
  parameters from a key, the loss and gradients, the validation metric and
  the structure (%)."""

  init: Callable[[jax.Array], optax.Params]
  gradient: Callable[[optax.Params, Arrays, jax.Array],
                     tuple[jax.Array, optax.Params]]
  metric: Callable[[optax.Params, Arrays], jax.Array]
  structure: Callable[[optax.Params], jax.Array]


def compile_task(task: Task, arrays: Arrays) -> Compiled:
  """The task's shared functions, jitted (compiled at their first call)."""
  sample = task.model.init(jax.random.key(0), task.example(arrays))["params"]
  return Compiled(
      jax.jit(lambda key: task.model.init(key, task.example(arrays))["params"]),
      jax.jit(lambda p, a, i: jax.value_and_grad(task.loss, argnums=1)(
          task.model, p, a, i)),
      jax.jit(lambda p, a: task.metric(task.model, p, a)),
      jax.jit(structure_fn(task, sample)))


def schedule_hyper(task: Task, method: str, settings: Settings,
                   steps: int) -> tuple[dict[str, Any], list[int]]:
  """The method's hyperparameters for this training length (c raised as
  :func:`ramp_c` needs) and the milestone steps."""
  total = steps * settings.epochs
  milestones = milestone_steps(task.milestones, total)
  hyper = dict(task.hyper[method])
  if method in DUAL_AVERAGING:
    hyper["c"] = ramp_c(hyper["c"], total - (milestones or [0])[-1])
  return hyper, milestones


def train_runs(task: Task, method: str, runs: Sequence[tuple[float, int]],
               settings: Settings, arrays: Arrays, compiled: Compiled,
               progress: Progress) -> list[dict[str, Any]]:
  """Trains ``method`` once per (λ, seed) of ``runs``, one after another
  through one compiled update that takes λ as an argument. Returns one
  record per run."""
  steps = settings.steps or arrays.train_x.shape[0] // settings.batch_size
  total = steps * settings.epochs
  capped = min(total, settings.max_steps or total)  # the schedule stays total's
  hyper, milestones = schedule_hyper(task, method, settings, steps)
  sample = task.model.init(jax.random.key(0), task.example(arrays))["params"]
  build = lambda strength: make_optimizer(task, method, hyper, milestones,
                                          sample, strength)

  def update(params, opt_state, grads, strength):
    updates, opt_state = build(strength).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  update = jax.jit(update, donate_argnums=(0, 1))
  records = []
  for strength, seed in runs:
    start = time.perf_counter()
    strength = jnp.asarray(strength, jnp.float32)
    key, init_key = jax.random.split(jax.random.key(seed))
    params = compiled.init(init_key)
    # A copy: optax.contrib.madgrad keeps the params it is given as its x0,
    # and the update donates params and state separately.
    opt_state = build(0.0).init(jax.tree.map(jnp.copy, params))
    history = {"train_loss": [], "val_" + task.metric_name: [],
               "structure_W": [], "structure_theta": []}
    for epoch in range(math.ceil(capped / steps)):
      key, epoch_key = jax.random.split(key)
      order = np.asarray(task.batches(epoch_key, arrays, steps,
                                      settings.batch_size))
      losses = []
      for index in order[:capped - epoch * steps]:
        loss, grads = compiled.gradient(params, arrays, index)
        params, opt_state = update(params, opt_state, grads, strength)
        losses.append(loss)
      structure_w = compiled.structure(params)
      values = (jnp.mean(jnp.stack(losses)), compiled.metric(params, arrays),
                structure_w,
                compiled.structure(ro.subproblem_solution(opt_state, params))
                if method in DUAL_AVERAGING else structure_w)
      for name, value in zip(history, values):
        history[name].append(float(value))
      progress(f"{task.name}/{method}")
    final = {name: values[-1] for name, values in history.items()}
    if task.name == "cnn":
      final.update(lenet_cost(params))
    records.append({"epochs": history, "final": final,
                    "wall_time_s": time.perf_counter() - start})
  return records


def train_method(task: Task, method: str, seeds: Sequence[int],
                 settings: Settings, arrays: Arrays, compiled: Compiled,
                 progress: Progress) -> tuple[dict[str, Any], dict[str, dict]]:
  """Trains ``method`` at its λ once per seed. Returns the hyperparameters
  used and one record per seed."""
  strength = task.hyper[method].get("strength", 0.0)
  records = train_runs(task, method, [(strength, s) for s in seeds],
                       settings, arrays, compiled, progress)
  steps = settings.steps or arrays.train_x.shape[0] // settings.batch_size
  hyper, milestones = schedule_hyper(task, method, settings, steps)
  used = {**hyper, "strength": strength, "batch_size": settings.batch_size,
          "epochs": settings.epochs, "steps_per_epoch": steps,
          "max_steps": settings.max_steps,
          "milestones": milestones, "gamma": 0.1,
          "train_size": int(arrays.train_x.shape[0])}
  return used, {str(seed): record for seed, record in zip(seeds, records)}


def deviations(task: Task, hyper: dict[str, dict[str, Any]]) -> list[str]:
  """The task's notes plus every c raised above its set value."""
  out = list(task.notes)
  for method, used in hyper.items():
    set_c = task.hyper[method].get("c")
    if set_c is not None and used["c"] != set_c:
      last = (used["epochs"] * used["steps_per_epoch"]
              - (used["milestones"] or [0])[-1])
      out.append(
          f"{LABELS[method]}: c raised from {set_c} to {used['c']}. The "
          f"momentum ramp c_j = min(c√j, 1) needs ⌈1/c²⌉ = "
          f"{math.ceil(1 / set_c ** 2):,} last-stage steps to make W = θ̂, "
          f"and the scaled-down last stage has {last:,}. θ̂'s sparsity is "
          "reported beside W's.")
  return out


def run_task(task: Task, methods: Sequence[str], seeds: Sequence[int],
             settings: Settings, progress: Progress) -> dict[str, Any]:
  """Trains every method on every seed; the task's entry of the results."""
  arrays = task.arrays(settings.train_size)
  compiled = compile_task(task, arrays)
  hyper, runs = {}, {}
  for method in methods:
    hyper[method], runs[method] = train_method(
        task, method, seeds, settings, arrays, compiled, progress)
  return {"metric": task.metric_name, "structure": task.structure_name,
          "seeds": list(seeds), "hyperparameters": hyper, "runs": runs,
          "paper": {m: list(v) for m, v in task.paper.items() if m in methods},
          "deviations": deviations(task, hyper)}
