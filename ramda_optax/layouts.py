"""Aligning per-leaf specifications (groups, masks) with the leaves of params.

A specification follows optax's precedent for per-leaf options
(``optax.masked``): a pytree matching params, or a callable params → pytree.
Leaves of params that are ``optax.MaskedNode`` (inside ``optax.partition``
or ``optax.masked``) are skipped, and Flax NNX variables are looked through,
so a specification built from ``nnx.state(model, nnx.Param)`` fits the pure
params an optimizer sees.
"""

from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp

from ramda_optax import _trees

Axes = tuple[int, ...]
GroupsSpec = Any  # a pytree of None | tuple[int, ...], or params -> pytree
MaskSpec = Any  # None, a pytree of bools matching params, or params -> pytree


def is_axes_leaf(x: Any) -> bool:
  """Whether ``x`` is a leaf of a groups specification: None or a tuple of
  ints."""
  return x is None or (
      isinstance(x, tuple) and all(isinstance(i, int) for i in x)
  )


def normalize_axes(axes: Axes, ndim: int, where: str) -> Axes:
  """``axes`` made non-negative and sorted; ``ValueError`` naming ``where``
  for an axis out of range or repeated."""
  normalized = []
  for ax in axes:
    if isinstance(ax, bool) or not -ndim <= ax < ndim:
      raise ValueError(
          f"groups: axis {ax} at {where} is out of range for a leaf with "
          f"{ndim} dimensions (accepted: -{ndim} to {ndim - 1})."
      )
    normalized.append(ax % ndim)
  if len(set(normalized)) != len(normalized):
    raise ValueError(f"groups: repeated axis in {axes} at {where}.")
  return tuple(sorted(normalized))


def _aligned(
    name: str, spec: Any, params: Any, is_leaf: Callable[[Any], bool] | None
) -> Iterator[tuple[str, Any, Any]]:
  """``(path, leaf, spec entry)`` for every array leaf of ``params``."""
  params = _trees.unwrap_variables(params)
  spec = _trees.unwrap_variables(spec(params) if callable(spec) else spec)
  flat, param_def = jax.tree_util.tree_flatten_with_path(
      params, is_leaf=_trees.is_masked
  )
  entries, spec_def = jax.tree.flatten(spec, is_leaf=is_leaf)
  if param_def != spec_def:
    raise ValueError(
        f"{name}: its tree structure does not match params.\n"
        f"  {name}: {spec_def}\n  params: {param_def}"
    )
  for (path, leaf), entry in zip(flat, entries):
    if not _trees.is_masked(leaf):
      yield jax.tree_util.keystr(path), leaf, entry


def leaf_groups(groups: GroupsSpec, params: Any) -> list[tuple[str, Axes | None]]:
  """Aligns a groups specification with the leaves of ``params``.

  Args:
    groups: a pytree matching ``params`` whose leaves are ``None`` or tuples
      of ints, or a callable ``params -> pytree``.
    params: the parameters.

  Returns:
    One ``(path, axes or None)`` per array leaf of ``params``, in
    ``jax.tree.leaves`` order, with axes non-negative and sorted.

  Raises:
    ValueError: if the structure does not match ``params`` or an axis is out
      of range for its leaf.
  """
  out = []
  for where, leaf, axes in _aligned("groups", groups, params, is_axes_leaf):
    if axes is not None and not isinstance(axes, tuple):
      raise ValueError(
          f"groups: entry at {where} must be None or a tuple of ints; got "
          f"{axes!r}."
      )
    if axes is not None:
      axes = normalize_axes(axes, jnp.ndim(leaf), where)
    out.append((where, axes))
  return out


def leaf_mask(
    mask: MaskSpec, params: Any, default: Callable[[Any], bool]
) -> list[tuple[str, bool]]:
  """One ``(path, regularized)`` per array leaf, from an optax-style mask.

  Args:
    mask: None (then ``default(leaf)`` decides), a pytree of bools matching
      ``params``, or a callable ``params -> pytree``.
    params: the parameters.
    default: the rule for every leaf when ``mask`` is None.

  Returns:
    One ``(path, flag)`` per array leaf of ``params``, in
    ``jax.tree.leaves`` order.
  """
  if mask is None:
    mask = lambda p: jax.tree.map(
        lambda x: not _trees.is_masked(x) and default(x), p,
        is_leaf=_trees.is_masked,
    )
  return [
      (where, bool(flag))
      for where, _, flag in _aligned("mask", mask, params, None)
  ]
