"""The Pallas block kernels (ramda_optax.group_kernels, backend="pallas"),
run by Pallas' interpreter here, against the XLA solvers and the float64
reference."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from jax.experimental import pallas as pl

import ramda_optax as ro
from ramda_optax import _numerics
from ramda_optax import group_kernels
from tests import numpy_reference as ref
from tests.test_blocks import _solve
from tests.test_blocks import check_each_block_alone
from tests.test_cpu_kernel import GROUPS as KERNEL_GROUPS
from tests.test_cpu_kernel import PROXIMAL
from tests.test_cpu_kernel import STRENGTH
from tests.test_cpu_kernel import _assert_same_steps
from tests.test_cpu_kernel import _problem
from tests.test_cpu_kernel import _run
from tests.test_fused import run
from tests.test_properties import _subproblem

# Leaves with one free axis: (shape, group axes).
LAYOUTS = [((3, 3, 5, 4), (0, 1, 3)), ((7, 3), (1,)), ((4, 6), (0,)),
           ((1, 6), (1,)), ((2, 9, 3), (0, 2))]


@st.composite
def _problems(draw):
  shape, axes = draw(st.sampled_from(LAYOUTS))
  seed = draw(st.integers(0, 2**32 - 1))
  dead = draw(st.sampled_from([True, False, False]))
  return _subproblem(shape, axes, seed, dead, draw(
      st.sampled_from(["quantile", "below", "above"])))


def _penalty(shape, axes):
  return ro.GroupNorm(axes, math.prod(shape[i] for i in axes))


def _kernel_blocks(shape, axes, block_bytes):
  """The kernel's blocks of a float64 leaf, as index tuples."""
  view = group_kernels.leaf_view(_penalty(shape, axes), shape)
  groups = group_kernels.groups_per_block(view, 8, block_bytes)
  axis = next(d for d in range(len(shape)) if d not in axes)
  index = lambda s: (slice(None),) * axis + (slice(s, s + groups),)
  return [index(s) for s in range(0, shape[axis], groups)]


def test_leaf_view():
  view = lambda shape, axes: group_kernels.leaf_view(_penalty(shape, axes),
                                                     shape)
  assert view((3, 3, 64, 128), (0, 1, 3)) == (9, 64, 128)  # per input channel
  assert view((512, 10), (1,)) == (1, 512, 10)  # per input feature
  assert view((20, 10), (0,)) == (20, 10, 1)  # per output feature
  assert view((2, 3, 4), (2,)) is None  # groups along two axes
  assert view((512, 10), (0,)) is None  # more rows than MAX_ROWS
  assert group_kernels.leaf_view(ro.NuclearNorm(), (6, 4)) is None


@pytest.mark.parametrize("view,block_bytes,expected", [
    ((9, 512, 512), 32 * 1024, 1),  # one group of 18 KiB
    ((9, 64, 64), 32 * 1024, 8),  # 2,304 bytes a group: 14 fit, 8 taken
    ((1, 512, 10), 32 * 1024, 512),  # 64 bytes a group (10 padded to 16)
    ((1, 3, 10), 32 * 1024, 4),  # never more than the groups, rounded up
    ((9, 5, 4), 1, 1),  # at least one group
])
def test_groups_per_block(view, block_bytes, expected):
  assert group_kernels.groups_per_block(view, 4, block_bytes) == expected


@pytest.mark.parametrize("view,expected", [
    ((9, 512, 512), 1),  # 18 KiB a group: one fits in 32 KiB
    ((9, 64, 64), 1),  # 64 groups: one a program
    ((1, 512, 10), 2),  # 512 groups: 256 programs of 2
    ((1, 8192, 10), 32),  # 64 bytes a group: 32 KiB holds 512, 32 taken
    ((1, 2**20, 1), 4096),  # 16 KiB of 4 bytes: 256 programs
])
def test_default_blocks_spread_a_leaf_over_the_programs(view, expected):
  block_bytes = group_kernels.default_block_bytes(view, 4)
  assert block_bytes <= group_kernels.BLOCK_BYTES
  assert group_kernels.groups_per_block(view, 4, block_bytes) == expected


