"""The paper's PG solve with its per-leaf stopping rule as a compiled CPU
kernel (ramda_optax.cpu_kernel.pg_leaf) against the XLA path, the float64
reference and its own chunking."""

import math
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ramda_optax as ro
from ramda_optax import cpu_kernel
from ramda_optax.regularizers import GroupNorm
from ramda_optax.subproblem import Subproblem
from tests import numpy_reference as ref

pytestmark = pytest.mark.skipif(
    shutil.which("c++") is None, reason="no C++ compiler to build the kernel")

# shape, the axes a group norm reduces over ("wide": rows of a multiple of 8
# floats, which the kernel writes with streaming stores where it can)
LEAVES = {"conv": ((3, 3, 13, 7), (0, 1, 3)), "dense": ((11, 6), (1,)),
          "row": ((1, 9, 5), (0, 2)), "wide": ((3, 3, 6, 16), (0, 1, 3))}
# A leaf of 67 MB a buffer, whose window the kernel narrows to m = 1 (its
# kept iterates take at most 256 MiB).
SHAPES = {**LEAVES, "big": ((16400, 1024), (1,))}


def _penalty(name):
  shape, axes = SHAPES[name]
  return GroupNorm(axes, math.prod(shape[d] for d in axes))


def _subproblem(name, tau, seed=0):
  """A float32 subproblem whose groups differ in scale (small ones are
  screened at moderate τ) and a warm start near the anchor."""
  shape, axes = SHAPES[name]
  rng = np.random.default_rng(seed)
  scale = np.exp(rng.uniform(-3, 1, size=[1 if d in axes else n
                                          for d, n in enumerate(shape)]))
  a = scale * rng.normal(size=shape)
  v = 0.3 * scale * rng.normal(size=shape)
  p = rng.uniform(0.2, 2.0, size=shape)
  z0 = a + 0.05 * rng.normal(size=shape)
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  return Subproblem(f32(a), f32(v), f32(p), f32(tau)), f32(z0)


def _kernel(name, sub, z0, **kwargs):
  assert cpu_kernel.available()
  view = cpu_kernel.leaf_view(_penalty(name), sub.anchor.shape)
  return jax.jit(lambda s, z: cpu_kernel.pg_leaf(
      view, _penalty(name), s, z, **kwargs))(sub, z0)


def _xla(name, sub, z0, max_iters, rtol):
  solver = ro.pg_solver(max_iters, rtol, backend="xla")
  return jax.jit(lambda s, z: solver.solve(_penalty(name), s, z, 1))(sub, z0)


@pytest.mark.parametrize("name", sorted(LEAVES))
@pytest.mark.parametrize("tau", [0.02, 0.3])
@pytest.mark.parametrize("chunk", [1, 3, 16])
@pytest.mark.parametrize("block_bytes", [None, 100, 600])
def test_fixed_iterations_match_the_xla_path(name, tau, chunk, block_bytes):
  # rtol = 0 stops only on an increase of Q: within 7 iterations, none.
  # (Without a remembered stop, which would set the chunks.)
  sub, z0 = _subproblem(name, tau)
  theta, iters = _kernel(name, sub, z0, max_iters=7, rtol=0.0, chunk=chunk,
                         block_bytes=block_bytes, remember=False)
  theta_xla, iters_xla = _xla(name, sub, z0, 7, 0.0)
  assert int(iters) == int(iters_xla) == 7
  np.testing.assert_allclose(theta, theta_xla, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(LEAVES))
