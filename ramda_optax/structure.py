"""Structure metrics of a parameter pytree (Huang & Lee, 2024, Section 5).

All functions are jit-able and take a ``groups`` specification as
:func:`ramda_optax.group_lasso` does (a pytree of ``None`` or reduced axes,
or a callable ``params -> pytree``).
"""

from typing import Any

import jax
import jax.numpy as jnp

from ramda_optax.regularizers import GroupsSpec, leaf_groups


def unstructured_sparsity(params: Any) -> jax.Array:
  """Share of exactly-zero entries over all parameters."""
  leaves = jax.tree.leaves(params)
  zeros = sum(jnp.sum(x == 0) for x in leaves)
  return zeros / sum(x.size for x in leaves)


def _group_zero_counts(params: Any, groups: GroupsSpec):
  """(zero groups, all groups, params in zero groups, regularized params)."""
  zero_groups = total_groups = zero_params = total_params = 0
  for x, (_, axes) in zip(jax.tree.leaves(params), leaf_groups(groups, params)):
    if axes is None:
      continue
    is_zero = jnp.all(x == 0, axis=axes)
    per_group = x.size // max(is_zero.size, 1)
    zero_groups = zero_groups + jnp.sum(is_zero)
    total_groups += is_zero.size
    zero_params = zero_params + jnp.sum(is_zero) * per_group
    total_params += x.size
  if total_groups == 0:
    raise ValueError("groups: no leaf is regularized.")
  return zero_groups, total_groups, zero_params, total_params


def group_sparsity(params: Any, groups: GroupsSpec) -> jax.Array:
  """Share of all-zero groups over the regularized leaves."""
  zero, total, _, _ = _group_zero_counts(params, groups)
  return zero / total


def weighted_group_sparsity(params: Any, groups: GroupsSpec) -> jax.Array:
  """Share of regularized parameters that sit in all-zero groups.

  This is the paper's headline structure metric.
  """
  _, _, zero, total = _group_zero_counts(params, groups)
  return zero / total
