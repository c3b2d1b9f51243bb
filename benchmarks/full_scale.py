"""The paper's CIFAR experiments at full scale: VGG19-BN and ResNet50 on
CIFAR-10 and CIFAR-100, every method with the paper's settings.

Tasks ``vgg19_cifar10``, ``vgg19_cifar100``, ``resnet50_cifar10`` and
``resnet50_cifar100`` read the official extracted Python version of the
dataset (``cifar-10-batches-py`` or ``cifar-100-python``) under
``--data-dir``; nothing is downloaded. Batch 128, 1,000 epochs with
milestones at 1/5, …, 4/5 of training (every 200 epochs; γ = 0.1), random
crop (padding 4) and horizontal flip, seeds 0, 1, 2; the methods of the
paper's table with its learning rates, λ and c, and momentum SGD with weight
decay 5e-4 unregularized (Adam, learning rate 1e-3, on request). Fewer
``--epochs`` keep the milestones at the same fractions, and raise c where
the last stage gets fewer than the ⌈1/c²⌉ steps its ramp needs, as
benchmarks.reproduce does.

    python -m benchmarks.full_scale --task vgg19_cifar10 --data-dir ~/data
    python -m benchmarks.full_scale --task vgg19_cifar10 --data-dir ~/data \\
        --resume                        # continue from the last checkpoints
    python -m benchmarks.full_scale --task resnet50_cifar100 \\
        --data-dir ~/data --methods ramda,adam --seeds 0 --steps 20

Each run (task, method, seed) writes to ``<out>/<task>/<method>/seed<k>/``:
``history.json``, rewritten after every epoch (test accuracy and loss,
weighted group sparsity of W and, for RAMDA/RMDA, of θ̂, training loss, the
median and total step time, the first step's apart as it includes
compilation, the device), and ``checkpoints/``, an Orbax
checkpoint of the model, batch statistics, optimizer state and data key
after every epoch and at a ``--steps`` cap. ``--resume`` continues each run
from its latest checkpoint. ``<out>/<task>.json`` collects every run's last
record. ``python -m benchmarks.reproduce --task <task> ...`` forwards here.
"""

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from tqdm import tqdm

import ramda_optax as ro
from benchmarks import cifar
from benchmarks import data
from benchmarks import training
from benchmarks.methods import DUAL_AVERAGING, LABELS
from benchmarks.models import ResNet50, VGG19BN
from benchmarks.tasks import PAPER_LR

OUT = Path(__file__).resolve().parent / "output" / "full_scale"
EPOCHS, BATCH_SIZE, SEEDS = 1000, 128, (0, 1, 2)
MILESTONES = (0.2, 0.4, 0.6, 0.8)  # every 200 of 1,000 epochs
EVAL_BATCH = 500
METHODS = ("prox_sgd", "proxgen", "prox_ssi", "rmda", "ramda", "sgd")
BASELINES = {"sgd": {"learning_rate": 0.1, "weight_decay": 5e-4},
             "adam": {"learning_rate": 1e-3}}

State = dict[str, Any]  # params, batch_stats, opt_state
Record = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class FullTask:
  """A network on a CIFAR dataset; ``hyper[method]`` has the learning rate
  and, as the method takes them, λ (``strength``), c and the weight decay;
  ``paper[method]`` the paper's (accuracy, weighted group sparsity)."""

  name: str
  network: type[nn.Module]
  dataset: cifar.Dataset
  hyper: dict[str, dict[str, float]]
  paper: dict[str, tuple[float, float]] = dataclasses.field(
      default_factory=dict)


def table(**strengths: float) -> dict[str, dict[str, float]]:
  """The paper's learning rates and c with λ per method, and the
  unregularized baselines."""
  return {**{m: {**PAPER_LR[m], "strength": s} for m, s in strengths.items()},
          **BASELINES}


