"""RAMDA against the float64 NumPy reference, MADGRAD and optax wrappers."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ramda_optax as ro
from tests import numpy_reference as ref
from tests.problems import GROUPS, follow, quadratic

NUM_STEPS = 50


def _run_library(opt, init, grad_fn, num_steps, dtype, iterations=True):
  params = {k: jnp.asarray(v, dtype) for k, v in init.items()}
  state = opt.init(params)
  step = jax.jit(opt.update)
  history = []
  for n in range(num_steps):
    grads = {k: jnp.asarray(g, dtype) for k, g in grad_fn(params, n).items()}
    updates, state = step(grads, state, params)
    params = optax.apply_updates(params, updates)
    iters = ro.inner_iterations(state) if iterations else None
    history.append((params, jax.device_get(iters)))
  return history, state


@pytest.mark.parametrize("momentum", [0.9, 0.0])
@pytest.mark.parametrize("restart_steps", [(), (20, 35)])
def test_trajectory_matches_numpy_reference(x64, momentum, restart_steps):
  init, grad_fn = quadratic(seed=1, num_steps=NUM_STEPS)
  lr = optax.piecewise_constant_schedule(0.3, {30: 0.5})
  strength = 0.05
  opt = ro.ramda(
      lr,
      momentum=momentum,
      eps=1e-6,
      regularizer=ro.group_lasso(strength, GROUPS),
      solver=ro.pg_solver(),
      restart_steps=restart_steps,
      eps_decay=0.1,
  )
  history, _ = _run_library(opt, init, grad_fn, NUM_STEPS, jnp.float64)
  reference = ref.Ramda(
      init,
      learning_rate=lambda n: float(lr(n)),
      momentum=momentum,
      eps=1e-6,
      strength=strength,
      groups=GROUPS,
      restart_steps=restart_steps,
      eps_decay=0.1,
  )
  total_iters = 0
  for n, (params, iters) in enumerate(history):
    expected = reference.step(grad_fn(reference.params, n))
    for k in expected:
      np.testing.assert_allclose(
          params[k], expected[k], rtol=1e-9, atol=1e-9, err_msg=f"{k}@{n}"
      )
      assert int(iters[k]) == reference.iters[k], (k, n)
    total_iters += sum(reference.iters.values())
  # The run exercises the solver: several iterations and some zero groups.
  assert total_iters > 3 * NUM_STEPS
  assert 0 < float(ro.group_sparsity(reference.theta, GROUPS)) < 1


@pytest.mark.parametrize("restart_steps", [(), (20, 35)])
def test_default_solver_is_exact_on_group_norms(x64, restart_steps):
  """With no solver given, θ̂ and W follow the reference whose group
  subproblems are solved to machine precision (bisection), and the default
  takes fewer passes than the paper's PG rule takes iterations."""
  init, grad_fn = quadratic(seed=1, num_steps=NUM_STEPS)
  make = lambda solver: ro.ramda(
      0.3, momentum=0.9, regularizer=ro.group_lasso(0.05, GROUPS),
      restart_steps=restart_steps, solver=solver)
  reference = ref.Ramda(init, 0.3, 0.9, strength=0.05, groups=GROUPS,
                        restart_steps=restart_steps, solver="exact")
  history = follow(make(None), reference, grad_fn, NUM_STEPS)
  assert 0 < float(ro.group_sparsity(reference.theta, GROUPS)) < 1
  leaves = [k for k, axes in GROUPS.items() if axes is not None]
  passes = sum(iters[k] for iters, _ in history for k in leaves)
  paper = ref.Ramda(init, 0.3, 0.9, strength=0.05, groups=GROUPS,
                    restart_steps=restart_steps)
  pg = follow(make(ro.pg_solver()), paper, grad_fn, NUM_STEPS, leaves)
  assert 0 < passes < sum(iters[k] for iters, _ in pg for k in leaves)


def test_default_solver_falls_back_to_pg_for_other_penalties(x64):
  """The nuclear norm under the default: the paper's PG (100 iterations at
  most, rtol 1e-8) warm-started at the previous θ̂, as the reference."""
  init, grad_fn = quadratic(seed=31, num_steps=20)
  reg = ro.nuclear_norm(1.0, {"dense": True, "conv": True, "bias": False})
  kinds = {"dense": ("nuclear",), "conv": ("nuclear",)}
  reference = lambda: ref.Ramda(init, 0.3, 0.9, strength=1.0, kinds=kinds,
                                nuclear_max_iters=100, nuclear_rtol=1e-8,
                                solver="exact")
  history = follow(ro.ramda(0.3, momentum=0.9, regularizer=reg), reference(),
                   grad_fn, 20, list(kinds))
  assert max(iters["dense"] for iters, _ in history) > 1
  assert ro.default_solver() == ro.exact_solver(backend="kernel",
                                                fallback=ro.pg_solver())
  # With blocks for its group norms, the exact solver hands the nuclear
  # norm's leaves (one block each) to the fallback all the same.
  blocked = ro.exact_solver(block_bytes=64, fallback=ro.pg_solver())
  follow(ro.ramda(0.3, momentum=0.9, regularizer=reg, solver=blocked),
         reference(), grad_fn, 20, list(kinds))


