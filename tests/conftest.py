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


def pytest_addoption(parser):
  parser.addoption("--run-slow", action="store_true",
                   help="also run the tests marked slow (CI does)")
  parser.addoption("--run-full-scale", action="store_true",
                   help="also run the full-scale networks' smoke runs")


def pytest_collection_modifyitems(config, items):
  """Skips the slow tests unless --run-slow or a -m expression asks, and the
  full-scale smoke runs (minutes of compiling on a CPU) unless
  --run-full-scale or a -m expression naming them asks."""
  markexpr = config.getoption("markexpr")
  tiers = {
      "slow": config.getoption("--run-slow") or bool(markexpr),
      "full_scale": config.getoption("--run-full-scale")
      or "full_scale" in markexpr,
  }
  for marker, selected in tiers.items():
    flag = f"--run-{marker.replace('_', '-')}"
    if selected:
      continue
    skip = pytest.mark.skip(reason=f"{marker}: run with {flag}")
    for item in items:
      if item.get_closest_marker(marker):
        item.add_marker(skip)


@pytest.fixture
def x64():
  """Runs a test with 64-bit floats enabled (``jax_enable_x64``)."""
  with jax.enable_x64(True):
    yield

# Run in a subprocess with 8 simulated devices by test_sharding.py only.
collect_ignore = ["multidevice.py"]
