"""The results as text: RESULTS.md, the README's results block and the
terminal summary, each with the verdicts against the paper."""

import json
import os
import platform
from pathlib import Path
from typing import Any

import jax
import numpy as np

from benchmarks import verdicts
from benchmarks.methods import DUAL_AVERAGING, LABELS
from benchmarks.tasks import TASKS

WITHIN = (0.5, 1.0)  # accuracy points below the best unregularized run
README_BEGIN = "<!-- reproduce-all:begin -->"
README_END = "<!-- reproduce-all:end -->"


def platform_fields() -> dict[str, str]:
  """The machine and the JAX version, as the results JSON records them."""
  return {"platform": f"{platform.machine()}, {os.cpu_count()} cores, "
          f"{jax.devices()[0].platform.upper()} backend",
          "jax": jax.__version__}


def summary(runs: dict[str, dict], key: str) -> tuple[float, float]:
  """Mean and standard deviation over seeds of a final value."""
  values = [run["final"][key] for run in runs.values()]
  return float(np.mean(values)), float(np.std(values))


def pm(mean_std: tuple[float, float], runs: int, digits: int = 2) -> str:
  """``mean ± std`` over ``runs`` runs; the value alone for one run."""
  mean, std = mean_std
  if runs == 1:
    return f"{mean:.{digits}f}"
  return f"{mean:.{digits}f} ± {std:.{digits}f}"


def outcomes(result: dict[str, Any]) -> dict[str, verdicts.Outcome]:
  """Each method's final metric and structure of W, over seeds."""
  metric = "val_" + result["metric"]
  return {method: verdicts.Outcome(verdicts.Measure(*summary(runs, metric)),
                                   verdicts.Measure(*summary(runs,
                                                             "structure_W")))
          for method, runs in result["runs"].items()}


def paper_numbers(name: str, result: dict[str, Any]
                  ) -> dict[str, tuple[float, float]]:
  """The paper's (metric, structure) of the run's methods: the task's in
  ``TASKS``, else those the JSON recorded."""
  paper = TASKS[name].paper if name in TASKS else result.get("paper", {})
  return {m: tuple(v) for m, v in paper.items() if m in result["runs"]}


def task_verdict(name: str, result: dict[str, Any],
                 frontiers: dict[str, Any] | None = None
                 ) -> verdicts.TaskVerdict:
  """The verdicts of one task of the results against the paper, at matched
  accuracy on the task's frontier too where ``frontiers`` (the
  ``tasks`` of frontiers.json) has it."""
  task = TASKS.get(name)
  frontier = (verdicts.matched_structure(frontiers[name]["points"],
                                         verdicts.MATCHED_WITHIN)
              if frontiers and name in frontiers else None)
  return verdicts.task_verdict(
      paper_numbers(name, result), outcomes(result), result["metric"],
      task.no_counterpart if task else "", frontier=frontier)


def load_frontiers(out: Path) -> dict[str, Any] | None:
  """The ``tasks`` of ``out/frontiers.json``, if there is one."""
  path = out / "frontiers.json"
  return json.loads(path.read_text())["tasks"] if path.exists() else None


def values(pair: verdicts.Pair, quantity: str) -> tuple[str, str]:
  """``paper a > b`` and ``run a < b`` of one quantity of a pair."""
  index = 0 if quantity == "metric" else 1
  sign = lambda a, b: ">" if a > b else "<" if a < b else "="
  a, b = pair.paper[0][index], pair.paper[1][index]
  x, y = (getattr(o, quantity).mean for o in pair.run)
  return (f"{a:.2f} {sign(a, b)} {b:.2f}",
          f"{x:.2f} {sign(round(x, 2), round(y, 2))} {y:.2f}")


def describe(pair: verdicts.Pair, quantity: str) -> str:
  """``A vs B (paper a > b, run a < b)`` for one quantity of a pair."""
  paper, run = values(pair, quantity)
  return (f"{LABELS[pair.first]} vs {LABELS[pair.second]} "
          f"(paper {paper}, run {run})")


def frontier_values(pair: verdicts.Pair) -> str:
  """``a < b`` of the structures a pair reaches at matched accuracy on the
  frontiers (``–`` for a method with no λ within)."""
  a, b = (f"{m.mean:.2f}" if m else "–" for m in pair.frontier_structure)
  if "–" in (a, b):
    return f"{a} / {b}"
  x, y = (m.mean for m in pair.frontier_structure)
  return f"{a} {'>' if x > y else '<' if x < y else '='} {b}"


