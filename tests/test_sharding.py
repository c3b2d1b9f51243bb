"""Sharded multi-device training equals single-device training, and the
kernels step each device's shard where the shards hold whole groups.

The check runs in a subprocess with 8 simulated CPU devices
(tests/multidevice.py), since XLA's device count is fixed at start-up.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_sharded_training_matches_single_device():
  root = Path(__file__).resolve().parent.parent
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu", PYTHONPATH=str(root))
  result = subprocess.run(
      [sys.executable, "-m", "tests.multidevice"], cwd=root, env=env,
      capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout + result.stderr
  # Three kernel steps and six optimizers, two layouts each.
  assert result.stdout.count(": ok") == 18 and "all ok" in result.stdout
