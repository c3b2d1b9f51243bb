"""benchmarks.sharded_sweeps: the paper's rule by sweeps aimed at the
optimizer's stop hints, against sweeps not aimed."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(devices: int, *args: str) -> str:
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT),
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  result = subprocess.run(
      [sys.executable, "-m", "benchmarks.sharded_sweeps", *args], cwd=ROOT,
      env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout + result.stderr
  return result.stdout


def _sweeps(line: str) -> dict[str, float]:
  return {name: float(sweeps) for name, sweeps in re.findall(
      r"(aimed|at the last stop|not aimed) ([\d.]+) / ", line)}


@pytest.mark.slow
def test_cnn_split_over_two_devices_takes_fewer_sweeps_aimed():
  """On 2 simulated devices the CNN's runs aimed and not give the same
  floats, and its conv kernel, whose groups the devices split, takes fewer
  sweeps a solve aimed."""
  out = _run(2, "--steps", "6")
  assert "the same floats: True" in out, out
  conv = _sweeps(next(line for line in out.splitlines()
                      if line.startswith("['Conv_1']['kernel']")))
  assert conv["aimed"] < conv["not aimed"], out


@pytest.mark.slow
def test_vgg19_early_steps_take_fewer_sweeps_aimed():
  """On VGG19's early steps, where the stops fall at every step, solves
  aimed by the optimizer's hints take fewer sweeps than those not aimed
  and than those aimed at the last stop alone, over the leaves' sizes."""
  out = _run(1, "--model", "vgg19", "--steps", "3")
  assert out.count("groups of") == 17, out
  total = _sweeps(out.splitlines()[-1])
  assert total["aimed"] < min(total["at the last stop"], total["not aimed"]), (
      out)
