"""Markdown of the results: RESULTS.md and the README's results block."""

import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.methods import DUAL_AVERAGING, LABELS, PROXIMAL

README_BEGIN = "<!-- reproduce-all:begin -->"
README_END = "<!-- reproduce-all:end -->"


def summary(runs: dict[str, dict], key: str) -> tuple[float, float]:
  """Mean and standard deviation over seeds of a final value."""
  values = [run["final"][key] for run in runs.values()]
  return float(np.mean(values)), float(np.std(values))


def pm(mean_std: tuple[float, float], digits: int = 2) -> str:
  """``mean ± std``."""
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
  """A Markdown table of one task, a row per method."""
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


def results_page(out: Path) -> str:
  """RESULTS.md from every JSON in ``out``: ``all`` first, then ``quick``."""
  order = {"all": 0, "quick": 1}
  files = sorted(out.glob("*.json"), key=lambda p: (order.get(p.stem, 2), p.stem))
  lines = [
      "## Reproducing the paper", "",
      "`python -m benchmarks.reproduce` reruns the paper's experiments at "
      "small scale on a CPU: logistic regression with input-wise group lasso "
      "(the paper's Table 1 setting), the 7-layer MLP with the nuclear norm, "
      "a small CNN with channel-wise group lasso (with compaction) and a "
      "2-layer character-level Transformer. It writes per-epoch curves, "
      "final values and hyperparameters as JSON, a figure per task and "
      "this file.", "",
      "```bash",
      "python -m benchmarks.reproduce --quick  # every task, reduced",
      "python -m benchmarks.reproduce --all    # every task, full settings",
      "python -m benchmarks.reproduce --task logreg "
      "--methods ramda,rmda,proxgen,prox_ssi,prox_sgd --seeds 0,1,2",
      "```", "",
      "For RAMDA and RMDA the tables give the sparsity of the final weights W "
      "and of the subproblem solution θ̂ (`subproblem_solution`). W equals θ̂ "
      "once the last stage has run ⌈1/c²⌉ steps; where the scaled-down "
      "schedule is shorter, c is raised and the change is listed.", ""]
  for path in files:
    lines += report_section(path.stem, json.loads(path.read_text()))
  return "\n".join(lines)


def readme_block(out: Path) -> str:
  """The README's results: the ``--all`` section, from ``out/all.json``."""
  results = json.loads((out / "all.json").read_text())
  lines = report_section("all", results, figures="benchmarks/results")
  return "\n".join([README_BEGIN, "", *lines, README_END])


def with_readme_block(readme: str, block: str) -> str:
  """``readme`` with the text between its results markers replaced by
  ``block``."""
  start, end = readme.find(README_BEGIN), readme.find(README_END)
  if start < 0 or end < 0:
    raise ValueError(f"no {README_BEGIN} … {README_END} block in the README")
  return readme[:start] + block + readme[end + len(README_END):]
