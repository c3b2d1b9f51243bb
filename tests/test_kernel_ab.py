"""benchmarks/kernel_ab.py: another git revision's kernels, loaded beside
this checkout's and swapped into an optimizer's step."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ramda_optax as ro
from benchmarks import kernel_ab
from ramda_optax import cpu_kernel
from ramda_optax import group_kernels
from tests.test_cpu_kernel import GROUPS
from tests.test_cpu_kernel import SHAPES
from tests.test_cpu_kernel import _problem
from tests.test_cpu_kernel import _run

# kernel_ab reads a revision with git, and builds its CPU kernels with the
# C++ compiler; without them the tool cannot run (the optimizers' own
# kernels are tested elsewhere).
pytestmark = pytest.mark.skipif(
    shutil.which("git") is None,
    reason="benchmarks.kernel_ab reads the revision it compares with git")


@pytest.fixture(scope="module")
def theirs():
  if shutil.which("c++") is None:
    pytest.skip("no C++ compiler (c++) here: benchmarks.kernel_ab builds "
                "the compared revision's CPU kernels with it")
  return kernel_ab.revision_kernels("HEAD")


def test_the_revision_registers_targets_of_its_own(theirs):
  assert set(theirs.TARGETS) == {f"rev_{t}" for t in cpu_kernel.TARGETS}
  assert theirs.PG_STEP_TARGET == f"rev_{cpu_kernel.PG_STEP_TARGET}"
  assert theirs.library()[0] is not cpu_kernel.library()[0]


@pytest.mark.parametrize("solver", ["pg", "exact"])
def test_a_step_traced_with_them_calls_them_and_computes_the_step(
    theirs, solver):
  """The swapped step calls the revision's targets only (this checkout's
  none), and its iterations and params follow the XLA path's."""
  make = lambda backend: ro.ramda(
      0.3, regularizer=ro.group_lasso(0.3, GROUPS),
      solver=(ro.pg_solver(rtol=1e-4, backend=backend) if solver == "pg"
              else ro.exact_solver(backend=backend)))
  params = {k: jnp.zeros(s, jnp.float32) for k, s in SHAPES.items()}
  swapped = kernel_ab.with_kernels(make("kernel"), theirs)
  hlo = jax.jit(swapped.update).lower(params, swapped.init(params),
                                      params).as_text()
  # The grouped leaves, and for the exact step the bias without a penalty.
  target, leaves = ((theirs.PG_STEP_TARGET, 3) if solver == "pg"
                    else (theirs.STEP_TARGET, 4))
  assert hlo.count(f"@{target}(") == leaves
  assert f"@{target[len('rev_'):]}(" not in hlo
  init, grad_fn = _problem()
  ours, xla = (_run(opt, init, grad_fn, 6) for opt in (swapped, make("xla")))
  for (p, s), (q, t) in zip(ours, xla):
    np.testing.assert_array_equal(s.inner_iters, t.inner_iters)
    for k in SHAPES:
      np.testing.assert_allclose(p[k], q[k], rtol=1e-5, atol=1e-5)


def test_the_revision_s_pallas_kernels_are_swapped_in():
  """A step traced with the revision's Pallas kernels calls them on every
  grouped leaf, and takes the steps of this checkout's kernels (the
  revision here is HEAD)."""
  pallas = kernel_ab.revision_pallas("HEAD")
  assert pallas is not group_kernels
  calls = []
  original = pallas.fused_step
  pallas.fused_step = lambda *a, **k: calls.append(a[0]) or original(*a, **k)
  make = lambda: ro.ramda(0.3, regularizer=ro.group_lasso(0.3, GROUPS),
                          solver=ro.exact_solver(block_bytes=100,
                                                 backend="pallas"))
  swapped = kernel_ab.with_kernels(make(), kernel_ab.Kernels(None, pallas))
  params = {k: jnp.zeros(s, jnp.float32) for k, s in SHAPES.items()}
  jax.jit(swapped.update).lower(params, swapped.init(params), params)
  assert set(calls) == {
      group_kernels.leaf_view(ro.GroupNorm(axes, 1), SHAPES[k])
      for k, axes in GROUPS.items() if axes is not None}
  init, grad_fn = _problem()
  ours, mine = (_run(opt, init, grad_fn, 3) for opt in (swapped, make()))
  for (p, s), (q, t) in zip(ours, mine):
    np.testing.assert_array_equal(s.inner_iters, t.inner_iters)
    for k in SHAPES:
      np.testing.assert_allclose(p[k], q[k], rtol=1e-6, atol=1e-6)
