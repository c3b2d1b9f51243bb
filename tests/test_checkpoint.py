"""Orbax checkpoints: a resumed run is bit-identical to an uninterrupted one."""

import chex
import jax
import jax.numpy as jnp
import optax
import orbax.checkpoint as ocp
import pytest

import ramda_optax as ro
from tests.problems import GROUPS, quadratic

NUM_STEPS, SAVE_AT, MILESTONE = 16, 5, 8


def _optimizer(kind):
  reg = ro.group_lasso(0.5, GROUPS)
  schedule = ro.stagewise_schedule(0.3, 0.25, [MILESTONE])
  if kind == "ramda":
    return ro.ramda(**schedule, regularizer=reg)
  if kind == "injected":
    return optax.inject_hyperparams(ro.ramda)(**schedule, regularizer=reg)
  return optax.inject_hyperparams(ro.proxgen)(
      learning_rate=schedule["learning_rate"], regularizer=reg)


def _run(opt, params, state, grad_fn, start, stop):
  step = jax.jit(opt.update)
  for n in range(start, stop):
    grads = {k: jnp.asarray(g, jnp.float32) for k, g in grad_fn(params, n).items()}
    updates, state = step(grads, state, params)
    params = optax.apply_updates(params, updates)
  return params, state


@pytest.mark.parametrize("kind", ["ramda", "injected", "proxgen"])
def test_resume_is_bit_identical_across_a_restart(tmp_path, kind):
  init, grad_fn = quadratic(seed=21, num_steps=NUM_STEPS)
  params0 = {k: jnp.asarray(v, jnp.float32) for k, v in init.items()}
  opt = _optimizer(kind)
  expected = _run(opt, params0, opt.init(params0), grad_fn, 0, NUM_STEPS)

  params, state = _run(opt, params0, opt.init(params0), grad_fn, 0, SAVE_AT)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "ckpt", {"params": params, "opt_state": state})
  checkpointer.wait_until_finished()
  del params, state

  # A new process would rebuild the optimizer and restore into its structure.
  fresh = _optimizer(kind)
  target = jax.eval_shape(
      lambda p: {"params": p, "opt_state": fresh.init(p)}, params0)
  restored = checkpointer.restore(tmp_path / "ckpt", target)
  assert jax.tree.structure(restored) == jax.tree.structure(target)
  resumed = _run(fresh, restored["params"], restored["opt_state"], grad_fn,
                 SAVE_AT, NUM_STEPS)

  chex.assert_trees_all_equal(expected, resumed, strict=True)
  if kind != "proxgen":  # the run crossed the restart milestone
    inner = ro.subproblem_solution(resumed[1], resumed[0])
    assert 0 < float(ro.group_sparsity(inner, GROUPS)) < 1
