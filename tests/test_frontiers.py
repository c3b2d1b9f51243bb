"""The λ frontiers: the sweep around the paper's λ, the matched-accuracy
table on synthetic sweeps, and a smoke run that writes JSON, figure and
tables."""

import json

import pytest

from benchmarks import frontiers
from benchmarks import report
from benchmarks.tasks import TASKS


def sweep_result(curves: dict[str, list[tuple[float, float, float]]]) -> dict:
  """A task's entry of frontiers.json from (λ, accuracy, structure) per
  method, the same for seeds 0 and 1."""
  points = {m: {repr(s): {str(seed): {"metric": a, "structure": st}
                          for seed in (0, 1)} for s, a, st in runs}
            for m, runs in curves.items()}
  return {"metric": "accuracy", "structure": "weighted_group_sparsity",
          "epochs": 1, "batch_size": 128, "seeds": [0, 1], "points": points}


def test_every_frontier_sweeps_five_log_spaced_strengths_and_zero():
  for name in ("logreg", "mlp", "cnn"):
    task = TASKS[name]
    assert task.frontier is not None
    for method in frontiers.regularized(task):
      values = frontiers.strengths(task, method)
      paper = task.hyper[method]["strength"]
      assert values[0] == 0 and len(values) == 6
      assert values[3] == pytest.approx(paper)
      assert values[1] == pytest.approx(paper / 10)
      assert values[-1] == pytest.approx(paper * 10)
  assert TASKS["transformer"].frontier is None


def test_matched_table_takes_the_most_structure_within_each_allowance():
  result = sweep_result({
      "prox_sgd": [(0.0, 92.0, 0.0), (1e-3, 91.7, 20.0), (1e-2, 91.2, 50.0)],
      "ramda": [(0.0, 91.0, 0.0), (1e-3, 90.0, 60.0)]})
  table = report.matched_table(result)
  assert table["prox_sgd"]["0.5"]["structure"] == 20.0
  assert table["prox_sgd"]["1"]["structure"] == 50.0
  assert table["ramda"]["0.5"] is None
  assert table["ramda"]["1"]["strength"] == 0.0  # only λ = 0 stays within
  lines = "\n".join(report.table_lines("logreg", result))
  assert "Best unregularized run: ProxSGD at λ = 0, 92.00% accuracy" in lines
  assert ("| RAMDA | – | 0.00 ± 0.00 (λ = 0, 91.00%) | 90.00 / 60.00 |"
          in lines)


@pytest.mark.slow
def test_smoke_sweep_writes_json_figure_and_tables(tmp_path, capsys):
  results = frontiers.main(["--task", "logreg", "--steps", "2",
                            "--out", str(tmp_path)])
  saved = json.loads((tmp_path / "frontiers.json").read_text())
  assert saved == json.loads(json.dumps(results))
  points = saved["tasks"]["logreg"]["points"]
  assert set(points) == {"prox_sgd", "proxgen", "prox_ssi", "rmda", "ramda"}
  for runs in points.values():
    assert len(runs) == 6 and all(len(s) == 3 for s in runs.values())
  assert (tmp_path / "frontiers_logreg.png").read_bytes()[:4] == b"\x89PNG"
  assert "| RAMDA |" in (tmp_path / "FRONTIERS.md").read_text()
  assert "within 0.5 point" in capsys.readouterr().out