@pytest.mark.parametrize("tau", [0.02, 0.3])
def test_relative_decrease_rule_matches_the_xla_path_and_reference(name, tau):
  # rtol = 1e-4 lies far above float32's resolution of Q: the leaf stops
  # where the float64 reference stops.
  sub, z0 = _subproblem(name, tau)
  theta, iters = _kernel(name, sub, z0, max_iters=100, rtol=1e-4, chunk=4)
  theta_xla, iters_xla = _xla(name, sub, z0, 100, 1e-4)
  shape, axes = LEAVES[name]
  theta_ref, iters_ref = ref.pg_solve(
      *(np.asarray(x, np.float64) for x in sub[:3]), tau,
      np.asarray(z0, np.float64), axes, max_iters=100, rtol=1e-4)
  assert 2 < int(iters) < 100
  assert int(iters) == int(iters_xla) == iters_ref
  np.testing.assert_allclose(theta, theta_xla, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(theta, theta_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(LEAVES))
@pytest.mark.parametrize("block_bytes", [None, 100, 600])
def test_chunks_do_not_change_the_solve(name, block_bytes):
  # A chunk's last iterate, written and read back, is the iterate the
  # next pass would have scaled, and the blocks' records of Q are summed in
  # the same order: the same floats whatever the chunks, the leaf stopping
  # inside a chunk (a rerun) or at its end. Other blocks sum Q in another
  # order, the same to float64 rounding.
  sub, z0 = _subproblem(name, 0.05, seed=3)
  runs = [_kernel(name, sub, z0, max_iters=60, rtol=1e-6, chunk=chunk,
                  block_bytes=block_bytes, remember=False)
          for chunk in (1, 2, 5, 16, 60)]
  theta, iters = runs[0]
  assert 2 < int(iters) < 60
  for other, other_iters in runs[1:]:
    assert int(other_iters) == int(iters)
    np.testing.assert_array_equal(other, theta)
  whole, whole_iters = _kernel(name, sub, z0, max_iters=60, rtol=1e-6,
                               remember=False)
  assert abs(int(whole_iters) - int(iters)) <= 1
  np.testing.assert_allclose(whole, theta, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(LEAVES))
def test_a_remembered_stop_does_not_change_the_solve(name):
  # The first chunk aims at the stop of the last solve of the view, here
  # one that stopped far earlier, far later (rtol < 0: at max_iters), at
  # the same iteration, or under a max_iters that cuts the first chunk.
  sub, z0 = _subproblem(name, 0.05, seed=3)
  theta, iters = _kernel(name, sub, z0, max_iters=60, rtol=1e-6,
                         remember=False)
  planted = []
  for rtol in (0.5, -1.0, 1e-6):
    _, stop = _kernel(name, sub, z0, max_iters=60, rtol=rtol)
    planted.append(int(stop))
    again, again_iters = _kernel(name, sub, z0, max_iters=60, rtol=1e-6)
    assert int(again_iters) == int(iters)
    np.testing.assert_array_equal(again, theta)
  assert planted[0] < int(iters) < planted[1]
  # A stop h = s + 4 remembered under max_iters = s + 4: the first chunk
  # runs to max_iters, its window from s + 2, and the leaf stops at s.
  top = int(iters) + 4
  theta, _ = _kernel(name, sub, z0, max_iters=top, rtol=1e-6, remember=False)
  _kernel(name, sub, z0, max_iters=top, rtol=-1.0)
  again, again_iters = _kernel(name, sub, z0, max_iters=top, rtol=1e-6)
  assert int(again_iters) == int(iters)
  np.testing.assert_array_equal(again, theta)


def _q_by_iteration(name, sub, z0, iterations):
  """Q_j of the kernel's iterates θ_j for j in ``iterations`` (each by a
  solve held to j iterations), in float64 over the groups not screened."""
  shape, axes = SHAPES[name]
  rest = [d for d in range(len(shape)) if d not in axes]
  grouped = lambda x: np.transpose(np.asarray(x, np.float64),
                                   rest + list(axes)).reshape(
                                       math.prod(shape[d] for d in rest), -1)
  a, v, p = (grouped(x) for x in sub[:3])
  kappa = float(sub.threshold) * math.sqrt(a.shape[1])
  active = np.linalg.norm(p * a - v, axis=1) > kappa
  q = []
  for j in iterations:
    theta = grouped(_kernel(name, sub, z0, max_iters=j, rtol=-1.0,
                            remember=False)[0])
    d = theta - a
    per_group = (np.sum(v * d + 0.5 * p * d * d, axis=1)
                 + kappa * np.linalg.norm(theta, axis=1))
    q.append(per_group[active].sum())
  return np.asarray(q)


@pytest.mark.parametrize("name", [
    *sorted(LEAVES), pytest.param("big", marks=pytest.mark.slow)])
def test_a_stop_anywhere_about_the_hint_is_the_same_solve(name):
  # The first chunk aims at the view's remembered stop h: it runs to h + m
  # (m = 2 here, 1 for the big leaf) and keeps every iterate from h − m on,
  # h's in the output. Planted at s − 3 to s + 3 about this solve's stop s,
  # the stop falls after the window (the solve goes on by chunks), at its
  # end, inside it after h, at h, inside it before h, at its start, and
  # before it (a rerun from z⁰): always the same floats as without a hint.
  sub, z0 = _subproblem(name, 0.05, seed=3)
  theta, s = _kernel(name, sub, z0, max_iters=60, rtol=1e-4, remember=False)
  s = int(s)
  assert 10 <= s <= 40
  first = s - 7  # Q from iteration s − 7, its relative decrease from s − 6
  q = _q_by_iteration(name, sub, z0, range(first, s + 4))
  decrease = dict(zip(range(first + 1, s + 4),
                      (q[:-1] - q[1:]) / (np.abs(q[1:]) + 1)))
  for offset in range(-3, 4):
    h = s - offset
    # An rtol between the decreases of iterations h − 1 and h stops at h
    # (those of earlier iterations being larger still).
    rtol = math.sqrt(decrease[h] * decrease[h - 1])
    assert int(_kernel(name, sub, z0, max_iters=60, rtol=rtol)[1]) == h
    again, again_iters = _kernel(name, sub, z0, max_iters=60, rtol=1e-4)
    assert int(again_iters) == s
    np.testing.assert_array_equal(again, theta)


@pytest.mark.parametrize("name", sorted(LEAVES))
def test_another_views_stops_do_not_change_the_solve(name):
  # A view's remembered stop is scaled by how far the stop of the latest
  # solve, of another view, moved from that view's solve before: here up
  # thirtyfold (2 to 60 iterations) and down as far.
  other = "dense" if name != "dense" else "conv"
  sub, z0 = _subproblem(name, 0.05, seed=3)
  other_sub, other_z0 = _subproblem(other, 0.05, seed=3)
  theta, iters = _kernel(name, sub, z0, max_iters=60, rtol=1e-6,
                         remember=False)
  for rtols in ((0.5, -1.0), (-1.0, 0.5)):
    _kernel(name, sub, z0, max_iters=60, rtol=1e-6)
    stops = [int(_kernel(other, other_sub, other_z0, max_iters=60,
                         rtol=rtol)[1]) for rtol in rtols]
    assert max(stops) == 60 and min(stops) <= 3
    again, again_iters = _kernel(name, sub, z0, max_iters=60, rtol=1e-6)
    assert int(again_iters) == int(iters)
    np.testing.assert_array_equal(again, theta)


def test_screened_groups_are_zero_and_all_screened_runs_no_iteration():
  sub, z0 = _subproblem("conv", 0.3)
  theta, _ = _kernel("conv", sub, z0, max_iters=100, rtol=1e-4)
  b = sub.metric * sub.anchor - sub.linear
  shape, axes = LEAVES["conv"]
  screened = (jnp.sqrt(jnp.sum(b * b, axes)) <= 0.3 * math.sqrt(9 * 7))
  assert 0 < int(jnp.sum(screened)) < 13
  np.testing.assert_array_equal(
      jnp.all(theta == 0, axes), screened)
  theta, iters = _kernel("conv", sub._replace(threshold=jnp.float32(1e3)),
                         z0, max_iters=100, rtol=1e-4)
  assert int(iters) == 0
  np.testing.assert_array_equal(theta, 0)


@pytest.mark.parametrize("name", sorted(LEAVES))
@pytest.mark.parametrize("chunk", [1, 5, 16])
@pytest.mark.parametrize("tau,rtol,max_iters", [
    (0.05, 1e-6, 60),  # stops after several sweeps of 1 and 5
    (0.05, -1.0, 23),  # runs to max_iters
    (1e3, 1e-6, 60),   # every group screened: no iteration, θ̂ = 0
])
@pytest.mark.parametrize("hint", [None, -1, 0, 2])
def test_solve_by_sweeps_is_the_whole_solve(name, chunk, tau, rtol,
                                           max_iters, hint):
  # The solve of a shard whose groups other devices share the test of
  # (pg_leaf_across: sweeps under an XLA loop, here on one device's mesh,
  # its axis splitting the groups into one shard) is the whole leaf's,
  # bit for bit, and its iterations; its first sweep not aimed, or aimed
  # at the stop moved by -1, 0 or 2 iterations.
  sub, z0 = _subproblem(name, tau, seed=3)
  theta, iters = _kernel(name, sub, z0, max_iters=max_iters, rtol=rtol,
                         remember=False)
  aim = {} if hint is None else {"hint": max(1, int(iters) + hint)}
  shape, axes = LEAVES[name]
  axis = next(d for d in range(len(shape)) if d not in axes)
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("groups",))
  spec = jax.sharding.PartitionSpec(*(["groups" if d == axis else None
                                       for d in range(len(shape))]))
  swept = jax.jit(jax.shard_map(
      lambda s, z: cpu_kernel.pg_leaf_across(
          _penalty(name), s, z, axes=("groups",), max_iters=max_iters,
          rtol=rtol, chunk=chunk, **aim),
      mesh=mesh, in_specs=(Subproblem(spec, spec, spec,
                                      jax.sharding.PartitionSpec()), spec),
      out_specs=(spec, jax.sharding.PartitionSpec()), check_vma=False))
  theta_swept, iters_swept = swept(sub, z0)
  if tau > 1:
    assert int(iters) == 0
  else:
    assert 2 < int(iters) <= max_iters and (rtol > 0) == (iters < max_iters)
  assert int(iters_swept) == int(iters)
  np.testing.assert_array_equal(theta_swept, theta)