@pytest.mark.parametrize("shape,axes,seed,dead,kind,block_bytes", [
    ((3, 3, 5, 4), (0, 1, 3), 0, False, "quantile", 600),  # 2 + 2 + 1 groups
    ((1, 6), (1,), 1, False, "quantile", 8),  # one group
    ((7, 3), (1,), 2, True, "above", 100),  # every group screened
    ((4, 6), (0,), 3, True, "below", 64),
])
def test_fixed_iterations_equal_the_whole_leaf(shape, axes, seed, dead, kind,
                                               block_bytes):
  problem = _subproblem(shape, axes, seed, dead, kind)
  with jax.enable_x64(True):
    for iters in (1, 4):
      whole, _ = _solve(ro.pg_solver(iters, 0.0), *problem)
      kernel, its = _solve(ro.pg_solver(iters, 0.0, block_bytes=block_bytes,
                                        backend="pallas"), *problem)
      np.testing.assert_allclose(kernel, whole, rtol=1e-12, atol=1e-12)
      assert its in (0, iters)


@pytest.mark.slow
@given(_problems(), st.integers(8, 400), st.sampled_from([1e-8, 1e-4]))
@example(_subproblem((3, 3, 5, 4), (0, 1, 3), 4, False, "quantile"), 600, 1e-8)
def test_every_kernel_block_stops_on_its_own_decrease(problem, block_bytes,
                                                      rtol):
  """Each kernel block is the float64 reference's solve of that block alone
  (its own stopping test and share, its own iterations), decreases its
  objective from the screened warm start and keeps screened groups at 0."""
  shape, axes = problem[:2]
  with jax.enable_x64(True):
    solver = ro.pg_solver(50, rtol, block_bytes=block_bytes, backend="pallas")
    z, iters = _solve(solver, *problem)
  check_each_block_alone(problem, z, iters,
                         _kernel_blocks(shape, axes, block_bytes), rtol)


