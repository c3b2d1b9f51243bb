"""The optimizer's whole step with the paper's PG rule as a compiled CPU
kernel (ramda_optax.cpu_kernel.pg_step): statistics, subproblem and the
per-leaf PG solve in one call, against the XLA path, the float64
reference, the exact step's statistics and its own chunking."""

import math
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ramda_optax as ro
from ramda_optax import _numerics
from ramda_optax import cpu_kernel
from ramda_optax import fused
from ramda_optax.regularizers import GroupNorm
from ramda_optax.subproblem import Subproblem
from tests import numpy_reference as ref
from tests.test_cpu_kernel import GROUPS
from tests.test_cpu_kernel import SHAPES
from tests.test_cpu_kernel import _problem
from tests.test_cpu_kernel import _run

pytestmark = pytest.mark.skipif(
    shutil.which("c++") is None, reason="no C++ compiler to build the kernel")

METHODS = {
    "ramda": lambda solver: ro.ramda(
        optax.piecewise_constant_schedule(0.3, {6: 0.5}),
        regularizer=ro.group_lasso(0.3, GROUPS), restart_steps=(4, 9),
        solver=solver),
    "proxgen": lambda solver: ro.proxgen(
        optax.piecewise_constant_schedule(0.1, {6: 0.5}),
        regularizer=ro.group_lasso(1.0, GROUPS), solver=solver),
    "prox_ssi": lambda solver: ro.prox_ssi(
        0.1, regularizer=ro.group_lasso(0.1, GROUPS), solver=solver),
}


def _lowered(opt):
  """The lowered text of ``opt``'s jitted update on float32 params."""
  params = {k: jnp.zeros(shape, jnp.float32) for k, shape in SHAPES.items()}
  return jax.jit(opt.update).lower(params, opt.init(params), params).as_text()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_step_matches_the_xla_path(method):
  """RAMDA (with restarts), ProxGen and ProxSSI with ``pg_solver()`` at an
  rtol above float32's resolution of Q: the kernel's step (one call per
  group-lasso leaf) and the XLA path's take the same iterations at every
  step, and every float of params and state agrees to float32 rounding."""
  init, grad_fn = _problem()
  make = lambda backend: METHODS[method](
      ro.pg_solver(rtol=1e-4, backend=backend))
  kernel, xla = (_run(make(b), init, grad_fn, 12) for b in ("kernel", "xla"))
  hlo = _lowered(make("kernel"))
  assert hlo.count(f"@{cpu_kernel.PG_STEP_TARGET}(") == 3  # grouped leaves
  assert cpu_kernel.PG_TARGET not in hlo
  assert cpu_kernel.PG_STEP_TARGET not in _lowered(make("xla"))
  for n, ((p1, s1), (p2, s2)) in enumerate(zip(kernel, xla)):
    np.testing.assert_array_equal(s1.inner_iters, s2.inner_iters,
                                  err_msg=f"@{n}")
    for a, b in zip(jax.tree.leaves((p1, s1)), jax.tree.leaves((p2, s2))):
      if jnp.issubdtype(a.dtype, jnp.floating):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6,
                                   err_msg=f"@{n}")
  iters = np.stack([s.inner_iters for _, s in kernel])  # bias first
  assert np.all(iters[:, 0] == 0) and np.all(iters[:, 1:] > 0)
  assert np.max(iters) > 5
  # Zero groups appear in θ̂ (RAMDA's W averages it) or in W.
  structured = lambda p, s: s.solution if method == "ramda" else p
  sparsity = [float(ro.group_sparsity(structured(p, s), GROUPS))
              for p, s in kernel]
  assert 0 < max(sparsity) < 1


def test_ramda_step_follows_the_float64_reference():
  """RAMDA's kernel step at rtol 1e-4 takes the float64 reference's
  iterations (its stops lie far above float32's rounding of Q) and stays
  within float32 accuracy of its W."""
  init, grad_fn = _problem(seed=3)
  history = _run(ro.ramda(0.3, regularizer=ro.group_lasso(0.3, GROUPS),
                             solver=ro.pg_solver(rtol=1e-4)),
                    init, grad_fn, 10)
  reference = ref.Ramda(init, 0.3, 0.9, strength=0.3, groups=GROUPS,
                        rtol=1e-4)
  for n, (params, state) in enumerate(history):
    expected = reference.step(grad_fn(reference.params, n))
    for i, k in enumerate(sorted(SHAPES)):  # jax.tree.leaves order
      np.testing.assert_allclose(params[k], expected[k], rtol=1e-4,
                                 atol=1e-4, err_msg=f"{k}@{n}")
      assert int(state.inner_iters[i]) == reference.iters[k], (k, n)
  assert 0 < float(ro.group_sparsity(reference.theta, GROUPS)) < 1