def test_a_group_without_curvature_stays_and_adds_its_q():
  # P = 0 on a group that is not screened: its step η is 0, its iterate
  # stays at z⁰, and its Q, the same after every iteration, still counts in
  # the leaf's test (|Q| + 1): the XLA path's iterations and θ̂.
  sub, z0 = _subproblem("conv", 0.05, seed=2)
  sub = sub._replace(metric=sub.metric.at[:, :, 0, :].set(0.0),
                     linear=sub.linear.at[:, :, 0, :].set(3.0))
  for rtol, max_iters in ((1e-4, 100), (0.0, 6)):
    theta, iters = _kernel("conv", sub, z0, max_iters=max_iters, rtol=rtol)
    theta_xla, iters_xla = _xla("conv", sub, z0, max_iters, rtol)
    assert 2 < int(iters) == int(iters_xla) <= max_iters
    np.testing.assert_array_equal(theta[:, :, 0, :], z0[:, :, 0, :])
    np.testing.assert_allclose(theta, theta_xla, rtol=1e-5, atol=1e-6)


def test_solution_nears_optimality_with_iterations():
  # The prox-gradient residual ‖z − prox(z − η ∇)‖ of the kernel's θ̂ falls
  # as max_iters grows (PG converges).
  sub, z0 = _subproblem("dense", 0.05, seed=5)
  a, v, p, tau = sub
  axes = LEAVES["dense"][1]
  penalty = _penalty("dense")
  step = 1 / jnp.max(p, axes, keepdims=True)

  def residual(z):
    y = z - step * (v + p * (z - a))
    return float(jnp.linalg.norm(z - penalty.prox(y, step * tau)[0]))

  residuals = [residual(_kernel("dense", sub, z0, max_iters=n, rtol=0.0)[0])
               for n in (1, 5, 25)]
  assert residuals[0] > residuals[1] > residuals[2]
  assert residuals[2] < 1e-2 * residuals[0]


