"""How close each subproblem solver gets to the exact θ̂ along a real run.

Trains the paper authors' MNIST network (benchmarks.models.LeNet; conv
kernels grouped by input channel, dense kernels by input feature) with
RAMDA and the paper's PG rule, λ = 1e-4, on the bundled MNIST subset. At
every step it takes that step's subproblem (W⁰, V, P = ∛U + ε, τ = αλ, warm
start W) and solves it with each solver; it reports the gap of the
subproblem objective Q to the exact solution's, relative to |Q(θ̂_exact)|,
and the iterations per regularized leaf, averaged over the run (and the
worst step). It also reports how far the training run's own stops (the
rule's iterations per leaf) move from one step to the next: the share of
moves within a factor 0.8, the band inside which the rule's CPU kernel
keeps a leaf's own last stop as its hint.

    python -m benchmarks.solver_accuracy --steps 200
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import ramda_optax as ro
from ramda_optax import solvers
from ramda_optax._numerics import cbrt
from ramda_optax.subproblem import Subproblem
from benchmarks.mnist_cnn import make_step
from benchmarks.models import LeNet

SOLVERS = {
    "pg (paper's per-leaf rule)": ro.pg_solver(),
    "pg (paper's rule), XLA path": ro.pg_solver(backend="xla"),
    "pg, 1 MiB blocks": ro.pg_solver(block_bytes=2**20),
    "pg, 32 KiB blocks": ro.pg_solver(block_bytes=32 * 1024),
    "pg, 8 KiB blocks": ro.pg_solver(block_bytes=8 * 1024),
    "exact": ro.exact_solver(),
}


def objective(theta, sub: Subproblem, penalties) -> float:
  """Q(θ) in float64, summed over leaves."""
  total = 0.0
  for t, a, v, p, pen in zip(*(jax.tree.leaves(x) for x in
                               (theta, sub.anchor, sub.linear, sub.metric)),
                             penalties):
    t, a, v, p = (np.asarray(x, np.float64) for x in (t, a, v, p))
    d = t - a
    total += float(np.sum(v * d + 0.5 * p * d * d))
    if pen is not None:
      total += float(sub.threshold) * float(pen.value(jnp.asarray(t)))
  return total


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--strength", type=float, default=1e-4)
  args = parser.parse_args()
  train, _ = ro.datasets.load_mnist10k()
  model = LeNet()
  params = model.init(jax.random.key(0), train.images[:1])["params"]
  groups = ro.groups.structured(params)
  reg = ro.group_lasso(args.strength, groups)
  eps = 1e-6
  opt = ro.ramda(1e-2, momentum=0.9, eps=eps, regularizer=reg,
                 solver=ro.pg_solver())
  state = opt.init(jax.tree.map(jnp.copy, params))
  step = make_step(model, opt)
  penalties = reg.layout(params)
  regularized = np.array([p is not None for p in penalties])
  solve = {
      name: jax.jit(lambda sub, z0, count, s=s: solvers.solve_tree(
          s, penalties, sub, z0, count))
      for name, s in SOLVERS.items()
  }
  gaps = {name: [] for name in SOLVERS}
  iters = {name: [] for name in SOLVERS}
  stops = []  # the training run's iterations per regularized leaf
  for n in range(args.steps):
    batch = slice(128 * n % 7936, 128 * n % 7936 + 128)
    before = jax.tree.map(jnp.copy, params)
    params, state, _ = step(params, state, train.images[batch],
                            train.labels[batch])
    stops.append(np.asarray(state.inner_iters)[regularized])
    metric = jax.tree.map(lambda u: cbrt(u) + eps, state.precond[0])
    sub = Subproblem(state.dual.anchor, state.dual.grad_sum, metric,
                     state.threshold)
    results = {name: f(sub, before, state.dual.count)
               for name, f in solve.items()}
    q = {name: objective(t, sub, penalties) for name, (t, _) in results.items()}
    scale = abs(q["exact"]) + 1e-30
    for name, (_, it) in results.items():
      gaps[name].append((q[name] - q["exact"]) / scale)
      iters[name].append(np.asarray(jax.tree.leaves(it))[regularized].mean())
  print(f"LeNet on MNIST, RAMDA, λ = {args.strength:g}, {args.steps} steps: "
        "objective gap to the exact solution, relative to the exact decrease")
  print(f"{'solver':30s} {'mean gap':>10s} {'worst gap':>10s} "
        f"{'iters/leaf':>11s}")
  for name in SOLVERS:
    print(f"{name:30s} {np.mean(gaps[name]):10.2e} {np.max(gaps[name]):10.2e} "
          f"{np.mean(iters[name]):11.1f}")
  stops = np.array(stops, float)
  moves = stops[1:] / np.maximum(stops[:-1], 1)
  steady = np.mean((moves > 0.8) & (moves < 1.25))
  print(f"the run's stops: {stops.min():.0f} to {stops.max():.0f} iterations "
        f"per leaf; {100 * steady:.0f}% of their step-to-step moves within a "
        "factor 0.8")


if __name__ == "__main__":
  main()