def reversal_lines(verdict: verdicts.TaskVerdict, metric_name: str
                   ) -> list[str]:
  """One phrase per reversed order: structure at the paper's settings,
  structure at matched accuracy on the frontiers, then the metric."""
  lines = []
  for quantity in ("structure", "frontier", "metric"):
    for pair, q in verdicts.reversals(verdict):
      if q != quantity:
        continue
      if quantity == "frontier":
        paper, _ = values(pair, "structure")
        lines.append(f"structure at matched {metric_name} on the frontiers "
                     f"{LABELS[pair.first]} vs {LABELS[pair.second]} (paper "
                     f"{paper}, frontiers {frontier_values(pair)})")
      else:
        name = "structure" if quantity == "structure" else metric_name
        lines.append(f"{name} {describe(pair, quantity)}")
  return lines


def count_phrase(verdict: verdicts.TaskVerdict, quantity: str) -> str:
  """``holds 7, reversed 1, tie within noise 2`` for one quantity."""
  counts = verdicts.counts(verdict, quantity)
  ordered = (verdicts.HOLDS, verdicts.REVERSED, verdicts.TIE,
             verdicts.PAPER_TIE, verdicts.NO_POINT)
  return ", ".join(f"{v} {counts[v]}" for v in ordered if v in counts) or "–"


def matched_phrase(verdict: verdicts.TaskVerdict,
                   run: dict[str, verdicts.Outcome], metric_name: str) -> str:
  """Which methods are within matched accuracy and which are not."""
  best = verdict.best
  outside = ", ".join(f"{LABELS[m]} ({run[m].metric.mean:.2f})"
                      for m in verdict.outside) or "none"
  return (f"within {verdicts.MATCHED_WITHIN:g} point of the best "
          f"{metric_name}, {LABELS[best]}'s {run[best].metric.mean:.2f}: "
          f"{', '.join(LABELS[m] for m in verdict.matched)}; outside: "
          f"{outside}")


def run_order(run: dict[str, verdicts.Outcome], metric_name: str) -> str:
  """The run's methods from best to worst by structure and by the metric
  (``=`` between values equal to two decimals)."""

  def chain(quantity: str, higher: bool) -> str:
    methods = verdicts.ranking(run, quantity, higher)
    value = lambda m: round(getattr(run[m], quantity).mean, 2)
    text = f"{LABELS[methods[0]]} {value(methods[0]):.2f}"
    for a, b in zip(methods, methods[1:]):
      sign = "=" if value(a) == value(b) else ">" if higher else "<"
      text += f" {sign} {LABELS[b]} {value(b):.2f}"
    return text

  higher = verdicts.higher_is_better(metric_name)
  return (f"structure {chain('structure', True)}; {metric_name} "
          f"{chain('metric', higher)}")