def _leaf(seed=0, shape=(3, 3, 13, 7), axes=(0, 1, 3)):
  """A leaf's arrays (g, W, V, U, W⁰, z⁰ = W), float32, groups of unlike
  scales, and its penalty (the kernel built)."""
  assert cpu_kernel.available()
  rng = np.random.default_rng(seed)
  scale = np.exp(rng.uniform(-3, 1, size=[1 if d in axes else n
                                          for d, n in enumerate(shape)]))
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  w = f32(scale * rng.normal(size=shape))
  arrays = (f32(scale * rng.normal(size=shape)), w,
            f32(scale * rng.normal(size=shape)),
            f32(scale**2 * rng.uniform(0.5, 2, size=shape)),
            f32(w + 0.1 * scale * rng.normal(size=shape)), w)
  return arrays, GroupNorm(axes, math.prod(shape[d] for d in axes))


# (β₁, w₁, β₂, w₂, c, ℓ, ε, τ): RAMDA's dual average and cube root.
COEFFICIENTS = (1.0, 0.5, 1.0, 0.5, 1.0, 1.0, 1e-6, 0.05)


@pytest.mark.parametrize("restart", [False, True])
def test_statistics_are_updated_once_whatever_the_chunks(restart):
  """The kernel updates V and U in its first sweep only: run in chunks of
  1, 3 and 60 iterations, and after remembered stops far earlier, later
  and equal, V, U, W⁰, θ̂ and the iterations are the same floats, and V, U
  and W⁰ are the exact step's (``group_step``, the same statistics)."""
  arrays, penalty = _leaf()
  view = cpu_kernel.leaf_view(penalty, arrays[0].shape)
  step = lambda **kw: jax.jit(lambda x, r: cpu_kernel.pg_step(
      view, penalty, x, COEFFICIENTS, r, root=3, delta=False, max_iters=60,
      **kw))(arrays, jnp.asarray(restart))
  runs = [step(rtol=1e-6, chunk=chunk, remember=False) for chunk in (1, 3, 60)]
  for rtol in (0.5, -1.0):  # plant a stop at 2 iterations, then at 60
    step(rtol=rtol)
    runs.append(step(rtol=1e-6))
  runs.append(step(rtol=1e-6))  # the stop itself remembered
  first = runs[0]
  assert 2 < int(first[4]) < 60
  for other in runs[1:]:
    for a, b in zip(first, other):
      np.testing.assert_array_equal(a, b)
  exact = jax.jit(lambda x, r: cpu_kernel.group_step(
      view, penalty, x, COEFFICIENTS, r, root=3, delta=False, max_iters=20,
      warm_start=True, block_bytes=None))(arrays, jnp.asarray(restart))
  for a, b in zip(first[:3], exact[:3]):
    np.testing.assert_array_equal(a, b)
  g, w, v, u, anchor, _ = (np.asarray(x) for x in arrays)
  kept = 0.0 if restart else 1.0
  np.testing.assert_allclose(first[0], kept * v + 0.5 * g, rtol=1e-6)
  np.testing.assert_allclose(first[1], kept * u + 0.5 * g * g, rtol=1e-6)
  np.testing.assert_array_equal(first[2], w if restart else anchor)


def test_solution_is_the_pg_solve_of_its_subproblem():
  """θ̂ and the iterations are ``pg_leaf``'s on the subproblem the step
  forms (a = W⁰, v = ℓV, P = ∛(cU) + ε from the new statistics)."""
  arrays, penalty = _leaf(seed=5)
  view = cpu_kernel.leaf_view(penalty, arrays[0].shape)
  v, u, _, theta, iters = jax.jit(lambda x: cpu_kernel.pg_step(
      view, penalty, x, COEFFICIENTS, False, root=3, delta=False,
      max_iters=100, rtol=1e-4))(arrays)
  sub = Subproblem(arrays[4], v, _numerics.cbrt(u) + 1e-6, jnp.float32(0.05))
  alone, alone_iters = jax.jit(lambda s, z: cpu_kernel.pg_leaf(
      view, penalty, s, z, max_iters=100, rtol=1e-4))(sub, arrays[5])
  assert 2 < int(iters) < 100
  assert int(iters) == int(alone_iters)
  np.testing.assert_allclose(theta, alone, rtol=1e-5, atol=1e-6)


