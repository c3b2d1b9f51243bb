"""Reproduces the experiments of Huang & Lee (NeurIPS 2024) at small scale.

Tasks, on the bundled MNIST subset (8,000 training, 2,000 validation images)
except the transformer, which models characters of Python's own source:

  logreg       784→10 logistic regression, input-wise group lasso (Table 1)
  mlp          the paper's 7-layer MLP with the nuclear norm (low rank)
  cnn          a small CNN, channel-/input-wise group lasso, then compaction
  transformer  a 2-layer character-level Transformer, input-wise group lasso

Each run trains the chosen methods with the paper's stage-wise schedule and
records, every epoch, the validation accuracy (or perplexity) and the
weighted group sparsity (or low-rank level) of the weights W and, for
RAMDA/RMDA, of the subproblem solution θ̂.

    python benchmarks/reproduce.py --quick   # every task, reduced (< 3 min)
    python benchmarks/reproduce.py --all     # every task, full settings
    python benchmarks/reproduce.py --task logreg \\
        --methods ramda,rmda,proxgen,prox_ssi,prox_sgd --seeds 0,1,2

Writes ``<out>/<name>.json`` and ``<out>/<name>_<task>.png`` (``name`` is
``quick``, ``all`` or the task names) and rebuilds ``--report``
(benchmarks/RESULTS.md) from every JSON in ``<out>``. With the default
``--out``, it also rewrites the README's results block from ``all.json``.
"""

import argparse
import dataclasses
import importlib
import inspect
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
from tqdm import tqdm

import ramda_optax as ro
from mnist_cnn import CNN
from ramda_optax.compaction import Conv, Dense, Flatten, Pool

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

Params = Any
HERE = Path(__file__).resolve().parent
DUAL_AVERAGING = ("ramda", "rmda")
PROXIMAL = ("prox_sgd", "prox_ssi", "proxgen")
LABELS = {"ramda": "RAMDA", "rmda": "RMDA", "proxgen": "ProxGen",
          "prox_ssi": "ProxSSI", "prox_sgd": "ProxSGD", "adam": "Adam",
          "madgrad": "MADGRAD", "adamw": "AdamW"}
TEXT_MODULES = ("textwrap", "heapq", "shlex", "string", "queue", "glob",
                "fnmatch", "colorsys", "bisect")
CONTEXT = 64


# ----------------------------------------------------------------- models


class LogReg(nn.Module):
  """784 → 10 Dense on the flattened image."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return nn.Dense(10)(x.reshape(x.shape[0], -1))


class MLP(nn.Module):
  """The paper's MLP, 784-512-256-128-64-32-16-10 with ReLU."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.reshape(x.shape[0], -1)
    for width in (512, 256, 128, 64, 32, 16):
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(10)(x)


CNN_LAYERS = (Conv("Conv_0"), Pool((2, 2), (2, 2)), Conv("Conv_1"),
              Pool((2, 2), (2, 2)), Flatten(), Dense("Dense_0"))


class Block(nn.Module):
  """Pre-norm causal self-attention and a 4× GELU MLP."""

  width: int
  heads: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    mask = nn.make_causal_mask(jnp.ones(x.shape[:2]))
    x = x + nn.MultiHeadDotProductAttention(self.heads)(
        nn.LayerNorm()(x), mask=mask)
    hidden = nn.gelu(nn.Dense(4 * self.width)(nn.LayerNorm()(x)))
    return x + nn.Dense(self.width)(hidden)


class CharTransformer(nn.Module):
  """Byte embedding + learned positions, 2 blocks, a Dense head."""

  vocab: int = 128
  width: int = 64
  heads: int = 4
  layers: int = 2

  @nn.compact
  def __call__(self, tokens: jax.Array) -> jax.Array:
    x = nn.Embed(self.vocab, self.width)(tokens)
    position = self.param("position", nn.initializers.normal(0.02),
                          (CONTEXT, self.width))
    x = x + position[:tokens.shape[1]]
    for _ in range(self.layers):
      x = Block(self.width, self.heads)(x)
    return nn.Dense(self.vocab)(nn.LayerNorm()(x))


# ------------------------------------------------------------------- data


class Arrays(NamedTuple):
  """Training and validation arrays (images and labels, or token streams
  with ``train_y``/``valid_y`` unused)."""

  train_x: jax.Array
  train_y: jax.Array
  valid_x: jax.Array
  valid_y: jax.Array


