"""benchmarks/kernel_profile.py: the per-kernel device time of a step."""

import jax
import jax.numpy as jnp

from benchmarks import kernel_profile
from benchmarks import step_time


def test_kernel_times_sum_device_kernels_only():
  trace = {"traceEvents": [
      {"ph": "M", "name": "process_name", "pid": 1,
       "args": {"name": "/device:GPU:0"}},
      {"ph": "M", "name": "process_name", "pid": 2,
       "args": {"name": "/host:CPU"}},
      {"ph": "X", "pid": 1, "name": "kernel__7", "dur": 40.0, "ts": 0},
      {"ph": "X", "pid": 1, "name": "kernel__7", "dur": 50.0, "ts": 60},
      {"ph": "X", "pid": 1, "name": "memcpy128", "dur": 6.5, "ts": 120},
      {"ph": "X", "pid": 2, "name": "kernel__7", "dur": 999.0, "ts": 0},
      {"ph": "i", "pid": 1, "name": "marker", "ts": 5},
  ]}
  kernels = kernel_profile.kernel_times(trace)
  assert kernels == {"kernel__7": (2, 90.0), "memcpy128": (1, 6.5)}
  step = kernel_profile.per_step(kernels, steps=2)
  assert step["kernel_ms"] == 96.5 / 2e3 and step["copy_ms"] == 6.5 / 2e3
  assert step["launches"] == 1.5
  assert list(step["kernels"]) == ["kernel__7", "memcpy128"]


def test_profile_times_the_scanned_steps():
  """On a CPU the wall time is measured and the trace has no device
  kernels."""
  shapes, groups = step_time.MODELS["mlp1m"]()
  init, grad_fn = step_time.problem(shapes, groups)
  grads = jax.tree.map(lambda *g: jnp.stack(g), grad_fn(init, 0),
                       grad_fn(init, 1))
  opt = step_time.make_variant("ramda", groups, 1e-4)()
  r = kernel_profile.profile(opt, init, grads, steps=2)
  assert r["wall_ms"] > 0
  assert r["kernels"] == {} and r["kernel_ms"] == 0 and r["launches"] == 0
  assert r["copy_ms"] == 0