def test_closed_form_without_a_threshold():
  """τ = 0: θ̂ = W⁰ − ℓV/P, the exact step's closed form to the float, and
  no iteration; θ̂ − W with ``delta``."""
  arrays, penalty = _leaf(seed=2)
  view = cpu_kernel.leaf_view(penalty, arrays[0].shape)
  coefficients = (*COEFFICIENTS[:-1], 0.0)
  out = jax.jit(lambda x: cpu_kernel.pg_step(
      view, penalty, x, coefficients, False, root=2, delta=True,
      max_iters=100, rtol=1e-8))(arrays)
  exact = jax.jit(lambda x: cpu_kernel.group_step(
      view, penalty, x, coefficients, False, root=2, delta=False,
      max_iters=20, warm_start=True, block_bytes=None))(arrays)
  assert int(out[4]) == 0
  np.testing.assert_array_equal(out[3], exact[3] - arrays[1])


def _across(penalty, arrays, coefficients, restart, **kw):
  """``pg_step_across`` on one device's mesh (its axis splitting the groups
  into one shard), jitted."""
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("groups",))
  axis = next(d for d in range(arrays[0].ndim) if d not in penalty.axes)
  spec = jax.sharding.PartitionSpec(*(["groups" if d == axis else None
                                       for d in range(arrays[0].ndim)]))
  run = lambda x, r: cpu_kernel.pg_step_across(
      penalty, x, coefficients, r if restart is not False else False,
      axes=("groups",), **kw)
  out_specs = (spec, spec, spec if restart is not False else None,
               spec, jax.sharding.PartitionSpec())
  return jax.jit(jax.shard_map(
      run, mesh=mesh, in_specs=((spec,) * 6, jax.sharding.PartitionSpec()),
      out_specs=out_specs, check_vma=False))(arrays, jnp.asarray(restart))


@pytest.mark.parametrize("shape", [(3, 3, 13, 7), (3, 3, 10, 512)])
@pytest.mark.parametrize("restart", [False, True])
@pytest.mark.parametrize("chunk", [1, 5, 16])
@pytest.mark.parametrize("tau,rtol,max_iters", [
    (0.05, 1e-5, 60),  # stops after 7 (33 with the restart) iterations
    (0.05, -1.0, 23),  # runs to max_iters
    (0.05, 1e-6, 1),   # one iteration
    (50.0, 1e-6, 60),  # every group screened: no iteration, θ̂ = 0
    (0.0, 1e-6, 60),   # no threshold: the closed form
])
def test_step_by_sweeps_is_the_whole_step(shape, restart, chunk, tau, rtol,
                                          max_iters):
  """The step of a shard whose groups other devices share the test of
  (``pg_step_across``, by sweeps of ``chunk`` iterations under an XLA loop,
  each reporting its groups' Q) gives the whole step's V, U, W⁰, θ̂ − W and
  iterations, bit for bit, wherever the stop falls; on one leaf of one
  block and one of four (blocks of 3 of its 10 groups)."""
  arrays, penalty = _leaf(seed=7, shape=shape)
  view = cpu_kernel.leaf_view(penalty, arrays[0].shape)
  coefficients = (*COEFFICIENTS[:-1], tau)
  whole = jax.jit(lambda x, r: cpu_kernel.pg_step(
      view, penalty, x, coefficients, r if restart else False, root=3,
      delta=True, max_iters=max_iters, rtol=rtol, remember=False))(
          arrays, jnp.asarray(restart))
  swept = _across(penalty, arrays, coefficients, restart, root=3,
                  delta=True, max_iters=max_iters, rtol=rtol, chunk=chunk)
  iters = int(whole[4])
  if tau == 0.05:
    assert iters == max_iters if rtol < 0 or max_iters == 1 else (
        2 < iters < max_iters), iters
  else:
    assert iters == 0
  for a, b in zip(whole, swept):
    if a is None:
      assert b is None
    else:
      np.testing.assert_array_equal(np.asarray(b), np.asarray(a))
  if tau > 1:
    np.testing.assert_array_equal(swept[3], -arrays[1])


def _counting_sweeps(monkeypatch) -> list[int]:
  """Patches ``jax.ffi.ffi_call`` so that every sweep the kernel runs
  (``PG_SWEEP_TARGET``) appends its iterations to the list returned."""
  counts, ffi_call = [], jax.ffi.ffi_call

  def patched(target, *args, **kwargs):
    call = ffi_call(target, *args, **kwargs)
    if target != cpu_kernel.PG_SWEEP_TARGET:
      return call

    def counted(*operands, **attributes):
      jax.debug.callback(lambda n: counts.append(int(n)), operands[10])
      return call(*operands, **attributes)
    return counted

  monkeypatch.setattr(jax.ffi, "ffi_call", patched)
  return counts