def mnist_arrays(train_size: int | None) -> Arrays:
  train, valid = ro.datasets.load_mnist10k()
  n = train_size or len(train.labels)
  return Arrays(jnp.asarray(train.images[:n]), jnp.asarray(train.labels[:n]),
                jnp.asarray(valid.images), jnp.asarray(valid.labels))


def text_arrays(train_size: int | None) -> Arrays:
  """The source of TEXT_MODULES as ASCII codes: first 90% for training,
  the rest for validation (``train_size`` caps the training characters)."""
  text = "\n".join(inspect.getsource(importlib.import_module(name))
                   for name in TEXT_MODULES)
  codes = np.frombuffer(text.encode("ascii", "replace"), np.uint8)
  cut = int(0.9 * len(codes))
  train = codes[:cut][:train_size] if train_size else codes[:cut]
  empty = jnp.zeros((0,), jnp.int32)
  return Arrays(jnp.asarray(train, jnp.int32), empty,
                jnp.asarray(codes[cut:], jnp.int32), empty)


def first_image(arrays: Arrays) -> jax.Array:
  return arrays.valid_x[:1]


def first_window(arrays: Arrays) -> jax.Array:
  return arrays.valid_x[None, :CONTEXT]


def image_batches(key: jax.Array, arrays: Arrays, steps: int,
                  batch_size: int) -> jax.Array:
  """(steps, batch_size) indices of a fresh permutation (one epoch)."""
  order = jax.random.permutation(key, arrays.train_x.shape[0])
  return order[:steps * batch_size].reshape(steps, batch_size)


def text_batches(key: jax.Array, arrays: Arrays, steps: int,
                 batch_size: int) -> jax.Array:
  """(steps, batch_size) random window offsets into the training text."""
  high = arrays.train_x.shape[0] - CONTEXT - 1
  return jax.random.randint(key, (steps, batch_size), 0, high)


def image_loss(model: nn.Module, params: Params, arrays: Arrays,
               index: jax.Array) -> jax.Array:
  logits = model.apply({"params": params}, arrays.train_x[index])
  return optax.softmax_cross_entropy_with_integer_labels(
      logits, arrays.train_y[index]).mean()


def windows(stream: jax.Array, offsets: jax.Array) -> jax.Array:
  """(len(offsets), CONTEXT + 1) windows of a token stream."""
  return jax.vmap(lambda o: jax.lax.dynamic_slice(stream, (o,), (CONTEXT + 1,))
                  )(offsets)


def lm_loss(model: nn.Module, params: Params, tokens: jax.Array) -> jax.Array:
  logits = model.apply({"params": params}, tokens[:, :-1])
  return optax.softmax_cross_entropy_with_integer_labels(
      logits, tokens[:, 1:]).mean()


def text_loss(model: nn.Module, params: Params, arrays: Arrays,
              index: jax.Array) -> jax.Array:
  return lm_loss(model, params, windows(arrays.train_x, index))


def accuracy(model: nn.Module, params: Params, arrays: Arrays) -> jax.Array:
  logits = model.apply({"params": params}, arrays.valid_x)
  return 100 * jnp.mean(jnp.argmax(logits, -1) == arrays.valid_y)


def perplexity(model: nn.Module, params: Params, arrays: Arrays) -> jax.Array:
  """exp of the mean loss over non-overlapping validation windows."""
  count = (arrays.valid_x.shape[0] - 1) // CONTEXT
  offsets = jnp.arange(count) * CONTEXT
  return jnp.exp(lm_loss(model, params, windows(arrays.valid_x, offsets)))


# ------------------------------------------------------------------ tasks


@dataclasses.dataclass(frozen=True)
class Settings:
  """Training length. ``train_size`` caps the training examples (None: all);
  ``steps`` fixes the steps of an epoch (None: one pass over the data)."""

  epochs: int
  batch_size: int
  train_size: int | None = None
  steps: int | None = None