def test_nan_subproblem_terminates_at_max_iters():
  sub, z0 = _subproblem("dense", 0.05)
  sub = sub._replace(linear=sub.linear.at[0, 0].set(jnp.nan))
  _, iters = _kernel("dense", sub, z0, max_iters=9, rtol=1e-8)
  _, iters_xla = _xla("dense", sub, z0, 9, 1e-8)
  assert int(iters) == int(iters_xla) == 9


def test_pg_solver_takes_the_kernel_on_a_cpu_only_where_it_applies():
  sub, z0 = _subproblem("conv", 0.05)
  penalty = _penalty("conv")

  def lowered(solver, sub=sub, z0=z0, penalty=penalty):
    return jax.jit(lambda s, z: solver.solve(penalty, s, z, 1)).lower(
        sub, z0).as_text()

  target = f"custom_call @{cpu_kernel.PG_TARGET}("
  assert target in lowered(ro.pg_solver())
  assert target not in lowered(ro.pg_solver(backend="xla"))
  assert target not in lowered(ro.pg_solver(residual_tol=1.0))
  assert target not in lowered(ro.pg_solver(block_bytes=1000))
  with jax.enable_x64(True):
    sub64 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), sub)
    assert target not in lowered(ro.pg_solver(), sub64,
                                 jnp.asarray(z0, jnp.float64))
  l1 = GroupNorm((), 1)
  assert target not in lowered(ro.pg_solver(), penalty=l1)
  # The platform is chosen at lowering: for a GPU, the XLA path.
  allow = [jax.export.DisabledSafetyCheck.custom_call(cpu_kernel.PG_TARGET)]
  solve = jax.jit(lambda s, z: ro.pg_solver().solve(penalty, s, z, 1))
  calls = {platform: jax.export.export(
      solve, platforms=[platform], disabled_checks=allow)(
          sub, z0).mlir_module().count(target)
           for platform in ("cpu", "cuda")}
  assert calls == {"cpu": 1, "cuda": 0}


