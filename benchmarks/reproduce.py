"""Reproduces the experiments of Huang & Lee (NeurIPS 2024) at small scale.

Tasks, on the bundled MNIST subset (8,000 training, 2,000 validation images)
except the transformer, which models characters of Python's own source:

  logreg       784→10 logistic regression, input-wise group lasso (Table 1)
  mlp          the paper's 7-layer MLP with the nuclear norm (low rank)
  cnn          the paper authors' LeNet, group lasso, then compaction
  transformer  a 2-layer character-level Transformer, input-wise group lasso

``--task vgg19_cifar10`` (also ``vgg19_cifar100``, ``resnet50_cifar10``,
``resnet50_cifar100``) forwards the whole command line to
:mod:`benchmarks.full_scale`, the paper's CIFAR experiments at full scale.

Each run trains the chosen methods with the paper's per-method learning
rate, λ and c (``benchmarks.tasks``) under its stage-wise schedule, and
records, every epoch, the validation accuracy (or perplexity) and the
weighted group sparsity (or low-rank level) of the weights W and, for
RAMDA/RMDA, of the subproblem solution θ̂.

    python -m benchmarks.reproduce --quick   # every task, reduced (117 s on 2 idle cores)
    python -m benchmarks.reproduce --all     # every task, 3 seeds (17 min measured, beside the frontiers)
    python -m benchmarks.reproduce --task logreg \\
        --methods ramda,rmda,proxgen,prox_ssi,prox_sgd --seeds 0,1,2

Prints a summary (per task and method the metric, the structure and the
paper's numbers, then the verdicts against the paper), writes
``<out>/<name>.json`` and ``<out>/<name>_<task>.png`` (``name`` is ``quick``,
``all`` or the task names) and rebuilds ``--report`` (``<out>/RESULTS.md``)
from every JSON in ``<out>``. ``<out>`` is benchmarks/output/, which git
ignores; ``--commit-results`` writes to the tracked benchmarks/results/ and
benchmarks/RESULTS.md instead, and ``--update-readme`` also rewrites the
README's results block from ``<out>/all.json``. ``--report-only`` rebuilds
the reports and prints the summaries from the JSON already in ``<out>``,
without training.
"""

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from benchmarks import full_scale
from benchmarks import plots
from benchmarks import report
from benchmarks.tasks import TASKS, Settings, Task
from benchmarks.training import run_task

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
README = ROOT / "README.md"
OUTPUT = HERE / "output"
RESULTS = HERE / "results"
RESULTS_PAGE = HERE / "RESULTS.md"

Plan = list[tuple[Task, list[str], tuple[int, ...], Settings]]


def add_length_flags(parser: argparse.ArgumentParser) -> None:
  """``--epochs`` and ``--steps``, the training length's overrides."""
  parser.add_argument("--epochs", type=int, default=None,
                      help="epochs of every run (default: the task's)")
  parser.add_argument("--steps", type=int, default=None,
                      help="stop each run after this many steps in all, for "
                      "smoke runs (the schedule stays that of --epochs)")


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
  add_length_flags(parser)
  parser.add_argument("--train-size", type=int, default=None,
                      help="training images (characters for the transformer)")
  parser.add_argument("--out", type=Path, default=None,
                      help="folder of the JSON, figures and report "
                      "(default: benchmarks/output, not tracked)")
  parser.add_argument("--report", type=Path, default=None,
                      help="the Markdown report (default: <out>/RESULTS.md)")
  parser.add_argument("--commit-results", action="store_true",
                      help="write to the tracked benchmarks/results/ and "
                      "benchmarks/RESULTS.md")
  parser.add_argument("--update-readme", action="store_true",
                      help="rewrite the README's results block from "
                      "<out>/all.json (with --commit-results)")
  parser.add_argument("--report-only", action="store_true",
                      help="train nothing: rebuild the report (and the README "
                      "block) from the JSON in <out> and print its summary")
  return parser.parse_args(argv)


def destinations(args: argparse.Namespace) -> tuple[Path, Path]:
  """The output folder and the report's path."""
  if args.commit_results:
    if args.out or args.report:
      raise SystemExit("--commit-results writes to benchmarks/results/ and "
                       "benchmarks/RESULTS.md: drop --out and --report")
    return RESULTS, RESULTS_PAGE
  if args.update_readme and not args.out:
    raise SystemExit("--update-readme rewrites the README from the committed "
                     "results: add --commit-results")
  out = args.out or OUTPUT
  return out, args.report or out / "RESULTS.md"


