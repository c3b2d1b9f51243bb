"""The optimizer step with this checkout's kernels against the kernels of
another git revision, in one process.

On a machine whose speed drifts from process to process, two builds timed
in separate processes differ by as much as a change to the kernels does.
Here the revision's kernels load beside this checkout's: its
``ramda_optax/group_kernels.py`` (the Pallas kernels) and, where JAX's
default backend is a CPU, its ``ramda_optax/cpu_kernel.py`` and ``csrc/``
sources, their FFI targets and handler symbols renamed (all read with
``git show``). Each variant of ``benchmarks.step_time`` runs twice, once
tracing its step with either set of kernels, beside an optax.adam run:
the steps taken in turn on VGG19's problem in the early or late regime
(``step_time.time_variants``), or, with ``--device-loop``, the replays of
``step_time.time_device_loops``, each timed against the Adam replay of its
round. Only the kernels and their wrappers come from the revision; the
optimizers are this checkout's, so the revision's modules must offer the
functions and signatures that ``ramda_optax.fused`` calls (the whole-step
kernels; the solve-alone kernels that ``solvers`` calls stay this
checkout's).

    python -m benchmarks.kernel_ab --revision HEAD~1 --variants ramda_pg,ramda
    python -m benchmarks.kernel_ab --revision HEAD~1 --device-loop  # a GPU
"""

import argparse
import importlib.util
import os
import subprocess
import types
from typing import NamedTuple

import jax
import numpy as np
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


def _module_at(revision: str, path: str) -> types.ModuleType:
  """The module of ``path`` as of ``revision``, executed under a name of its
  own (it imports this checkout's other modules)."""
  name = os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_loader(f"{name}_at_{revision}", loader=None)
  module = importlib.util.module_from_spec(spec)
  code = _git("show", f"{revision}:{path}")
  exec(compile(code, f"{revision}:{path}", "exec"), module.__dict__)
  return module


def revision_kernels(revision: str) -> types.ModuleType:
  """``ramda_optax.cpu_kernel`` as of ``revision``, with that revision's
  C++ sources, built and registered under targets and symbols of its own
  (``rev_`` and ``Rev`` prefixed), so that it runs beside this checkout's."""
  folder = "ramda_optax/csrc/"
  names = _git("ls-tree", "--name-only", revision, folder).decode().split()
  sources = {os.path.basename(n): _git("show", f"{revision}:{n}")
             for n in names if n.endswith((".cc", ".h"))}
  module = _module_at(revision, "ramda_optax/cpu_kernel.py")
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


class Kernels(NamedTuple):
  """The kernel modules a step calls: ``ramda_optax.cpu_kernel``'s place
  (None: this checkout's) and ``ramda_optax.group_kernels``'."""
  cpu: types.ModuleType | None
  pallas: types.ModuleType


def revision_modules(revision: str) -> Kernels:
  """``revision``'s kernels: its Pallas kernels, and its CPU kernels where
  JAX's default backend is a CPU (the only place they run)."""
  cpu = revision_kernels(revision) if jax.default_backend() == "cpu" else None
  return Kernels(cpu, revision_pallas(revision))


def revision_pallas(revision: str) -> types.ModuleType:
  """``ramda_optax.group_kernels`` as of ``revision``."""
  return _module_at(revision, "ramda_optax/group_kernels.py")


def with_kernels(opt: optax.GradientTransformation,
                 kernels: types.ModuleType | Kernels
                 ) -> optax.GradientTransformation:
  """``opt`` whose step, when traced, calls ``kernels`` (a CPU kernel
  module, or :class:`Kernels`) in place of ``ramda_optax.cpu_kernel`` and
  ``ramda_optax.group_kernels``."""
  if not isinstance(kernels, Kernels):
    kernels = Kernels(kernels, fused.group_kernels)

  def update(updates, state, params=None):
    saved = fused.cpu_kernel, fused.group_kernels
    fused.cpu_kernel = kernels.cpu or saved[0]
    fused.group_kernels = kernels.pallas
    try:
      return opt.update(updates, state, params)
    finally:
      fused.cpu_kernel, fused.group_kernels = saved

  return optax.GradientTransformation(opt.init, update)


def compare(revision: str, names: list[str], regime: str, strength: float,
            warmup: int, steps: int, starts: int,
            rounds: int | None = None, replay: str = "scan") -> list[dict]:
  """Each of ``names`` with this checkout's kernels and with
  ``revision``'s, beside optax.adam, on VGG19's problem: one row per run,
  its ratio to Adam's step and the iterations per regularized leaf. With
  ``rounds``, the early regime's device loops (``steps`` steps, ``starts``
  starts, ``rounds`` timed rounds, replayed as ``replay`` gives), each
  replay's ratio to the Adam replay of its round, the median."""
  theirs = revision_modules(revision)
  if jax.default_backend() == "cpu" and not cpu_kernel.available():
    raise SystemExit(f"no CPU kernel: {cpu_kernel.library()[1]}")
  shapes, groups = vgg19_shapes()
  init, grad_fn = step_time.problem(shapes, groups)
  regularized = step_time._regularized_leaves(groups, init)
  opts, rows = [optax.adam(1e-3)], [("adam", "")]
  for name in names:
    make = step_time.make_variant(name, groups, strength)
    opts += [make(), with_kernels(make(), theirs)]
    rows += [(name, "this checkout"), (name, revision)]
  if rounds is None:
    results = step_time.time_variants(opts, init, grad_fn, regularized,
                                      regime, warmup, steps, starts)
    ratio = lambda r: r["time_s"] / results[0]["time_s"]
  else:
    results = step_time.time_device_loops(opts, init, grad_fn, regularized,
                                          steps, starts, rounds, replay)
    adam = np.asarray(results[0]["times_s"])
    ratio = lambda r: float(np.median(np.asarray(r["times_s"]) / adam))
  return [{"variant": name, "kernels": kernels, "time_s": r["time_s"],
           "ratio": ratio(r),
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
  parser.add_argument("--device-loop", action="store_true",
                      help="time the early regime's device loops (a GPU)")
  parser.add_argument("--rounds", type=int, default=5,
                      help="timed rounds of replays per start (device loop)")
  parser.add_argument("--replay", choices=step_time.REPLAYS, default="scan",
                      help="device loop: one scan, or one call per step")
  args = parser.parse_args()
  names = [n for n in args.variants.split(",") if n != "adam"]
  rows = compare(args.revision, names, args.regime, args.strength,
                 args.warmup, args.steps, args.starts,
                 args.rounds if args.device_loop else None, args.replay)
  regime = (f"early (device loop, {args.replay})" if args.device_loop
            else args.regime)
  print(f"vgg19, {jax.devices()[0].device_kind}, {regime} regime, "
        f"λ = {args.strength:g}; ratios to optax.adam "
        f"({1e3 * rows[0]['time_s']:.3f} ms) in one process")
  for r in rows[1:]:
    iters = r["inner_iters_per_leaf"]
    print(f"{r['variant']:12s} {r['kernels']:>14s} {1e3 * r['time_s']:9.3f} ms"
          f" {r['ratio']:6.2f}x adam" + (f"   {iters:5.1f} iterations per leaf"
                                         if iters is not None else ""))


if __name__ == "__main__":
  main()
