"""The step-time benchmark: its regimes and floors on a small problem."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from benchmarks import step_time

SHAPES = {"a": {"kernel": (3, 3, 4, 8), "bias": (8,)}, "b": {"kernel": (32, 6)}}
GROUPS = {"a": {"kernel": (0, 1, 3), "bias": None}, "b": {"kernel": (1,)}}


def _time(name, regime):
  init, grad_fn = step_time.problem(SHAPES, GROUPS)
  regularized = step_time._regularized_leaves(GROUPS, init)
  opt = step_time.variants(GROUPS, 1e-4)[name]()
  return step_time.time_variants([opt], init, grad_fn, regularized, regime,
                                 warmup=10, steps=3, starts=2)[0]


def test_early_regime_iterates_more_than_late():
  early = _time("ramda_pg", "early")
  late = _time("ramda_pg", "late")
  assert early["inner_iters_per_leaf"] > late["inner_iters_per_leaf"] > 0
  assert early["time_s"] > 0


@pytest.mark.slow
def test_pass_variants_hold_the_kernel_to_their_newton_passes():
  """ramda_passes1 runs one Newton pass per leaf from a cold start, and
  ramda_passes8 more (the difference times a pass)."""
  one = _time("ramda_passes1", "early")["inner_iters_per_leaf"]
  eight = _time("ramda_passes8", "early")["inner_iters_per_leaf"]
  assert one == 1 and 1 < eight <= 8


@pytest.mark.slow  # 15 to 40 s
def test_variants_timed_in_turn_keep_their_own_steps():
  """Timed in turn, each optimizer steps its own params and state: RAMDA
  beside Adam iterates as RAMDA timed alone, and Adam reports none."""
  init, grad_fn = step_time.problem(SHAPES, GROUPS)
  regularized = step_time._regularized_leaves(GROUPS, init)
  opts = step_time.variants(GROUPS, 1e-4)
  results = step_time.time_variants(
      [opts["ramda_pg"](), opts["adam"](), opts["ramda_pg"]()], init,
      grad_fn, regularized, "early", warmup=10, steps=3, starts=2)
  alone = _time("ramda_pg", "early")["inner_iters_per_leaf"]
  assert [r["inner_iters_per_leaf"] for r in results] == [alone, None, alone]
  assert alone > 0 and all(r["time_s"] > 0 for r in results)


@pytest.mark.slow  # 15 to 40 s
def test_device_loop_times_the_early_regime():
  """The device loop records and replays the early regime's steps: the
  same inner iterations, and one step the same scratch, as the step-by-step
  timing of the same starts; each start's replays of every optimizer are
  timed in turn, round by round."""
  init, grad_fn = step_time.problem(SHAPES, GROUPS)
  regularized = step_time._regularized_leaves(GROUPS, init)
  opts = step_time.variants(GROUPS, 1e-4)
  adam, looped = step_time.time_device_loops(
      [opts["adam"](), opts["ramda_pg"]()], init, grad_fn, regularized,
      steps=3, starts=2, rounds=3)
  stepped = _time("ramda_pg", "early")
  assert looped["inner_iters_per_leaf"] == stepped["inner_iters_per_leaf"] > 0
  assert adam["inner_iters_per_leaf"] is None
  assert looped["step_temp_bytes"] == stepped["temp_bytes"]
  assert len(adam["times_s"]) == len(looped["times_s"]) == 2 * 3
  assert looped["time_s"] == np.median(looped["times_s"]) > 0


@pytest.mark.slow  # 15 to 40 s
def test_calls_replay_each_recorded_step_from_its_own_gradients():
  """Replayed as one call per step, the recorded gradients outlive each
  replay (a replay donates copies of them: the untimed round and two timed
  ones run per start), the iterations are the step-by-step timing's, the
  host's share of each replay is recorded, and an unknown replay is an
  error naming the choices."""
  init, grad_fn = step_time.problem(SHAPES, GROUPS)
  regularized = step_time._regularized_leaves(GROUPS, init)
  opts = step_time.variants(GROUPS, 1e-4)
  adam, looped = step_time.time_device_loops(
      [opts["adam"](), opts["ramda"]()], init, grad_fn, regularized,
      steps=3, starts=2, rounds=2, replay="calls")
  stepped = _time("ramda", "early")
  assert looped["inner_iters_per_leaf"] == stepped["inner_iters_per_leaf"]
  assert len(adam["times_s"]) == len(looped["times_s"]) == 2 * 2
  assert looped["temp_bytes"] is None
  assert 0 < looped["enqueue_share"] <= 1 and 0 < adam["enqueue_share"] <= 1
  with pytest.raises(ValueError, match="replay must be one of"):
    step_time.device_loop(opts["adam"](), init, grad_fn, regularized, 3,
                          replay="unrolled")


@pytest.mark.slow  # 15 to 40 s
def test_a_step_with_its_own_gradients_is_the_step_given_them():
  """The step that computes its gradients (for its scratch as a training
  step's) takes the step given those gradients: the same params and
  state, bit for bit."""
  init, grad_fn = step_time.problem(SHAPES, GROUPS)
  opt = step_time.variants(GROUPS, 1e-4)["proxgen_pg"]()
  params = jax.tree.map(lambda w: w + 0.01, init)
  state = opt.init(params)
  for n in range(3):
    own = step_time.own_grads_step(opt, params, grad_fn)
    given, state_given = jax.jit(step_time.scanned_steps(opt)[0])(
        params, state, grad_fn(params, n))
    params_own, state_own = own(jax.tree.map(jnp.copy, params),
                                jax.tree.map(jnp.copy, state), n)
    for a, b in zip(jax.tree.leaves((given, state_given)),
                    jax.tree.leaves((params_own, state_own))):
      np.testing.assert_array_equal(a, b)
    params, state = given, state_given
  assert int(np.max(state.inner_iters)) > 0


def test_floors_read_and_write_like_a_dual_averaging_step():
  params = {"w": jnp.arange(6.0).reshape(2, 3)}
  grads = {"w": jnp.ones((2, 3))}
  for arithmetic in (False, True):
    opt = step_time.floor(arithmetic)
    state = opt.init(params)
    updates, state = opt.update(grads, state, params)
    v, u, anchor, theta = state
    np.testing.assert_allclose(v["w"], 0.1)
    np.testing.assert_allclose(u["w"], 0.1)
    assert anchor["w"] is not params["w"]
    p = np.cbrt(0.1) + 1e-6 if arithmetic else 0.1 + 1e-6
    expected = params["w"] - (0.1 / p if arithmetic else 0.1 * p)
    np.testing.assert_allclose(theta["w"], expected, rtol=1e-5)
    np.testing.assert_allclose(updates["w"], 0.1 * (expected - params["w"]),
                               rtol=1e-5)


@pytest.mark.slow  # 20 to 40 s
def test_a_variant_name_sets_its_block_bytes():
  """``name@N`` is the variant with blocks of N bytes: PG blocks of 64
  bytes stop block by block and take other steps than blocks of 1 MiB, the
  default's size, which the name without a suffix gives."""
  init, grad_fn = step_time.problem(SHAPES, GROUPS)

  def run(name):
    opt = step_time.make_variant(name, GROUPS, 1e-2)()
    params, state = init, opt.init(init)
    for n in range(3):
      updates, state = jax.jit(opt.update)(grad_fn(params, n), state, params)
      params = optax.apply_updates(params, updates)
    return jax.tree.leaves(params)

  default, whole, small = (run(name) for name in (
      "ramda_pg_blocks", "ramda_pg_blocks@1048576", "ramda_pg_blocks@64"))
  for a, b in zip(default, whole):
    np.testing.assert_array_equal(a, b)
  assert any(not np.array_equal(a, b) for a, b in zip(whole, small))


def test_interleaved_steps_share_the_drift():
  """Steps timed in turn: each round's ratio to the first step cancels a
  drift that slows every step alike, the order alternates, and warmup
  rounds are left out."""
  calls = []

  def step(cost):
    def run(n):
      calls.append((n, cost))
      return cost * (1 + 0.5 * n)  # the machine slows round by round
    return run

  times = np.asarray(step_time.interleaved([step(1.0), step(3.0)],
                                           warmup=2, count=5))
  assert list(np.median(times / times[0], axis=1)) == [1.0, 3.0]
  # Rounds 2..6 of the slowing machine: their median is round 4's.
  assert list(np.median(times, axis=1)) == [3.0, 9.0]
  assert calls[:4] == [(0, 1.0), (0, 3.0), (1, 3.0), (1, 1.0)]
  assert len(calls) == 14
