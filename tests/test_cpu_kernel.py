"""The compiled CPU kernel (ramda_optax.cpu_kernel) of RAMDA, ProxGen and
ProxSSI against the XLA path, the float64 reference and the subproblem's
optimality conditions."""

import math
import re
import shutil
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ramda_optax as ro
from ramda_optax import cpu_kernel
from ramda_optax import fused
from tests import numpy_reference as ref

SHAPES = {"conv": (3, 3, 13, 7), "dense": (11, 6), "bias": (7,),
          "row": (1, 9, 5)}
GROUPS = {"conv": (0, 1, 3), "dense": (1,), "bias": None, "row": (0, 2)}

pytestmark = pytest.mark.skipif(
    shutil.which("c++") is None, reason="no C++ compiler to build the kernel")


def _problem(seed=0, noise=0.3):
  """float32 params and a gradient function around a group-sparse target."""
  rng = np.random.default_rng(seed)
  init, target = {}, {}
  for k, shape in SHAPES.items():
    t = rng.normal(size=shape)
    if GROUPS[k] is not None:
      keep = [1 if i in GROUPS[k] else s for i, s in enumerate(shape)]
      t = t * (rng.random(keep) < 0.5)
    init[k], target[k] = rng.normal(size=shape), t

  def grad_fn(params, n):
    r = np.random.default_rng(1000 + n)
    return {k: np.asarray(params[k], np.float64) - target[k]
            + noise * r.normal(size=SHAPES[k]) for k in SHAPES}

  return init, grad_fn


def _run(opt, init, grad_fn, steps, dtype=jnp.float32):
  params = {k: jnp.asarray(v, dtype) for k, v in init.items()}
  state = opt.init(params)
  update = jax.jit(opt.update)
  history = []
  for n in range(steps):
    grads = {k: jnp.asarray(g, dtype) for k, g in grad_fn(params, n).items()}
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
    history.append((params, state))
  return history


PROXIMAL = {"proxgen": ro.proxgen, "prox_ssi": ro.prox_ssi}
# λ with zero and nonzero groups over 15 steps at η = 0.1 (ProxSSI's metric,
# without bias correction, is small early on).
STRENGTH = {"proxgen": 1.0, "prox_ssi": 0.1}


def _assert_same_steps(kernel, xla, zeros, atol=2e-6):
  """Every float of params and state within float32 rounding, Newton
  passes within one, the same zero groups (of ``zeros(params, state)``)."""
  for n, ((p1, s1), (p2, s2)) in enumerate(zip(kernel, xla)):
    for a, b in zip(jax.tree.leaves((p1, s1)), jax.tree.leaves((p2, s2))):
      if jnp.issubdtype(a.dtype, jnp.floating):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=atol, err_msg=f"@{n}")
    np.testing.assert_allclose(s1.inner_iters, s2.inner_iters, atol=1)
    for k, axes in GROUPS.items():
      if axes is not None:
        np.testing.assert_array_equal(jnp.all(zeros(p1, s1)[k] == 0, axes),
                                      jnp.all(zeros(p2, s2)[k] == 0, axes))


def _check_structure_and_passes(history, structured):
  """The run has zero and nonzero groups, and Newton passes on each
  regularized leaf only."""
  sparsity = [float(ro.group_sparsity(structured(p, s), GROUPS))
              for p, s in history]
  assert 0 < max(sparsity) < 1
  passes = sum(np.asarray(state.inner_iters) for _, state in history)
  for i, k in enumerate(sorted(SHAPES)):  # jax.tree.leaves order
    assert (passes[i] > 0) == (GROUPS[k] is not None), k


