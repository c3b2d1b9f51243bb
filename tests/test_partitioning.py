"""ramda_optax.partitioning: which axes of a leaf its kernel step may keep
sharded. The steps on 8 devices are checked in tests/test_sharding.py."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import ramda_optax as ro
from ramda_optax import partitioning


@pytest.mark.parametrize("axes,ndim,expected", [
    ((0, 1, 3), 4, (2,)),  # a conv kernel per input channel
    ((1,), 2, (0,)),  # a dense kernel per input feature
    ((0,), 2, (1,)),  # per output feature
    ((0, 1), 2, ()),  # one group: the leaf runs whole
])
def test_free_axes_are_those_no_group_spans(axes, ndim, expected):
  penalty = ro.regularizers.GroupNorm(axes=axes, group_size=2)
  assert partitioning.free_axes(penalty, ndim) == expected


def test_a_leaf_without_a_penalty_keeps_every_axis():
  assert partitioning.free_axes(None, 3) == (0, 1, 2)


def test_the_kept_sharding_drops_the_axes_groups_span():
  mesh = Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ("m", "n"))
  sharding = NamedSharding(mesh, P(None, "m", None, "n"))
  assert partitioning._kept(sharding, 4, (1,)) == P(None, "m", None, None)
  # A spec shorter than the leaf, and a sharding without a spec.
  assert partitioning._kept(NamedSharding(mesh, P("m")), 3, (0, 2)) == P(
      "m", None, None)
  assert partitioning._kept(object(), 2, (0,)) == P(None, None)


def test_a_step_by_shards_equals_the_step_on_one_device():
  """On one device the wrapped step is the step: the restart flag and the
  coefficients reach it unchanged, the anchor is an output with restarts
  only, and the iterations are the step's, one per entry of the free axis
  (a single count broadcast, per-group counts as they are)."""
  calls = []

  def step(arrays, coefficients, restart, *, root, delta, per_group):
    calls.append((restart is False, root, delta))
    g, w = arrays[:2]
    scale = coefficients[0] + jnp.where(restart, 10.0, 0.0)
    anchor = None if restart is False else arrays[4] * 2
    # A count per group (row) from g's first column, or one count.
    counts = g[:, 0].astype(jnp.int32) if per_group else jnp.int32(3)
    return g * scale, w + coefficients[1], anchor, g - w, counts

  penalty = ro.regularizers.GroupNorm(axes=(1,), group_size=2)
  arrays = tuple(jnp.arange(6.0).reshape(3, 2) + i for i in range(6))
  for per_group, expected_counts in ((False, [3, 3, 3]), (True, [0, 2, 4])):
    kernel = functools.partial(step, per_group=per_group)
    wrapped = partitioning.by_shards(kernel, penalty)
    for restart in (False, jnp.bool_(True)):
      got = jax.jit(lambda a, r=restart, w=wrapped: w(
          a, (2.0, 0.5), r, root=3, delta=True))(arrays)
      expected = kernel(arrays, (2.0, 0.5), restart, root=3, delta=True)
      assert got[2] is None if restart is False else got[2] is not None
      np.testing.assert_array_equal(got[4], expected_counts)
      for a, b in zip(got[:4], expected[:4]):
        if b is not None:
          np.testing.assert_array_equal(a, b)
  assert (True, 3, True) in calls and (False, 3, True) in calls
