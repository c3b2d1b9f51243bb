"""Compaction: a group-sparse sequential Flax model made physically smaller.

Group lasso on input groups zeroes whole input slices of a layer: an input
channel i of a Conv kernel (…, I, O), the slice ``kernel[..., i, :]``, or an
input feature i of a Dense kernel (I, O), the row ``kernel[i]``. When slice j
of a weighted layer L+1 is zero, unit j of the weighted layer L before it
reaches the output only through a product with zero, whatever its bias, norm
and activation. So removing it (its kernel column and bias entry, the same
feature of every BatchNorm in between, and slice j of L+1) changes no output.

A model is described by its layers in order, with the specs below naming the
entries of a Linen params dict (``"Conv_0"``, or a path ``"block/Conv_0"``).
Elementwise activations are left out: they act per unit, so they take no
part in compaction or in counting MACs. :func:`compact` returns the smaller
params, the units kept and the new width of every layer, which are what you
need to instantiate the same Linen module with smaller widths.
:func:`model_cost` counts parameters and multiply-accumulates, so you can
report the saving.

Exactness rules:

- A :class:`LayerNorm` (or RMSNorm or GroupNorm) normalizes with statistics
  taken over the features. Dropping a feature changes the mean and variance
  seen by every other one, so the layer before it keeps all its units.
  Compaction never goes across such a norm.
- :class:`Flatten` is ``x.reshape(x.shape[0], -1)`` of a channels-last map,
  so feature (p, c) of P positions and C channels is row p·C + c of the next
  Dense kernel. Channel c is removed only if its rows are zero at every
  position.
- A layer keeps at least one unit (the first one), so the model stays valid
  when every slice is zero.
- Only input slices are looked at. Units with a zero kernel column and bias
  are not removed on that ground alone.
- The first layer's inputs and the last layer's outputs never change.

Models that these specs cannot describe exactly are refused with a
``ValueError`` that names the layer. Examples: a params entry that no spec
lists (a branch or a skip projection), a missing entry, widths that do not
chain, or a second Flatten. A skip connection without parameters cannot be
detected, so list only sequential models.
"""

import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Params = Any
Padding = str | int | Sequence[int | tuple[int, int]]


@dataclasses.dataclass(frozen=True)
class Dense:
  """A ``flax.linen.Dense``: ``kernel`` (I, O) and an optional ``bias`` (O,).

  Without a :class:`Flatten` before it, it acts on the last axis (channels)
  of whatever it is applied to.
  """

  name: str


@dataclasses.dataclass(frozen=True)
class Conv:
  """A ``flax.linen.Conv``: ``kernel`` (*window, I, O), optional ``bias`` (O,).

  ``strides``, ``padding`` and ``kernel_dilation`` are those given to the
  module. Only :func:`model_cost` uses them.
  """

  name: str
  strides: int | Sequence[int] = 1
  padding: Padding = "SAME"
  kernel_dilation: int | Sequence[int] = 1


@dataclasses.dataclass(frozen=True)
class BatchNorm:
  """A ``flax.linen.BatchNorm``: per-feature ``scale``/``bias`` in params and
  ``mean``/``var`` in batch_stats. It acts per feature, so the features of
  removed units are removed from it."""

  name: str


@dataclasses.dataclass(frozen=True)
class LayerNorm:
  """A norm whose statistics mix features (LayerNorm, RMSNorm, GroupNorm),
  with optional ``scale``/``bias``. No unit is removed across it."""

  name: str


@dataclasses.dataclass(frozen=True)
class Pool:
  """``flax.linen.max_pool`` or ``avg_pool`` with these arguments; strides
  default to 1 as in Flax."""

  window_shape: Sequence[int]
  strides: Sequence[int] | None = None
  padding: Padding = "VALID"


@dataclasses.dataclass(frozen=True)
class Flatten:
  """``x.reshape(x.shape[0], -1)`` of a channels-last feature map."""


Layer = Dense | Conv | BatchNorm | LayerNorm | Pool | Flatten
_WEIGHTED = (Dense, Conv)
_NORMS = (BatchNorm, LayerNorm)