@pytest.mark.parametrize("method", ["ramda", "proxgen", "prox_ssi"])
def test_unpenalized_leaves_match_the_xla_path(method):
  """Without a regularizer (MADGRAD mode, Adam) every leaf runs in the
  kernel's closed form θ̂ = a − v/P, as XLA computes it (RAMDA with
  restarts)."""
  init, grad_fn = _problem(seed=8)
  make = {
      "ramda": lambda solver: ro.ramda(0.3, restart_steps=(4, 9),
                                       solver=solver),
      "proxgen": lambda solver: ro.proxgen(0.1, solver=solver),
      "prox_ssi": lambda solver: ro.prox_ssi(0.1, solver=solver),
  }[method]
  kernel, xla = (make(ro.exact_solver(backend=b)) for b in ("cpu", "xla"))
  params = {k: jnp.asarray(v, jnp.float32) for k, v in init.items()}
  hlo = jax.jit(kernel.update).lower(params, kernel.init(params),
                                     params).as_text()
  assert hlo.count(f"custom_call @{cpu_kernel.STEP_TARGET}(") == len(SHAPES)
  # θ̂ = W⁰ − V/P cancels where θ̂ is small: rounding of O(1) operands.
  _assert_same_steps(_run(kernel, init, grad_fn, 12),
                     _run(xla, init, grad_fn, 12), lambda p, s: p, atol=1e-5)


def test_proxgen_without_a_regularizer_is_adam():
  """ProxGen's kernel step with λ = 0 gives optax.adam's parameters."""
  init, grad_fn = _problem(seed=2)
  ours = _run(ro.proxgen(0.05), init, grad_fn, 20)
  theirs = _run(optax.adam(0.05), init, grad_fn, 20)
  for (p, _), (q, _) in zip(ours, theirs):
    for k in SHAPES:
      np.testing.assert_allclose(p[k], q[k], rtol=1e-5, atol=1e-6)


def _assert_optimal(theta, anchor, linear, metric, tau):
  """θ on each group-lasso leaf minimises <v, θ − a> + ½‖θ − a‖²_P +
  τ Σ √|g| ‖θ_g‖: a zero group has ‖P a − v‖ <= κ, a nonzero one
  P(θ − a) + v + κ θ/‖θ‖ = 0 (to float32 accuracy); some groups are
  nonzero."""
  checked = 0
  for k, axes in GROUPS.items():
    if axes is None:
      continue
    th, a, v, p = (np.asarray(x[k], np.float64)
                   for x in (theta, anchor, linear, metric))
    kappa = tau * np.sqrt(np.prod([th.shape[i] for i in axes]))
    norm = np.sqrt(np.sum(th**2, axis=axes, keepdims=True))
    b_norm = np.sqrt(np.sum((p * a - v)**2, axis=axes, keepdims=True))
    zero = norm == 0
    assert np.all(b_norm[zero] <= kappa * (1 + 1e-5)), k
    grad = p * (th - a) + v + kappa * th / np.where(zero, 1, norm)
    scale = np.max(np.abs(v)) + np.max(np.abs(p * a))
    assert np.max(np.abs(np.where(zero, 0, grad))) < 1e-5 * scale, k
    checked += int(np.sum(~zero))
  assert checked > 0


@pytest.mark.parametrize("gpu", [True, False])
def test_steps_lowered_for_a_gpu_take_the_pallas_kernel(gpu, monkeypatch):
  """The kernel is chosen when the step is lowered: for a CPU the default
  optimizers' lowered steps call the C++ kernel, for a GPU (lowered here
  without one, traced as where a GPU is the default backend) the Pallas
  kernel of the same step on each group-lasso leaf, and no kernel without
  a regularizer (one XLA fusion). Traced where no GPU is in use, the step
  lowered for a GPU is XLA's."""
  monkeypatch.setattr(fused, "gpu_in_use", lambda: gpu)
  params = {"w": jnp.ones((4, 3), jnp.float32), "b": jnp.zeros(3, jnp.float32)}
  reg = ro.group_lasso(0.01, {"w": (1,), "b": None})
  triton = "__gpu$xla.gpu.triton"
  allow = [jax.export.DisabledSafetyCheck.custom_call(name)
           for name in (cpu_kernel.STEP_TARGET, triton)]
  for opt, regularized in ((ro.ramda(0.1, regularizer=reg), True),
                           (ro.proxgen(0.1, regularizer=reg), True),
                           (ro.prox_ssi(0.1, regularizer=reg), True),
                           (ro.ramda(0.1), False)):
    calls = {}
    for platform in ("cpu", "cuda"):
      module = jax.export.export(
          jax.jit(opt.update), platforms=[platform], disabled_checks=allow)(
              params, opt.init(params), params).mlir_module()
      calls[platform] = (module.count(f"custom_call @{cpu_kernel.STEP_TARGET}("),
                         module.count(f"custom_call @{triton}("))
    assert calls == {"cpu": (2, 0), "cuda": (0, int(regularized and gpu))}


