"""The verdicts against the paper on synthetic results: a reversal is a
reversal, a held order holds, noise makes a tie, perplexity is lower-better
and a task without a counterpart gets no verdict."""

import re

from benchmarks import report
from benchmarks import verdicts
from benchmarks.tasks import TASKS
from benchmarks.verdicts import Measure, Outcome

PAPER = {"proxgen": (86.66, 87.46), "rmda": (88.19, 91.88),
         "ramda": (87.99, 89.59)}


def outcome(metric: float, structure: float, std: float = 0.0) -> Outcome:
  return Outcome(Measure(metric, std), Measure(structure, std))


def pair(verdict: verdicts.TaskVerdict, first: str,
         second: str) -> verdicts.Pair:
  return next(p for p in verdict.pairs
              if (p.first, p.second) == (first, second))


def test_a_reversal_is_reported_as_reversed():
  run = {"proxgen": outcome(90.6, 0.0), "rmda": outcome(92.0, 0.0),
         "ramda": outcome(92.5, 86.6)}
  verdict = verdicts.task_verdict(PAPER, run, "accuracy")
  rmda_ramda = pair(verdict, "rmda", "ramda")
  assert rmda_ramda.structure == verdicts.REVERSED
  assert rmda_ramda.metric == verdicts.REVERSED
  assert [(p.first, p.second, q) for p, q in verdicts.reversals(verdict)] == [
      ("rmda", "ramda", "structure"), ("rmda", "ramda", "metric")]


def test_a_held_order_is_reported_as_holding():
  run = {"proxgen": outcome(86.0, 80.0), "rmda": outcome(88.0, 92.0),
         "ramda": outcome(87.5, 90.0)}
  verdict = verdicts.task_verdict(PAPER, run, "accuracy")
  assert len(verdict.pairs) == 3
  assert all(p.structure == p.metric == verdicts.HOLDS for p in verdict.pairs)
  assert verdicts.reversals(verdict) == []


def test_differences_within_the_noise_over_seeds_are_ties():
  paper = (57.40, 39.92)
  assert verdicts.order(paper, (Measure(54.1, 0.9), Measure(53.8, 0.8))) == (
      verdicts.TIE)
  assert verdicts.order(paper, (Measure(53.8, 0.1), Measure(54.1, 0.1))) == (
      verdicts.REVERSED)
  # One seed: no noise estimate, so only equal means (to 0.01) tie.
  assert verdicts.order(paper, (Measure(0.0), Measure(0.0))) == verdicts.TIE
  assert verdicts.order(paper, (Measure(0.001), Measure(0.0))) == verdicts.TIE
  assert verdicts.order(paper, (Measure(0.5), Measure(0.0))) == verdicts.HOLDS
  assert verdicts.order((39.92, 39.92), (Measure(60.0), Measure(0.0))) == (
      verdicts.PAPER_TIE)


def test_perplexity_is_lower_better_without_an_allowance():
  assert not verdicts.higher_is_better("perplexity")
  assert not verdicts.higher_is_better("loss")
  assert verdicts.higher_is_better("accuracy")
  paper = {"proxgen": (27.49, 30.5), "ramda": (26.97, 36.2)}
  worse = {"proxgen": outcome(10.59, 0.5), "ramda": outcome(10.77, 50.8)}
  better = {"proxgen": outcome(10.77, 0.5), "ramda": outcome(10.59, 50.8)}
  verdict = verdicts.task_verdict(paper, worse, "perplexity")
  assert pair(verdict, "proxgen", "ramda").metric == verdicts.REVERSED
  assert pair(verdict, "proxgen", "ramda").structure == verdicts.HOLDS
  assert verdict.best == "proxgen"
  verdict = verdicts.task_verdict(paper, better, "perplexity")
  assert pair(verdict, "proxgen", "ramda").metric == verdicts.HOLDS