def verdict_lines(name: str, result: dict[str, Any],
                  frontiers: dict[str, Any] | None = None) -> list[str]:
  """Markdown of a task's verdicts: the pairwise table and the reversals,
  or why there is no counterpart."""
  verdict, run = task_verdict(name, result, frontiers), outcomes(result)
  metric = result["metric"]
  if not verdict.pairs:
    return [f"No counterpart in the paper, so no verdict: "
            f"{verdict.no_counterpart}. The run's own order: "
            f"{run_order(run, metric)}.", ""]
  task = TASKS.get(name)
  source = f" ({task.counterpart})" if task and task.counterpart else ""
  no_pair = "no pair" if len(verdict.matched) < 2 else ""
  bold = lambda v: f"**{v}**" if v == verdicts.REVERSED else v
  lines = [
      f"Against the paper{source}, pair by pair. Paper and run give the "
      "first method's value, then the second's; the run's order is a tie "
      "when its means differ by at most the sum of their standard "
      f"deviations over seeds (or by less than {verdicts.RESOLUTION:g}). At "
      f"matched {metric}: {matched_phrase(verdict, run, metric)}.", "",
      f"| pair | paper structure | run structure | structure order | at "
      f"matched {metric} | frontiers at matched {metric} | frontier order | "
      f"paper {metric} | run {metric} | {metric} order |",
      "|---|---|---|---|---|---|---|---|---|---|"]
  for pair in verdict.pairs:
    paper_s, run_s = values(pair, "structure")
    paper_m, run_m = values(pair, "metric")
    matched = bold(pair.matched) if pair.matched else "– (outside)"
    frontier = (f"{frontier_values(pair)} | {bold(pair.frontier)}"
                if pair.frontier else "– | no frontier")
    lines.append(
        f"| {LABELS[pair.first]} vs {LABELS[pair.second]} | {paper_s} | "
        f"{run_s} | {bold(pair.structure)} | {matched} | {frontier} | "
        f"{paper_m} | {run_m} | {bold(pair.metric)} |")
  reversed_ = reversal_lines(verdict, metric)
  lines += ["", f"Structure: {count_phrase(verdict, 'structure')}; at "
            f"matched {metric}: {no_pair or count_phrase(verdict, 'matched')}; "
            f"on the frontiers at matched {metric}: "
            f"{count_phrase(verdict, 'frontier')}; "
            f"{metric}: {count_phrase(verdict, 'metric')}. "
            + (f"Reversed: {'; '.join(reversed_)}." if reversed_
               else "Nothing reversed."), ""]
  return lines


def task_table(name: str, result: dict[str, Any]) -> list[str]:
  """A Markdown table of one task, a row per method."""
  metric, structure = result["metric"], result["structure"].replace("_", " ")
  cnn = name == "cnn"
  head = (f"| method | val {metric} | {structure} of W (%) | of θ̂ (%) | "
          + ("compacted params / MACs (mean) | " if cnn else "")
          + "paper acc / structure | lr | λ | c | time / seed (s) |")
  lines = [head, "|" + "---|" * (head.count("|") - 1)]
  for method, runs in result["runs"].items():
    hyper = result["hyperparameters"][method]
    paper = paper_numbers(name, result).get(method)
    cost = ""
    if cnn:
      finals = [run["final"] for run in runs.values()]
      size = np.mean([f["compact_params"] / f["params"] for f in finals])
      macs = np.mean([f["compact_macs"] / f["macs"] for f in finals])
      cost = f"{size:.3f}× / {macs:.3f}× | "
    n = len(runs)
    strength = f"{hyper['strength']:g}" if hyper.get("strength") else "–"
    theta = (pm(summary(runs, "structure_theta"), n)
             if method in DUAL_AVERAGING else "= W")
    seconds = np.mean([run["wall_time_s"] for run in runs.values()])
    lines.append(
        f"| {LABELS[method]} | {pm(summary(runs, 'val_' + metric), n)} | "
        f"{pm(summary(runs, 'structure_W'), n)} | {theta} | {cost}"
        f"{f'{paper[0]} / {paper[1]}' if paper else '–'} | "
        f"{hyper['learning_rate']:g} | {strength} | "
        f"{hyper.get('c', '–')} | "
        f"{seconds:.0f} |")
  return lines


def report_section(name: str, results: dict[str, Any],
                   figures: str = "results",
                   folder: str = "benchmarks/results",
                   frontiers: dict[str, Any] | None = None) -> list[str]:
  """Markdown for one JSON: a table per task, the verdicts against the
  paper, the deviations and the figure (``figures``: their folder, from the
  page; ``folder``: the JSON's, from the repository root)."""
  lines = [f"### `{results['command']}`", "",
           f"Wall time {results['wall_time_s']:.0f} s "
           f"({results['wall_time_s'] / 60:.1f} min) on {results['platform']}"
           f", JAX {results['jax']}. Mean ± std over seeds; final epoch. "
           f"JSON: `{folder}/{name}.json`.", ""]
  for task, result in results["tasks"].items():
    hyper = next(iter(result["hyperparameters"].values()))
    lines += [f"#### {task}", "",
              f"Batch {hyper['batch_size']}, "
              f"{hyper['epochs']} epochs × {hyper['steps_per_epoch']} steps, "
              f"{hyper['train_size']:,} training "
              f"{'characters' if task == 'transformer' else 'images'}, "
              f"milestones at steps {hyper['milestones']} (γ = 0.1), seeds "
              f"{result['seeds']}.", "", *task_table(task, result), ""]
    lines += verdict_lines(task, result, frontiers)
    lines += ["Deviations from the paper:", ""]
    lines += [f"- {d}" for d in result["deviations"]]
    figure = f"{figures}/{name}_{task}.png" if figures != "." else \
        f"{name}_{task}.png"
    lines += ["", f"![{task}]({figure})", ""]
  return lines


