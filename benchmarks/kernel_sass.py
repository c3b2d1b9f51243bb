"""The fused Pallas step of one leaf as NVIDIA machine code, without a GPU:
its registers per thread and its instructions per entry.

The step (``group_kernels.fused_step``, float32) is lowered for a GPU with
``jax.export``; its Triton IR, which the lowering carries in the Triton
call's ``ir`` attribute, is printed as text through jaxlib's Triton
dialect and compiled for an NVIDIA architecture by the ``triton`` package
(``pip install triton``: it bundles ``ptxas`` and ``cuobjdump``), with the
warps the lowering chose. From the SASS: registers and stack per thread,
and the instructions before, inside and after the solve's loop (the
kernel's one backward branch), per entry of each array a thread holds,
with the loop's most frequent opcodes. The compiler is not XLA's own
Triton, so counts can differ from what a GPU runs: for RAMDA's step of
the default leaf below, Nsight Compute read 158 registers a thread on an
NVIDIA H200 where this tool gives 156.

    python -m benchmarks.kernel_sass --leaf 3x3x512x512 --solver newton
"""

import argparse
import collections
import math
import pathlib
import re
import subprocess
import tempfile

import jax
import jax.numpy as jnp

import ramda_optax as ro
from ramda_optax import group_kernels

TRITON_CALL = "custom_call @__gpu$xla.gpu.triton"


def _mlir_string(text: str, start: int) -> bytes:
  """The bytes of the MLIR string literal whose first character (after the
  opening quote) is at ``start``: \\XX hex escapes, \\\\ and \\"."""
  out, i = bytearray(), start
  while text[i] != '"':
    if text[i] == "\\":
      if text[i + 1] in '"\\':
        out.append(ord(text[i + 1]))
        i += 2
      else:
        out.append(int(text[i + 1:i + 3], 16))
        i += 3
    else:
      out += text[i].encode()
      i += 1
  return bytes(out)


def _leaf(shape: tuple[int, ...]) -> tuple[ro.GroupNorm, group_kernels.View]:
  """The group norm of a leaf of ``shape`` over all axes but the second to
  last (a conv kernel per input channel, a dense kernel per input), and
  the kernel's view of it."""
  axes = tuple(d for d in range(len(shape)) if d != len(shape) - 2)
  penalty = ro.GroupNorm(axes, math.prod(shape[d] for d in axes))
  view = group_kernels.leaf_view(penalty, shape)
  if view is None:
    raise SystemExit(f"no kernel takes a leaf of shape {shape}")
  return penalty, view


def triton_ir(shape: tuple[int, ...], newton: bool, root: int, delta: bool,
              restart: bool) -> tuple[str, int]:
  """The Triton IR (text) of the fused step of a float32 leaf of ``shape``
  (:func:`_leaf`), and its warps."""
  penalty, view = _leaf(shape)

  def step(arrays, scalars):
    return group_kernels.fused_step(
        view, penalty, arrays, tuple(scalars),
        scalars[0] > 0 if restart else False, root=root, delta=delta,
        block_bytes=None, max_iters=50, newton=newton, rtol=1e-8,
        interpret=False)

  x = jnp.ones(shape, jnp.float32)
  module = jax.export.export(
      jax.jit(step), platforms=["cuda"],
      disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(
          "__gpu$xla.gpu.triton")])((x,) * 6, jnp.ones(8)).mlir_module()
  call = module.index(TRITON_CALL)
  warps = int(re.search(r"num_warps = (\d+)", module[call:]).group(1))
  code = _mlir_string(module, module.index('ir = "', call) + len('ir = "'))
  # Imported here: jaxlib's Triton dialect, needed only to print the IR.
  # pylint: disable=g-import-not-at-top
  from jax._src.lib.mlir import ir
  from jaxlib.triton import dialect
  context = ir.Context()
  dialect.register_dialect(context)
  with context:
    return str(ir.Module.parse(code)), warps