def test_matched_accuracy_names_the_methods_outside_it():
  run = {"proxgen": outcome(90.65, 0.0), "rmda": outcome(95.5, 0.0),
         "ramda": outcome(96.1, 86.6)}
  verdict = verdicts.task_verdict(PAPER, run, "accuracy")
  assert verdict.best == "ramda"
  assert verdict.matched == ("rmda", "ramda")
  assert verdict.outside == ("proxgen",)
  assert pair(verdict, "rmda", "ramda").matched == verdicts.REVERSED
  assert pair(verdict, "proxgen", "ramda").matched is None
  assert verdicts.counts(verdict, "matched") == {verdicts.REVERSED: 1}


def test_no_counterpart_gives_no_verdict():
  run = {"ramda": outcome(97.8, 40.7), "proxgen": outcome(96.9, 7.4)}
  verdict = verdicts.task_verdict({}, run, "accuracy", "closest: VGG19")
  assert verdict.pairs == () and verdict.no_counterpart == "closest: VGG19"
  verdict = verdicts.task_verdict(PAPER, run, "accuracy", "a different task")
  assert verdict.pairs == () and verdict.no_counterpart == "a different task"
  assert verdicts.task_verdict({}, run, "accuracy").no_counterpart


def test_every_task_has_the_papers_numbers_or_says_why_not():
  for name, task in TASKS.items():
    assert bool(task.paper) != bool(task.no_counterpart), name
    assert bool(task.counterpart) == bool(task.paper), name
  assert TASKS["mlp"].paper == {"prox_sgd": (87.54, 78.00),
                                "proxgen": (86.66, 87.46),
                                "rmda": (88.19, 91.88),
                                "ramda": (87.99, 89.59)}
  assert "VGG19" in TASKS["cnn"].no_counterpart
  assert "Transformer-XL" in TASKS["transformer"].no_counterpart


def synthetic_result(metric: str, finals: dict[str, tuple[float, float]],
                     paper: dict[str, tuple[float, float]]) -> dict:
  """A task's entry of the results JSON, one seed per method."""
  runs = {m: {"0": {"final": {f"val_{metric}": v, "structure_W": s}}}
          for m, (v, s) in finals.items()}
  return {"metric": metric, "structure": "weighted_group_sparsity",
          "seeds": [0], "runs": runs,
          "paper": {m: list(v) for m, v in paper.items()}}


def test_the_report_states_reversals_and_missing_counterparts():
  result = synthetic_result(
      "accuracy", {"proxgen": (90.65, 0.0), "rmda": (92.0, 0.0),
                   "ramda": (96.1, 86.64)}, PAPER)
  markdown = "\n".join(report.verdict_lines("synthetic", result))
  row = re.search(r"^\| RMDA vs RAMDA \|.*$", markdown, re.M).group(0)
  assert "91.88 > 89.59" in row and "0.00 < 86.64" in row
  assert row.count("**reversed**") == 2
  assert "outside: ProxGen (90.65), RMDA (92.00)" in markdown
  summary = report.terminal_summary({"tasks": {"synthetic": result}})
  assert ("reversed: structure RMDA vs RAMDA (paper 91.88 > 89.59, run "
          "0.00 < 86.64)") in summary

  cnn = synthetic_result("accuracy", {"ramda": (97.8, 40.7),
                                      "proxgen": (96.9, 7.4)}, {})
  markdown = "\n".join(report.verdict_lines("cnn", cnn))
  assert "No counterpart in the paper" in markdown and "VGG19" in markdown
  assert "| pair |" not in markdown and "reversed" not in markdown


def test_a_worse_perplexity_is_stated_for_a_task_without_counterpart():
  result = synthetic_result("perplexity", {"ramda": (10.77, 50.78),
                                           "proxgen": (10.59, 0.48)}, {})
  summary = report.terminal_summary({"tasks": {"transformer": result}})
  assert "no counterpart" in summary
  assert "perplexity ProxGen 10.59 < RAMDA 10.77" in summary