@dataclasses.dataclass(frozen=True)
class Task:
  """One experiment: model, data, regularizer, methods and their
  hyperparameters (``hyper[method]`` has the learning rate and, for
  RAMDA/RMDA, c), and the paper's (metric, structure) per method if any."""

  name: str
  model: nn.Module
  arrays: Callable[[int | None], Arrays]
  example: Callable[[Arrays], jax.Array]
  batches: Callable[[jax.Array, Arrays, int, int], jax.Array]
  loss: Callable[[nn.Module, Params, Arrays, jax.Array], jax.Array]
  metric: Callable[[nn.Module, Params, Arrays], jax.Array]
  metric_name: str
  structure_name: str
  strength: float
  hyper: dict[str, dict[str, float]]
  milestones: tuple[float, ...]
  seeds: tuple[int, ...]
  full: Settings
  quick: Settings
  paper: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
  notes: tuple[str, ...] = ()

  @property
  def higher_is_better(self) -> bool:
    return self.metric_name == "accuracy"


def kernel_mask(params: Params) -> Params:
  """True on Dense/Conv kernels: the leaves the nuclear norm regularizes."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: path[-1].key == "kernel", params)


PAPER_LR = {"prox_sgd": {"learning_rate": 0.1},
            "prox_ssi": {"learning_rate": 1e-3},
            "proxgen": {"learning_rate": 1e-3},
            "rmda": {"learning_rate": 0.1, "c": 0.1},
            "ramda": {"learning_rate": 1e-2, "c": 0.01}}

TASKS = {
    "logreg": Task(
        "logreg", LogReg(), mnist_arrays, first_image, image_batches, image_loss, accuracy,
        "accuracy", "weighted_group_sparsity", 1e-3, PAPER_LR,
        (0.2, 0.4, 0.6, 0.8), (0, 1, 2),
        full=Settings(epochs=500, batch_size=128),
        quick=Settings(epochs=3, batch_size=128),
        paper={"prox_sgd": (91.31, 39.29), "prox_ssi": (91.31, 39.92),
               "proxgen": (91.31, 39.92), "rmda": (91.34, 57.02),
               "ramda": (91.35, 57.40)},
        notes=("500 epochs on the full MNIST (60k) scaled down to the "
               "bundled 8k/2k subset (62 steps per epoch); milestones kept at "
               "1/5, 2/5, 3/5, 4/5 of training.",)),
    "mlp": Task(
        "mlp", MLP(), mnist_arrays, first_image, image_batches, image_loss, accuracy,
        "accuracy", "low_rank_level", 1e-3,
        {k: v for k, v in PAPER_LR.items() if k != "prox_ssi"},
        (1 / 3, 2 / 3), (0,),
        full=Settings(epochs=30, batch_size=256),
        quick=Settings(epochs=1, batch_size=256, train_size=512),
        paper={"prox_sgd": (87.54, 78.00), "proxgen": (86.66, 87.46),
               "rmda": (88.19, 91.88), "ramda": (87.99, 89.59)},
        notes=("The paper uses FashionMNIST for 300 epochs; we use the "
               "bundled MNIST subset, so accuracies are not comparable.",
               "λ = 1e-3 and the logistic-regression learning rates, not "
               "values tuned for the MLP.",
               "30 epochs (milestones at 10 and 20) and one seed instead of "
               "300 epochs: every step takes SVDs of all seven kernels (up to "
               "5 per step in the PG solver), slow on a 2-core CPU.")),
    "cnn": Task(
        "cnn", CNN(), mnist_arrays, first_image, image_batches, image_loss, accuracy,
        "accuracy", "weighted_group_sparsity", 1e-4,
        {**PAPER_LR, "ramda": {"learning_rate": 1e-2, "c": 0.1},
         "adam": {"learning_rate": 1e-3},
         "madgrad": {"learning_rate": 1e-2}},
        (0.75,), (0, 1, 2),
        full=Settings(epochs=12, batch_size=128),
        quick=Settings(epochs=1, batch_size=128, train_size=1024),
        notes=("No paper counterpart (the paper's CNNs are VGG19/ResNet50 on "
               "CIFAR/ImageNet); λ = 1e-4, RAMDA c = 0.1 and one milestone "
               "at 3/4 as in benchmarks/mnist_cnn.py.",)),
    "transformer": Task(
        "transformer", CharTransformer(), text_arrays, first_window, text_batches,
        text_loss, perplexity, "perplexity", "weighted_group_sparsity", 1e-4,
        {"ramda": {"learning_rate": 1e-2, "c": 0.1},
         "proxgen": {"learning_rate": 1e-3},
         "adamw": {"learning_rate": 1e-3}},
        (0.75,), (0,),
        full=Settings(epochs=20, batch_size=32, steps=100),
        quick=Settings(epochs=2, batch_size=16, steps=10),
        notes=("Stands in for the paper's Transformer-XL on WikiText-103: "
               f"characters of the source of {', '.join(TEXT_MODULES)} "
               "(inspect.getsource), 90%/10% split; context 64, width 64, "
               "4 heads; groups from ramda_optax.groups.structured "
               "(Dense and attention kernels input-wise).",)),
}


# --------------------------------------------------------------- training


def milestone_steps(fractions: Sequence[float], total: int) -> list[int]:
  return sorted({round(f * total) for f in fractions} - {0, total})


def ramp_c(c: float, last_stage: int) -> float:
  """c, raised to the next 0.01 above 1/√last_stage when smaller, so that
  the last stage has the ⌈1/c²⌉ steps after which W = θ̂."""
  floor = 1 / math.sqrt(last_stage)
  return c if c >= floor else math.ceil(100 * floor) / 100


def make_optimizer(task: Task, method: str, hyper: dict[str, float],
                   milestones: list[int],
                   params: Params) -> optax.GradientTransformation:
  lr = hyper["learning_rate"]
  if task.structure_name == "low_rank_level":
    regularizer = ro.nuclear_norm(task.strength, kernel_mask)
    solver = ro.pg_solver(max_iters=5, rtol=1e-3)
  else:
    regularizer = ro.group_lasso(task.strength, ro.groups.structured(params))
    solver = None
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
  }
  return builders[method]()


def structure_fn(task: Task, params: Params) -> Callable[[Params], jax.Array]:
  if task.structure_name == "low_rank_level":
    mask = kernel_mask(params)
    return lambda p: 100 * ro.low_rank_level(p, mask)
  groups = ro.groups.structured(params)
  return lambda p: 100 * ro.weighted_group_sparsity(p, groups)


def cnn_cost(params: Params) -> dict[str, int]:
  """Parameters and MACs of the CNN before and after compaction."""
  small = ro.compact(params, CNN_LAYERS).params
  full = ro.model_cost(params, CNN_LAYERS, (28, 28, 1))
  compact = ro.model_cost(small, CNN_LAYERS, (28, 28, 1))
  return {"params": full.params, "macs": full.macs,
          "compact_params": compact.params, "compact_macs": compact.macs}


def train_method(task: Task, method: str, seeds: Sequence[int],
                 settings: Settings, arrays: Arrays,
                 bar: tqdm) -> tuple[dict[str, Any], dict[str, dict]]:
  """Trains ``method`` once per seed, compiling once. Returns the
  hyperparameters used and one record per seed."""
  steps = settings.steps or arrays.train_x.shape[0] // settings.batch_size
  total = steps * settings.epochs
  milestones = milestone_steps(task.milestones, total)
  hyper = dict(task.hyper[method])
  if method in DUAL_AVERAGING:
    hyper["c"] = ramp_c(hyper["c"], total - (milestones or [0])[-1])
  sample = task.model.init(jax.random.key(0), task.example(arrays))["params"]
  optimizer = make_optimizer(task, method, hyper, milestones, sample)
  structure = structure_fn(task, sample)

  # One jitted call per step: on XLA:CPU a lax.scan over steps runs the
  # convolutions several times slower than separate calls.
  def step(params, opt_state, arrays, index):
    loss, grads = jax.value_and_grad(task.loss, argnums=1)(
        task.model, params, arrays, index)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  def evaluate(params, opt_state, arrays):
    theta = (ro.subproblem_solution(opt_state, params)
             if method in DUAL_AVERAGING else params)
    return (task.metric(task.model, params, arrays), structure(params),
            structure(theta))

  step = jax.jit(step, donate_argnums=(0, 1))
  evaluate = jax.jit(evaluate)
  records = {}
  for seed in seeds:
    start = time.perf_counter()
    key, init_key = jax.random.split(jax.random.key(seed))
    params = task.model.init(init_key, task.example(arrays))["params"]
    # A copy: optax.contrib.madgrad keeps the params it is given as its x0,
    # and the step donates params and state separately.
    opt_state = optimizer.init(jax.tree.map(jnp.copy, params))
    history = {"train_loss": [], "val_" + task.metric_name: [],
               "structure_W": [], "structure_theta": []}
    for _ in range(settings.epochs):
      key, epoch_key = jax.random.split(key)
      losses = []
      for index in np.asarray(
          task.batches(epoch_key, arrays, steps, settings.batch_size)):
        params, opt_state, loss = step(params, opt_state, arrays, index)
        losses.append(loss)
      values = (jnp.mean(jnp.stack(losses)),
                *evaluate(params, opt_state, arrays))
      for name, value in zip(history, values):
        history[name].append(float(value))
      bar.update()
    record = {"epochs": history,
              "final": {name: values[-1] for name, values in history.items()},
              "wall_time_s": time.perf_counter() - start}
    if task.name == "cnn":
      record["final"].update(cnn_cost(params))
    records[str(seed)] = record
  used = {**hyper, "strength": task.strength, "batch_size": settings.batch_size,
          "epochs": settings.epochs, "steps_per_epoch": steps,
          "milestones": milestones, "gamma": 0.1,
          "train_size": int(arrays.train_x.shape[0])}
  return used, records


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
             settings: Settings, bar: tqdm) -> dict[str, Any]:
  arrays = task.arrays(settings.train_size)
  hyper, runs = {}, {}
  for method in methods:
    bar.set_postfix_str(f"{task.name}/{method}")
    hyper[method], runs[method] = train_method(
        task, method, seeds, settings, arrays, bar)
  return {"metric": task.metric_name, "structure": task.structure_name,
          "seeds": list(seeds), "hyperparameters": hyper, "runs": runs,
          "paper": {m: list(v) for m, v in task.paper.items() if m in methods},
          "deviations": deviations(task, hyper)}


# ---------------------------------------------------------------- reports


def summary(runs: dict[str, dict], key: str) -> tuple[float, float]:
  """Mean and standard deviation over seeds of a final value."""
  values = [run["final"][key] for run in runs.values()]
  return float(np.mean(values)), float(np.std(values))


def plot_task(name: str, result: dict[str, Any], path: Path) -> None:
  """Structure (of W, and dashed of θ̂ for RAMDA/RMDA) and the validation
  metric per epoch, mean over seeds."""
  fig, axes = plt.subplots(1, 2, figsize=(8, 3), dpi=80)
  mean = lambda runs, key: np.mean([run["epochs"][key] for run in runs.values()],
                                   axis=0)
  for method, runs in result["runs"].items():
    metric = mean(runs, "val_" + result["metric"])
    epochs = np.arange(1, len(metric) + 1)
    line, = axes[0].plot(epochs, mean(runs, "structure_W"), label=LABELS[method])
    if method in DUAL_AVERAGING:
      axes[0].plot(epochs, mean(runs, "structure_theta"), "--",
                   color=line.get_color(),
                   label=LABELS[method] + r" $\hat\theta$")
    axes[1].plot(epochs, metric, color=line.get_color(), label=LABELS[method])
  axes[0].set_ylabel(result["structure"].replace("_", " ") + " (%)")
  axes[1].set_ylabel("validation " + result["metric"]
                     + (" (%)" if result["metric"] == "accuracy" else ""))
  for ax in axes:
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=7)
  fig.suptitle(f"{name} (mean over seeds {result['seeds']})", fontsize=9)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def pm(mean_std: tuple[float, float], digits: int = 2) -> str:
  mean, std = mean_std
  return f"{mean:.{digits}f} ± {std:.{digits}f}"


def ordering(result: dict[str, Any], higher_is_better: bool) -> str:
  """Whether the best RAMDA/RMDA structure beats the best proximal
  baseline's at a validation metric within 1 point (or 5% perplexity)."""
  runs = result["runs"]
  ours = [m for m in DUAL_AVERAGING if m in runs]
  theirs = [m for m in PROXIMAL if m in runs]
  if not ours or not theirs:
    return ""
  metric = "val_" + result["metric"]
  best = lambda methods: max(methods, key=lambda m: summary(runs[m], "structure_W")[0])
  a, b = best(ours), best(theirs)
  (sa, _), (sb, _) = summary(runs[a], "structure_W"), summary(runs[b], "structure_W")
  (ma, _), (mb, _) = summary(runs[a], metric), summary(runs[b], metric)
  close = ma >= mb - 1 if higher_is_better else ma <= 1.05 * mb
  verdict = ("reproduced" if sa > sb + 1 and close else "not reproduced")
  structure = result["structure"].replace("_", " ")
  return (f"Ordering: {LABELS[a]} reaches {sa:.2f}% {structure} "
          f"of W at {result['metric']} {ma:.2f}; the best proximal baseline, "
          f"{LABELS[b]}, {sb:.2f}% at {mb:.2f}: the paper's ordering is "
          f"**{verdict}** here.")


