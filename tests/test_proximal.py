"""ProxGen, ProxSSI, ProxSGD and RMDA against the float64 NumPy reference,
and RAMDA and RMDA with ℓ1 and the nuclear norm."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ramda_optax as ro
from tests import numpy_reference as ref
from tests.problems import GROUPS, follow, quadratic

NUM_STEPS = 50
KINDS = {k: None if a is None else ("group", a) for k, a in GROUPS.items()}


def _compare(opt, reference, grad_fn, check_iters=True, num_steps=NUM_STEPS):
  leaves = [k for k, axes in GROUPS.items() if axes is not None]
  history = follow(opt, reference, grad_fn, num_steps,
                   leaves if check_iters else ())
  structured = getattr(reference, "theta", reference.params)  # θ̂ for dual averaging
  assert 0 < float(ro.group_sparsity(structured, GROUPS)) < 1
  return sum(iters[k] for iters, _ in history for k in leaves)


@pytest.mark.parametrize("solver", ["pg", "exact"])
def test_proxgen_matches_reference(x64, solver):
  """The paper's PG rule (iteration counts included) and the default exact
  solution."""
  init, grad_fn = quadratic(seed=11, num_steps=NUM_STEPS)
  lr = optax.piecewise_constant_schedule(0.05, {30: 0.5})
  opt = ro.proxgen(lr, regularizer=ro.group_lasso(0.2, GROUPS),
                   solver=ro.pg_solver() if solver == "pg" else None)
  reference = ref.ProxGen(init, lambda n: float(lr(n)), strength=0.2,
                          kinds=KINDS, solver=solver)
  iters = _compare(opt, reference, grad_fn, check_iters=solver == "pg")
  if solver == "pg":
    assert iters > 2 * NUM_STEPS


def test_prox_ssi_matches_reference(x64):
  init, grad_fn = quadratic(seed=12, num_steps=NUM_STEPS)
  opt = ro.prox_ssi(0.05, regularizer=ro.group_lasso(0.2, GROUPS))
  reference = ref.ProxSSI(init, 0.05, strength=0.2, kinds=KINDS)
  _compare(opt, reference, grad_fn, check_iters=False)


def test_prox_sgd_matches_reference(x64):
  init, grad_fn = quadratic(seed=13, num_steps=NUM_STEPS)
  # The library's momentum is the decay of the average, the reference's the
  # weight on the new gradient (the paper's m).
  opt = ro.prox_sgd(0.1, momentum=0.7, regularizer=ro.group_lasso(0.3, GROUPS))
  reference = ref.ProxSGD(init, 0.1, momentum=0.3, strength=0.3, kinds=KINDS)
  _compare(opt, reference, grad_fn)


@pytest.mark.parametrize("restart_steps", [(), (20, 35)])
@pytest.mark.parametrize("momentum", [0.9, 0.0])
def test_rmda_matches_reference(x64, restart_steps, momentum):
  init, grad_fn = quadratic(seed=14, num_steps=NUM_STEPS)
  opt = ro.rmda(0.1, momentum=momentum, restart_steps=restart_steps,
                regularizer=ro.group_lasso(0.3, GROUPS))
  reference = ref.Rmda(init, 0.1, momentum, strength=0.3, kinds=KINDS,
                       restart_steps=restart_steps)
  _compare(opt, reference, grad_fn)


def test_l1_and_nuclear_under_proxgen_match_reference(x64):
  init, grad_fn = quadratic(seed=15, num_steps=20)
  strength = 3.0
  kinds = {"dense": ("nuclear",), "conv": ("l1",), "bias": None}
  mask = {"dense": True, "conv": True, "bias": False}
  solver = ro.pg_solver(max_iters=5, rtol=1e-3)
  for reg, key in ((ro.nuclear_norm(strength, {"dense": True, "conv": False, "bias": False}), "dense"),
                   (ro.l1(strength, {"dense": False, "conv": True, "bias": False}), "conv")):
    opt = ro.proxgen(0.05, regularizer=reg, solver=solver)
    reference = ref.ProxGen(
        init, 0.05, strength=strength, kinds={key: kinds[key]},
        nuclear_max_iters=5, nuclear_rtol=1e-3)
    params = {k: jnp.asarray(v) for k, v in init.items()}
    state = opt.init(params)
    for n in range(20):
      u, state = jax.jit(opt.update)(
          jax.tree.map(jnp.asarray, grad_fn(params, n)), state, params)
      params = optax.apply_updates(params, u)
      expected = reference.step(grad_fn(reference.params, n))
      for k in mask:
        np.testing.assert_allclose(params[k], expected[k], rtol=1e-9, atol=1e-9)
      if key == "dense":
        assert int(ro.inner_iterations(state)["dense"]) == reference.iters["dense"]
    if key == "conv":
      assert 0.1 < float(ro.unstructured_sparsity(params["conv"])) < 1
    else:
      sigma = np.linalg.svd(np.asarray(params["dense"]), compute_uv=False)
      assert 0 < np.sum(sigma < 1e-12) < len(sigma)


@pytest.mark.parametrize("method", ["ramda", "rmda"])
@pytest.mark.parametrize("kind", ["l1", "nuclear"])
def test_dual_averaging_with_l1_and_nuclear_match_reference(x64, method, kind):
  """RAMDA (nuclear: PG with max_iters 5, rtol 1e-3, as the paper) and RMDA
  (closed-form prox) with ℓ1 and the nuclear norm on the dense and conv
  leaves."""
  num_steps = 20
  init, grad_fn = quadratic(seed=31 if method == "ramda" else 32,
                            num_steps=num_steps)
  strength = {("ramda", "l1"): 0.05, ("ramda", "nuclear"): 1.0,
              ("rmda", "l1"): 0.5, ("rmda", "nuclear"): 3.0}[method, kind]
  mask = {"dense": True, "conv": True, "bias": False}
  reg = (ro.l1 if kind == "l1" else ro.nuclear_norm)(strength, mask)
  kinds = {"dense": (kind,), "conv": (kind,)}
  if method == "ramda":
    opt = ro.ramda(0.3, momentum=0.9, regularizer=reg,
                   solver=ro.pg_solver(max_iters=5, rtol=1e-3))
    reference = ref.Ramda(init, 0.3, 0.9, strength=strength, kinds=kinds)
  else:
    opt = ro.rmda(0.1, momentum=0.9, regularizer=reg)
    reference = ref.Rmda(init, 0.1, 0.9, strength=strength, kinds=kinds)
  # ℓ1's closed form counts one iteration, as the reference's prox.
  history = follow(opt, reference, grad_fn, num_steps, kinds)
  counts = [iters[k] for iters, _ in history for k in kinds]
  if kind == "l1":
    assert set(counts) == {1}
  if method == "ramda" and kind == "nuclear":
    assert len(set(counts)) > 1  # the rtol rule stops before the cap at times
  # θ̂ is structured, not entirely: exact zeros, or zero singular values.
  if kind == "l1":
    zeros = [np.mean(reference.theta[k] == 0) for k in kinds]
  else:
    zeros = [np.mean(np.linalg.svd(ref.matrix_view(reference.theta[k]),
                                   compute_uv=False) < 1e-12) for k in kinds]
  assert 0 < max(zeros) < 1 and min(zeros) < 1


def test_ramda_with_l1_is_closed_form(x64):
  init, grad_fn = quadratic(seed=16, num_steps=10)
  params = {k: jnp.asarray(v) for k, v in init.items()}
  opt = ro.ramda(0.3, momentum=0.0, regularizer=ro.l1(0.1, {"dense": True, "conv": True, "bias": False}))
  state = opt.init(params)
  for n in range(10):
    u, state = opt.update(jax.tree.map(jnp.asarray, grad_fn(params, n)), state, params)
    params = optax.apply_updates(params, u)
  # With momentum 0, W = θ̂ = soft(W⁰ − V/P, τ/P) elementwise: one
  # closed-form evaluation.
  p = jnp.exp(jnp.log(state.precond[0]["conv"]) / 3) + state.damping
  y = state.dual.anchor["conv"] - state.dual.grad_sum["conv"] / p
  expected = jnp.sign(y) * jnp.maximum(jnp.abs(y) - state.threshold / p, 0)
  np.testing.assert_allclose(params["conv"], expected, rtol=1e-12, atol=1e-14)
  assert int(ro.inner_iterations(state)["conv"]) == 1
  assert 0 < float(ro.unstructured_sparsity(params["conv"])) < 1


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: ro.proxgen(-1.0), "learning_rate"),
        (lambda: ro.proxgen(0.1, b1=1.0), "b1"),
        (lambda: ro.proxgen(0.1, b2=-0.1), "b2"),
        (lambda: ro.prox_ssi(0.1, eps=-1.0), "eps"),
        (lambda: ro.prox_sgd(0.1, momentum=1.0), "momentum"),
        (lambda: ro.rmda(0.1, momentum=1.0), "momentum"),
        (lambda: ro.rmda(-0.1), "learning_rate"),
        (lambda: ro.l1(-0.1), "strength"),
        (lambda: ro.nuclear_norm(-0.1), "strength"),
        (lambda: ro.pg_solver(residual_tol=0.0), "residual_tol"),
        (lambda: ro.exact_solver(max_iters=0), "max_iters"),
    ],
)
def test_bad_input_raises(make, name):
  with pytest.raises(ValueError, match=name):
    make()


def test_unsupported_combinations_raise_at_init():
  params = {"w": jnp.ones((4, 3)), "b": jnp.ones(3)}
  with pytest.raises(ValueError, match=r"nuclear_norm.*\['b'\].*2 dimensions"):
    ro.proxgen(0.1, regularizer=ro.nuclear_norm(0.1, {"w": True, "b": True})).init(params)
  with pytest.raises(ValueError, match="exact_solver"):
    ro.ramda(0.1, regularizer=ro.nuclear_norm(0.1), solver=ro.exact_solver()).init(params)
  with pytest.raises(ValueError, match="exact_solver"):
    ro.prox_ssi(0.1, regularizer=ro.nuclear_norm(0.1)).init(params)
  with pytest.raises(ValueError, match="mask"):
    ro.l1(0.1, {"w": True}).layout(params)
  # Without a mask, the nuclear norm regularizes the matrices only.
  assert ro.nuclear_norm(0.1).layout(params) == (None, ro.NuclearNorm())


@pytest.mark.parametrize("make", [
    lambda reg: ro.ramda(1e-2, regularizer=reg),
    lambda reg: ro.rmda(1e-2, regularizer=reg),
    lambda reg: ro.proxgen(1e-2, regularizer=reg),
    lambda reg: ro.prox_ssi(1e-2, regularizer=reg),
    lambda reg: ro.prox_sgd(1e-2, regularizer=reg),
])
def test_params_and_state_can_be_donated(make):
  params = {"w": jnp.ones((4, 3)), "b": jnp.ones(3)}
  opt = make(ro.group_lasso(0.1, {"w": (1,), "b": None}))

  def step(params, state):
    u, state = opt.update(jax.tree.map(lambda p: p - 0.5, params), state, params)
    return optax.apply_updates(params, u), state

  step = jax.jit(step, donate_argnums=(0, 1))
  state = opt.init(params)
  for _ in range(2):
    params, state = step(params, state)
  assert all(jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params))
