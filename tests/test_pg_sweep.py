"""benchmarks/pg_sweep.py: the sweep timer of the compiled PG kernel."""

import shutil

import pytest

from benchmarks import pg_sweep

pytestmark = pytest.mark.skipif(
    shutil.which("c++") is None, reason="no C++ compiler to build the kernel")


def test_sweeps_run_the_iterations_they_time():
  r = pg_sweep.measure((3, 3, 8, 16), iterations=4, rounds=2, calls=1)
  assert r["iterations"] == (1, 4)
  assert min(r["floor"], r["one"], r["many"]) > 0
  assert r["per_iteration"] == pytest.approx((r["many"] - r["one"]) / 3)