def task_table(name: str, result: dict[str, Any]) -> list[str]:
  metric, structure = result["metric"], result["structure"].replace("_", " ")
  cnn = name == "cnn"
  head = (f"| method | val {metric} | {structure} of W (%) | of θ̂ (%) | "
          + ("compacted params / MACs (mean) | " if cnn else "")
          + "paper acc / structure | lr | c | time / seed (s) |")
  lines = [head, "|" + "---|" * (head.count("|") - 1)]
  for method, runs in result["runs"].items():
    hyper = result["hyperparameters"][method]
    paper = result["paper"].get(method)
    cost = ""
    if cnn:
      finals = [run["final"] for run in runs.values()]
      size = np.mean([f["compact_params"] / f["params"] for f in finals])
      macs = np.mean([f["compact_macs"] / f["macs"] for f in finals])
      cost = f"{size:.3f}× / {macs:.3f}× | "
    theta = (pm(summary(runs, "structure_theta"))
             if method in DUAL_AVERAGING else "= W")
    seconds = np.mean([run["wall_time_s"] for run in runs.values()])
    lines.append(
        f"| {LABELS[method]} | {pm(summary(runs, 'val_' + metric))} | "
        f"{pm(summary(runs, 'structure_W'))} | {theta} | {cost}"
        f"{f'{paper[0]} / {paper[1]}' if paper else '–'} | "
        f"{hyper['learning_rate']:g} | {hyper.get('c', '–')} | "
        f"{seconds:.0f} |")
  return lines