@pytest.mark.parametrize("tau", [0.0, 0.05])
def test_pg_solver_matches_the_xla_path_through_ramda(tau):
  # Several RAMDA steps with the paper's rule (rtol above float32's
  # resolution), the kernel against the XLA path; τ = 0 is the closed form.
  rng = np.random.default_rng(0)
  params = {"w": jnp.asarray(rng.normal(size=(3, 3, 6, 5)), jnp.float32),
            "b": jnp.zeros(5, jnp.float32)}
  reg = ro.group_lasso(tau, {"w": (0, 1, 3), "b": None})

  def run(backend):
    opt = ro.ramda(1e-2, regularizer=reg,
                   solver=ro.pg_solver(rtol=1e-4, backend=backend))
    p, state, iters = params, opt.init(params), []
    update = jax.jit(opt.update)
    for n in range(6):
      r = np.random.default_rng(n)
      grads = jax.tree.map(
          lambda x: x + jnp.asarray(r.normal(size=x.shape), jnp.float32), p)
      updates, state = update(grads, state, p)
      p = jax.tree.map(jnp.add, p, updates)
      iters.append(state.inner_iters)
    return p, np.stack(iters)

  (p1, it1), (p2, it2) = run("kernel"), run("xla")
  np.testing.assert_array_equal(it1, it2)
  assert np.all(it1[:, 1] > 2) if tau else np.all(it1 == 0)  # leaves b, w
  for x, y in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_vmapped_solve_matches_each_solve():
  subs = [_subproblem("dense", 0.05, seed=s) for s in range(3)]
  stacked = jax.tree.map(lambda *x: jnp.stack(x), *subs)
  solver = ro.pg_solver(rtol=1e-4)
  solve = lambda s, z: solver.solve(_penalty("dense"), s, z, 1)
  thetas, iters = jax.jit(jax.vmap(solve))(*stacked)
  for k, (sub, z0) in enumerate(subs):
    theta, n = jax.jit(solve)(sub, z0)
    assert int(iters[k]) == int(n)
    np.testing.assert_array_equal(thetas[k], theta)

