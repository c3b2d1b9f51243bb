"""Group specifications for Flax parameters, by layer kind and by path.

:func:`structured` builds the ``groups`` pytree that
:func:`ramda_optax.group_lasso` and the structure metrics take, for Linen
param dicts (plain or ``FrozenDict``), for NNX state
(``nnx.state(model, nnx.Param)``, or its ``nnx.as_pure`` form) and for
params holding ``optax.MaskedNode`` (inside ``optax.partition``).

The defaults are the paper's (Huang & Lee, NeurIPS 2024, Section 5): Conv
kernels channel-wise, Dense kernels input-wise, everything else (biases,
norm scales and offsets, batch statistics, embeddings) not regularized.

With ``nnx.Optimizer``, a fixed pytree built from
``nnx.state(model, nnx.Param)`` and the builder itself (the callable form of
``groups``, e.g. ``group_lasso(λ, functools.partial(structured,
conv="output"))``) both work: NNX variable wrappers are looked through.
"""

import re
from collections.abc import Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from ramda_optax import layouts

Axes = tuple[int, ...]
Grouping = Literal["input", "output"] | None
AttentionGrouping = Literal["head", "input", "output"] | None
Rule = tuple[str | re.Pattern, Axes | None]

_LAYER_CHOICES = ("input", "output")
_ATTENTION_CHOICES = ("head", "input", "output")
# Attention projections: query/key/value kernels are (in, heads, head_dim),
# the output kernel is (heads, head_dim, out). "input"/"output" treat them as
# Dense kernels whose inputs/outputs span several axes.
_QKV_AXES = {"head": (0, 2), "input": (1, 2), "output": (0,)}
_OUT_AXES = {"head": (1, 2), "input": (2,), "output": (0, 1)}
_DENSE_AXES = {"input": (1,), "output": (0,)}
_QKV_NAMES = frozenset({"query", "key", "value"})


def _check_choice(name: str, value: Any, accepted: tuple[str, ...]) -> None:
  if not (value is None or (isinstance(value, str) and value in accepted)):
    raise ValueError(
        f"{name} must be one of {', '.join(map(repr, accepted))} or None; got "
        f"{value!r}."
    )


def _compile_rules(
    rules: Sequence[Rule],
) -> list[tuple[re.Pattern, Axes | None]]:
  compiled = []
  for rule in rules:
    try:
      pattern, axes = rule
    except (TypeError, ValueError):
      raise ValueError(
          f"rules: each rule must be a (pattern, axes) pair; got {rule!r}."
      ) from None
    if not layouts.is_axes_leaf(axes):
      raise ValueError(
          f"rules: the axes of {pattern!r} must be None or a tuple of ints; "
          f"got {axes!r}."
      )
    compiled.append((re.compile(pattern), axes))
  return compiled


def _key_name(key: Any) -> str:
  if isinstance(key, jax.tree_util.GetAttrKey):
    return key.name
  if isinstance(key, jax.tree_util.SequenceKey):
    return str(key.idx)
  return str(key.key)  # DictKey, FlattenedIndexKey


def _names(path: tuple[Any, ...]) -> list[str]:
  return [_key_name(k) for k in path]


def path_string(path: tuple[Any, ...]) -> str:
  """The '/'-joined names of a key path, the string that rules match.

  Example:
    >>> import jax
    >>> from ramda_optax import groups
    >>> [path] = [p for p, _ in jax.tree_util.tree_flatten_with_path(
    ...     {'Dense_0': {'kernel': 0}})[0]]
    >>> groups.path_string(path)
    'Dense_0/kernel'
  """
  return "/".join(_names(path))


def _conv_axes(ndim: int, conv: Grouping) -> Axes | None:
  # A Flax Conv kernel is (*spatial, in, out).
  keep = {"input": ndim - 2, "output": ndim - 1}.get(conv)
  return None if keep is None else tuple(i for i in range(ndim) if i != keep)


def _layer_axes(
    names: list[str],
    ndim: int,
    conv: Grouping,
    dense: Grouping,
    attention: AttentionGrouping,
) -> Axes | None:
  """Default axes of one leaf from its path names and its ndim."""
  if not names or names[-1] != "kernel" or ndim < 2:
    return None
  parent = names[-2] if len(names) > 1 else ""
  if ndim == 3 and parent in _QKV_NAMES:
    return _QKV_AXES.get(attention)
  if ndim == 3 and parent == "out":
    return _OUT_AXES.get(attention)
  if ndim == 2:
    return _DENSE_AXES.get(dense)
  return _conv_axes(ndim, conv)


