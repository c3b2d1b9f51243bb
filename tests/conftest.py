"""Shared fixtures and the hypothesis profiles."""

import os

import hypothesis
import jax
import pytest

# "ci" (the default): 25 derandomized examples per property, the same on
# every run, so CI never flakes. "thorough": 500 fresh random examples per
# property, for a search before a release or after changing a solver:
#   RAMDA_OPTAX_HYPOTHESIS_PROFILE=thorough pytest tests/test_properties.py
hypothesis.settings.register_profile(
    "ci", max_examples=25, deadline=None, derandomize=True)
hypothesis.settings.register_profile(
    "thorough", max_examples=500, deadline=None, print_blob=True)
hypothesis.settings.load_profile(
    os.environ.get("RAMDA_OPTAX_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def x64():
  """Runs a test with 64-bit floats enabled (``jax_enable_x64``)."""
  with jax.enable_x64(True):
    yield

# Run in a subprocess with 8 simulated devices by test_sharding.py only.
collect_ignore = ["multidevice.py"]
