"""Sharded multi-device training equals single-device training, and the
kernels step each device's shard where the shards hold whole groups.

The check runs in a subprocess with 8 simulated CPU devices
(tests/multidevice.py), since XLA's device count is fixed at start-up.
"""

import os
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import pytest
from jax.sharding import PartitionSpec as P

import ramda_optax as ro


@pytest.mark.slow
def test_sharded_training_matches_single_device():
  root = Path(__file__).resolve().parent.parent
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu", PYTHONPATH=str(root))
  result = subprocess.run(
      [sys.executable, "-m", "tests.multidevice"], cwd=root, env=env,
      capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout + result.stderr
  # Five kernel steps and six optimizers, two layouts each, and the paper's
  # rule by sweeps in seven runs of its whole step and one of its solve.
  assert result.stdout.count(": ok") == 30 and "all ok" in result.stdout


def test_group_axis_specs_split_the_axis_that_indexes_the_groups():
  """Each leaf is split along the one axis its groups leave free, where
  the mesh axis divides it; leaves without groups, with groups of one
  entry, a single group, or an indivisible axis are replicated."""
  params = {"conv": jnp.zeros((3, 3, 8, 16)), "dense_in": jnp.zeros((64, 32)),
            "dense_out": jnp.zeros((64, 32)), "bias": jnp.zeros(16),
            "odd": jnp.zeros((3, 3, 3, 16)), "one": jnp.zeros((4, 4)),
            "entries": jnp.zeros((4, 4))}
  groups = {"conv": (0, 1, 3), "dense_in": (1,), "dense_out": (0,),
            "bias": None, "odd": (0, 1, 3), "one": (0, 1), "entries": ()}
  specs = ro.sharding.group_axis_specs(params, groups, "model", 2)
  assert specs == {"conv": P(None, None, "model", None),
                   "dense_in": P("model", None), "dense_out": P(None, "model"),
                   "bias": P(), "odd": P(), "one": P(), "entries": P()}