def structured(
    params: Any,
    *,
    conv: Grouping = "input",
    dense: Grouping = "input",
    attention: AttentionGrouping = "input",
    rules: Sequence[Rule] = (),
) -> Any:
  """Group lasso ``groups`` for Flax params, by layer kind and path rules.

  Only leaves named ``kernel`` are regularized by default; the layer kind
  comes from the kernel's ndim and the name of its module:

  - 2-D: Dense / ``nnx.Linear`` (in, out). ``dense="input"``: one group per
    input feature, axes ``(1,)``; ``"output"``: one per output feature,
    ``(0,)``.
  - 3-D under a module named ``query``, ``key`` or ``value`` (in, heads,
    head_dim), or ``out`` (heads, head_dim, out): the projections of Linen's
    ``MultiHeadDotProductAttention`` and NNX's ``MultiHeadAttention``.
    ``attention="head"``: one group per head, ``(0, 2)`` and ``(1, 2)``;
    ``"input"`` / ``"output"``: one per input / output feature, as for a
    Dense kernel, ``(1, 2)`` / ``(0,)`` and ``(2,)`` / ``(0, 1)``.
  - any other kernel with ndim ≥ 3 (a 3-D one included): Conv (*spatial,
    in, out). ``conv="input"``: one group per input channel (every axis but
    -2, ``(0, 1, 3)`` in 2-D); ``"output"``: one per output channel (every
    axis but -1).

  ``None`` for an option leaves that kind unregularized. Biases, norm scales
  and offsets, batch statistics, embeddings and any other leaf get ``None``.
  A ``DenseGeneral`` / ``LinearGeneral`` kernel outside attention, or any
  other layout, needs a rule.

  Args:
    params: Linen params, ``nnx.State`` or any pytree of arrays (or of
      ``jax.ShapeDtypeStruct``, as ``jax.eval_shape`` gives).
    conv: ``"input"``, ``"output"`` or None.
    dense: ``"input"``, ``"output"`` or None.
    attention: ``"head"``, ``"input"``, ``"output"`` or None.
    rules: ``(pattern, axes)`` pairs that take precedence over the layer
      kinds: the first pattern that ``re.fullmatch``-es a leaf's '/'-joined
      path (:func:`path_string`, e.g. ``'Dense_1/kernel'``; NNX variables
      end at their attribute name) gives its axes, None or a tuple of ints.

  Returns:
    A pytree with the structure of ``params`` (``nnx.Variable`` wrappers
    kept) whose leaves are None or non-negative sorted axes.

  Raises:
    ValueError: for an unknown option, a malformed rule, a rule that matches
      no path, or a rule's axis out of range for a leaf it matches.

  Example:
    >>> import jax.numpy as jnp, ramda_optax
    >>> from ramda_optax import groups
    >>> params = {
    ...     'Conv_0': {'kernel': jnp.ones((3, 3, 1, 4)), 'bias': jnp.ones(4)},
    ...     'Dense_0': {'kernel': jnp.ones((8, 2)), 'bias': jnp.ones(2)}}
    >>> groups.structured(params)
    {'Conv_0': {'bias': None, 'kernel': (0, 1, 3)},
     'Dense_0': {'bias': None, 'kernel': (1,)}}
    >>> groups.structured(params, conv="output", rules=[("Dense_0/.*", None)])
    {'Conv_0': {'bias': None, 'kernel': (0, 1, 2)},
     'Dense_0': {'bias': None, 'kernel': None}}
    >>> reg = ramda_optax.group_lasso(1e-3, groups.structured)  # callable form
    >>> round(float(reg.value(params)), 6)  # 1e-3 · (√36 · 6 + 8 · √2 · √2)
    0.052
  """
  _check_choice("conv", conv, _LAYER_CHOICES)
  _check_choice("dense", dense, _LAYER_CHOICES)
  _check_choice("attention", attention, _ATTENTION_CHOICES)
  compiled = _compile_rules(rules)
  is_leaf = lambda x: isinstance(x, (nnx.Variable, optax.MaskedNode))
  flat, treedef = jax.tree_util.tree_flatten_with_path(params, is_leaf=is_leaf)
  names = [_names(keys) for keys, _ in flat]
  paths = ["/".join(n) for n in names]
  for pattern, _ in compiled:
    if not any(pattern.fullmatch(p) for p in paths):
      example = f" (paths look like {paths[-1]!r})" if paths else ""
      raise ValueError(
          f"rules: {pattern.pattern!r} matches no parameter path{example}."
      )

  def leaf_axes(names: list[str], path: str, leaf: Any) -> Axes | None:
    if isinstance(leaf, optax.MaskedNode):
      return None
    value = leaf.get_value() if isinstance(leaf, nnx.Variable) else leaf
    ndim = jnp.ndim(value)
    for pattern, axes in compiled:
      if pattern.fullmatch(path):
        return None if axes is None else layouts.normalize_axes(
            axes, ndim, f"{path} (rules: {pattern.pattern!r})"
        )
    return _layer_axes(names, ndim, conv, dense, attention)

  def wrap(leaf: Any, axes: Axes | None) -> Any:
    # An nnx.Variable keeps its wrapper, so the result matches nnx.State.
    if isinstance(leaf, nnx.Variable):
      return jax.tree.map(lambda _: axes, leaf)
    return axes

  return treedef.unflatten([
      wrap(leaf, leaf_axes(n, path, leaf))
      for n, path, (_, leaf) in zip(names, paths, flat)
  ])