def report_section(name: str, results: dict[str, Any],
                   figures: str = "results") -> list[str]:
  """Markdown for one JSON: a table per task, the ordering verdict, the
  deviations and the figure (``figures``: their folder, from the page)."""
  lines = [f"### `{results['command']}`", "",
           f"Wall time {results['wall_time_s']:.0f} s "
           f"({results['wall_time_s'] / 60:.1f} min) on {results['platform']}"
           f", JAX {results['jax']}. Mean ± std over seeds; final epoch. "
           f"JSON: `benchmarks/results/{name}.json`.", ""]
  for task, result in results["tasks"].items():
    hyper = next(iter(result["hyperparameters"].values()))
    lines += [f"#### {task}", "",
              f"λ = {hyper['strength']:g}, batch {hyper['batch_size']}, "
              f"{hyper['epochs']} epochs × {hyper['steps_per_epoch']} steps, "
              f"{hyper['train_size']:,} training "
              f"{'characters' if task == 'transformer' else 'images'}, "
              f"milestones at steps {hyper['milestones']} (γ = 0.1), seeds "
              f"{result['seeds']}.", "", *task_table(task, result), ""]
    check = ordering(result, result["metric"] == "accuracy")
    lines += [check, ""] if check else []
    lines += ["Deviations from the paper:", ""]
    lines += [f"- {d}" for d in result["deviations"]]
    lines += ["", f"![{task}]({figures}/{name}_{task}.png)", ""]
  return lines