class CompactionResult(NamedTuple):
  """The compacted model.

  Attributes:
    params: the new params, with the structure of the input params.
    batch_stats: the new batch_stats (None if none were given).
    kept: for every named layer, the indices of its output units (features
      for a norm) that were kept, in increasing order.
    features: for every named layer, its new number of output units
      (features for a norm).
  """

  params: Params
  batch_stats: Params | None
  kept: dict[str, np.ndarray]
  features: dict[str, int]


class ModelCost(NamedTuple):
  """Parameters (the params leaves; batch_stats excluded) and
  multiply-accumulates of one example's forward pass."""

  params: int
  macs: int


def _lookup(tree: Params | None, name: str) -> Any:
  node = tree
  for key in name.split("/"):
    if not isinstance(node, Mapping) or key not in node:
      return None
    node = node[key]
  return node


def _entry(
    tree: Params | None, layer: Layer, collection: str, allowed: set[str]
) -> dict[str, Any]:
  """The arrays of ``layer`` in ``tree`` ({} when absent), checked by key."""
  entry = _lookup(tree, layer.name)
  if entry is None:
    return {}
  if (not isinstance(entry, Mapping) or not set(entry) <= allowed
      or any(isinstance(v, Mapping) for v in entry.values())):
    keys = sorted(entry) if isinstance(entry, Mapping) else type(entry).__name__
    raise ValueError(
        f"{layer.name}: its {collection} entry holds {keys}; a "
        f"{type(layer).__name__} layer holds arrays named {sorted(allowed)}."
    )
  return dict(entry)


def _kernel(params: Params, layer: Dense | Conv) -> jax.Array:
  """The kernel of a weighted layer, with its bias shape checked."""
  entry = _entry(params, layer, "params", {"kernel", "bias"})
  if "kernel" not in entry:
    raise ValueError(f"{layer.name}: no params entry with a 'kernel'.")
  kernel = entry["kernel"]
  ndim_ok = kernel.ndim == 2 if isinstance(layer, Dense) else kernel.ndim >= 3
  if not ndim_ok:
    raise ValueError(
        f"{layer.name}: a {type(layer).__name__} kernel of shape "
        f"{kernel.shape} (expected (I, O) for Dense, (*window, I, O) for "
        "Conv)."
    )
  if "bias" in entry and entry["bias"].shape != kernel.shape[-1:]:
    raise ValueError(
        f"{layer.name}: bias of shape {entry['bias'].shape} for a kernel of "
        f"shape {kernel.shape}."
    )
  return kernel


def _norm_arrays(
    params: Params, batch_stats: Params | None, layer: BatchNorm | LayerNorm
) -> dict[tuple[str, str], jax.Array]:
  """``{(collection, key): array}`` of a norm, all 1-D of one size."""
  arrays = {
      ("params", k): v
      for k, v in _entry(params, layer, "params", {"scale", "bias"}).items()
  }
  if isinstance(layer, BatchNorm):
    stats = _entry(batch_stats, layer, "batch_stats", {"mean", "var"})
    if set(stats) != {"mean", "var"}:
      raise ValueError(
          f"{layer.name}: a BatchNorm needs its running 'mean' and 'var' in "
          "batch_stats."
      )
    arrays.update({("batch_stats", k): v for k, v in stats.items()})
  shapes = {v.shape for v in arrays.values()}
  if len(shapes) > 1 or any(len(shape) != 1 for shape in shapes):
    named = {"/".join(k): v.shape for k, v in arrays.items()}
    raise ValueError(f"{layer.name}: norm arrays of shapes {named}.")
  return arrays


def _leaf_paths(tree: Params, prefix: tuple[str, ...] = ()) -> Iterator[str]:
  if isinstance(tree, Mapping):
    for key, value in tree.items():
      yield from _leaf_paths(value, prefix + (str(key),))
  else:
    yield "/".join(prefix)


def _check_listed(
    tree: Params | None, names: set[str], collection: str
) -> None:
  """Every leaf of ``tree`` must belong to a layer in ``names``."""
  for path in _leaf_paths({} if tree is None else tree):
    if not any(path.startswith(name + "/") for name in names):
      raise ValueError(
          f"{path}: this {collection} entry belongs to no layer of `layers`. "
          "compact handles sequential models whose parameterized layers are "
          "all listed; a branch or skip connection cannot be compacted."
      )