@pytest.mark.parametrize("shape,axes,seed,dead,kind,block_bytes", [
    ((3, 3, 5, 4), (0, 1, 3), 5, True, "quantile", 600),
    ((1, 6), (1,), 6, False, "quantile", 8),
    ((2, 9, 3), (0, 2), 7, False, "below", 100),
])
def test_newton_kernel_is_exact(shape, axes, seed, dead, kind, block_bytes):
  """The kernel's Newton blocks give the float64 reference's exact solution
  (bisection on the radius) and the XLA exact solver's, blocked or not."""
  problem = _subproblem(shape, axes, seed, dead, kind)
  _, _, a, v, p, tau, _ = problem
  with jax.enable_x64(True):
    whole, passes = _solve(ro.exact_solver(), *problem)
    xla, _ = _solve(ro.exact_solver(block_bytes=block_bytes), *problem)
    kernel, its = _solve(ro.exact_solver(block_bytes=block_bytes,
                                         backend="pallas"), *problem)
  exact = ref.exact_group_solution(a, v, p, tau, axes)
  np.testing.assert_allclose(kernel, exact, rtol=1e-10, atol=1e-10)
  np.testing.assert_allclose(kernel, whole, rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(xla, whole, rtol=1e-12, atol=1e-12)
  assert its <= passes


@pytest.mark.parametrize("solver", [
    ro.pg_solver(5, 0.0, block_bytes=64, backend="pallas"),
    ro.exact_solver(block_bytes=64, backend="pallas"),
])
def test_no_threshold_gives_the_closed_form(solver):
  shape, axes, a, v, p, _, z0 = _subproblem((4, 6), (0,), 8, True, "quantile")
  with jax.enable_x64(True):
    z, iters = _solve(solver, shape, axes, a, v, p, 0.0, z0)
  expected = a - np.where(p > 0, v / np.where(p > 0, p, 1), 0)
  np.testing.assert_allclose(z, expected, rtol=1e-14, atol=1e-14)
  assert iters == 0


def test_backend_is_checked_at_construction():
  with pytest.raises(ValueError, match="backend must be"):
    ro.pg_solver(block_bytes=1024, backend="triton")
  with pytest.raises(ValueError, match="pass block_bytes"):
    ro.pg_solver(backend="pallas")
  with pytest.raises(ValueError, match="pass block_bytes"):
    ro.exact_solver(backend="pallas")
  with pytest.raises(ValueError, match="block_bytes"):
    ro.exact_solver(block_bytes=0)


def _trajectory(opt):
  rng = np.random.default_rng(9)
  params = {"conv": jnp.asarray(rng.normal(size=(3, 3, 5, 4))),
            "dense": jnp.asarray(rng.normal(size=(7, 3))),
            "bias": jnp.asarray(rng.normal(size=(3,)))}
  return run(opt, params, steps=3)[0]


GROUPS = {"conv": (0, 1, 3), "dense": (1,), "bias": None}


PG = (ro.pg_solver(6, 0.0), ro.pg_solver(6, 0.0, block_bytes=100,
                                         backend="pallas"))
NEWTON = (ro.exact_solver(), ro.exact_solver(block_bytes=100, backend="pallas"))


@pytest.mark.parametrize("method,lr,solvers", [
    (ro.ramda, 1e-1, PG), (ro.proxgen, 1e-2, PG), (ro.rmda, 1e-1, PG),
    (ro.ramda, 1e-1, NEWTON), (ro.prox_ssi, 1e-2, NEWTON)])
def test_every_method_on_the_kernel_matches_the_whole_leaf(method, lr, solvers):
  """Every optimizer on the kernel's blocks takes the steps it takes with
  whole leaves, to float64 rounding (the PG solver with a fixed iteration
  count, Newton to convergence)."""
  reg = ro.group_lasso(0.05, GROUPS)
  with jax.enable_x64(True):
    whole, kernel = (_trajectory(method(lr, regularizer=reg, solver=solver))
                     for solver in solvers)
  for w, k in zip(jax.tree.leaves(whole), jax.tree.leaves(kernel)):
    np.testing.assert_allclose(k, w, rtol=1e-12, atol=1e-12)


# The fused step (group_kernels.fused_step): statistics, solve and θ̂ of a
# block in one program, float32 as a GPU runs it.


def _strength(count):
  """τ = 0 for the first three steps (the closed form), then λ = 0.3."""
  return jnp.where(count < 3, 0.0, 0.3)


@pytest.mark.slow  # 12 s each
@pytest.mark.parametrize("method", ["ramda", "proxgen", "prox_ssi"])
def test_fused_step_matches_the_xla_path(method):
  """The whole step in the kernel (Newton, blocks of 100 bytes: several
  groups per block, a remainder, and blocks of a single group) gives XLA's
  params and state to float32 rounding and the same zero groups: RAMDA
  with restarts and a regularizer off for three steps (τ = 0, no
  iteration), ProxGen and ProxSSI (θ̂ − W out)."""
  groups = KERNEL_GROUPS
  init, grad_fn = _problem(seed=11)
  if method == "ramda":
    make = lambda solver: ro.ramda(
        0.3, regularizer=ro.group_lasso(_strength, groups),
        restart_steps=(5, 9), solver=solver)
  else:
    make = lambda solver: PROXIMAL[method](
        0.1, regularizer=ro.group_lasso(STRENGTH[method], groups),
        solver=solver)
  fused = _run(make(ro.exact_solver(block_bytes=100, backend="pallas")),
               init, grad_fn, 12)
  xla = _run(make(ro.exact_solver()), init, grad_fn, 12)
  structure = ((lambda p, s: s.solution) if method == "ramda"
               else (lambda p, s: p))
  _assert_same_steps(fused, xla, structure)
  iters = np.array([np.asarray(s.inner_iters) for _, s in fused])
  if method == "ramda":
    assert not iters[:3].any() and iters[3:].any()
  assert 0 < max(float(ro.group_sparsity(structure(p, s), groups))
                 for p, s in fused) < 1


@pytest.mark.slow
def test_fused_pg_matches_the_solve_only_kernel():
  """PG in the fused step takes the steps (and iterations) of the kernel
  that solves alone, with the statistics in XLA (statistics without a
  Moments form), under restarts."""
  groups = KERNEL_GROUPS
  init, grad_fn = _problem(seed=12)
  solver = ro.pg_solver(block_bytes=100, backend="pallas")
  reg = ro.group_lasso(0.3, groups)
  fused = ro.ramda(0.3, regularizer=reg, restart_steps=(5,), solver=solver)
  alone = ro.regularized_dual_averaging(
      0.3, preconditioner=ro.cube_root(1e-6)._replace(moments=None),
      regularizer=reg, restart_steps=(5,), solver=solver)
  first, second = (_run(opt, init, grad_fn, 10) for opt in (fused, alone))
  _assert_same_steps(first, second, lambda p, s: s.solution)
  assert max(int(np.max(s.inner_iters)) for _, s in first) > 2


@pytest.mark.parametrize("newton", [True, False])
@pytest.mark.parametrize("root,restart,delta", [
    (3, True, False), (3, False, False), (2, False, True)])
def test_fused_step_lowers_to_triton_for_a_gpu(newton, root, restart, delta):
  """Lowered for a GPU (no GPU needed), the fused step is one Triton
  kernel call: what the step of a default optimizer runs there."""
  shape = (3, 3, 6, 5)
  penalty = _penalty(shape, (0, 1, 3))
  view = group_kernels.leaf_view(penalty, shape)
  x = jnp.ones(shape, jnp.float32)

  def step(arrays, scalars, restart_flag):
    return group_kernels.fused_step(
        view, penalty, arrays, tuple(scalars),
        restart_flag if restart else False, root=root, delta=delta,
        block_bytes=128, max_iters=8, newton=newton, rtol=1e-6,
        interpret=False)

  exported = jax.export.export(
      jax.jit(step), platforms=["cuda"],
      disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(
          "__gpu$xla.gpu.triton")])((x,) * 6, jnp.ones(8), jnp.bool_(True))
  assert exported.mlir_module().count("custom_call @__gpu$xla.gpu.triton") == 1


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("newton", [True, False])
@pytest.mark.parametrize("root", [3, 2])
def test_a_float32_kernel_for_a_gpu_takes_the_hardware_approximations(
    dtype, newton, root):
  """Compiled for a GPU, a float32 step takes the PTX reciprocal in Newton's
  passes and in the cube root's steps, and the PTX square root; a float64
  step takes neither."""
  shape = (3, 3, 6, 5)
  penalty = _penalty(shape, (0, 1, 3))
  view = group_kernels.leaf_view(penalty, shape)

  def step(arrays, scalars):
    return group_kernels.fused_step(
        view, penalty, arrays, tuple(scalars), False, root=root, delta=False,
        block_bytes=128, max_iters=8, newton=newton, rtol=1e-6,
        interpret=False)

  with jax.enable_x64(dtype == "float64"):
    x = jnp.ones(shape, dtype)
    exported = jax.export.export(
        jax.jit(step), platforms=["cuda"],
        disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(
            "__gpu$xla.gpu.triton")])((x,) * 6, jnp.ones(8, dtype))
  module = exported.mlir_module()
  expected = {group_kernels._PTX["sqrt"]: int(root == 2),
              group_kernels._PTX["reciprocal"]: int(newton or root == 3)}
  for code, count in expected.items():
    assert module.count(code) == (count if dtype == "float32" else 0), code