README_BEGIN = "<!-- reproduce-all:begin -->"
README_END = "<!-- reproduce-all:end -->"


def readme_block(out: Path) -> str:
  """The README's results: the ``--all`` section, from ``out/all.json``."""
  results = json.loads((out / "all.json").read_text())
  lines = report_section("all", results, figures="benchmarks/results")
  return "\n".join([README_BEGIN, "", *lines, README_END])


def update_readme(out: Path, readme: Path) -> None:
  """Rewrites the README's results block (between its markers), if both the
  block and ``out/all.json`` exist."""
  if not (out / "all.json").exists() or not readme.exists():
    return
  text = readme.read_text()
  start, end = text.find(README_BEGIN), text.find(README_END)
  if start < 0 or end < 0:
    return
  readme.write_text(text[:start] + readme_block(out)
                    + text[end + len(README_END):])


def write_report(out: Path, report: Path) -> None:
  """RESULTS.md from every JSON in ``out``: ``all`` first, then ``quick``."""
  order = {"all": 0, "quick": 1}
  files = sorted(out.glob("*.json"), key=lambda p: (order.get(p.stem, 2), p.stem))
  lines = [
      "## Reproducing the paper", "",
      "`benchmarks/reproduce.py` reruns the paper's experiments at small "
      "scale on a CPU: logistic regression with input-wise group lasso "
      "(the paper's Table 1 setting), the 7-layer MLP with the nuclear norm, "
      "a small CNN with channel-wise group lasso (with compaction) and a "
      "2-layer character-level Transformer. It writes per-epoch curves, "
      "final values and hyperparameters as JSON, a figure per task and "
      "this file.", "",
      "```bash",
      "python benchmarks/reproduce.py --quick  # every task, reduced",
      "python benchmarks/reproduce.py --all    # every task, full settings",
      "python benchmarks/reproduce.py --task logreg "
      "--methods ramda,rmda,proxgen,prox_ssi,prox_sgd --seeds 0,1,2",
      "```", "",
      "For RAMDA and RMDA the tables give the sparsity of the final weights W "
      "and of the subproblem solution θ̂ (`subproblem_solution`). W equals θ̂ "
      "once the last stage has run ⌈1/c²⌉ steps; where the scaled-down "
      "schedule is shorter, c is raised and the change is listed.", ""]
  for path in files:
    lines += report_section(path.stem, json.loads(path.read_text()))
  report.write_text("\n".join(lines))


