"""Structure metrics of a parameter pytree (Huang & Lee, 2024, Section 5).

All functions are jit-able and take a ``groups`` specification as
:func:`ramda_optax.group_lasso` does (a pytree of ``None`` or reduced axes,
or a callable ``params -> pytree``).
"""

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ramda_optax.layouts import GroupsSpec
from ramda_optax.layouts import leaf_groups
from ramda_optax.layouts import leaf_mask


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


def _matrix_rank_deficit(x: jax.Array) -> tuple[jax.Array, int]:
  """(number of zero singular values, min(M, N)) of the matrix view."""
  m = x.reshape(-1, x.shape[-1])
  sigma = jnp.linalg.svd(m, compute_uv=False)
  # NumPy's matrix_rank tolerance: σ_max · max(M, N) · machine epsilon.
  tol = sigma[0] * max(m.shape) * jnp.finfo(m.dtype).eps
  return jnp.sum(sigma <= tol), min(m.shape)


def low_rank_level(params: Any, mask: Any = None) -> jax.Array:
  """Share of zero singular values over the nuclear-norm leaves.

  A leaf's matrix view keeps its last axis and flattens the others (as
  :func:`ramda_optax.nuclear_norm` does); a singular value counts as zero
  below NumPy's ``matrix_rank`` tolerance, σ_max · max(M, N) · eps.

  Args:
    params: the parameters.
    mask: as for :func:`ramda_optax.nuclear_norm` (None: every leaf with two
      or more dimensions).
  """
  flags = leaf_mask(mask, params, lambda x: jnp.ndim(x) >= 2)
  zero = total = 0
  for (_, on), x in zip(flags, jax.tree.leaves(params)):
    if on:
      z, n = _matrix_rank_deficit(x)
      zero, total = zero + z, total + n
  if total == 0:
    raise ValueError("mask: no leaf is regularized by the nuclear norm.")
  return zero / total


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["groups_alive", "params_alive"],
    meta_fields=["path", "groups_total", "params_total"],
)
@dataclasses.dataclass(frozen=True)
class LayerStructure:
  """Structure of one regularized leaf (a pytree: jit can return it).

  Attributes:
    path: the leaf's path in params.
    groups_alive: groups with a nonzero entry.
    groups_total: all groups.
    params_alive: parameters in groups with a nonzero entry.
    params_total: all parameters of the leaf.
  """

  path: str
  groups_alive: jax.Array
  groups_total: int
  params_alive: jax.Array
  params_total: int


class StructureReport(NamedTuple):
  """Per-layer structure; ``print(report)`` shows it as a table."""

  layers: tuple[LayerStructure, ...]

  def __str__(self) -> str:
    width = max([len(r.path) for r in self.layers] + [5])
    lines = [f"{'layer':{width}s}  {'groups alive':>17s}  {'params alive':>23s}"]
    for r in self.layers:
      g, p = int(r.groups_alive), int(r.params_alive)
      lines.append(
          f"{r.path:{width}s}  {g:>7d} / {r.groups_total:<7d}  "
          f"{p:>10d} / {r.params_total:<10d}"
      )
    g_alive = sum(int(r.groups_alive) for r in self.layers)
    g_total = sum(r.groups_total for r in self.layers)
    p_alive = sum(int(r.params_alive) for r in self.layers)
    p_total = sum(r.params_total for r in self.layers)
    lines.append(
        f"{'total':{width}s}  {g_alive:>7d} / {g_total:<7d}  "
        f"{p_alive:>10d} / {p_total:<10d}"
    )
    return "\n".join(lines)


def structure_report(params: Any, groups: GroupsSpec) -> StructureReport:
  """Groups and parameters alive per regularized leaf (jit-able counts).

  Example:
    >>> import jax.numpy as jnp, ramda_optax
    >>> params = {'w': jnp.array([[1.0, 2.0], [0.0, 0.0], [3.0, 0.0]])}
    >>> print(ramda_optax.structure_report(params, {'w': (1,)}))
    layer       groups alive             params alive
    ['w']        2 / 3                 4 / 6
    total        2 / 3                 4 / 6
  """
  rows = []
  for x, (path, axes) in zip(jax.tree.leaves(params), leaf_groups(groups, params)):
    if axes is None:
      continue
    alive = jnp.any(x != 0, axis=axes)
    per_group = x.size // max(alive.size, 1)
    rows.append(LayerStructure(
        path=path, groups_alive=jnp.sum(alive), groups_total=alive.size,
        params_alive=jnp.sum(alive) * per_group, params_total=x.size))
  return StructureReport(tuple(rows))
