"""Verdicts against the paper: pair by pair, whether the order the paper
reports between two methods holds in a run.

For every pair of methods that both the paper and the run have, two orders
are checked: the structure's (weighted group sparsity or low-rank level,
higher is more structured) and the validation metric's (accuracy: higher is
better; perplexity or loss: lower is better). Each gets one of:

- ``holds``: the run puts the methods in the paper's order;
- ``reversed``: the run puts them in the opposite order;
- ``tie within noise``: the run's means differ by no more than the sum of
  the two standard deviations over seeds, or by less than ``RESOLUTION``
  (the tables' last digit); with one seed the deviations are 0, so only
  equal means tie;
- ``no order in the paper``: the paper reports the same value for both.

No percentage allowance applies: a worse perplexity is a reversal however
small, unless it is within the noise defined above.

At matched accuracy, structure is compared twice. At the paper's settings,
only between methods whose metric is within ``MATCHED_WITHIN`` (1 point of
accuracy, in the metric's units) of the run's best method; the methods
outside are named. On the λ frontiers (``benchmarks.frontiers``), between
the most structure each method reaches at any λ of its sweep while staying
within ``MATCHED_WITHIN`` of the best unregularized run; a method with no
such λ gets ``NO_POINT``. A task without a counterpart in the paper gets no
verdict, only the reason.
"""

import dataclasses
import itertools
from collections.abc import Mapping, Sequence

import numpy as np

HOLDS = "holds"
REVERSED = "reversed"
TIE = "tie within noise"
PAPER_TIE = "no order in the paper"
NO_POINT = "no λ within"

RESOLUTION = 0.01
MATCHED_WITHIN = 1.0

LOWER_IS_BETTER = ("perplexity", "loss")


@dataclasses.dataclass(frozen=True)
class Measure:
  """A final value of a run: mean and standard deviation over seeds."""

  mean: float
  std: float = 0.0


@dataclasses.dataclass(frozen=True)
class Outcome:
  """A method's validation metric and structure (%) in a run."""

  metric: Measure
  structure: Measure


@dataclasses.dataclass(frozen=True)
class Pair:
  """Two methods and the verdicts on their order.

  ``paper`` and ``run`` give (metric, structure) of ``first`` and then of
  ``second``. ``matched`` is the structure verdict at matched accuracy, or
  None when ``first`` or ``second`` is outside it. ``frontier`` is the
  structure verdict at matched accuracy on the λ frontiers (None without
  frontiers), from the structures in ``frontier_structure`` (None for a
  method with no λ within)."""

  first: str
  second: str
  paper: tuple[tuple[float, float], tuple[float, float]]
  run: tuple[Outcome, Outcome]
  structure: str
  metric: str
  matched: str | None
  frontier: str | None = None
  frontier_structure: tuple[Measure | None, Measure | None] = (None, None)


@dataclasses.dataclass(frozen=True)
class TaskVerdict:
  """A task's verdicts: the pairs, the methods within and outside matched
  accuracy, and the run's best method. ``no_counterpart`` is the reason
  when the paper has no counterpart (and ``pairs`` is empty)."""

  pairs: tuple[Pair, ...]
  best: str | None
  matched: tuple[str, ...]
  outside: tuple[str, ...]
  no_counterpart: str = ""


def higher_is_better(metric_name: str) -> bool:
  """False for perplexity and losses, True otherwise (accuracy)."""
  return not any(word in metric_name for word in LOWER_IS_BETTER)


def order(paper: tuple[float, float], run: tuple[Measure, Measure],
          higher: bool = True, resolution: float = RESOLUTION) -> str:
  """Whether the paper's order of two values holds in the run.

  >>> order((57.4, 39.9), (Measure(70.9, 0.1), Measure(54.0, 0.9)))
  'holds'
  >>> order((91.9, 89.6), (Measure(0.0), Measure(86.6)))
  'reversed'
  >>> order((91.3, 91.0), (Measure(88.2, 0.1), Measure(88.3, 0.2)))
  'tie within noise'
  >>> order((27.1, 27.5), (Measure(10.8), Measure(10.6)), higher=False)
  'reversed'
  """
  if paper[0] == paper[1]:
    return PAPER_TIE
  a, b = run
  difference = a.mean - b.mean
  if abs(difference) <= a.std + b.std or abs(difference) < resolution:
    return TIE
  paper_first = paper[0] > paper[1] if higher else paper[0] < paper[1]
  run_first = difference > 0 if higher else difference < 0
  return HOLDS if paper_first == run_first else REVERSED


def best_method(run: Mapping[str, Outcome], higher: bool = True) -> str:
  """The method with the best mean metric."""
  key = lambda m: run[m].metric.mean
  return max(run, key=key) if higher else min(run, key=key)


def within_matched(run: Mapping[str, Outcome], higher: bool = True,
                   within: float = MATCHED_WITHIN
                   ) -> tuple[tuple[str, ...], tuple[str, ...]]:
  """The methods whose mean metric is within ``within`` of the best one's,
  and the others."""
  best = run[best_method(run, higher)].metric.mean
  inside = tuple(m for m in run if abs(run[m].metric.mean - best) <= within)
  return inside, tuple(m for m in run if m not in inside)