# -------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--task", default="logreg",
                      help=f"comma-separated, from {', '.join(TASKS)}")
  parser.add_argument("--methods", default=None,
                      help="comma-separated (default: the task's methods)")
  parser.add_argument("--seeds", default=None,
                      help="comma-separated (default: the task's seeds)")
  parser.add_argument("--quick", action="store_true",
                      help="every task, reduced settings, one seed")
  parser.add_argument("--all", action="store_true",
                      help="every task, full settings")
  parser.add_argument("--epochs", type=int, default=None)
  parser.add_argument("--train-size", type=int, default=None,
                      help="training images (characters for the transformer)")
  parser.add_argument("--out", type=Path, default=HERE / "results")
  parser.add_argument("--report", type=Path, default=HERE / "RESULTS.md")
  return parser.parse_args(argv)


def ints(text: str | None, default: Sequence[int]) -> tuple[int, ...]:
  return tuple(int(s) for s in text.split(",")) if text else tuple(default)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  """Runs the tasks, writes the JSON, the figures and the report; returns
  the results."""
  args = parse_args(argv)
  names = list(TASKS) if args.quick or args.all else args.task.split(",")
  name = "quick" if args.quick else "all" if args.all else "_".join(names)
  requested = args.methods.split(",") if args.methods else []
  plan = []
  for task in (TASKS[n] for n in names):
    settings = task.quick if args.quick else task.full
    settings = dataclasses.replace(
        settings, epochs=args.epochs or settings.epochs,
        train_size=args.train_size or settings.train_size)
    methods = [m for m in task.hyper if m in (requested or task.hyper)]
    if not methods:
      raise SystemExit(f"{task.name}: none of {requested} applies; choose "
                       f"from {list(task.hyper)}")
    seeds = ints(args.seeds, task.seeds[:1] if args.quick else task.seeds)
    plan.append((task, methods, seeds, settings))
  start = time.perf_counter()
  total = sum(len(m) * len(s) * st.epochs for _, m, s, st in plan)
  results = {"command": " ".join(["python benchmarks/reproduce.py",
                                  *(sys.argv[1:] if argv is None else argv)]),
             "platform": f"{platform.machine()}, {os.cpu_count()} cores, "
             f"{jax.devices()[0].platform.upper()} backend",
             "jax": jax.__version__,
             "tasks": {}}
  with tqdm(total=total, unit="epoch") as bar:
    for task, methods, seeds, settings in plan:
      results["tasks"][task.name] = run_task(task, methods, seeds, settings, bar)
  results["wall_time_s"] = time.perf_counter() - start
  args.out.mkdir(parents=True, exist_ok=True)
  (args.out / f"{name}.json").write_text(json.dumps(results, indent=1))
  for task_name, result in results["tasks"].items():
    plot_task(task_name, result, args.out / f"{name}_{task_name}.png")
  write_report(args.out, args.report)
  if args.out == HERE / "results":
    update_readme(args.out, HERE.parent / "README.md")
  return results


if __name__ == "__main__":
  main()