def compile_sass(ttir: str, warps: int, arch: int) -> tuple[str, str]:
  """``(resource usage, SASS)`` of ``ttir`` compiled by the ``triton``
  package for sm_``arch``."""
  # pylint: disable=g-import-not-at-top
  try:
    import triton
    from triton.backends.compiler import GPUTarget
  except ImportError as e:
    raise SystemExit("needs the triton package (pip install triton)") from e
  with tempfile.TemporaryDirectory() as folder:
    source = pathlib.Path(folder, "kernel.ttir")
    source.write_text(ttir)
    kernel = triton.compile(str(source), target=GPUTarget("cuda", arch, 32),
                            options={"num_warps": warps,
                                     "enable_fp_fusion": True})
    cubin = pathlib.Path(folder, "kernel.cubin")
    cubin.write_bytes(kernel.asm["cubin"])
    tools = pathlib.Path(triton.__file__).parent / "backends/nvidia/bin"
    dump = lambda flag: subprocess.run(
        [str(tools / "cuobjdump"), flag, str(cubin)], check=True,
        capture_output=True, text=True).stdout
    return dump("-res-usage"), dump("-sass")


def summary(usage: str, sass: str, entries_per_thread: float) -> dict:
  """Registers, stack bytes and instructions (total, and per entry before
  the loop (τ = 0's branch included), in one pass of it and after it, with
  the loop's opcodes) of a kernel's SASS."""
  found = re.search(r"REG:(\d+) STACK:(\d+)", usage)
  code = [(int(m.group(1), 16), m.group(2), m.group(3)) for m in re.finditer(
      r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_.]+)([^;]*);", sass)]
  back = [(int(t, 16), at) for at, op, rest in code if op.startswith("BRA")
          for t in re.findall(r"0x([0-9a-f]+)", rest)[-1:] if int(t, 16) < at]
  if not back:
    raise SystemExit("no loop in the kernel")
  # The outermost loop: the solve's (a program of several groups may nest
  # the loads' loops in it).
  first, last = max(back, key=lambda b: b[1] - b[0])
  ops = lambda pick: [op for at, op, _ in code if pick(at)]
  loop = ops(lambda at: first <= at <= last)
  opcode = lambda op: op if op.startswith("MUFU") else op.split(".")[0]
  return {"registers": int(found.group(1)), "stack_bytes": int(found.group(2)),
          "instructions": len(code),
          "before": len(ops(lambda at: at < first)) / entries_per_thread,
          "loop": len(loop) / entries_per_thread,
          "after": len(ops(lambda at: at > last)) / entries_per_thread,
          "loop_opcodes": collections.Counter(map(opcode, loop)).most_common(8)}


def measure(shape: tuple[int, ...], newton: bool = True, root: int = 3,
            delta: bool = False, restart: bool = False, arch: int = 90) -> dict:
  """:func:`summary` of the fused step of a leaf of ``shape`` (see
  :func:`triton_ir`), with the warps and entries per thread."""
  ttir, warps = triton_ir(shape, newton, root, delta, restart)
  view = _leaf(shape)[1]
  groups = group_kernels.groups_per_block(
      view, 4, group_kernels.default_block_bytes(view, 4))
  entries = view[0] * groups * (1 << (view[2] - 1).bit_length()) / (32 * warps)
  return {"warps": warps, "entries_per_thread": entries,
          **summary(*compile_sass(ttir, warps, arch), entries)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--leaf", default="3x3x512x512",
                      help="the leaf's shape, grouped along all axes but "
                      "the second to last")
  parser.add_argument("--solver", choices=("newton", "pg"), default="newton")
  parser.add_argument("--root", type=int, choices=(2, 3), default=3,
                      help="3: RAMDA's metric; 2: ProxGen's")
  parser.add_argument("--delta", action="store_true",
                      help="write θ̂ − W (ProxGen, ProxSSI)")
  parser.add_argument("--restart", action="store_true")
  parser.add_argument("--arch", type=int, default=90,
                      help="the NVIDIA compute capability, e.g. 90 (Hopper)")
  args = parser.parse_args()
  shape = tuple(int(d) for d in args.leaf.split("x"))
  r = measure(shape, args.solver == "newton", args.root, args.delta,
              args.restart, args.arch)
  print(f"leaf {args.leaf}, {args.solver}, root {args.root}, sm_{args.arch}: "
        f"{r['warps']} warps, {r['entries_per_thread']:g} entries of each "
        f"array a thread")
  print(f"{r['registers']} registers, {r['stack_bytes']} bytes of stack a "
        f"thread; {r['instructions']} instructions: per entry "
        f"{r['before']:.1f} before the loop, {r['loop']:.1f} in one pass, "
        f"{r['after']:.1f} after")
  print("loop:", ", ".join(f"{op} {n}" for op, n in r["loop_opcodes"]))


if __name__ == "__main__":
  main()
