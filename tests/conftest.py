"""Shared fixtures."""

import jax
import pytest


@pytest.fixture
def x64():
  """Runs a test with 64-bit floats enabled (``jax_enable_x64``)."""
  with jax.enable_x64(True):
    yield

# Run in a subprocess with 8 simulated devices by test_sharding.py only.
collect_ignore = ["multidevice.py"]