def matched_table(result: dict[str, Any]
                  ) -> dict[str, dict[str, dict[str, float] | None]]:
  """Per method and per allowance (as text, "0.5" and "1") the most
  structured frontier point within it of the best unregularized run."""
  _, best = verdicts.unregularized_best(result["points"])
  return {method: {f"{w:g}": verdicts.most_structure(verdicts.curve(points),
                                                    best - w)
                   for w in WITHIN}
          for method, points in result["points"].items()}


def table_lines(name: str, result: dict[str, Any]) -> list[str]:
  """Markdown: the matched-accuracy table of one task."""
  method, best = verdicts.unregularized_best(result["points"])
  structure = result["structure"].replace("_", " ")
  images = TASKS[name].frontier.train_size if name in TASKS else None
  lines = [f"#### {name}: {result['epochs']} epochs of "
           f"{f'{images:,}' if images else 'all'} training images, batch "
           f"{result['batch_size']}, seeds {result['seeds']}",
           "", f"Best unregularized run: {LABELS[method]} at λ = 0, "
           f"{best:.2f}% accuracy. Most {structure} (%) within each "
           "allowance of it, mean ± std over seeds, with the λ that gives it "
           "(– : no λ of the sweep stays within).", "",
           f"| method | within 0.5 point | within 1 point | "
           f"at the largest λ: accuracy / {structure} |",
           "|---|---|---|---|"]
  for method, row in matched_table(result).items():
    cells = [f"{p['structure']:.2f} ± {p['structure_std']:.2f} "
             f"(λ = {p['strength']:.3g}, {p['metric']:.2f}%)" if p else "–"
             for p in row.values()]
    last = verdicts.curve(result["points"][method])[-1]
    lines.append(f"| {LABELS[method]} | {' | '.join(cells)} | "
                 f"{last['metric']:.2f} / {last['structure']:.2f} |")
  return lines + [""]


def frontiers_page(results: dict[str, Any], figures: str) -> str:
  """Markdown of every frontier: its table and figure (``figures``: their
  folder, from the page)."""
  lines = ["### Frontiers: accuracy against structure over λ", "",
           f"`{results['command']}`: {results['wall_time_s']:.0f} s "
           f"({results['wall_time_s'] / 60:.1f} min) on "
           f"{results['platform']}, JAX {results['jax']}. Each regularized "
           "method at λ = 0 and at its paper λ × 10^-1, 10^-0.5, 1, 10^0.5, "
           "10; validation accuracy and structure of W after the last epoch.",
           ""]
  for name, result in results["tasks"].items():
    lines += table_lines(name, result)
    lines += [f"![{name} frontier]({figures}/frontiers_{name}.png)", ""]
  return "\n".join(lines)


