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

    python -m benchmarks.reproduce --quick   # every task, reduced (< 3 min)
    python -m benchmarks.reproduce --all     # every task, full settings
    python -m benchmarks.reproduce --task logreg \\
        --methods ramda,rmda,proxgen,prox_ssi,prox_sgd --seeds 0,1,2

Writes ``<out>/<name>.json`` and ``<out>/<name>_<task>.png`` (``name`` is
``quick``, ``all`` or the task names) and rebuilds ``--report``
(benchmarks/RESULTS.md) from every JSON in ``<out>``. With
``--update-readme``, it also rewrites the README's results block from
``<out>/all.json``.
"""

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
from tqdm import tqdm

from benchmarks import plots
from benchmarks import report
from benchmarks.tasks import TASKS, Settings, Task
from benchmarks.training import run_task

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"

Plan = list[tuple[Task, list[str], tuple[int, ...], Settings]]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  """The command line (``sys.argv`` when ``argv`` is None)."""
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
  parser.add_argument("--update-readme", action="store_true",
                      help="rewrite the README's results block from "
                      "<out>/all.json")
  return parser.parse_args(argv)


def ints(text: str | None, default: Sequence[int]) -> tuple[int, ...]:
  """Comma-separated integers, or ``default`` when ``text`` is empty."""
  return tuple(int(s) for s in text.split(",")) if text else tuple(default)


def make_plan(args: argparse.Namespace, names: Sequence[str]) -> Plan:
  """(task, methods, seeds, settings) of every task to run."""
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
  return plan


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  """Runs the tasks, writes the JSON, the figures and the report (and, with
  ``--update-readme``, the README's results block); returns the results."""
  args = parse_args(argv)
  names = list(TASKS) if args.quick or args.all else args.task.split(",")
  name = "quick" if args.quick else "all" if args.all else "_".join(names)
  plan = make_plan(args, names)
  if args.update_readme and not (args.all or (args.out / "all.json").exists()):
    raise SystemExit(f"--update-readme needs {args.out / 'all.json'}")
  start = time.perf_counter()
  total = sum(len(m) * len(s) * st.epochs for _, m, s, st in plan)
  results = {"command": " ".join(["python -m benchmarks.reproduce",
                                  *(sys.argv[1:] if argv is None else argv)]),
             "platform": f"{platform.machine()}, {os.cpu_count()} cores, "
             f"{jax.devices()[0].platform.upper()} backend",
             "jax": jax.__version__,
             "tasks": {}}
  with tqdm(total=total, unit="epoch") as bar:

    def progress(label: str) -> None:
      bar.set_postfix_str(label, refresh=False)
      bar.update()

    for task, methods, seeds, settings in plan:
      results["tasks"][task.name] = run_task(task, methods, seeds, settings,
                                             progress)
  results["wall_time_s"] = time.perf_counter() - start
  args.out.mkdir(parents=True, exist_ok=True)
  (args.out / f"{name}.json").write_text(json.dumps(results, indent=1))
  for task_name, result in results["tasks"].items():
    plots.plot_task(task_name, result, args.out / f"{name}_{task_name}.png")
  args.report.write_text(report.results_page(args.out))
  if args.update_readme:
    README.write_text(report.with_readme_block(
        README.read_text(), report.readme_block(args.out)))
  return results


if __name__ == "__main__":
  main()