def frontier_points(curves: dict[str, list[tuple[float, float, float]]]
                    ) -> dict:
  """``points[method][λ][seed]`` of frontiers.json from (λ, accuracy,
  structure) per method, the same for seeds 0 and 1."""
  return {m: {repr(s): {str(seed): {"metric": a, "structure": st}
                        for seed in (0, 1)} for s, a, st in points}
          for m, points in curves.items()}


def test_matched_structure_reads_each_frontier_within_the_allowance():
  points = frontier_points({
      "rmda": [(0.0, 92.0, 0.0), (1e-3, 91.6, 30.0), (1e-2, 90.5, 80.0)],
      "ramda": [(0.0, 91.0, 0.0), (1e-3, 90.0, 60.0), (1e-2, 85.0, 95.0)]})
  assert verdicts.unregularized_best(points) == ("rmda", 92.0)
  matched = verdicts.matched_structure(points, 1.0)
  assert matched == {"rmda": Measure(30.0, 0.0), "ramda": Measure(0.0, 0.0)}
  matched = verdicts.matched_structure(points, 0.5)
  assert matched == {"rmda": Measure(30.0, 0.0), "ramda": None}


def test_a_frontier_reversal_is_reported_and_no_point_is_none():
  run = {"proxgen": outcome(86.0, 80.0), "rmda": outcome(88.0, 92.0),
         "ramda": outcome(87.5, 90.0)}
  frontier = {"proxgen": Measure(70.0, 1.0), "rmda": Measure(20.0, 1.0),
              "ramda": None}
  verdict = verdicts.task_verdict(PAPER, run, "accuracy", frontier=frontier)
  # At the paper's settings every order holds; on the frontiers ProxGen
  # reaches more structure than RMDA at matched accuracy: a reversal.
  assert all(p.structure == verdicts.HOLDS for p in verdict.pairs)
  assert pair(verdict, "proxgen", "rmda").frontier == verdicts.REVERSED
  assert pair(verdict, "rmda", "ramda").frontier == verdicts.NO_POINT
  assert [(p.first, p.second, q) for p, q in verdicts.reversals(verdict)] == [
      ("proxgen", "rmda", "frontier")]
  assert verdicts.counts(verdict, "frontier") == {
      verdicts.REVERSED: 1, verdicts.NO_POINT: 2}
  held = {"proxgen": Measure(10.0), "rmda": Measure(50.0),
          "ramda": Measure(40.0)}
  verdict = verdicts.task_verdict(PAPER, run, "accuracy", frontier=held)
  assert all(p.frontier == verdicts.HOLDS for p in verdict.pairs)
  assert verdicts.task_verdict(PAPER, run, "accuracy").pairs[0].frontier is None


def test_the_report_states_a_frontier_reversal():
  result = synthetic_result(
      "accuracy", {"proxgen": (86.0, 80.0), "rmda": (88.0, 92.0),
                   "ramda": (87.5, 90.0)}, PAPER)
  frontiers = {"synthetic": {"points": frontier_points({
      "proxgen": [(0.0, 88.0, 0.0), (1e-3, 87.5, 70.0)],
      "rmda": [(0.0, 87.0, 0.0), (1e-3, 87.2, 20.0)],
      "ramda": [(0.0, 86.0, 0.0), (1e-3, 80.0, 90.0)]})}}
  markdown = "\n".join(report.verdict_lines("synthetic", result, frontiers))
  row = re.search(r"^\| ProxGen vs RMDA \|.*$", markdown, re.M).group(0)
  assert "70.00 > 20.00 | **reversed**" in row
  row = re.search(r"^\| RMDA vs RAMDA \|.*$", markdown, re.M).group(0)
  assert "20.00 / – | no λ within" in row
  summary = report.terminal_summary({"tasks": {"synthetic": result}},
                                    frontiers)
  assert ("reversed: structure at matched accuracy on the frontiers ProxGen "
          "vs RMDA (paper 87.46 < 91.88, frontiers 70.00 > 20.00)") in summary