def results_page(out: Path, figures: str = "results",
                 folder: str = "benchmarks/results") -> str:
  """RESULTS.md from every JSON in ``out``: ``all`` first, then ``quick``
  (``figures`` and ``folder`` as in ``report_section``)."""
  order = {"all": 0, "quick": 1}
  files = sorted(out.glob("*.json"), key=lambda p: (order.get(p.stem, 2), p.stem))
  lines = [
      "## Reproducing the paper", "",
      "`python -m benchmarks.reproduce` reruns the paper's experiments at "
      "small scale on a CPU: logistic regression with input-wise group lasso "
      "(the paper's Table 1 setting), the 7-layer MLP with the nuclear norm, "
      "the paper authors' LeNet with group lasso (with compaction) and a "
      "2-layer character-level Transformer. It prints a summary with the "
      "verdicts against the paper and writes per-epoch curves, final values "
      "and hyperparameters as JSON, a figure per task and a report like "
      "this one, by default to `benchmarks/output/` (not tracked). "
      "`--commit-results` writes to `benchmarks/results/` and rebuilds this "
      "file; `--report-only` rebuilds the reports from the JSON already "
      "there, without training.", "",
      "```bash",
      "python -m benchmarks.reproduce --quick  # every task, reduced",
      "python -m benchmarks.reproduce --all    # every task, full settings",
      "python -m benchmarks.reproduce --task logreg "
      "--methods ramda,rmda,proxgen,prox_ssi,prox_sgd --seeds 0,1,2",
      "python -m benchmarks.frontiers --commit-results  "
      "# the λ sweeps, benchmarks/results/frontiers.json",
      "python -m benchmarks.reproduce --report-only --commit-results  "
      "# this file, from benchmarks/results/*.json",
      "```", "",
      "For RAMDA and RMDA the tables give the sparsity of the final weights W "
      "and of the subproblem solution θ̂ (`subproblem_solution`). W equals θ̂ "
      "once the last stage has run ⌈1/c²⌉ steps; where the scaled-down "
      "schedule is shorter, c is raised and the change is listed.", "",
      "Each task with a counterpart in the paper is checked against the "
      "paper's numbers pair by pair: whether the paper's order of structure "
      "and of accuracy (or perplexity) holds, is reversed, or is a tie "
      "within the noise over seeds, the structure order again among the "
      "methods within 1 point of the best accuracy, and the structure order "
      "at matched accuracy on the λ frontiers (the most structure each "
      "method reaches within 1 point of the best unregularized run).", ""]
  frontiers = load_frontiers(out)
  for path in files:
    if path.stem != "frontiers":
      lines += report_section(path.stem, json.loads(path.read_text()),
                              figures, folder, frontiers)
  if frontiers:
    lines += [frontiers_page(json.loads((out / "frontiers.json").read_text()),
                             figures), ""]
  return "\n".join(lines)


def terminal_summary(results: dict[str, Any],
                     frontiers: dict[str, Any] | None = None) -> str:
  """Plain text of one run for the terminal: per task and method the metric,
  the structure and the paper's figures, then the verdict lines."""
  lines = []
  for name, result in results["tasks"].items():
    metric, run = result["metric"], outcomes(result)
    paper = paper_numbers(name, result)
    verdict = task_verdict(name, result, frontiers)
    unit = " (%)" if verdicts.higher_is_better(metric) else ""
    n = len(result["seeds"])
    lines += [f"{name}: seeds {result['seeds']}",
              f"  {'method':<9}{'val ' + metric + unit:>18}"
              f"{result['structure'].replace('_', ' ') + ' (%)':>32}"
              f"{'paper':>18}"]
    for method, outcome in run.items():
      reference = (f"{paper[method][0]:.2f} / {paper[method][1]:.2f}"
                   if method in paper else "–")
      lines.append(
          f"  {LABELS[method]:<9}"
          f"{pm((outcome.metric.mean, outcome.metric.std), n):>18}"
          f"{pm((outcome.structure.mean, outcome.structure.std), n):>32}"
          f"{reference:>18}")
    if not verdict.pairs:
      lines += [f"  no counterpart in the paper: {verdict.no_counterpart}",
                f"  run's order: {run_order(run, metric)}"]
    else:
      lines += [f"  vs paper, structure: {count_phrase(verdict, 'structure')}"
                f"; {metric}: {count_phrase(verdict, 'metric')}",
                f"  matched {metric}: {matched_phrase(verdict, run, metric)}"]
      lines += [f"  reversed: {line}"
                for line in reversal_lines(verdict, metric)]
    lines.append("")
  return "\n".join(lines)


def readme_block(out: Path) -> str:
  """The README's results: the ``--all`` section, from ``out/all.json``."""
  results = json.loads((out / "all.json").read_text())
  frontiers = load_frontiers(out)
  lines = report_section("all", results, figures="benchmarks/results",
                         frontiers=frontiers)
  if frontiers:
    lines += [frontiers_page(json.loads((out / "frontiers.json").read_text()),
                             "benchmarks/results"), ""]
  return "\n".join([README_BEGIN, "", *lines, README_END])


def with_readme_block(readme: str, block: str) -> str:
  """``readme`` with the text between its results markers replaced by
  ``block``."""
  start, end = readme.find(README_BEGIN), readme.find(README_END)
  if start < 0 or end < 0:
    raise ValueError(f"no {README_BEGIN} … {README_END} block in the README")
  return readme[:start] + block + readme[end + len(README_END):]
