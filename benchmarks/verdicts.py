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

At matched accuracy, structure is compared only between methods whose
metric is within ``MATCHED_WITHIN`` (1 point of accuracy, in the metric's
units) of the run's best method; the methods outside are named. A task
without a counterpart in the paper gets no verdict, only the reason.
"""

import dataclasses
import itertools
from collections.abc import Mapping, Sequence

HOLDS = "holds"
REVERSED = "reversed"
TIE = "tie within noise"
PAPER_TIE = "no order in the paper"

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
  None when ``first`` or ``second`` is outside it."""

  first: str
  second: str
  paper: tuple[tuple[float, float], tuple[float, float]]
  run: tuple[Outcome, Outcome]
  structure: str
  metric: str
  matched: str | None


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


def task_verdict(paper: Mapping[str, tuple[float, float]],
                 run: Mapping[str, Outcome], metric_name: str,
                 no_counterpart: str = "",
                 within: float = MATCHED_WITHIN) -> TaskVerdict:
  """Every pair of methods in both ``paper`` ((metric, structure) per
  method) and ``run``, in the paper's order of methods. With an empty
  ``paper`` or a ``no_counterpart`` reason, no pair is judged."""
  higher = higher_is_better(metric_name)
  if not run:
    return TaskVerdict((), None, (), (), no_counterpart)
  inside, outside = within_matched(run, higher, within)
  best = best_method(run, higher)
  if no_counterpart or not paper:
    return TaskVerdict((), best, inside, outside,
                       no_counterpart or "the paper reports no such run")
  methods = [m for m in paper if m in run]
  pairs = []
  for a, b in itertools.combinations(methods, 2):
    structure = order((paper[a][1], paper[b][1]),
                      (run[a].structure, run[b].structure))
    pairs.append(Pair(
        a, b, (tuple(paper[a]), tuple(paper[b])), (run[a], run[b]),
        structure=structure,
        metric=order((paper[a][0], paper[b][0]),
                     (run[a].metric, run[b].metric), higher),
        matched=structure if a in inside and b in inside else None))
  return TaskVerdict(tuple(pairs), best, inside, outside)


def reversals(verdict: TaskVerdict) -> list[tuple[Pair, str]]:
  """The pairs whose order the run reverses, with the quantity ("structure"
  or "metric")."""
  return [(pair, quantity) for pair in verdict.pairs
          for quantity in ("structure", "metric")
          if getattr(pair, quantity) == REVERSED]


def counts(verdict: TaskVerdict, quantity: str) -> dict[str, int]:
  """How many pairs get each verdict on ``quantity`` ("structure",
  "metric" or "matched"; None, outside matched accuracy, is left out)."""
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