def test_exact_solver_fallback_is_checked():
  params = {"w": jnp.ones((4, 3))}
  with pytest.raises(TypeError, match="fallback"):
    ro.exact_solver(fallback=1.0)
  # The fallback's own limits apply to the leaves it solves.
  solver = ro.exact_solver(fallback=ro.exact_solver())
  with pytest.raises(ValueError, match="exact_solver"):
    ro.ramda(0.1, regularizer=ro.nuclear_norm(0.1), solver=solver).init(params)


@pytest.mark.slow
class JitAndEagerTest(chex.TestCase):
  """The update follows the reference jitted and run op by op alike."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_trajectory_matches_numpy_reference(self):
    num_steps, restart_steps = 6, (3,)
    init, grad_fn = quadratic(seed=3, num_steps=num_steps)
    opt = ro.ramda(0.3, momentum=0.9, regularizer=ro.group_lasso(0.3, GROUPS),
                   solver=ro.pg_solver(), restart_steps=restart_steps)
    reference = ref.Ramda(init, 0.3, 0.9, strength=0.3, groups=GROUPS,
                          restart_steps=restart_steps)
    update = self.variant(opt.update)
    with jax.enable_x64(True):
      params = {k: jnp.asarray(v) for k, v in init.items()}
      state = opt.init(params)
      for n in range(num_steps):
        grads = jax.tree.map(jnp.asarray, grad_fn(params, n))
        updates, state = update(grads, state, params)
        params = optax.apply_updates(params, updates)
        expected = reference.step(grad_fn(reference.params, n))
        chex.assert_trees_all_close(params, expected, rtol=1e-9, atol=1e-9)
        iters = jax.device_get(ro.inner_iterations(state))
        assert {k: int(iters[k]) for k in expected} == reference.iters, n
    assert 0 < float(ro.group_sparsity(reference.theta, GROUPS)) < 1


@pytest.mark.parametrize("regularizer", [None, ro.group_lasso(0.0, GROUPS)])
def test_unregularized_equals_optax_madgrad(regularizer):
  init, grad_fn = quadratic(seed=2, num_steps=NUM_STEPS)
  lr, eps, momentum = 0.05, 1e-6, 0.9
  # optax's MADGRAD adds eps to the learning rate; RAMDA does not.
  ours, _ = _run_library(
      ro.ramda(lr + eps, momentum=momentum, eps=eps, regularizer=regularizer),
      init, grad_fn, NUM_STEPS, jnp.float32,
  )
  theirs, _ = _run_library(
      optax.contrib.madgrad(lr, momentum=momentum, eps=eps),
      init, grad_fn, NUM_STEPS, jnp.float32, iterations=False,
  )
  for (p, iters), (q, _) in zip(ours, theirs):
    for k in p:
      np.testing.assert_allclose(p[k], q[k], rtol=2e-5, atol=2e-6)
      assert int(iters[k]) == 0


def _params_and_grads(seed=0, dtype=jnp.float32):
  init, grad_fn = quadratic(seed=seed, num_steps=5)
  params = {k: jnp.asarray(v, dtype) for k, v in init.items()}
  return params, grad_fn


def test_chain_after_clipping_equals_manual_clipping(x64):
  params, grad_fn = _params_and_grads(dtype=jnp.float64)
  make = lambda: ro.ramda(0.1, regularizer=ro.group_lasso(0.05, GROUPS))
  chained = optax.chain(optax.clip_by_global_norm(1.0), make())
  plain = make()
  s1, s2 = chained.init(params), plain.init(params)
  p1 = p2 = params
  for n in range(5):
    g1 = jax.tree.map(jnp.asarray, grad_fn(p1, n))
    g2 = jax.tree.map(jnp.asarray, grad_fn(p2, n))
    scale = jnp.minimum(1.0, 1.0 / optax.tree.norm(g2))
    u1, s1 = jax.jit(chained.update)(g1, s1, p1)
    u2, s2 = jax.jit(plain.update)(
        jax.tree.map(lambda g: g * scale, g2), s2, p2
    )
    p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
  chex.assert_trees_all_close(p1, p2, rtol=1e-12, atol=1e-12)


def test_no_recompilation_and_inject_hyperparams_matches_plain(x64):
  init, grad_fn = quadratic(seed=3, num_steps=6)
  params = {k: jnp.asarray(v) for k, v in init.items()}
  lr = optax.linear_schedule(0.2, 0.05, 6)
  strength = optax.linear_schedule(0.01, 0.1, 6)
  injected = optax.inject_hyperparams(ro.ramda)(
      learning_rate=lr,
      momentum=0.9,
      regularizer=ro.group_lasso(strength, GROUPS),
      restart_steps=(3,),
  )
  plain = ro.ramda(
      lr, momentum=0.9, regularizer=ro.group_lasso(strength, GROUPS),
      restart_steps=(3,),
  )
  traces = []

  def make_step(opt):
    @jax.jit
    def step(params, state, grads):
      traces.append(opt)
      updates, state = opt.update(grads, state, params)
      return optax.apply_updates(params, updates), state
    return step

  p1 = p2 = params
  s1, s2 = injected.init(params), plain.init(params)
  step1, step2 = make_step(injected), make_step(plain)
  for n in range(6):
    p1, s1 = step1(p1, s1, jax.tree.map(jnp.asarray, grad_fn(p1, n)))
    p2, s2 = step2(p2, s2, jax.tree.map(jnp.asarray, grad_fn(p2, n)))
  assert len(traces) == 2  # one trace per optimizer, none on later steps
  assert float(s1.hyperparams["learning_rate"]) == pytest.approx(float(lr(5)))
  chex.assert_trees_all_close(p1, p2, rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(
      ro.subproblem_solution(s1, p1)["conv"],
      ro.subproblem_solution(s2, p2)["conv"], rtol=1e-12, atol=1e-12,
  )


def test_partition_matches_ramda_on_its_leaves():
  params, grad_fn = _params_and_grads(seed=4)
  labels = {"dense": "ramda", "conv": "ramda", "bias": "adam"}
  reg = ro.group_lasso(0.05, GROUPS)
  partitioned = optax.partition(
      {"ramda": ro.ramda(0.1, regularizer=reg), "adam": optax.adam(1e-2)},
      labels,
  )
  sub = lambda t: {k: t[k] for k in ("dense", "conv")}
  alone = ro.ramda(
      0.1, regularizer=ro.group_lasso(0.05, {"dense": (1,), "conv": (0, 1, 3)})
  )
  s1, s2 = partitioned.init(params), alone.init(sub(params))
  p1, p2 = params, sub(params)
  for n in range(5):
    g = jax.tree.map(jnp.asarray, grad_fn(p1, n))
    u1, s1 = jax.jit(partitioned.update)(g, s1, p1)
    u2, s2 = jax.jit(alone.update)(sub(g), s2, p2)
    p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
  for k in p2:
    np.testing.assert_allclose(p1[k], p2[k], rtol=1e-6, atol=1e-7)
  theta = ro.subproblem_solution(s1, p1)
  np.testing.assert_array_equal(theta["bias"], p1["bias"])  # filled in
  np.testing.assert_array_equal(
      theta["conv"] == 0, ro.subproblem_solution(s2, p2)["conv"] == 0
  )
  assert isinstance(ro.inner_iterations(s1)["bias"], optax.MaskedNode)


def test_subproblem_solution_matches_reference_theta(x64):
  init, grad_fn = quadratic(seed=5, num_steps=20)
  opt = ro.ramda(0.3, momentum=0.9, regularizer=ro.group_lasso(0.05, GROUPS),
                 solver=ro.pg_solver())
  history, state = _run_library(opt, init, grad_fn, 20, jnp.float64)
  reference = ref.Ramda(init, 0.3, 0.9, strength=0.05, groups=GROUPS)
  for n in range(20):
    reference.step(grad_fn(reference.params, n))
  # The state keeps the last step's θ̂ (params only fill leaves no state
  # covers): the reference's θ̂ to float64 rounding.
  theta = ro.subproblem_solution(state, history[-2][0])
  for k in init:
    np.testing.assert_allclose(theta[k], reference.theta[k], rtol=1e-9, atol=1e-9)
  # Without params, the same θ̂: the zero pattern of the exact minimiser
  # (exact screening), values as close to it as the PG iterations get on
  # this ill-conditioned metric.
  theta = ro.subproblem_solution(state)
  exact = {
      k: ref.exact_group_solution(
          init[k], reference.V[k], np.cbrt(reference.U[k]) + 1e-6,
          reference.alpha * 0.05, GROUPS[k])
      for k in ("dense", "conv")
  }
  for k in exact:
    np.testing.assert_array_equal(theta[k] == 0, exact[k] == 0)
    np.testing.assert_allclose(theta[k], exact[k], atol=5e-3)
  assert 0 < float(ro.group_sparsity(theta, GROUPS)) < 1


def test_momentum_zero_gives_params_equal_to_theta():
  params, grad_fn = _params_and_grads(seed=6)
  opt = ro.ramda(0.1, momentum=0.0, regularizer=ro.group_lasso(0.2, GROUPS))
  state = opt.init(params)
  for n in range(5):
    u, state = opt.update(jax.tree.map(jnp.asarray, grad_fn(params, n)),
                          state, params)
    params = optax.apply_updates(params, u)
  theta = ro.subproblem_solution(state, params)
  assert 0 < float(ro.group_sparsity(params, GROUPS)) < 1
  for k in params:
    np.testing.assert_array_equal(params[k] == 0, theta[k] == 0)


@pytest.mark.parametrize(
    "name", ["ramda", "rmda", "proxgen", "prox_ssi", "prox_sgd"]
)
def test_update_without_params_raises_naming_the_optimizer(name):
  params, _ = _params_and_grads()
  opt = getattr(ro, name)(0.1)
  with pytest.raises(ValueError, match=f"^{name} needs params"):
    opt.update(params, opt.init(params))


def test_proximal_solution_needs_params():
  params, grad_fn = _params_and_grads()
  grads = jax.tree.map(jnp.asarray, grad_fn(params, 0))
  opt = ro.proxgen(0.1, regularizer=ro.group_lasso(0.1, GROUPS))
  updates, state = opt.update(grads, opt.init(params), params)
  with pytest.raises(ValueError, match="pass params"):
    ro.subproblem_solution(state)
  new_params = optax.apply_updates(params, updates)
  theta = ro.subproblem_solution(state, new_params)
  assert all(theta[k] is new_params[k] for k in params)


def test_subproblem_solution_without_ramda_state_raises():
  params, _ = _params_and_grads()
  with pytest.raises(ValueError, match="dual-averaging state"):
    ro.subproblem_solution(optax.adam(1e-3).init(params))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"learning_rate": -0.1}, "learning_rate"),
        ({"eps": -1e-6}, "eps"),
        ({"momentum": 1.0}, "momentum"),
        ({"momentum": -0.1}, "momentum"),
        ({"eps_decay": 0.0}, "eps_decay"),
        ({"restart_steps": (5, 3)}, "restart_steps"),
        ({"restart_steps": (0,)}, "restart_steps"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, name):
  kwargs = {"learning_rate": 0.1} | kwargs
  lr = kwargs.pop("learning_rate")
  with pytest.raises(ValueError, match=name):
    ro.ramda(lr, **kwargs)


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: ro.group_lasso(-1.0, GROUPS), "strength"),
        (lambda: ro.pg_solver(max_iters=0), "max_iters"),
        (lambda: ro.pg_solver(rtol=-1e-3), "rtol"),
    ],
)
def test_bad_regularizer_or_solver_raises(make, name):
  with pytest.raises(ValueError, match=name):
    make()


@pytest.mark.parametrize(
    "groups, message",
    [
        ({"dense": (2,), "conv": (0, 1, 3), "bias": None}, "out of range"),
        ({"dense": (1,), "conv": (0, 1, 3)}, "does not match"),
        ({"dense": (1,), "conv": (0, 1, 1), "bias": None}, "repeated"),
    ],
)
def test_bad_groups_raise_at_init(groups, message):
  params, _ = _params_and_grads()
  opt = ro.ramda(0.1, regularizer=ro.group_lasso(0.1, groups))
  with pytest.raises(ValueError, match=f"groups.*{message}"):
    opt.init(params)


def test_subproblem_zero_groups_is_theta_hats_pattern(x64):
  init, grad_fn = quadratic(seed=5, num_steps=20)
  opt = ro.ramda(0.3, momentum=0.9, regularizer=ro.group_lasso(0.05, GROUPS),
                 solver=ro.pg_solver())
  history, state = _run_library(opt, init, grad_fn, 20, jnp.float64)
  zero = jax.jit(lambda s: ro.subproblem_zero_groups(s, GROUPS))(state)
  theta = ro.subproblem_solution(state, history[-2][0])
  assert zero["bias"] is None
  for k in ("dense", "conv"):
    np.testing.assert_array_equal(zero[k], np.all(theta[k] == 0, axis=GROUPS[k]))
  assert 0 < sum(int(zero[k].sum()) for k in ("dense", "conv"))
