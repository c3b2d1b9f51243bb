"""Smoke test of benchmarks.reproduce: a tiny run writes JSON, PNG and
the results table."""

import json
import math
import shutil
from pathlib import Path

import pytest

from benchmarks import reproduce
from benchmarks import report
from benchmarks.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def tiny_logreg_run(out: Path, page: Path, *flags: str) -> dict:
  return reproduce.main([
      "--task", "logreg", "--methods", "ramda,prox_sgd", "--seeds", "0",
      "--epochs", "1", "--train-size", "256", "--out", str(out),
      "--report", str(page), *flags])


@pytest.mark.slow
def test_tiny_logreg_run_writes_json_png_and_table(tmp_path, monkeypatch):
  monkeypatch.setattr(reproduce, "README", tmp_path / "README.md")
  out, page = tmp_path / "results", tmp_path / "RESULTS.md"
  results = tiny_logreg_run(out, page)

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
  table = page.read_text()
  assert "| RAMDA |" in table and "| ProxSGD |" in table
  assert "91.35 / 57.4" in table
  assert not (tmp_path / "README.md").exists()  # only with --update-readme


@pytest.mark.slow
def test_update_readme_rebuilds_the_results_block(tmp_path, monkeypatch):
  text = (ROOT / "README.md").read_text()
  readme = tmp_path / "README.md"
  readme.write_text(text.replace(report.readme_block(RESULTS),
                                 report.README_BEGIN + report.README_END))
  monkeypatch.setattr(reproduce, "README", readme)
  out = tmp_path / "results"
  out.mkdir()
  shutil.copy(RESULTS / "all.json", out)
  tiny_logreg_run(out, tmp_path / "RESULTS.md", "--update-readme")
  assert readme.read_text() == text


def test_readme_results_are_generated_from_the_committed_json():
  readme = (ROOT / "README.md").read_text()
  block = report.readme_block(RESULTS)
  assert block in readme
  for task in ("logreg", "mlp", "cnn", "transformer"):
    assert f"#### {task}" in block
    assert (RESULTS / f"all_{task}.png").exists()


def test_results_page_is_generated_from_the_committed_json():
  assert report.results_page(RESULTS) == (
      ROOT / "benchmarks" / "RESULTS.md").read_text()


@pytest.mark.slow
def test_tiny_quick_run_trains_every_method_of_every_task(tmp_path):
  out = tmp_path / "results"
  results = reproduce.main([
      "--quick", "--epochs", "1", "--train-size", "256", "--out", str(out),
      "--report", str(tmp_path / "RESULTS.md")])
  assert set(results["tasks"]) == set(TASKS)
  for name, task in TASKS.items():
    runs = results["tasks"][name]["runs"]
    assert set(runs) == set(task.hyper)
    for method, seeds in runs.items():
      final = seeds["0"]["final"]
      assert all(math.isfinite(v) for v in final.values()), (name, method)
    assert (out / f"quick_{name}.png").exists()
  cnn = results["tasks"]["cnn"]["runs"]["ramda"]["0"]["final"]
  assert cnn["compact_params"] <= cnn["params"]
