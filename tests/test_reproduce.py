"""Smoke test of benchmarks.reproduce: a tiny run writes JSON, PNG and
the results table to an untracked folder, prints a summary, and the
committed reports are generated from the committed JSON."""

import hashlib
import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks import reproduce
from benchmarks import report
from benchmarks.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def git(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run(["git", *args], cwd=ROOT, capture_output=True,
                        text=True, check=False)


def tracked_files() -> dict[str, str]:
  """The hash of every tracked file the reproduction could write."""
  listed = git("ls-files", "benchmarks", "README.md")
  if listed.returncode:
    pytest.skip("checking that tracked files stay unchanged needs a git checkout (this copy has no .git)")
  paths = [ROOT / p for p in listed.stdout.split()]
  return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in paths if p.is_file()}


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
  for name in ("all.json", "frontiers.json"):
    shutil.copy(RESULTS / name, out)
  tiny_logreg_run(out, tmp_path / "RESULTS.md", "--update-readme")
  assert readme.read_text() == text


def test_readme_results_are_generated_from_the_committed_json():
  readme = (ROOT / "README.md").read_text()
  block = report.readme_block(RESULTS)
  assert block in readme
  for task in ("logreg", "mlp", "cnn", "transformer"):
    assert f"#### {task}" in block
    assert (RESULTS / f"all_{task}.png").exists()
  # The matched-accuracy verdicts on the frontiers come from their JSON.
  assert "frontiers at matched accuracy" in block
  assert (RESULTS / "frontiers.json").exists()


def test_results_page_is_generated_from_the_committed_json():
  assert report.results_page(RESULTS) == (
      ROOT / "benchmarks" / "RESULTS.md").read_text()


def test_report_only_rebuilds_the_reports_without_training(tmp_path, capsys):
  shutil.copy(RESULTS / "all.json", tmp_path)
  loaded = reproduce.main(["--report-only", "--out", str(tmp_path)])
  assert set(loaded) == {"all"}
  page = (tmp_path / "RESULTS.md").read_text()
  assert page == report.results_page(tmp_path, ".", str(tmp_path.resolve()))
  assert "![mlp](all_mlp.png)" in page
  printed = capsys.readouterr().out
  for name in ("logreg", "mlp", "cnn", "transformer"):
    assert f"\n{name}: seeds [0, 1, 2]" in printed
  assert printed.count("vs paper, structure:") == 2  # logreg and mlp
  assert printed.count("no counterpart in the paper") == 2


def test_the_default_output_is_ignored_and_committing_is_explicit():
  assert reproduce.OUTPUT == ROOT / "benchmarks" / "output"
  args = reproduce.parse_args(["--quick"])
  assert reproduce.destinations(args) == (
      reproduce.OUTPUT, reproduce.OUTPUT / "RESULTS.md")
  args = reproduce.parse_args(["--all", "--commit-results"])
  assert reproduce.destinations(args) == (RESULTS,
                                          ROOT / "benchmarks" / "RESULTS.md")
  for flags in (["--commit-results", "--out", "x"], ["--update-readme"]):
    with pytest.raises(SystemExit):
      reproduce.destinations(reproduce.parse_args(flags))
  if git("rev-parse").returncode:
    pytest.skip("checking that tracked files stay unchanged needs a git checkout (this copy has no .git)")
  assert git("check-ignore", "-q", "benchmarks/output/quick.json"
             ).returncode == 0


@pytest.mark.slow
def test_tiny_quick_run_trains_every_method_of_every_task(
    tmp_path, monkeypatch, capsys):
  out = tmp_path / "output"
  monkeypatch.setattr(reproduce, "OUTPUT", out)
  before = tracked_files()
  results = reproduce.main(["--quick", "--epochs", "1", "--train-size", "256"])
  assert tracked_files() == before
  assert (out / "quick.json").exists() and (out / "RESULTS.md").exists()
  printed = capsys.readouterr().out
  for name in TASKS:
    assert f"\n{name}: seeds [0]" in printed
  assert "vs paper, structure:" in printed and "91.35 / 57.40" in printed
  assert "no counterpart in the paper" in printed
  assert f"JSON: {out.resolve() / 'quick.json'}" in printed
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