def frontier_order(paper: tuple[float, float],
                   reached: tuple[Measure | None, Measure | None]) -> str:
  """The paper's structure order against the structures two methods reach
  at matched accuracy on their frontiers (None: no λ within).

  >>> frontier_order((57.4, 39.9), (Measure(20.0, 1.0), Measure(45.0, 2.0)))
  'reversed'
  >>> frontier_order((57.4, 39.9), (Measure(20.0, 1.0), None))
  'no λ within'
  """
  if None in reached:
    return NO_POINT
  return order(paper, reached)


def task_verdict(paper: Mapping[str, tuple[float, float]],
                 run: Mapping[str, Outcome], metric_name: str,
                 no_counterpart: str = "",
                 within: float = MATCHED_WITHIN,
                 frontier: Mapping[str, Measure | None] | None = None
                 ) -> TaskVerdict:
  """Every pair of methods in both ``paper`` ((metric, structure) per
  method) and ``run``, in the paper's order of methods. With an empty
  ``paper`` or a ``no_counterpart`` reason, no pair is judged.
  ``frontier`` gives, per method, the structure it reaches at matched
  accuracy on its λ frontier (None: no λ within), if the task has
  frontiers."""
  higher = higher_is_better(metric_name)
  if not run:
    return TaskVerdict((), None, (), (), no_counterpart)
  inside, outside = within_matched(run, higher, within)
  best = best_method(run, higher)
  if no_counterpart or not paper:
    return TaskVerdict((), best, inside, outside,
                       no_counterpart or "the paper reports no such run")
  methods = [m for m in paper if m in run]
  if len(methods) < 2:
    return TaskVerdict((), best, inside, outside,
                       "fewer than two of the paper's methods in this run")
  pairs = []
  for a, b in itertools.combinations(methods, 2):
    structure = order((paper[a][1], paper[b][1]),
                      (run[a].structure, run[b].structure))
    reached = ((frontier.get(a), frontier.get(b)) if frontier
               else (None, None))
    pairs.append(Pair(
        a, b, (tuple(paper[a]), tuple(paper[b])), (run[a], run[b]),
        structure=structure,
        metric=order((paper[a][0], paper[b][0]),
                     (run[a].metric, run[b].metric), higher),
        matched=structure if a in inside and b in inside else None,
        frontier=(frontier_order((paper[a][1], paper[b][1]), reached)
                  if frontier else None),
        frontier_structure=reached))
  return TaskVerdict(tuple(pairs), best, inside, outside)


def reversals(verdict: TaskVerdict) -> list[tuple[Pair, str]]:
  """The pairs whose order the run reverses, with the quantity
  ("structure", "metric" or "frontier")."""
  return [(pair, quantity) for pair in verdict.pairs
          for quantity in ("structure", "metric", "frontier")
          if getattr(pair, quantity) == REVERSED]


def counts(verdict: TaskVerdict, quantity: str) -> dict[str, int]:
  """How many pairs get each verdict on ``quantity`` ("structure",
  "metric", "matched" or "frontier"; None, outside matched accuracy or
  without frontiers, is left out)."""
  out = {}
  for pair in verdict.pairs:
    value = getattr(pair, quantity)
    if value is not None:
      out[value] = out.get(value, 0) + 1
  return out


def ranking(run: Mapping[str, Outcome], quantity: str,
            higher: bool = True) -> Sequence[str]:
  """The run's methods from best to worst on ``quantity`` ("metric" or
  "structure")."""
  value = lambda m: getattr(run[m], quantity).mean
  return sorted(run, key=value, reverse=higher)


def curve(points: Mapping[str, Mapping[str, Mapping[str, float]]]
          ) -> list[dict[str, float]]:
  """One method's frontier from its runs ``points[λ][seed]`` (each with
  ``metric`` and ``structure``): per λ, in increasing order, the mean and
  std over seeds of both."""
  out = []
  for strength, seeds in sorted(points.items(), key=lambda kv: float(kv[0])):
    metric = [v["metric"] for v in seeds.values()]
    structure = [v["structure"] for v in seeds.values()]
    out.append({"strength": float(strength),
                "metric": float(np.mean(metric)),
                "metric_std": float(np.std(metric)),
                "structure": float(np.mean(structure)),
                "structure_std": float(np.std(structure))})
  return out


def unregularized_best(points: Mapping[str, Mapping]) -> tuple[str, float]:
  """The method whose λ = 0 runs have the best mean accuracy, and that
  accuracy (``points[method][λ][seed]`` as in :func:`curve`)."""
  zero = {m: curve(p)[0]["metric"] for m, p in points.items()}
  best = max(zero, key=zero.get)
  return best, zero[best]


def most_structure(frontier: Sequence[Mapping[str, float]], floor: float
                   ) -> Mapping[str, float] | None:
  """The most structured point of a frontier with mean accuracy at least
  ``floor``, or None."""
  inside = [p for p in frontier if p["metric"] >= floor]
  return max(inside, key=lambda p: p["structure"]) if inside else None


def matched_structure(points: Mapping[str, Mapping], within: float
                      ) -> dict[str, Measure | None]:
  """Per method, the structure (mean, std) it reaches on its frontier
  within ``within`` of the best unregularized run, or None."""
  _, best = unregularized_best(points)
  out = {}
  for method, runs in points.items():
    point = most_structure(curve(runs), best - within)
    out[method] = (Measure(point["structure"], point["structure_std"])
                   if point else None)
  return out
