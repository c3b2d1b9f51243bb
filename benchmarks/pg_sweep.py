"""What a sweep of the compiled PG kernel costs, against its memory floor.

On VGG19's largest leaf, a (3, 3, 512, 512) conv kernel grouped per input
channel, with a subproblem of the early-training kind (a and W near each
other, P in [0.5, 2], some groups screened), the paper's PG solve as a
compiled CPU kernel (``cpu_kernel.pg_leaf``) runs 1 and ``--iterations``
iterations in one chunk, one sweep over the leaf that reads a, v, P and the
iterate and writes the iterate, beside an XLA fusion that reads four arrays
of the leaf and writes one (the sweep's memory floor). Their calls are
taken in turn, round by round (``step_time.interleaved``), and it prints
the medians: the one-iteration time is a sweep's cost, the difference per
iteration an iteration's cost in cache.

    python -m benchmarks.pg_sweep
"""

import argparse
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import step_time
from ramda_optax import cpu_kernel
from ramda_optax.regularizers import GroupNorm
from ramda_optax.subproblem import Subproblem


def leaf_problem(shape: tuple[int, ...], seed: int = 0):
  """A float32 subproblem of a conv kernel grouped per input channel, its
  warm start and its group norm."""
  rng = np.random.default_rng(seed)
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  a = rng.normal(size=shape) / math.sqrt(math.prod(shape[:-1]))
  sub = Subproblem(f32(a), f32(0.3 * rng.normal(size=shape) * np.abs(a)),
                   f32(rng.uniform(0.5, 2.0, size=shape)), f32(1e-3))
  z0 = f32(a + 0.01 * rng.normal(size=shape) * np.abs(a))
  penalty = GroupNorm((0, 1, 3), shape[0] * shape[1] * shape[3])
  return sub, z0, penalty


def measure(shape: tuple[int, ...], iterations: int, rounds: int,
            calls: int) -> dict:
  """Median milliseconds of the floor fusion and of one sweep of 1 and of
  ``iterations`` iterations, ``calls`` calls a round, and the iterations
  the kernel ran (rtol < 0 holds it to the count)."""
  if not cpu_kernel.available():
    raise SystemExit(f"no CPU kernel: {cpu_kernel.library()[1]}")
  sub, z0, penalty = leaf_problem(shape)
  view = cpu_kernel.leaf_view(penalty, shape)

  def sweep(n):
    return jax.jit(lambda s, z: cpu_kernel.pg_leaf(
        view, penalty, s, z, max_iters=n, rtol=-1.0, chunk=n,
        remember=False))

  runs = {"floor": (jax.jit(lambda a, v, p, z: a + v * p - z),
                    (sub.anchor, sub.linear, sub.metric, z0)),
          "one": (sweep(1), (sub, z0)),
          "many": (sweep(iterations), (sub, z0))}
  done = {k: jax.block_until_ready(f(*args)) for k, (f, args) in runs.items()}

  def timer(f, args):
    def run(n):
      del n
      start = time.perf_counter()
      for _ in range(calls):
        jax.block_until_ready(f(*args))
      return (time.perf_counter() - start) / calls
    return run

  times = step_time.interleaved([timer(*runs[k]) for k in runs], 1, rounds)
  ms = {k: 1e3 * float(np.median(t)) for k, t in zip(runs, times)}
  return {**ms, "per_iteration": (ms["many"] - ms["one"]) / (iterations - 1),
          "iterations": (int(done["one"][1]), int(done["many"][1]))}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--shape", default="3,3,512,512")
  parser.add_argument("--iterations", type=int, default=16)
  parser.add_argument("--rounds", type=int, default=8)
  parser.add_argument("--calls", type=int, default=10)
  args = parser.parse_args()
  shape = tuple(int(n) for n in args.shape.split(","))
  r = measure(shape, args.iterations, args.rounds, args.calls)
  print(f"leaf {shape}, {math.prod(shape) / 1e6:.2f}M entries, "
        f"{jax.devices()[0].platform}, medians of {args.rounds} rounds")
  rows = [("XLA fusion reading 4 arrays, writing 1", f"{r['floor']:7.2f} ms"),
          ("sweep with 1 iteration", f"{r['one']:7.2f} ms"),
          (f"sweep with {args.iterations} iterations", f"{r['many']:7.2f} ms"),
          ("one iteration in cache", f"{r['per_iteration']:8.3f} ms")]
  for label, value in rows:
    print(f"{label:<40} {value}")

if __name__ == "__main__":
  main()