TASKS = {task.name: task for task in (
    FullTask("vgg19_cifar10", VGG19BN, cifar.CIFAR10,
             table(prox_sgd=3e-5, proxgen=1e-6, prox_ssi=1e-6, rmda=1.5e-4,
                   ramda=8e-7),
             paper={"proxgen": (92.83, 86.64), "prox_ssi": (92.81, 88.40),
                    "rmda": (93.13, 90.22), "ramda": (92.89, 86.31)}),
    FullTask("vgg19_cifar100", VGG19BN, cifar.CIFAR100,
             table(prox_sgd=4e-5, proxgen=1e-6, prox_ssi=1e-6, rmda=1e-4,
                   ramda=2e-7)),
    FullTask("resnet50_cifar10", ResNet50, cifar.CIFAR10,
             table(prox_sgd=5e-5, proxgen=5e-7, prox_ssi=5e-7, rmda=5e-5,
                   ramda=1e-6)),
    FullTask("resnet50_cifar100", ResNet50, cifar.CIFAR100,
             table(prox_sgd=4e-5, proxgen=1e-6, prox_ssi=1e-6, rmda=2e-4,
                   ramda=5e-7)),
)}


class Trainer:
  """One method on one task for a training length, compiled once for every
  seed and run."""

  def __init__(self, task: FullTask, method: str, steps_per_epoch: int,
               epochs: int, batch_size: int):
    self.task, self.method = task, method
    self.steps_per_epoch, self.batch_size = steps_per_epoch, batch_size
    self.total = steps_per_epoch * epochs
    milestones = training.milestone_steps(MILESTONES, self.total)
    self.hyper = dict(task.hyper[method])
    if method in DUAL_AVERAGING:
      self.hyper["c"] = training.ramp_c(
          self.hyper["c"], self.total - (milestones or [0])[-1])
    self.config = {**self.hyper, "batch_size": batch_size, "epochs": epochs,
                   "steps_per_epoch": steps_per_epoch,
                   "milestones": milestones, "gamma": 0.1}
    self.model = task.network(task.dataset.classes)
    self.fill = cifar.black(task.dataset)
    params = jax.eval_shape(self.variables, jax.random.key(0))["params"]
    self.groups = ro.groups.structured(params)
    self.optimizer = training.build_optimizer(
        method, self.hyper, milestones,
        ro.group_lasso(self.hyper.get("strength", 0.0), self.groups))
    self.init = jax.jit(self.init)
    self.step = jax.jit(self.step, donate_argnums=0)
    self.test_batch = jax.jit(self.test_batch)
    self.structure = jax.jit(self.structure)

  def variables(self, key: jax.Array) -> dict[str, Any]:
    """The network's params and batch statistics."""
    return self.model.init(key, jnp.zeros((1, 32, 32, 3)))

  def init(self, key: jax.Array) -> State:
    """A fresh training state."""
    variables = self.variables(key)
    return {**variables,
            "opt_state": self.optimizer.init(variables["params"])}

  def step(self, state: State, arrays: data.Arrays, index: jax.Array,
           key: jax.Array) -> tuple[State, jax.Array]:
    """One step on the augmented training images at ``index``."""
    images = cifar.augment(key, arrays.train_x[index], self.fill)

    def loss(params):
      logits, updated = self.model.apply(
          {"params": params, "batch_stats": state["batch_stats"]}, images,
          train=True, mutable=["batch_stats"])
      return optax.softmax_cross_entropy_with_integer_labels(
          logits, arrays.train_y[index]).mean(), updated["batch_stats"]

    (value, batch_stats), grads = jax.value_and_grad(loss, has_aux=True)(
        state["params"])
    updates, opt_state = self.optimizer.update(grads, state["opt_state"],
                                               state["params"])
    return {"params": optax.apply_updates(state["params"], updates),
            "batch_stats": batch_stats, "opt_state": opt_state}, value

  def test_batch(self, state: State, images: jax.Array,
                 labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Correct predictions and summed loss, with the running statistics."""
    logits = self.model.apply(
        {"params": state["params"], "batch_stats": state["batch_stats"]},
        images)
    return (jnp.sum(jnp.argmax(logits, -1) == labels),
            optax.softmax_cross_entropy_with_integer_labels(logits,
                                                            labels).sum())

  def structure(self, state: State) -> tuple[jax.Array, jax.Array]:
    """Weighted group sparsity (%) of W and of θ̂ (W's for the methods
    without a subproblem solution)."""
    params = state["params"]
    theta = (ro.subproblem_solution(state["opt_state"], params)
             if self.method in DUAL_AVERAGING else params)
    return (100 * ro.weighted_group_sparsity(params, self.groups),
            100 * ro.weighted_group_sparsity(theta, self.groups))

  def evaluate(self, state: State, arrays: data.Arrays) -> Record:
    """Test accuracy and loss, and the structure of W and θ̂."""
    count = arrays.valid_x.shape[0]
    correct, loss = map(sum, zip(*(
        self.test_batch(state, arrays.valid_x[i:i + EVAL_BATCH],
                        arrays.valid_y[i:i + EVAL_BATCH])
        for i in range(0, count, EVAL_BATCH))))
    structure_w, structure_theta = self.structure(state)
    return {"test_accuracy": 100 * float(correct) / count,
            "test_loss": float(loss) / count,
            "structure_W": float(structure_w),
            "structure_theta": float(structure_theta)}

  def fit(self, seed: int, arrays: data.Arrays, directory: Path,
          max_steps: int | None = None, resume: bool = False
          ) -> tuple[State, list[Record]]:
    """Trains from ``seed`` (or, with ``resume``, from the latest checkpoint
    in ``directory``) until the end or ``max_steps`` steps in all; writes
    ``directory/history.json`` and a checkpoint after every epoch and at the
    end. Returns the final state and the per-epoch records."""
    manager = ocp.CheckpointManager(
        directory.resolve() / "checkpoints",
        options=ocp.CheckpointManagerOptions(max_to_keep=1))
    latest = manager.latest_step()
    if latest is not None and not resume:
      raise SystemExit(f"{directory} holds a checkpoint: pass --resume or "
                       "choose another --out")
    init_key, data_key = jax.random.split(jax.random.key(seed))
    if latest is None:
      state, history = self.init(init_key), []
    else:
      target = {"train": jax.eval_shape(self.init, init_key),
                "data_key": jax.eval_shape(jax.random.key_data, data_key)}
      restored = manager.restore(latest, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target),
          log=ocp.args.JsonRestore()))
      if restored.log["config"] != self.config:
        raise SystemExit(f"{directory} was trained with "
                         f"{restored.log['config']}, not {self.config}")
      state, history = restored.state["train"], restored.log["history"]
      data_key = jax.random.wrap_key_data(restored.state["data_key"])
    header = {"task": self.task.name, "method": self.method, "seed": seed,
              "device": jax.devices()[0].device_kind, "jax": jax.__version__,
              "config": self.config,
              "paper": self.task.paper.get(self.method)}
    step, stop = latest or 0, min(self.total, max_steps or self.total)
    compiling = True  # the first step of a run may compile
    label = f"{self.task.name}/{self.method}/seed{seed}"
    with tqdm(total=stop, initial=step, unit="step", desc=label) as bar:
      while step < stop:
        epoch, first = divmod(step, self.steps_per_epoch)
        last = min(self.steps_per_epoch, first + stop - step)
        order_key, augment_key = jax.random.split(
            jax.random.fold_in(data_key, epoch))
        order = np.asarray(data.image_batches(
            order_key, arrays, self.steps_per_epoch, self.batch_size))
        losses, times = [], []
        for i in range(first, last):
          start = time.perf_counter()
          state, loss = self.step(state, arrays, order[i],
                                  jax.random.fold_in(augment_key, i))
          losses.append(float(loss))
          times.append(time.perf_counter() - start)
          bar.set_postfix_str(f"loss {losses[-1]:.3f}", refresh=False)
          bar.update()
        step += last - first
        record = {"epoch": epoch + 1, "step": step,
                  "train_loss": statistics.fmean(losses),
                  **self.evaluate(state, arrays), "train_time_s": sum(times)}
        if compiling:
          record["first_step_s"], compiling = times[0], False
          times = times[1:] or times
        history.append({**record, "step_time_s": statistics.median(times)})
        manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(
                {"train": state, "data_key": jax.random.key_data(data_key)}),
            log=ocp.args.JsonSave({"config": self.config,
                                   "history": history})))
        (directory / "history.json").write_text(
            json.dumps({**header, "epochs": history}, indent=1))
    manager.wait_until_finished()
    manager.close()
    return state, history


@cache
def trainer(name: str, method: str, steps_per_epoch: int, epochs: int,
            batch_size: int) -> Trainer:
  """The Trainer of ``method`` on task ``name``, built once per process."""
  return Trainer(TASKS[name], method, steps_per_epoch, epochs, batch_size)


def requested(argv: Sequence[str]) -> bool:
  """Whether ``--task`` in ``argv`` names a full-scale task."""
  parser = argparse.ArgumentParser(add_help=False)
  parser.add_argument("--task", default="")
  names = parser.parse_known_args(argv)[0].task.split(",")
  return any(name in TASKS for name in names)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  """The command line (``sys.argv`` when ``argv`` is None)."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--task", required=True,
                      help=f"comma-separated, from {', '.join(TASKS)}")
  parser.add_argument("--data-dir", type=Path, required=True,
                      help="folder holding the extracted cifar-10-batches-py "
                      "or cifar-100-python (or that folder itself)")
  parser.add_argument("--methods", default=",".join(METHODS),
                      help=f"comma-separated, from {', '.join(BASELINES)} and "
                      f"the regularized methods (default: {','.join(METHODS)})")
  parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
  parser.add_argument("--epochs", type=int, default=EPOCHS)
  parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
  parser.add_argument("--steps", type=int, default=None,
                      help="stop every run after this many steps in all "
                      "(the schedule stays that of --epochs)")
  parser.add_argument("--out", type=Path, default=OUT)
  parser.add_argument("--resume", action="store_true",
                      help="continue every run from its latest checkpoint")
  return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  """Trains every method and seed of the tasks; prints each run's last
  record, writes ``<out>/<task>.json`` and returns those results."""
  args = parse_args(argv)
  names, methods = args.task.split(","), args.methods.split(",")
  unknown = [n for n in names if n not in TASKS] + [
      m for m in methods if m not in (*PAPER_LR, *BASELINES)]
  if unknown:
    raise SystemExit(f"unknown task or method: {', '.join(unknown)}")
  device = jax.devices()[0]
  results = {}
  for name in names:
    task = TASKS[name]
    arrays = cifar.load(task.dataset, args.data_dir)
    steps_per_epoch = arrays.train_x.shape[0] // args.batch_size
    runs = {}
    for method in methods:
      fit = trainer(name, method, steps_per_epoch, args.epochs,
                    args.batch_size).fit
      runs[method] = {}
      for seed in map(int, args.seeds.split(",")):
        directory = args.out / name / method / f"seed{seed}"
        directory.mkdir(parents=True, exist_ok=True)
        history = fit(seed, arrays, directory, args.steps, args.resume)[1]
        last = runs[method][str(seed)] = history[-1]
        theta = (f" (θ̂ {last['structure_theta']:.2f}%)"
                 if method in DUAL_AVERAGING else "")
        print(f"{name} {LABELS[method]} seed {seed}: step {last['step']:,}"
              f"/{steps_per_epoch * args.epochs:,}, test accuracy "
              f"{last['test_accuracy']:.2f}%, weighted group sparsity "
              f"{last['structure_W']:.2f}%{theta}, "
              f"{1e3 * last['step_time_s']:.1f} ms/step on "
              f"{device.device_kind}; {directory}")
    results[name] = {
        "command": " ".join(["python -m benchmarks.full_scale",
                             *(sys.argv[1:] if argv is None else argv)]),
        "device": device.device_kind, "platform": platform.machine(),
        "jax": jax.__version__, "runs": runs,
        "paper": {m: list(v) for m, v in task.paper.items() if m in methods}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(results[name], indent=1))
  return results


if __name__ == "__main__":
  main()