def _named(layers: Sequence[Layer]) -> list[Dense | Conv | BatchNorm | LayerNorm]:
  """The layers with a name, after checking every spec and name."""
  named = []
  for i, layer in enumerate(layers):
    if not isinstance(layer, (*_WEIGHTED, *_NORMS, Pool, Flatten)):
      raise ValueError(
          f"layers[{i}] = {layer!r} is not a layer spec; use Dense, Conv, "
          "BatchNorm, LayerNorm, Pool or Flatten from ramda_optax.compaction."
      )
    if isinstance(layer, (*_WEIGHTED, *_NORMS)):
      if layer.name in {l.name for l in named}:
        raise ValueError(f"{layer.name}: listed twice in `layers`.")
      named.append(layer)
  if not any(isinstance(layer, _WEIGHTED) for layer in layers):
    raise ValueError("layers: no Dense or Conv layer.")
  return named


def _dead_inputs(kernel: jax.Array, width: int) -> np.ndarray:
  """Per unit c of the previous layer: True when every input slice of
  ``kernel`` it feeds is zero, input row r = p·width + c."""
  rows = np.moveaxis(np.asarray(kernel), -2, 0)
  rows = rows.reshape(rows.shape[0] // width, width, -1)
  return ~np.any(rows != 0, axis=(0, 2))


def _rows(keep: np.ndarray, width: int, repeat: int) -> np.ndarray:
  """Indices p·width + c for c in ``keep``, p < repeat."""
  return (np.arange(repeat)[:, None] * width + keep).ravel()


def _take(tree: dict, name: str, key: str, indices: np.ndarray, axis: int):
  """Slices the array ``tree[name…][key]`` in place along ``axis``."""
  entry = _lookup(tree, name)
  entry[key] = jnp.take(entry[key], indices, axis=axis)


def _thaw(tree: Params | None) -> Any:
  """A copy of the nested mappings as dicts, sharing the arrays."""
  if isinstance(tree, Mapping):
    return {k: _thaw(v) for k, v in tree.items()}
  return tree


def _transition(
    params: Params,
    batch_stats: Params | None,
    producer: Dense | Conv,
    between: Sequence[Layer],
    consumer: Dense | Conv,
) -> tuple[int, bool, list[tuple[BatchNorm | LayerNorm, int]]]:
  """How the units of ``producer`` reach ``consumer``.

  Returns ``(repeat, mixed, norms)``: the consumer has ``repeat`` input
  slices per unit (the positions flattened by a Flatten, else 1); ``mixed``
  is True when a norm in between mixes features; ``norms`` pairs each norm
  in between with its features per unit. Raises unless the widths chain.
  """
  width = _kernel(params, producer).shape[-1]
  inputs = _kernel(params, consumer).shape[-2]
  flattens = sum(isinstance(l, Flatten) for l in between)
  repeat = inputs // width if flattens else 1
  if (flattens > 1 or (flattens and isinstance(consumer, Conv))
      or inputs != repeat * width):
    raise ValueError(
        f"{consumer.name}: its {inputs} inputs do not follow from the "
        f"{width} outputs of {producer.name} through {list(between)} (with "
        "at most one Flatten, and none before a Conv)."
    )
  norms, after = [], False
  for layer in between:
    after |= isinstance(layer, Flatten)
    if isinstance(layer, Pool) and after:
      raise ValueError(f"{consumer.name}: a Pool after a Flatten before it.")
    if isinstance(layer, _NORMS):
      per_unit = repeat if after else 1
      shapes = {v.shape for v in _norm_arrays(params, batch_stats, layer).values()}
      if shapes - {(per_unit * width,)}:
        raise ValueError(
            f"{layer.name}: features of shape {shapes.pop()} where "
            f"{producer.name} gives {per_unit * width}."
        )
      norms.append((layer, per_unit))
  return repeat, any(isinstance(l, LayerNorm) for l in between), norms


def _checked(
    params: Params, layers: Sequence[Layer], batch_stats: Params | None
) -> list[Dense | Conv | BatchNorm | LayerNorm]:
  """The named layers, after checking their arrays and that they account
  for every array of ``params`` and ``batch_stats``."""
  named = _named(layers)
  for layer in named:
    if isinstance(layer, _WEIGHTED):
      _kernel(params, layer)
    else:
      _norm_arrays(params, batch_stats, layer)
  _check_listed(params, {l.name for l in named}, "params")
  bn_names = {l.name for l in named if isinstance(l, BatchNorm)}
  _check_listed(batch_stats, bn_names, "batch_stats")
  return named


def compact(
    params: Params,
    layers: Sequence[Layer],
    batch_stats: Params | None = None,
) -> CompactionResult:
  """Removes the units whose outgoing weights are all zero; exact.

  For every two consecutive weighted layers L, L+1 (Dense or Conv, with
  only the specs in between), unit j of L is removed when all the input
  slices of L+1 that it feeds are zero. It is removed from L's kernel
  (…, j) and bias, from every BatchNorm in between (scale, bias, running
  mean and var), and from L+1's input slices (…, j, :), all of them when a
  Flatten lies in between. The network computes the same function. Pairs
  are taken from the output back, with L+1 already compacted, so a unit
  whose outgoing weights reach only removed units is removed too.

  Args:
    params: the ``params`` collection of a Linen model (dicts or
      ``FrozenDict``).
    layers: the model's layers in order, as :class:`Dense`, :class:`Conv`,
      :class:`BatchNorm`, :class:`LayerNorm`, :class:`Pool` and
      :class:`Flatten` specs; activations are left out.
    batch_stats: the ``batch_stats`` collection, needed with a BatchNorm.

  Returns:
    A :class:`CompactionResult`; ``features`` gives the widths to
    instantiate the smaller model with. ``kept`` and ``features`` cover the
    weighted layers and the norms that hold arrays.

  Raises:
    ValueError: naming the layer, for a model the specs do not describe
      exactly (see the module docstring).

  Example:
    >>> import jax.numpy as jnp, ramda_optax as ro
    >>> from ramda_optax.compaction import Dense
    >>> params = {
    ...     'Dense_0': {'kernel': jnp.ones((3, 4)), 'bias': jnp.ones(4)},
    ...     'Dense_1': {'kernel': jnp.ones((4, 2)).at[1].set(0),
    ...                 'bias': jnp.zeros(2)}}
    >>> small = ro.compact(params, [Dense('Dense_0'), Dense('Dense_1')])
    >>> small.features, small.kept['Dense_0']
    ({'Dense_0': 3, 'Dense_1': 2}, array([0, 2, 3]))
    >>> small.params['Dense_1']['kernel'].shape
    (3, 2)
  """
  named = _checked(params, layers, batch_stats)
  new = {"params": _thaw(params), "batch_stats": _thaw(batch_stats)}
  kept = {}
  weighted = [i for i, l in enumerate(layers) if isinstance(l, _WEIGHTED)]
  for a, b in reversed(list(zip(weighted, weighted[1:]))):
    producer, consumer, between = layers[a], layers[b], layers[a + 1:b]
    repeat, mixed, norms = _transition(
        params, batch_stats, producer, between, consumer)
    width = _kernel(params, producer).shape[-1]
    dead = _dead_inputs(_lookup(new["params"], consumer.name)["kernel"], width)
    keep = np.arange(width) if mixed else np.flatnonzero(~dead)
    keep = keep if keep.size else np.zeros(1, int)
    _take(new["params"], producer.name, "kernel", keep, -1)
    if "bias" in _lookup(params, producer.name):
      _take(new["params"], producer.name, "bias", keep, 0)
    _take(new["params"], consumer.name, "kernel", _rows(keep, width, repeat), -2)
    kept[producer.name] = keep
    for norm, per_unit in norms:
      arrays = _norm_arrays(params, batch_stats, norm)
      for collection, key in arrays:
        _take(new[collection], norm.name, key, _rows(keep, width, per_unit), 0)
      if arrays:
        kept[norm.name] = _rows(keep, width, per_unit)
  for layer in named:
    arrays = (
        [_kernel(params, layer)] if isinstance(layer, _WEIGHTED)
        else list(_norm_arrays(params, batch_stats, layer).values()))
    if layer.name not in kept and arrays:
      kept[layer.name] = np.arange(arrays[0].shape[-1])
  kept = {l.name: kept[l.name] for l in named if l.name in kept}
  return CompactionResult(
      params=new["params"],
      batch_stats=new["batch_stats"],
      kept=kept,
      features={name: int(k.size) for name, k in kept.items()},
  )


def _as_tuple(value: int | Sequence[int], n: int) -> tuple[int, ...]:
  return (value,) * n if isinstance(value, int) else tuple(value)


def _window_out(
    spatial: tuple[int, ...],
    window: tuple[int, ...],
    strides: int | Sequence[int],
    dilation: int | Sequence[int],
    padding: Padding,
    where: str,
) -> tuple[int, ...]:
  """Output spatial shape of a strided, dilated window op (lax semantics)."""
  n = len(spatial)
  strides, dilation = _as_tuple(strides, n), _as_tuple(dilation, n)
  if not len(window) == len(strides) == len(dilation) == n:
    raise ValueError(
        f"{where}: a {len(window)}-D window on a feature map of spatial "
        f"shape {spatial}."
    )
  span = [(k - 1) * d + 1 for k, d in zip(window, dilation)]
  if isinstance(padding, str) and padding.upper() != "VALID":
    if padding.upper() not in ("SAME", "CIRCULAR", "REFLECT", "CAUSAL"):
      raise ValueError(f"{where}: unknown padding {padding!r}.")
    return tuple(-(-size // s) for size, s in zip(spatial, strides))
  pads = ([(0, 0)] * n if isinstance(padding, str) else
          [(p, p) if isinstance(p, int) else tuple(p)
           for p in _as_tuple(padding, n)])
  if len(pads) != n:
    raise ValueError(f"{where}: padding {padding!r} for {n} spatial axes.")
  return tuple(
      (size + lo + hi - k) // s + 1
      for size, k, s, (lo, hi) in zip(spatial, span, strides, pads)
  )


def model_cost(
    params: Params, layers: Sequence[Layer], input_shape: Sequence[int]
) -> ModelCost:
  """Parameters and multiply-accumulates (MACs) of one example.

  A Conv costs H_out·W_out·kh·kw·I·O MACs (for any number of spatial axes)
  and a Dense applied to shape (…, I) costs ∏(…)·I·O. Norms, pooling and
  activations are not counted.

  Args:
    params: the ``params`` collection.
    layers: the layer specs, as for :func:`compact`.
    input_shape: one example's shape, channels last, e.g. (28, 28, 1).

  Returns:
    A :class:`ModelCost`.

  Raises:
    ValueError: naming the layer, where the shapes do not chain.

  Example:
    >>> import jax.numpy as jnp, ramda_optax as ro
    >>> from ramda_optax.compaction import Conv, Dense, Flatten, Pool
    >>> params = {'Conv_0': {'kernel': jnp.ones((3, 3, 1, 4)), 'bias': jnp.ones(4)},
    ...           'Dense_0': {'kernel': jnp.ones((64, 10)), 'bias': jnp.ones(10)}}
    >>> layers = [Conv('Conv_0'), Pool((2, 2), (2, 2)), Flatten(), Dense('Dense_0')]
    >>> ro.model_cost(params, layers, (8, 8, 1))  # 8·8·9·4 + 64·10
    ModelCost(params=690, macs=2944)
  """
  _check_listed(params, {l.name for l in _named(layers)}, "params")
  shape, macs = tuple(input_shape), 0
  for layer in layers:
    if isinstance(layer, _WEIGHTED):
      kernel = _kernel(params, layer)
      spatial_ok = isinstance(layer, Dense) or len(shape) == kernel.ndim - 1
      if not shape or not spatial_ok or shape[-1] != kernel.shape[-2]:
        raise ValueError(
            f"{layer.name}: a kernel of shape {kernel.shape} applied to "
            f"features of shape {shape}."
        )
      if isinstance(layer, Conv):
        shape = _window_out(
            shape[:-1], kernel.shape[:-2], layer.strides,
            layer.kernel_dilation, layer.padding, layer.name) + shape[-1:]
      shape = shape[:-1] + kernel.shape[-1:]
      macs += math.prod(shape[:-1]) * math.prod(kernel.shape)
    elif isinstance(layer, Pool):
      window = tuple(layer.window_shape)
      shape = _window_out(
          shape[:-1], window, layer.strides or (1,) * len(window), 1,
          layer.padding, f"Pool {window}") + shape[-1:]
    elif isinstance(layer, Flatten):
      shape = (math.prod(shape),)
  count = sum(x.size for x in jax.tree.leaves(params))
  return ModelCost(params=count, macs=macs)
