"""The notebooks run top to bottom, and each .ipynb matches its paired
percent-format script."""

import time
from pathlib import Path

import jupytext
import nbclient
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))


def test_every_notebook_is_paired():
  assert NAMES == sorted(p.stem for p in NOTEBOOKS.glob("*.py"))
  assert {"quickstart", "structure_identification",
          "custom_regularizer"} <= set(NAMES)


def sources(notebook):
  return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_matches_its_script(name):
  assert sources(jupytext.read(NOTEBOOKS / f"{name}.ipynb")) == sources(
      jupytext.read(NOTEBOOKS / f"{name}.py"))


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name):
  notebook = jupytext.read(NOTEBOOKS / f"{name}.py")
  start = time.perf_counter()
  # A failing cell (the notebooks assert their own claims) raises here.
  nbclient.NotebookClient(
      notebook, timeout=300, kernel_name="python3",
      resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
  outputs = [o for cell in notebook.cells if cell.cell_type == "code"
             for o in cell.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  assert any(o.output_type == "stream" for o in outputs)
  print(f"{name}: {time.perf_counter() - start:.0f} s")
