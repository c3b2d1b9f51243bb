"""The optimizer step with this checkout's compiled CPU kernels against the
kernels of another git revision, in one process.

On a machine whose speed drifts from process to process, two builds timed
in separate processes differ by as much as a change to the kernels does.
Here the revision's ``ramda_optax/cpu_kernel.py`` and ``csrc/`` sources
(read with ``git show``) load beside this checkout's, their FFI targets and
handler symbols renamed, and each variant of ``benchmarks.step_time`` runs
twice, once tracing its step with either kernel module, beside an
optax.adam run (``step_time.time_variants``: the steps taken in turn, on
VGG19's problem in the early or late regime). Only the kernels and their
wrappers come from the revision; the optimizers are this checkout's, so
the revision's ``cpu_kernel`` must offer the functions and signatures that
``ramda_optax.fused`` calls (the whole-step kernels; the solve-alone
kernel that ``solvers`` calls for other statistics stays this
checkout's).

    python -m benchmarks.kernel_ab --revision HEAD~1 --variants ramda_pg,ramda
"""

import argparse
import importlib.util
import os
import subprocess
import types

import optax

from benchmarks import step_time
from benchmarks.models import vgg19_shapes
from ramda_optax import cpu_kernel
from ramda_optax import fused

# The module constants that name FFI targets.
TARGET_NAMES = ("STEP_TARGET", "PG_TARGET", "PG_STEP_TARGET")


def _git(*args: str) -> bytes:
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return subprocess.run(["git", *args], cwd=root, check=True,
                        capture_output=True).stdout


def revision_kernels(revision: str) -> types.ModuleType:
  """``ramda_optax.cpu_kernel`` as of ``revision``, with that revision's
  C++ sources, built and registered under targets and symbols of its own
  (``rev_`` and ``Rev`` prefixed), so that it runs beside this checkout's."""
  folder = "ramda_optax/csrc/"
  names = _git("ls-tree", "--name-only", revision, folder).decode().split()
  sources = {os.path.basename(n): _git("show", f"{revision}:{n}")
             for n in names if n.endswith((".cc", ".h"))}
  spec = importlib.util.spec_from_loader(f"cpu_kernel_at_{revision}",
                                         loader=None)
  module = importlib.util.module_from_spec(spec)
  code = _git("show", f"{revision}:ramda_optax/cpu_kernel.py")
  exec(compile(code, f"{revision}:ramda_optax/cpu_kernel.py", "exec"),
       module.__dict__)
  symbols = {s: f"Rev{s}" for s in module.TARGETS.values()}
  module._sources = lambda: sources
  module.FLAGS = (*module.FLAGS, *(f"-D{a}={b}" for a, b in symbols.items()))
  module.TARGETS = {f"rev_{t}": symbols[s] for t, s in module.TARGETS.items()}
  for name in TARGET_NAMES:
    if hasattr(module, name):
      setattr(module, name, f"rev_{getattr(module, name)}")
  if not module.available():
    raise SystemExit(f"{revision}'s kernels: {module.library()[1]}")
  return module


def with_kernels(opt: optax.GradientTransformation,
                 kernels: types.ModuleType) -> optax.GradientTransformation:
  """``opt`` whose step, when traced, calls ``kernels`` in place of
  ``ramda_optax.cpu_kernel``."""

  def update(updates, state, params=None):
    saved = fused.cpu_kernel
    fused.cpu_kernel = kernels
    try:
      return opt.update(updates, state, params)
    finally:
      fused.cpu_kernel = saved

  return optax.GradientTransformation(opt.init, update)


def compare(revision: str, names: list[str], regime: str, strength: float,
            warmup: int, steps: int, starts: int) -> list[dict]:
  """Each of ``names`` with this checkout's kernels and with
  ``revision``'s, beside optax.adam, on VGG19's problem: one row per run,
  its ratio to Adam's step and the iterations per regularized leaf."""
  theirs = revision_kernels(revision)
  if not cpu_kernel.available():
    raise SystemExit(f"no CPU kernel: {cpu_kernel.library()[1]}")
  shapes, groups = vgg19_shapes()
  init, grad_fn = step_time.problem(shapes, groups)
  regularized = step_time._regularized_leaves(groups, init)
  opts, rows = [optax.adam(1e-3)], [("adam", "")]
  for name in names:
    make = step_time.make_variant(name, groups, strength)
    opts += [make(), with_kernels(make(), theirs)]
    rows += [(name, "this checkout"), (name, revision)]
  results = step_time.time_variants(opts, init, grad_fn, regularized, regime,
                                    warmup, steps, starts)
  adam = results[0]["time_s"]
  return [{"variant": name, "kernels": kernels, "time_s": r["time_s"],
           "ratio": r["time_s"] / adam,
           "inner_iters_per_leaf": r["inner_iters_per_leaf"]}
          for (name, kernels), r in zip(rows, results)]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--revision", required=True,
                      help="the git revision whose kernels to compare with")
  parser.add_argument("--variants", default="ramda_pg,ramda",
                      help="comma-separated names of benchmarks.step_time")
  parser.add_argument("--regime", choices=("early", "late"), default="early")
  parser.add_argument("--strength", type=float, default=1e-4)
  parser.add_argument("--warmup", type=int, default=40,
                      help="steps before the timed ones (late regime)")
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--starts", type=int, default=3,
                      help="fresh starts (early regime)")
  args = parser.parse_args()
  names = [n for n in args.variants.split(",") if n != "adam"]
  rows = compare(args.revision, names, args.regime, args.strength,
                 args.warmup, args.steps, args.starts)
  print(f"vgg19, {args.regime} regime, λ = {args.strength:g}; ratios to "
        f"optax.adam ({1e3 * rows[0]['time_s']:.2f} ms) in one process")
  for r in rows[1:]:
    iters = r["inner_iters_per_leaf"]
    print(f"{r['variant']:12s} {r['kernels']:>14s} {1e3 * r['time_s']:9.2f} ms"
          f" {r['ratio']:6.2f}x adam" + (f"   {iters:5.1f} iterations per leaf"
                                         if iters is not None else ""))


if __name__ == "__main__":
  main()
