"""Where an optimizer step's device time goes, kernel by kernel.

The problem of ``benchmarks.step_time`` (VGG19 or the MLP, gradients of
``--steps`` early steps at the initial parameters); each variant's steps run
as one compiled ``lax.scan`` (the device loop of ``step_time``), timed on
the wall clock (median of three replays), then once under JAX's profiler,
whose trace gives each kernel's device time per step. A variant
``name:E`` runs ``name`` with Pallas programs of about E entries of each
array per thread (``group_kernels.ENTRIES_PER_THREAD``), so that one
process compares warp counts. On a GPU the scan hands kernels (Pallas
calls) copies of its slices of the stacked gradients, which XLA's loops
read in place: they show as ``memcpy`` kernels. On a CPU the trace holds no
device kernels.

    python -m benchmarks.kernel_profile --variants adam,ramda,ramda:16
"""

import argparse
import collections
import glob
import gzip
import json
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import step_time
from ramda_optax import group_kernels


def kernel_times(trace: dict) -> dict[str, tuple[int, float]]:
  """``{kernel: (launches, total µs)}`` over a Perfetto trace's complete
  events on device processes (named ``/device:...``)."""
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  devices = {e["pid"] for e in events
             if e.get("ph") == "M" and e.get("name") == "process_name"
             and e["args"]["name"].startswith("/device:")}
  count, total = collections.Counter(), collections.Counter()
  for e in events:
    if e.get("ph") == "X" and e["pid"] in devices:
      count[e["name"]] += 1
      total[e["name"]] += e["dur"]
  return {name: (count[name], total[name]) for name in count}


def profile(opt, init, grads, steps: int) -> dict:
  """Wall time per step of ``opt``'s scanned steps over ``grads`` (stacked),
  and the device kernels of one run, per step."""
  _, replay = step_time.scanned_steps(opt)
  fresh = lambda: jax.tree.map(jnp.copy, init)
  run = jax.jit(replay, donate_argnums=(0, 1)).lower(
      fresh(), opt.init(fresh()), grads).compile()
  times = []
  for _ in range(4):
    params, state = jax.block_until_ready((fresh(), opt.init(fresh())))
    start = time.perf_counter()
    jax.block_until_ready(run(params, state, grads))
    times.append((time.perf_counter() - start) / steps)
  params, state = jax.block_until_ready((fresh(), opt.init(fresh())))
  with tempfile.TemporaryDirectory() as logdir:
    with jax.profiler.trace(logdir, create_perfetto_trace=True):
      jax.block_until_ready(run(params, state, grads))
    path, = glob.glob(f"{logdir}/**/perfetto_trace.json.gz", recursive=True)
    with gzip.open(path) as f:
      kernels = kernel_times(json.load(f))
  return {"wall_ms": 1e3 * float(np.median(times[1:])),
          **per_step(kernels, steps)}


def per_step(kernels: dict[str, tuple[int, float]], steps: int) -> dict:
  """A trace's kernels (:func:`kernel_times`) per step: device time (ms),
  launches, the part of the time in copies (``memcpy`` kernels: the scan's
  slices of the stacked gradients that Pallas calls take as buffers, which a
  training step does not copy), and each kernel's launches and µs, most
  time first."""
  return {"kernel_ms": sum(t for _, t in kernels.values()) / 1e3 / steps,
          "copy_ms": sum(t for name, (_, t) in kernels.items()
                         if "memcpy" in name.lower()) / 1e3 / steps,
          "launches": sum(n for n, _ in kernels.values()) / steps,
          "kernels": {k: (n / steps, t / steps) for k, (n, t) in sorted(
              kernels.items(), key=lambda item: -item[1][1])}}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model", choices=step_time.MODELS, default="vgg19")
  parser.add_argument("--variants", default="adam,ramda",
                      help="comma-separated step_time variants; name:E "
                           "sets E entries per thread of a Pallas program")
  parser.add_argument("--strength", type=float, default=1e-4)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--top", type=int, default=8,
                      help="kernels listed per variant")
  parser.add_argument("--json", default=None, help="write results here")
  args = parser.parse_args()
  shapes, groups = step_time.MODELS[args.model]()
  init, grad_fn = step_time.problem(shapes, groups)
  grads = jax.block_until_ready(jax.tree.map(
      lambda *g: jnp.stack(g), *(grad_fn(init, n) for n in range(args.steps))))
  print(f"{args.model}, {jax.devices()[0].device_kind}, {args.steps} steps "
        f"from the initial parameters, λ = {args.strength:g}")
  default = group_kernels.ENTRIES_PER_THREAD
  results = {}
  for spec in args.variants.split(","):
    name, _, entries = spec.partition(":")
    group_kernels.ENTRIES_PER_THREAD = int(entries) if entries else default
    try:
      opt = step_time.make_variant(name, groups, args.strength)()
      r = results[spec] = profile(opt, init, grads, args.steps)
    finally:
      group_kernels.ENTRIES_PER_THREAD = default
    print(f"{spec:28s} {r['wall_ms']:7.3f} ms per step, kernels "
          f"{r['kernel_ms']:.3f} ms in {r['launches']:.0f} launches "
          f"(copies {r['copy_ms']:.3f} ms)", flush=True)
    for kernel, (n, t) in list(r["kernels"].items())[:args.top]:
      print(f"    {t:8.1f} µs  {n:5.1f}×  {kernel}", flush=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()