@pytest.mark.parametrize("shape,programs,warps", [
    ((512, 10), 256, 1),  # the VGG19 head: 256 programs of 2 groups
    ((3, 3, 512, 512), 512, 4),  # one group of 9 × 512 a program
])
def test_default_step_lowered_for_a_gpu_takes_the_default_blocks(
    shape, programs, warps, monkeypatch):
  """Where the solver names no block size, the default step's kernel
  spreads a leaf of many groups over at least 256 programs, with about 64
  entries of each array per thread."""
  monkeypatch.setattr(fused, "gpu_in_use", lambda: True)
  params = {"w": jnp.ones(shape, jnp.float32)}
  axes = (1,) if len(shape) == 2 else (0, 1, 3)
  opt = ro.ramda(0.1, regularizer=ro.group_lasso(0.01, {"w": axes}))
  module = jax.export.export(
      jax.jit(opt.update), platforms=["cuda"],
      disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(
          "__gpu$xla.gpu.triton")])(
              params, opt.init(params), params).mlir_module()
  assert re.findall(r"grid_x = (\d+)", module) == [str(programs)]
  assert re.findall(r"num_warps = (\d+)", module) == [str(warps)]


def test_default_step_lowered_for_a_gpu_reduces_the_counts_once(monkeypatch):
  """The kernels of a step lowered for a GPU give their blocks' iteration
  counts unreduced: one reduction takes every leaf's most (an XLA
  reduction per leaf is a kernel launch per leaf on a GPU)."""
  monkeypatch.setattr(fused, "gpu_in_use", lambda: True)
  params = {"a": jnp.ones((3, 3, 8, 16)), "b": jnp.ones((3, 3, 16, 4)),
            "c": jnp.ones((12, 10)), "bias": jnp.ones((10,))}
  groups = {"a": (0, 1, 3), "b": (0, 1, 3), "c": (1,), "bias": None}
  opt = ro.ramda(0.1, regularizer=ro.group_lasso(0.01, groups))
  module = jax.export.export(
      jax.jit(opt.update), platforms=["cuda"],
      disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(
          "__gpu$xla.gpu.triton")])(
              params, opt.init(params), params).mlir_module()
  assert module.count("custom_call @__gpu$xla.gpu.triton") == 3
  reductions = re.findall(r"stablehlo\.reduce\(.*maximum.*xi32>", module)
  assert len(reductions) == 1, reductions


def test_kernel_is_built():
  assert cpu_kernel.available(), cpu_kernel.library()[1]


