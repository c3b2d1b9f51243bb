"""Accuracy–structure frontiers: each regularized method swept over λ.

For logistic regression, the MLP and the CNN, every regularized method runs
at λ = 0 (unregularized) and at five log-spaced multiples of its paper λ
(×10^-1, ×10^-0.5, ×1, ×10^0.5, ×10), three seeds each, under the task's
``frontier`` training length. Per task it writes the frontier (validation
accuracy against structure, one curve per method, mean ± std over seeds)
and tabulates the most structure each method reaches within 0.5 and within
1 point of the best unregularized run (the best λ = 0 method).

    python -m benchmarks.frontiers                  # every frontier
    python -m benchmarks.frontiers --task logreg --epochs 10
    python -m benchmarks.frontiers --commit-results # into benchmarks/results

Writes ``<out>/frontiers.json`` and ``<out>/frontiers_<task>.png`` (``<out>``
is the ignored benchmarks/output/, or benchmarks/results/ with
``--commit-results``) and prints the matched-accuracy table.
"""

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from benchmarks import plots
from benchmarks import report
from benchmarks import verdicts
from benchmarks.reproduce import OUTPUT, RESULTS, add_length_flags, shown
from benchmarks.tasks import TASKS, Task
from benchmarks.training import Progress, compile_task, train_runs

FACTORS = tuple(10 ** (k / 2) for k in range(-2, 3))  # 0.1 … 10


def strengths(task: Task, method: str) -> list[float]:
  """λ = 0, then the method's paper λ times each of FACTORS."""
  paper = task.hyper[method]["strength"]
  return [0.0, *(float(f"{paper * f:.3g}") for f in FACTORS)]


def regularized(task: Task) -> list[str]:
  """The task's methods that take a λ."""
  return [m for m, h in task.hyper.items() if "strength" in h]


def sweep(task: Task, epochs: int | None, max_steps: int | None,
          progress: Progress) -> dict[str, Any]:
  """Every (λ, seed) of every regularized method: final metric and
  structure of W per run, by method, λ and seed (``epochs`` overrides the
  task's frontier length; ``max_steps`` caps each run)."""
  settings = dataclasses.replace(
      task.frontier, epochs=epochs or task.frontier.epochs,
      max_steps=max_steps)
  arrays = task.arrays(settings.train_size)
  compiled = compile_task(task, arrays)
  points = {}
  for method in regularized(task):
    runs = [(s, seed) for s in strengths(task, method) for seed in task.seeds]
    records = train_runs(task, method, runs, settings, arrays, compiled,
                         progress)
    points[method] = {}
    for (strength, seed), record in zip(runs, records):
      final = record["final"]
      points[method].setdefault(repr(strength), {})[str(seed)] = {
          "metric": final["val_" + task.metric_name],
          "structure": final["structure_W"]}
  return {"metric": task.metric_name, "structure": task.structure_name,
          "epochs": settings.epochs, "batch_size": settings.batch_size,
          "seeds": list(task.seeds), "points": points}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  """The command line (``sys.argv`` when ``argv`` is None)."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  with_frontier = [n for n, t in TASKS.items() if t.frontier]
  parser.add_argument("--task", default=",".join(with_frontier),
                      help=f"comma-separated, from {', '.join(with_frontier)}")
  add_length_flags(parser)
  parser.add_argument("--out", type=Path, default=None,
                      help="output folder (default: benchmarks/output)")
  parser.add_argument("--commit-results", action="store_true",
                      help="write to the tracked benchmarks/results/")
  return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  """Sweeps, writes the JSON, figures and FRONTIERS.md, prints the tables;
  returns the results."""
  args = parse_args(argv)
  if args.commit_results and args.out:
    raise SystemExit("--commit-results writes to benchmarks/results/: "
                     "drop --out")
  out = RESULTS if args.commit_results else args.out or OUTPUT
  names = args.task.split(",")
  start = time.perf_counter()
  total = sum(len(regularized(TASKS[n])) * len(FACTORS + (0,))
              * len(TASKS[n].seeds) * (args.epochs or TASKS[n].frontier.epochs)
              for n in names)
  results = {"command": " ".join(["python -m benchmarks.frontiers",
                                  *(sys.argv[1:] if argv is None else argv)]),
             **report.platform_fields(), "tasks": {}}
  with tqdm(total=total, unit="run-epoch") as bar:

    def progress(label: str) -> None:
      bar.set_postfix_str(label, refresh=False)
      bar.update()

    for name in names:
      results["tasks"][name] = sweep(TASKS[name], args.epochs, args.steps,
                                     progress)
  results["wall_time_s"] = time.perf_counter() - start
  out.mkdir(parents=True, exist_ok=True)
  (out / "frontiers.json").write_text(json.dumps(results, indent=1))
  for name, result in results["tasks"].items():
    plots.plot_frontier(name, {m: verdicts.curve(p) for m, p in
                               result["points"].items()},
                        verdicts.unregularized_best(result["points"])[1],
                        report.WITHIN, out / f"frontiers_{name}.png")
  (out / "FRONTIERS.md").write_text(report.frontiers_page(results, "."))
  print("\n" + report.frontiers_page(results, "."))
  print(f"{results['wall_time_s']:.0f} s. JSON: {shown(out)}/frontiers.json; "
        f"figures: {shown(out)}/frontiers_<task>.png; tables: "
        f"{shown(out)}/FRONTIERS.md")
  return results


if __name__ == "__main__":
  main()
