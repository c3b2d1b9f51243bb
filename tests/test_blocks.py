"""Solving a leaf block by block (ramda_optax.blocks, pg_solver(block_bytes=))."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import ramda_optax as ro
from ramda_optax import blocks
from tests import numpy_reference as ref
from tests.test_properties import _objective
from tests.test_properties import _subproblem
from tests.test_properties import _subproblems


def _solve(solver, shape, axes, a, v, p, tau, z0):
  penalty = ro.GroupNorm(axes, math.prod(shape[i] for i in axes))
  solve = jax.jit(lambda *x: solver.solve(penalty, ro.Subproblem(*x[:4]), x[4],
                                          jnp.int32(1)))
  z, iters = solve(*map(jnp.asarray, (a, v, p, tau, z0)))
  return np.asarray(z), int(iters)


def _blocks(shape, axes, block_bytes):
  """The blocks of a float64 leaf as index tuples (None: solved whole)."""
  penalty = ro.GroupNorm(axes, math.prod(shape[i] for i in axes))
  axis = blocks.block_axis(penalty, len(shape))
  if axis is None:
    return None
  length = blocks.block_length(shape, 8, axis, block_bytes)
  starts = range(0, shape[axis], length)
  index = lambda s: (slice(None),) * axis + (slice(s, s + length),)
  return [index(s) for s in starts]


@pytest.mark.slow
@given(_subproblems(), st.integers(8, 400), st.integers(1, 4))
@example(_subproblem((5, 3), (1,), 0, False, "quantile"), 48, 3)  # 2 + 2 + 1 rows
@example(_subproblem((1, 6), (1,), 1, False, "quantile"), 8, 2)  # one group
@example(_subproblem((4, 6), (1,), 2, False, "quantile"), 8, 2)  # group > block
@example(_subproblem((3, 4), (), 3, True, "below"), 16, 2)  # ℓ1, dead entries
def test_fixed_iterations_equal_the_whole_leaf(problem, block_bytes, iters):
  shape, axes, a, v, p, tau, z0 = problem
  with jax.enable_x64(True):
    whole, _ = _solve(ro.pg_solver(iters, 0.0), *problem)
    blocked, _ = _solve(ro.pg_solver(iters, 0.0, block_bytes=block_bytes),
                        *problem)
  np.testing.assert_allclose(blocked, whole, rtol=1e-12, atol=1e-12)


@pytest.mark.slow
@given(_subproblems(), st.integers(8, 400), st.sampled_from([1e-8, 1e-4]))
@example(_subproblem((7, 2, 3), (1, 2), 4, False, "quantile"), 100, 1e-8)
@example(_subproblem((6, 3), (1,), 5, False, "quantile"), 48, 1e-4)
def test_every_block_stops_on_its_own_decrease(problem, block_bytes, rtol):
  """Each block is the float64 reference's solve of that block alone (see
  :func:`check_each_block_alone`)."""
  shape, axes = problem[:2]
  with jax.enable_x64(True):
    solver = ro.pg_solver(50, rtol, block_bytes=block_bytes)
    z, iters = _solve(solver, *problem)
  parts = _blocks(shape, axes, block_bytes) or [(slice(None),)]
  check_each_block_alone(problem, z, iters, parts, rtol)


def check_each_block_alone(problem, z, iters, parts, rtol):
  """``z`` on each block (an index tuple of ``parts``) is the float64
  reference's solve of that block alone, with its share of the leaf's
  test; it decreases the block's objective from the screened warm start and
  keeps screened groups at 0; ``iters`` is the most any block took."""
  shape, axes, a, v, p, tau, z0 = problem
  weight = math.sqrt(math.prod(shape[i] for i in axes))
  most = 0
  for index in parts:
    part = [x[index] for x in (a, v, p)]
    alone, its = ref.pg_solve(*part, tau, z0[index], axes, 50,
                              max(rtol, np.finfo(float).eps),
                              unit=part[0].size / a.size)
    np.testing.assert_allclose(z[index], alone, rtol=1e-12, atol=1e-12)
    most = max(most, its)
    b = part[2] * part[0] - part[1]
    screened = np.sqrt(np.sum(b * b, axis=axes, keepdims=True)) <= tau * weight
    start = np.where(screened, 0.0, z0[index])
    assert np.all(np.where(screened, z[index], 0.0) == 0.0)
    assert (_objective(z[index], *part, tau, axes, weight)
            <= _objective(start, *part, tau, axes, weight) + 1e-12)
  assert iters == most


def test_blocked_solver_rejects_condition7_and_bad_sizes():
  with pytest.raises(ValueError, match="residual_tol"):
    ro.pg_solver(residual_tol=1e-3, block_bytes=1024)
  with pytest.raises(ValueError, match="block_bytes"):
    ro.pg_solver(block_bytes=0)


@pytest.mark.parametrize("backend", ["xla", "pallas"])
def test_nuclear_norm_leaves_are_solved_whole(backend):
  """One group per leaf: no blocks (the kernels do not cover the nuclear
  norm either)."""
  rng = np.random.default_rng(0)
  a, v = rng.normal(size=(2, 6, 4))
  p = rng.uniform(0.5, 2, size=(6, 4))
  sub = ro.Subproblem(*(jnp.asarray(x, jnp.float32) for x in (a, v, p)),
                      jnp.float32(0.3))
  z0 = jnp.asarray(a, jnp.float32)
  whole = ro.pg_solver(5, 1e-3).solve(ro.NuclearNorm(), sub, z0, 1)
  blocked = ro.pg_solver(5, 1e-3, block_bytes=8, backend=backend).solve(
      ro.NuclearNorm(), sub, z0, 1)
  np.testing.assert_array_equal(whole[0], blocked[0])
  assert int(whole[1]) == int(blocked[1])