def shown(path: Path) -> str:
  """``path`` from the repository root when inside it, else in full."""
  path = path.resolve()
  return (path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT)
          else str(path))


def write_reports(out: Path, page: Path, update_readme: bool) -> None:
  """The report from every JSON in ``out`` and, with ``update_readme``, the
  README's results block from ``out/all.json``."""
  page.parent.mkdir(parents=True, exist_ok=True)
  figures = Path(os.path.relpath(out.resolve(), page.parent.resolve()))
  page.write_text(report.results_page(out, figures.as_posix(), shown(out)))
  if update_readme:
    README.write_text(report.with_readme_block(
        README.read_text(), report.readme_block(out)))


def report_only(args: argparse.Namespace) -> dict[str, Any]:
  """Rebuilds the reports from the JSON in the output folder and prints
  their summaries; returns the results of every JSON by name."""
  out, page = destinations(args)
  files = sorted(out.glob("*.json"))
  if not files:
    raise SystemExit(f"--report-only: no JSON in {shown(out)}")
  if args.update_readme and not (out / "all.json").exists():
    raise SystemExit(f"--update-readme needs {shown(out / 'all.json')}")
  everything = {path.stem: json.loads(path.read_text()) for path in files
                if path.stem != "frontiers"}
  for name, results in everything.items():
    print(f"== {shown(out / name)}.json: {results['command']}\n")
    print(report.terminal_summary(results, report.load_frontiers(out)))
  write_reports(out, page, args.update_readme)
  print(f"Report: {shown(page)}"
        + ("; README results block rewritten" if args.update_readme else ""))
  return everything


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
        train_size=args.train_size or settings.train_size,
        max_steps=args.steps)
    methods = [m for m in task.hyper if m in (requested or task.hyper)]
    if not methods:
      raise SystemExit(f"{task.name}: none of {requested} applies; choose "
                       f"from {list(task.hyper)}")
    seeds = ints(args.seeds, task.seeds[:1] if args.quick else task.seeds)
    plan.append((task, methods, seeds, settings))
  return plan


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  """Runs the tasks, writes the JSON, the figures and the report (and, with
  ``--update-readme``, the README's results block), prints the summary and
  where the files went; returns the results."""
  if full_scale.requested(sys.argv[1:] if argv is None else argv):
    return full_scale.main(argv)
  args = parse_args(argv)
  if args.report_only:
    return report_only(args)
  out, page = destinations(args)
  names = list(TASKS) if args.quick or args.all else args.task.split(",")
  name = "quick" if args.quick else "all" if args.all else "_".join(names)
  plan = make_plan(args, names)
  if args.update_readme and not (args.all or (out / "all.json").exists()):
    raise SystemExit(f"--update-readme needs {shown(out / 'all.json')}")
  start = time.perf_counter()
  total = sum(len(m) * len(s) * st.epochs for _, m, s, st in plan)
  results = {"command": " ".join(["python -m benchmarks.reproduce",
                                  *(sys.argv[1:] if argv is None else argv)]),
             **report.platform_fields(), "tasks": {}}
  with tqdm(total=total, unit="epoch") as bar:

    def progress(label: str) -> None:
      bar.set_postfix_str(label, refresh=False)
      bar.update()

    for task, methods, seeds, settings in plan:
      results["tasks"][task.name] = run_task(task, methods, seeds, settings,
                                             progress)
  results["wall_time_s"] = time.perf_counter() - start
  out.mkdir(parents=True, exist_ok=True)
  (out / f"{name}.json").write_text(json.dumps(results, indent=1))
  for task_name, result in results["tasks"].items():
    plots.plot_task(task_name, result, out / f"{name}_{task_name}.png")
  write_reports(out, page, args.update_readme)
  print(f"\n{report.terminal_summary(results, report.load_frontiers(out))}")
  if args.quick:
    print("--quick trains a few epochs on part of the data, far from the "
          "paper's settings, so its verdicts say little; the full run's are "
          "in benchmarks/RESULTS.md.")
  print(f"{results['wall_time_s']:.0f} s. JSON: {shown(out / name)}.json; "
        f"figures: {shown(out / name)}_<task>.png; report: {shown(page)}"
        + ("; README results block rewritten" if args.update_readme else ""))
  return results


if __name__ == "__main__":
  main()
