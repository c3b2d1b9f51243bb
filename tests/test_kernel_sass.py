"""benchmarks/kernel_sass.py: the fused Pallas step as NVIDIA machine code,
compiled without a GPU."""

import importlib.util

import pytest

from benchmarks import kernel_sass

# A loop of three instructions (0x20 to 0x40, its branch back included)
# between two before it and one after it, in cuobjdump's layout.
SASS = """
        /*0000*/                   LDG.E R2, desc[UR4][R2.64] ;   /* 0x0 */
        /*0010*/                   FMUL R4, R2, R2 ;              /* 0x0 */
        /*0020*/                   MUFU.RCP R5, R4 ;              /* 0x0 */
        /*0030*/                   FFMA R4, R5, R2, R4 ;          /* 0x0 */
        /*0040*/               @P0 BRA 0x20 ;                     /* 0x0 */
        /*0050*/                   EXIT ;                         /* 0x0 */
"""
USAGE = " Function kernel:\n  REG:40 STACK:8 SHARED:0 LOCAL:0\n"


def test_summary_splits_the_code_at_the_loop():
  r = kernel_sass.summary(USAGE, SASS, entries_per_thread=2)
  assert (r["registers"], r["stack_bytes"], r["instructions"]) == (40, 8, 6)
  assert (r["before"], r["loop"], r["after"]) == (1.0, 1.5, 0.5)
  assert dict(r["loop_opcodes"]) == {"MUFU.RCP": 1, "FFMA": 1, "BRA": 1}


def test_summary_refuses_code_without_a_loop():
  with pytest.raises(SystemExit, match="no loop"):
    kernel_sass.summary(USAGE, SASS.replace("BRA 0x20", "BRA 0x50"), 1)


@pytest.mark.skipif(importlib.util.find_spec("triton") is None,
                    reason="compiling for a GPU without one needs the triton "
                    "package (pip install triton), not a dependency")
def test_ramdas_step_of_a_vgg19_leaf_fits_three_programs_a_multiprocessor():
  """RAMDA's fused step of a 3×3×512×512 leaf: at most 168 registers a
  thread (three programs of 4 warps in a Hopper multiprocessor's 65536),
  no stack, and one hardware reciprocal per entry in each Newton pass,
  without the range checks of a division."""
  r = kernel_sass.measure((3, 3, 512, 512))
  assert r["warps"] == 4 and r["entries_per_thread"] == 36
  assert r["registers"] <= 168 and r["stack_bytes"] == 0
  loop = dict(r["loop_opcodes"])
  assert 36 <= loop["MUFU.RCP"] <= 38
  assert loop.get("FSETP", 0) < 10