@pytest.mark.parametrize("block_bytes", [None, 1000, 100])
@pytest.mark.parametrize("restart_steps", [(), (4, 9)])
@pytest.mark.parametrize(
    "warm_start", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_kernel_matches_the_xla_path(block_bytes, restart_steps, warm_start):
  """Every state buffer and W as XLA's exact solver gives them (to float32
  rounding), and the same Newton passes up to one: with blocks of several
  groups that do not divide the leaf's (13 = 4 + 4 + 4 + 1), blocks smaller
  than a group, and restarts."""
  init, grad_fn = _problem()
  lr = optax.piecewise_constant_schedule(0.3, {6: 0.5})
  make = lambda backend: ro.ramda(
      lr, regularizer=ro.group_lasso(0.3, GROUPS),
      restart_steps=restart_steps,
      solver=ro.exact_solver(backend=backend, block_bytes=block_bytes,
                             warm_start=warm_start))
  steps = 12
  kernel = _run(make("cpu"), init, grad_fn, steps)
  xla = _run(make("xla"), init, grad_fn, steps)
  solution = lambda params, state: state.solution
  _assert_same_steps(kernel, xla, solution)
  _check_structure_and_passes(kernel, solution)


@pytest.mark.parametrize("block_bytes", [None, 100])
@pytest.mark.parametrize("method", ["proxgen", "prox_ssi"])
def test_proximal_kernel_matches_the_xla_path(method, block_bytes):
  """ProxGen's and ProxSSI's steps (Adam's moments, the square-root metric,
  anchored at W, θ̂ − W out) as XLA's exact solver takes them, under a
  learning-rate schedule."""
  init, grad_fn = _problem(seed=9)
  lr = optax.piecewise_constant_schedule(0.1, {6: 0.5})
  make = lambda backend: PROXIMAL[method](
      lr, regularizer=ro.group_lasso(STRENGTH[method], GROUPS),
      solver=ro.exact_solver(backend=backend, block_bytes=block_bytes))
  steps = 12
  kernel = _run(make("cpu"), init, grad_fn, steps)
  xla = _run(make("xla"), init, grad_fn, steps)
  params = lambda params, state: params
  _assert_same_steps(kernel, xla, params)
  _check_structure_and_passes(kernel, params)


@pytest.mark.parametrize("method", ["proxgen", "prox_ssi"])
def test_proximal_kernel_follows_the_float64_reference(method):
  """The defaults of ProxGen and ProxSSI, in the kernel, within float32
  accuracy of the reference's exact solutions."""
  init, grad_fn = _problem(seed=4)
  kinds = {k: None if a is None else ("group", a) for k, a in GROUPS.items()}
  strength = STRENGTH[method]
  opt = PROXIMAL[method](0.1, regularizer=ro.group_lasso(strength, GROUPS))
  if method == "proxgen":
    reference = ref.ProxGen(init, 0.1, strength=strength, kinds=kinds,
                            solver="exact")
  else:
    reference = ref.ProxSSI(init, 0.1, strength=strength, kinds=kinds)
  history = _run(opt, init, grad_fn, 15)
  for n, (params, _) in enumerate(history):
    expected = reference.step(grad_fn(reference.params, n))
    for k in SHAPES:
      np.testing.assert_allclose(params[k], expected[k], rtol=1e-4,
                                 atol=1e-4, err_msg=f"{k}@{n}")
  assert 0 < float(ro.group_sparsity(reference.params, GROUPS)) < 1


def test_proxgen_kernel_solution_is_optimal():
  """W after ProxGen's kernel step meets the optimality conditions of the
  step's subproblem, rebuilt from the moments in the state: a zero group
  has ‖P W_prev − v‖ <= κ, a nonzero one P(θ − W_prev) + v + κ θ/‖θ‖ = 0,
  with v = η m/(1 − β₁ᵗ), P = √(v₂/(1 − β₂ᵗ)) + ε."""
  init, grad_fn = _problem(seed=6)
  lr, t = 0.1, 8
  history = _run(ro.proxgen(lr, regularizer=ro.group_lasso(
      STRENGTH["proxgen"], GROUPS)), init, grad_fn, t)
  (previous, _), (theta, state) = history[-2:]
  m, v2 = state.stats
  _assert_optimal(
      theta, previous,
      {k: lr * np.asarray(x, np.float64) / (1 - 0.9**t) for k, x in m.items()},
      {k: np.sqrt(np.asarray(x, np.float64) / (1 - 0.999**t)) + 1e-8
       for k, x in v2.items()},
      lr * STRENGTH["proxgen"])


def test_kernel_is_the_default_of_ramda_proxgen_and_prox_ssi():
  """With the kernel built, the default optimizers' steps are the kernel's,
  and so are those with ``exact_solver()``, whose default backend is
  "kernel" (the XLA path, ``backend="xla"``, has no custom call)."""
  params = {"w": jnp.ones((4, 3), jnp.float32)}
  reg = ro.group_lasso(0.01, {"w": (1,)})
  for opt in (ro.ramda(0.1, regularizer=reg), ro.proxgen(0.1, regularizer=reg),
              ro.prox_ssi(0.1, regularizer=reg),
              ro.ramda(0.1, regularizer=reg, solver=ro.exact_solver())):
    hlo = jax.jit(opt.update).lower(params, opt.init(params), params).as_text()
    assert cpu_kernel.STEP_TARGET in hlo
  xla = ro.proxgen(0.1, regularizer=reg, solver=ro.exact_solver(
      backend="xla"))
  hlo = jax.jit(xla.update).lower(params, xla.init(params), params).as_text()
  assert cpu_kernel.STEP_TARGET not in hlo


@pytest.mark.parametrize("method,paper_rule", [
    ("ramda", False), ("proxgen", False), ("prox_ssi", False),
    ("ramda", True)])
def test_step_takes_no_leaf_sized_scratch(method, paper_rule):
  """A jitted step (update and apply_updates, params and state donated)
  writes every array in its own buffer: XLA's scratch holds less than one
  leaf. ProxGen's and ProxSSI's update is an XLA fusion of the kernel's
  statistics and group offsets, which writes W_new in W's buffer; as an
  output of the kernel it needed a buffer of every leaf's size. With the
  paper's PG rule, RAMDA's kernel forms a, v and P in cache, and θ̂ is the
  state's."""
  shapes = {"conv": (3, 3, 64, 32), "head": (256, 10), "bias": (32,)}
  groups = {"conv": (0, 1, 3), "head": (1,), "bias": None}
  params = {k: jnp.ones(s, jnp.float32) for k, s in shapes.items()}
  opt = {"ramda": ro.ramda, **PROXIMAL}[method](
      0.1, regularizer=ro.group_lasso(0.01, groups),
      solver=ro.pg_solver() if paper_rule else None)

  def step(params, state, grads):
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  compiled = jax.jit(step, donate_argnums=(0, 1)).lower(
      params, opt.init(params), params).compile()
  target = cpu_kernel.PG_STEP_TARGET if paper_rule else cpu_kernel.STEP_TARGET
  assert target in compiled.as_text()
  smallest_leaf = min(math.prod(s) for s in shapes.values() if len(s) > 1) * 4
  assert compiled.memory_analysis().temp_size_in_bytes < smallest_leaf


def test_kernel_follows_the_float64_reference():
  """W and θ̂ within float32 accuracy of the reference's exact solution."""
  init, grad_fn = _problem(seed=3)
  steps = 15
  history = _run(ro.ramda(0.3, regularizer=ro.group_lasso(0.3, GROUPS)),
                 init, grad_fn, steps)
  reference = ref.Ramda(init, 0.3, 0.9, strength=0.3, groups=GROUPS,
                        solver="exact")
  for n, (params, state) in enumerate(history):
    expected = reference.step(grad_fn(reference.params, n))
    for k in SHAPES:
      np.testing.assert_allclose(params[k], expected[k], rtol=1e-4,
                                 atol=1e-4, err_msg=f"{k}@{n}")
      np.testing.assert_allclose(state.solution[k], reference.theta[k],
                                 rtol=1e-4, atol=1e-4, err_msg=f"θ̂ {k}@{n}")
  assert 0 < float(ro.group_sparsity(reference.theta, GROUPS)) < 1


def test_kernel_solution_is_optimal():
  """θ̂ of the kernel meets the subproblem's optimality conditions with the
  state's V, U and τ: a zero group has ‖P W⁰ − V‖ <= κ, a nonzero one
  P(θ − W⁰) + V + κ θ/‖θ‖ = 0."""
  init, grad_fn = _problem(seed=5)
  _, state = _run(ro.ramda(0.3, regularizer=ro.group_lasso(0.3, GROUPS)),
                  init, grad_fn, 8)[-1]
  _assert_optimal(
      state.solution, state.dual.anchor, state.dual.grad_sum,
      {k: np.cbrt(np.asarray(u, np.float64)) + 1e-6
       for k, u in state.precond[0].items()},
      float(state.threshold))


def test_zero_gradients_and_no_damping_give_no_nan():
  """Entries whose gradients are always 0 have U = 0 and, with ε = 0, P = 0:
  their θ̂ is finite, W⁰ without a penalty and 0 with one (b = P W⁰ − V = 0
  screens the group), as on the XLA path."""
  params = {"w": jnp.ones((2, 6, 3), jnp.float32)}
  mask = jnp.zeros((2, 6, 3)).at[:, :3].set(1.0)
  for strength in (0.0, 0.05, 100.0):
    opt = ro.ramda(0.1, eps=0.0,
                   regularizer=ro.group_lasso(strength, {"w": (0, 2)}))
    state = opt.init(params)
    p = params
    for _ in range(3):
      updates, state = jax.jit(opt.update)({"w": mask * p["w"]}, state, p)
      p = optax.apply_updates(p, updates)
    assert bool(jnp.all(jnp.isfinite(state.solution["w"])))
    assert bool(jnp.all(jnp.isfinite(p["w"])))
    np.testing.assert_allclose(
        state.solution["w"][:, 3:], 0.0 if strength > 0 else 1.0)


@pytest.mark.parametrize("strength", [0.0, 0.05, 100.0])
def test_proxgen_update_without_curvature_matches_the_xla_path(strength):
  """ProxGen's update formed from the kernel's offsets where P = 0 (ε = 0,
  gradients always 0 on half the groups): W stays without a threshold
  (offset 0, P + q = 0), goes to 0 in a screened group (offset ∞), and
  equals the XLA path's everywhere, finite."""
  params = {"w": jnp.linspace(0.5, 1.5, 36, dtype=jnp.float32
                              ).reshape(2, 6, 3)}
  mask = jnp.zeros((2, 6, 3)).at[:, :3].set(1.0)
  out = []
  for backend in ("cpu", "xla"):
    opt = ro.proxgen(0.1, eps=0.0, regularizer=ro.group_lasso(
        strength, {"w": (0, 2)}), solver=ro.exact_solver(backend=backend))
    state, p = opt.init(params), params
    for _ in range(3):
      updates, state = jax.jit(opt.update)({"w": mask * p["w"]}, state, p)
      p = optax.apply_updates(p, updates)
    out.append(p["w"])
  assert bool(jnp.all(jnp.isfinite(out[0])))
  np.testing.assert_allclose(out[0], out[1], rtol=2e-5, atol=2e-6)
  np.testing.assert_array_equal(
      out[0][:, 3:], 0.0 if strength > 0 else params["w"][:, 3:])


def test_other_leaves_take_the_xla_path():
  """bfloat16 leaves, ℓ1 and groups over several free axes are not the
  kernel's: the backend="cpu" step equals XLA's there."""
  params = {"half": jnp.ones((4, 3), jnp.bfloat16),
            "l1": jnp.linspace(-1, 1, 12, dtype=jnp.float32).reshape(4, 3),
            "two_free": jnp.linspace(-1, 1, 24, dtype=jnp.float32
                                     ).reshape(2, 3, 4)}
  assert cpu_kernel.leaf_view(ro.group_lasso(1.0, {"w": ()}).layout(
      {"w": params["l1"]})[0], (4, 3)) is None
  assert cpu_kernel.leaf_view(ro.group_lasso(1.0, {"w": (2,)}).layout(
      {"w": params["two_free"]})[0], (2, 3, 4)) is None
  groups = {"half": (1,), "l1": (), "two_free": (2,)}
  out = []
  for backend in ("cpu", "xla"):
    opt = ro.ramda(0.1, regularizer=ro.group_lasso(0.01, groups),
                   solver=ro.exact_solver(backend=backend))
    state = opt.init(params)
    grads = jax.tree.map(lambda x: 0.5 * x, params)
    out.append(jax.jit(opt.update)(grads, state, params))
  for a, b in zip(jax.tree.leaves(out[0]), jax.tree.leaves(out[1])):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("method,paper_rule", [
    ("ramda", False), ("proxgen", False), ("ramda", True), ("proxgen", True)])
def test_vmapped_update_matches_the_xla_path(method, paper_rule):
  """Under ``jax.vmap`` (a stack of models) the kernel runs model by model
  and gives XLA's results (ProxGen's update formed from its offsets), with
  the exact solver and with the paper's PG rule (rtol above float32's
  resolution of Q)."""
  init, grad_fn = _problem(seed=7)
  stack = {k: jnp.stack([jnp.asarray(v, jnp.float32), 0.5 * jnp.asarray(
      v, jnp.float32)]) for k, v in init.items()}
  grads = {k: jnp.stack([jnp.asarray(g, jnp.float32)] * 2)
           for k, g in grad_fn(init, 0).items()}
  out = []
  for backend in ("kernel", "xla"):
    solver = (ro.pg_solver(rtol=1e-4, backend=backend) if paper_rule
              else ro.exact_solver(backend=backend))
    opt = {"ramda": ro.ramda, "proxgen": ro.proxgen}[method](
        0.3, regularizer=ro.group_lasso(0.3, GROUPS), solver=solver)
    state = jax.vmap(opt.init)(stack)
    out.append(jax.jit(jax.vmap(opt.update))(grads, state, stack))
  for a, b in zip(jax.tree.leaves(out[0]), jax.tree.leaves(out[1])):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
  assert int(jnp.max(out[0][1].inner_iters)) > 0


def test_empty_leaves_take_the_xla_path():
  penalty = ro.group_lasso(1.0, {"w": (1,)}).layout(
      {"w": jnp.zeros((0, 3))})[0]
  assert cpu_kernel.leaf_view(penalty, (0, 3)) is None
  params = {"w": jnp.zeros((0, 3)), "v": jnp.ones((4, 3))}
  opt = ro.ramda(0.1, regularizer=ro.group_lasso(0.01, {"w": (1,),
                                                        "v": (1,)}))
  updates, _ = jax.jit(opt.update)(params, opt.init(params), params)
  assert updates["w"].shape == (0, 3)
  assert bool(jnp.all(jnp.isfinite(updates["v"])))


def test_backend_is_checked():
  with pytest.raises(ValueError, match="'xla', 'pallas', 'cpu' or 'kernel'"):
    ro.exact_solver(backend="gpu")
  with pytest.raises(ValueError, match="'xla', 'pallas' or 'kernel'"):
    ro.pg_solver(backend="cpu")


def test_unavailable_kernel_warns_and_falls_back(monkeypatch):
  """Without the kernel the default takes the XLA path, with a warning
  that says why."""
  monkeypatch.setattr(cpu_kernel, "library", lambda: (None, "test reason"))
  cpu_kernel._warn_once.cache_clear()
  params = {"w": jnp.ones((4, 3), jnp.float32)}
  opt = ro.ramda(0.1, regularizer=ro.group_lasso(0.01, {"w": (1,)}))
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    updates, _ = opt.update(params, opt.init(params), params)
  assert any("test reason" in str(w.message) for w in caught)
  xla = ro.ramda(0.1, regularizer=ro.group_lasso(0.01, {"w": (1,)}),
                 solver=ro.exact_solver(fallback=ro.pg_solver()))
  expected, _ = xla.update(params, xla.init(params), params)
  np.testing.assert_array_equal(updates["w"], expected["w"])
  cpu_kernel._warn_once.cache_clear()