@pytest.mark.parametrize("restart", [False, True])
@pytest.mark.parametrize("shape", [(3, 3, 10, 512), (10, 6)])
@pytest.mark.parametrize("hint", [
    "none", 1, 2, -3, -2, -1, 0, 1j, 2j, 3j, 30j, 500])
def test_sweeps_aimed_at_a_hint_are_the_whole_step(restart, shape, hint,
                                                   monkeypatch):
  """Sweeps whose first is aimed at a hint of the stop (a number, or j
  the stop moved by j) give the whole step's floats and iterations bit for
  bit, wherever the hint falls; a hint within the window about the stop
  takes one sweep and at most one rerun, where sweeps of 5 take one per 5
  iterations; ``sweeps_to`` counts the sweeps and iterations run. On groups
  of 4,608 floats, whose records have room for every iteration, and of 6,
  which have room for a sweep's."""
  axes = (0, 1, 3) if len(shape) == 4 else (1,)
  arrays, penalty = _leaf(seed=7, shape=shape, axes=axes)
  view = cpu_kernel.leaf_view(penalty, arrays[0].shape)
  whole = jax.jit(lambda x, r: cpu_kernel.pg_step(
      view, penalty, x, COEFFICIENTS, r if restart else False, root=3,
      delta=True, max_iters=60, rtol=1e-5, remember=False))(
          arrays, jnp.asarray(restart))
  stop = int(whole[4])
  assert 5 < stop < 55, stop
  if isinstance(hint, int) and hint <= 0:
    hint = stop + hint
  elif isinstance(hint, complex):
    hint = stop + int(hint.imag)
  counts = _counting_sweeps(monkeypatch)
  swept = _across(penalty, arrays, COEFFICIENTS, restart, root=3, delta=True,
                  max_iters=60, rtol=1e-5, chunk=5,
                  **({} if hint == "none" else {"hint": hint}))
  for a, b in zip(whole, swept):
    if a is None:
      assert b is None
    else:
      np.testing.assert_array_equal(np.asarray(b), np.asarray(a))
  jax.effects_barrier()  # every sweep's callback has run
  assert cpu_kernel.sweeps_to(
      stop, None if hint == "none" else hint, entries=math.prod(shape) // (
          shape[2] if len(shape) == 4 else shape[0]),
      max_iters=60, chunk=5) == (len(counts), sum(counts)), counts
  if hint == "none":
    assert len(counts) == -(-stop // 5) + (stop % 5 != 0), counts
  elif abs(stop - hint) <= (margin := max(2, hint // 16)) and len(shape) == 4:
    # To h + m, then from the iterate after h − m to the stop.
    assert len(counts) <= 2 and sum(counts) < hint + 3 * margin, counts


@pytest.mark.parametrize("gpu", [True, False])
def test_paper_rule_lowered_for_a_gpu_takes_the_xla_path(gpu, monkeypatch):
  """The kernel runs on a CPU only: lowered for a GPU (as where one is the
  default backend, or not), the step with the paper's rule is XLA's, with
  no Pallas kernel (whose blocks stop on their own tests)."""
  monkeypatch.setattr(fused, "gpu_in_use", lambda: gpu)
  params = {"w": jnp.ones((4, 3), jnp.float32), "b": jnp.zeros(3, jnp.float32)}
  opt = ro.ramda(0.1, regularizer=ro.group_lasso(0.01, {"w": (1,), "b": None}),
                 solver=ro.pg_solver())
  allow = [jax.export.DisabledSafetyCheck.custom_call(name)
           for name in (cpu_kernel.PG_STEP_TARGET, cpu_kernel.STEP_TARGET)]
  calls = {}
  for platform in ("cpu", "cuda"):
    module = jax.export.export(
        jax.jit(opt.update), platforms=[platform], disabled_checks=allow)(
            params, opt.init(params), params).mlir_module()
    calls[platform] = tuple(
        module.count(f"custom_call @{name}(")
        for name in (cpu_kernel.PG_STEP_TARGET, cpu_kernel.STEP_TARGET,
                     "__gpu$xla.gpu.triton"))
  # w takes the PG step, b (no penalty) the exact step's closed form.
  assert calls == {"cpu": (1, 1, 0), "cuda": (0, 0, 0)}
