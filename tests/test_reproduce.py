"""Smoke test of benchmarks/reproduce.py: a tiny run writes JSON, PNG and
the results table."""

import importlib.util
import json
import math
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "reproduce.py"


def load_script():
  spec = importlib.util.spec_from_file_location("reproduce", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_tiny_logreg_run_writes_json_png_and_table(tmp_path, monkeypatch):
  monkeypatch.syspath_prepend(str(SCRIPT.parent))  # its sibling mnist_cnn
  reproduce = load_script()
  out, report = tmp_path / "results", tmp_path / "RESULTS.md"
  results = reproduce.main([
      "--task", "logreg", "--methods", "ramda,prox_sgd", "--seeds", "0",
      "--epochs", "1", "--train-size", "256", "--out", str(out),
      "--report", str(report)])

  saved = json.loads((out / "logreg.json").read_text())
  assert saved == json.loads(json.dumps(results))
  assert {"command", "platform", "jax", "wall_time_s", "tasks"} <= set(saved)
  task = saved["tasks"]["logreg"]
  assert set(task["runs"]) == {"ramda", "prox_sgd"}
  assert set(task["paper"]) == {"ramda", "prox_sgd"}
  for method, runs in task["runs"].items():
    hyper = task["hyperparameters"][method]
    assert hyper["train_size"] == 256 and hyper["epochs"] == 1
    run = runs["0"]
    assert set(run["epochs"]) == {"train_loss", "val_accuracy", "structure_W",
                                  "structure_theta"}
    assert all(len(v) == 1 for v in run["epochs"].values())
    assert all(math.isfinite(v) for v in run["final"].values())
    assert 0 <= run["final"]["val_accuracy"] <= 100
    assert 0 <= run["final"]["structure_W"] <= 100
    assert run["wall_time_s"] > 0
  assert task["hyperparameters"]["ramda"]["c"] >= 0.01

  png = out / "logreg_logreg.png"
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert png.stat().st_size < 200_000
  table = report.read_text()
  assert "| RAMDA |" in table and "| ProxSGD |" in table
  assert "91.35 / 57.4" in table


def test_readme_results_are_generated_from_the_committed_json(monkeypatch):
  monkeypatch.syspath_prepend(str(SCRIPT.parent))
  reproduce = load_script()
  readme = (SCRIPT.parents[1] / "README.md").read_text()
  block = reproduce.readme_block(SCRIPT.parent / "results")
  assert block in readme
  for task in ("logreg", "mlp", "cnn", "transformer"):
    assert f"#### {task}" in block
    assert (SCRIPT.parent / "results" / f"all_{task}.png").exists()


def test_tiny_quick_run_trains_every_method_of_every_task(tmp_path, monkeypatch):
  monkeypatch.syspath_prepend(str(SCRIPT.parent))
  reproduce = load_script()
  out = tmp_path / "results"
  results = reproduce.main([
      "--quick", "--epochs", "1", "--train-size", "256", "--out", str(out),
      "--report", str(tmp_path / "RESULTS.md")])
  assert set(results["tasks"]) == set(reproduce.TASKS)
  for name, task in reproduce.TASKS.items():
    runs = results["tasks"][name]["runs"]
    assert set(runs) == set(task.hyper)
    for method, seeds in runs.items():
      final = seeds["0"]["final"]
      assert all(math.isfinite(v) for v in final.values()), (name, method)
    assert (out / f"quick_{name}.png").exists()
  cnn = results["tasks"]["cnn"]["runs"]["ramda"]["0"]["final"]
  assert cnn["compact_params"] <= cnn["params"]