def approximation_errors(size: int = 1 << 16, seed: int = 0) -> dict:
  """The largest relative errors of the compiled kernels' reciprocal, cube
  root and square root (``group_kernels._PTX``) over ``size`` float32
  values spread log-uniformly over [1e-37, 1e37], against float64, and of
  the cube root against the XLA path's (``cbrt vs xla``); and whether 0
  and ∞ map to 0 and ∞ (∞ and 0 for the reciprocal). A GPU only."""
  rng = np.random.default_rng(seed)
  x = np.float32(10.0 ** rng.uniform(-37, 37, size))
  x[:2] = 0, np.inf
  funcs = {"reciprocal": lambda v: group_kernels._reciprocal(v, True),
           "cbrt": lambda v: group_kernels._root(3, v, True),
           "sqrt": lambda v: group_kernels._root(2, v, True)}

  def kernel(x_ref, *refs):
    for f, out_ref in zip(funcs.values(), refs):
      out_ref[...] = f(x_ref[...])

  block = pl.BlockSpec((1024,), lambda i: (i,))
  out = pl.pallas_call(
      kernel, grid=(size // 1024,), in_specs=[block],
      out_specs=[block] * len(funcs),
      out_shape=[jax.ShapeDtypeStruct(x.shape, jnp.float32)] * len(funcs))(x)
  with np.errstate(divide="ignore"):
    exact = {"reciprocal": 1 / np.float64(x), "cbrt": np.cbrt(np.float64(x)),
             "sqrt": np.sqrt(np.float64(x))}
  errors = {}
  for name, y in zip(funcs, out):
    y, e = np.float64(np.asarray(y)), exact[name]
    errors[name] = float(np.max(np.abs(y[2:] - e[2:]) / e[2:]))
    errors[name + " at 0 and inf"] = bool(np.array_equal(y[:2], e[:2]))
  xla = np.float64(np.asarray(jax.jit(_numerics.cbrt)(x)))[2:]
  errors["cbrt vs xla"] = float(np.max(np.abs(
      np.float64(np.asarray(out[1]))[2:] - xla) / xla))
  return errors


@pytest.mark.skipif(jax.default_backend() != "gpu",
                    reason="the PTX approximations run only in kernels "
                    "compiled for a GPU (elsewhere the kernels compute "
                    "exactly what the XLA path computes)")
def test_the_hardware_approximations_hold_float32_accuracy():
  errors = approximation_errors()
  assert errors["reciprocal"] < 2.4e-7  # 2 float32 ulps
  assert errors["sqrt"] < 2.4e-7
  # tests/test_numerics.py's bound of the XLA path's cube root, and within
  # 8 ulps of it.
  assert errors["cbrt"] < 1.5e-6
  assert errors["cbrt vs xla"] < 9.6e-7
  assert all(v for k, v in errors.items() if k.endswith("inf"))


@pytest.mark.parametrize("start_is_params", [True, False])
def test_fused_step_writes_the_solution_in_place_unless_it_starts_at_w(
    start_is_params):
  """θ̂ is written in the warm start's buffer (the previous θ̂), but not in
  W's when PG starts at W: the caller still reads W, and XLA would copy it
  first. V and U are written in place either way."""
  shape = (3, 3, 6, 5)
  penalty = _penalty(shape, (0, 1, 3))
  view = group_kernels.leaf_view(penalty, shape)
  x = jnp.ones(shape, jnp.float32)

  def step(g, w, v, u, a, z):
    return group_kernels.fused_step(
        view, penalty, (g, w, v, u, a, w if start_is_params else z),
        (1.0, 0.1, 1.0, 0.1, 1.0, 1.0, 1e-6, 0.1), False, root=3,
        delta=False, block_bytes=128, max_iters=8, newton=False, rtol=1e-6,
        interpret=False)

  module = jax.export.export(
      jax.jit(step), platforms=["cuda"],
      disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(
          "__gpu$xla.gpu.triton")])(*(x,) * 6).mlir_module()
  aliases = set(re.findall(r"output_tuple_indices = \[(\d)\], "
                           r"operand_index = (\d)", module))
  expected = {("0", "3"), ("1", "4")} | (set() if start_is_params
                                         else {("2", "6")})
  assert aliases == expected
