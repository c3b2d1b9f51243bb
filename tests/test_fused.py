"""The fused step (ramda_optax.fused): every stage of a step run block by
block equals the step of whole leaves, in place."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ramda_optax as ro

GROUPS = {"conv": (0, 1, 3), "dense": (1,), "wide": (0,), "bias": None}


def _params():
  rng = np.random.default_rng(4)
  return {"conv": jnp.asarray(rng.normal(size=(3, 3, 5, 4))),
          "dense": jnp.asarray(rng.normal(size=(7, 3))),
          "wide": jnp.asarray(rng.normal(size=(2, 9))),
          "bias": jnp.asarray(rng.normal(size=(3,)))}


def run(opt, params, steps=5):
  """Params and state after ``steps`` steps of a consistent loss."""
  state = opt.init(params)
  update = jax.jit(opt.update)
  for _ in range(steps):
    grads = jax.tree.map(lambda w: w - 0.3 + 0.5 * jnp.sin(7 * w), params)
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
  return params, state


def _methods(solver):
  """Every optimizer of the family that takes a solver, with ``solver``
  (RAMDA with restarts and a momentum schedule, MADGRAD mode without a
  regularizer)."""
  reg = ro.group_lasso(0.05, GROUPS)
  return {
      "ramda": ro.ramda(1e-1, regularizer=reg, solver=solver,
                        momentum=optax.linear_schedule(0.5, 0.9, 4),
                        restart_steps=(2, 4)),
      "madgrad": ro.ramda(1e-1, solver=solver),
      "rmda": ro.rmda(1e-1, regularizer=reg, solver=solver),
      "proxgen": ro.proxgen(1e-2, regularizer=reg, solver=solver),
      "prox_ssi": ro.prox_ssi(1e-2, regularizer=reg, solver=solver),
  }


SLOW = pytest.mark.slow


@pytest.mark.parametrize("name", [
    "ramda", "proxgen", pytest.param("madgrad", marks=SLOW),
    pytest.param("rmda", marks=SLOW), pytest.param("prox_ssi", marks=SLOW)])
@pytest.mark.parametrize("solve", ["pg", "newton"])
@pytest.mark.parametrize("block_bytes", [
    100, pytest.param(8, marks=SLOW), pytest.param(10_000, marks=SLOW)])
def test_every_method_in_blocks_equals_whole_leaves(name, solve, block_bytes):
  """Statistics, dual average, solve and averaging run on blocks of whole
  groups (one group each, several with a remainder, a whole leaf per
  block) give the whole-leaf step's params and every buffer of the state
  to float64 rounding, and the same iteration counts: the PG solver with a
  fixed iteration count, Newton to convergence."""
  make = {"pg": lambda b: ro.pg_solver(6, 0.0, block_bytes=b),
          "newton": lambda b: ro.exact_solver(block_bytes=b)}[solve]
  with jax.enable_x64(True):
    whole = run(_methods(make(None))[name], _params())
    blocked = run(_methods(make(block_bytes))[name], _params())
  (params, state), (blocked_params, blocked_state) = whole, blocked
  iters, blocked_iters = (np.asarray(s.inner_iters)
                          for s in (state, blocked_state))
  whole = (params, state._replace(inner_iters=None))
  blocked = (blocked_params, blocked_state._replace(inner_iters=None))
  assert jax.tree.structure(whole) == jax.tree.structure(blocked)
  for w, b in zip(jax.tree.leaves(whole), jax.tree.leaves(blocked)):
    np.testing.assert_allclose(b, w, rtol=1e-12, atol=1e-12)
  if solve == "newton":
    np.testing.assert_array_equal(blocked_iters, iters)
  else:  # blocks stop once their decrease is below float64's eps
    assert np.all(blocked_iters <= iters)
  if name != "madgrad":
    assert int(ro.inner_iterations(blocked_state)["conv"]) > 0


def test_blocks_stop_as_the_blocked_solver_does():
  """With a tolerance, each block of the fused step stops on its own test,
  with its share of the leaf: the first step's θ̂ and iterations are the
  blocked solver's on the step's subproblem."""
  reg = ro.group_lasso(0.05, GROUPS)
  solver = ro.pg_solver(100, 1e-6, block_bytes=8)
  lr, eps = 1e-1, 1e-6
  with jax.enable_x64(True):
    params = _params()
    _, state = run(ro.ramda(lr, eps=eps, regularizer=reg, solver=solver),
                   params, steps=1)
    grads = jax.tree.map(lambda w: w - 0.3 + 0.5 * jnp.sin(7 * w), params)
    sub = ro.Subproblem(
        params, jax.tree.map(lambda g: lr * g, grads),
        jax.tree.map(lambda g: jnp.cbrt(lr * g * g) + eps, grads),
        jnp.asarray(lr * 0.05))
    theta, iters = ro.solvers.solve_tree(
        solver, reg.layout(params), sub, params, jnp.int32(1))
  for w, b in zip(jax.tree.leaves(theta), jax.tree.leaves(state.solution)):
    np.testing.assert_allclose(b, w, rtol=1e-10, atol=1e-12)
  assert ro.inner_iterations(state) == jax.tree.map(int, iters)
  assert int(iters["conv"]) > 2


def _compiled_step(opt, shape):
  """A jitted step of one leaf, params and state donated, compiled."""
  params = {"k": jnp.zeros(shape, jnp.float32)}

  def step(params, state, grads):
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  return jax.jit(step, donate_argnums=(0, 1)).lower(
      params, opt.init(params), params).compile()


# The XLA path's exact solver (the default backend runs the CPU kernel).
XLA_EXACT = functools.partial(ro.exact_solver, backend="xla")


@pytest.mark.parametrize("method,solver", [
    (ro.ramda, XLA_EXACT), (ro.proxgen, ro.pg_solver),
    *(pytest.param(m, s, marks=SLOW) for m, s in [
        (ro.ramda, ro.pg_solver), (ro.rmda, ro.pg_solver),
        (ro.rmda, XLA_EXACT), (ro.proxgen, XLA_EXACT),
        (ro.prox_ssi, ro.pg_solver), (ro.prox_ssi, XLA_EXACT)])])
def test_blocks_are_updated_in_place(method, solver):
  """Every optimizer's blocked step copies no leaf-sized buffer but the
  gradients (the update is built in them, and the step does not own
  them): the state is updated in place, block by block, and its scratch
  is one leaf and a few blocks, where the whole-leaf step on the XLA path
  keeps several leaf-sized temporaries."""
  shape = (3, 3, 32, 64)
  reg = ro.group_lasso(1e-4, {"k": (0, 1, 3)})
  blocked = _compiled_step(
      method(1e-2, regularizer=reg, solver=solver(block_bytes=4096)), shape)
  leaf_copy = re.compile(r"= f32\[3,3,32,64\]\S* copy\(")
  assert len(leaf_copy.findall(blocked.as_text())) == 1
  scratch = blocked.memory_analysis().temp_size_in_bytes
  whole = _compiled_step(
      method(1e-2, regularizer=reg, solver=solver(backend="xla")),
      shape).memory_analysis().temp_size_in_bytes
  assert scratch <= 4 * np.prod(shape) + 16 * 4096 < whole


def test_most_per_leaf_takes_each_leafs_most_count():
  """One count per leaf, from a count or from a kernel's counts per group
  of any length; int32, and empty for no leaves."""
  got = ro.fused.most_per_leaf([jnp.int32(3), jnp.array([1, 9, 2]),
                                jnp.array([4, 4]), jnp.int32(0)])
  assert got.dtype == jnp.int32
  np.testing.assert_array_equal(got, [3, 9, 4, 0])
  assert ro.fused.most_per_leaf([]).shape == (0,)


@pytest.mark.parametrize("last,latest,expected", [
    (30, None, 30),        # the first leaf of a step: its last stop
    (30, (45, 44), 30),    # the latest leaf's stop steady: its own
    (84, (45, 85), 44),    # fallen by 0.53: 84 × 45/85 = 44.47
    (40, (41, 20), 82),    # risen by 2.05
    (30, (40, 50), 24),    # by 0.8 exactly: outside the band, scaled
    (0, (45, 85), 45),     # no stop of its own yet: the latest's
    (30, (45, 0), 30),     # the latest had none before: its own
    (1, (1, 100), 1),      # never below one iteration
])
def test_stop_hint_scales_the_last_stop_by_the_latest_move(last, latest,
                                                            expected):
  """A leaf's hint is its last stop, scaled by the move of the stop of the
  leaf solved before it where that move leaves (0.8, 1.25), as the whole
  leaf's kernel scales its remembered stops."""
  hint = jax.jit(ro.fused.stop_hint)(last, latest)
  assert hint.dtype == jnp.int32 and int(hint) == expected
