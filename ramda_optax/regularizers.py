"""Regularizers ψ: their value, scalar-metric prox and screening, per leaf.

A :class:`Regularizer` pairs a strength λ (a number or an optax schedule) with a
``layout`` that maps a params pytree to one *leaf penalty* per leaf (``None``
for leaves that are not regularized). A leaf penalty is a small hashable
object that knows, with unit strength, the value of ψ on one leaf, its prox
under a metric that is constant on each block (a group), the exact screening
rule, and the blockwise maximum used for proximal-gradient step sizes. Solvers
only talk to leaf penalties, so a new regularizer never touches the
optimizers.

Reference: Huang & Lee, NeurIPS 2024 (arXiv 2403.14398), Section 2 and App. A.
"""

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import optax

from ramda_optax import _numerics
from ramda_optax import _validation
from ramda_optax.layouts import Axes
from ramda_optax.layouts import GroupsSpec
from ramda_optax.layouts import MaskSpec
from ramda_optax.layouts import is_axes_leaf
from ramda_optax.layouts import leaf_groups
from ramda_optax.layouts import leaf_mask


class LeafPenalty(Protocol):
  """Unit-strength ψ restricted to one leaf, split into independent blocks.

  Every method works on arrays of the leaf's shape; "block-shaped" arrays
  broadcast against the leaf (one entry per block, size-1 reduced axes).
  ``separable`` is True when every block is a single entry, so that the prox
  under any diagonal metric has a closed form.
  """

  separable: bool

  def value(self, x: jax.Array) -> jax.Array:
    """ψ(x) for this leaf, unit strength."""

  def prox(self, y: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(z, ψ_blocks(z))``: z = argmin ½‖z − y‖² + t ψ(z) for a block-shaped
    t, and ψ(z) per block (block-shaped)."""

  def screen(self, b: jax.Array, t: jax.Array) -> jax.Array:
    """Block-shaped mask: False where the block of argmin_θ ½‖θ‖²_P − <b, θ> +
    t ψ(θ) is provably zero (for any positive diagonal P)."""

  def block_max(self, x: jax.Array) -> jax.Array:
    """Block-shaped maximum of x over each block."""

  def block_axes(self, ndim: int) -> tuple[int, ...]:
    """The axes a block spans (size 1 in block-shaped arrays)."""

  def block_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The block-shaped arrays' shape for a leaf of ``shape``."""


@dataclasses.dataclass(frozen=True)
class GroupNorm:
  """ψ(θ) = Σ_g √|g| ‖θ_g‖₂ on one leaf, groups reducing over ``axes``.

  Every index of the axes not in ``axes`` is one group; ``axes=()`` makes
  every entry its own group (ψ = ‖θ‖₁).

  Attributes:
    axes: the axes a group norm reduces over, non-negative and sorted.
    group_size: |g|, the number of entries in one group.
  """

  axes: Axes
  group_size: int

  @property
  def weight(self) -> float:
    return math.sqrt(self.group_size)

  @property
  def separable(self) -> bool:
    return self.group_size == 1

  def norm(self, x: jax.Array) -> jax.Array:
    """Group-shaped ‖x_g‖₂."""
    return jnp.sqrt(jnp.sum(x * x, axis=self.axes, keepdims=True))

  def value(self, x: jax.Array) -> jax.Array:
    return self.weight * jnp.sum(self.norm(x))

  def prox(self, y: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    # Block soft-thresholding: z_g = y_g max(0, 1 − κ/‖y_g‖), κ = t √|g|;
    # its norm is max(0, ‖y_g‖ − κ), which gives ψ(z) without another pass.
    norm = self.norm(y)
    kappa = t * self.weight
    shrunk = jnp.maximum(norm - kappa, 0.0)
    scale = _numerics.safe_divide(shrunk, norm)
    return y * scale, self.weight * shrunk

  def screen(self, b: jax.Array, t: jax.Array) -> jax.Array:
    # Deleu & Bengio (2021): θ_g = 0 at the optimum iff ‖b_g‖ ≤ t √|g|.
    return self.norm(b) > t * self.weight

  def block_max(self, x: jax.Array) -> jax.Array:
    return jnp.max(x, axis=self.axes, keepdims=True)

  def block_axes(self, ndim: int) -> Axes:
    del ndim
    return self.axes

  def block_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(1 if i in self.axes else n for i, n in enumerate(shape))


@dataclasses.dataclass(frozen=True)
class NuclearNorm:
  """ψ(θ) = Σ_i σ_i(M), M the (∏ leading dims, last dim) matrix view of θ.

  A Dense kernel (I, O) is its own matrix; a Conv kernel (H, W, I, O) is
  viewed as (H·W·I, O), one column per output channel. The leaf is a single
  block: no screening, one PG step size.
  """

  separable = False

  def _matrix(self, x: jax.Array) -> jax.Array:
    return x.reshape(-1, x.shape[-1])

  def value(self, x: jax.Array) -> jax.Array:
    return jnp.sum(jnp.linalg.svd(self._matrix(x), compute_uv=False))

  def prox(self, y: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    # Singular value soft-thresholding. An infinite entry becomes NaN first:
    # XLA:CPU's SVD may never return on infinite input.
    y = jnp.where(jnp.isinf(y), jnp.nan, y)
    u, sigma, vt = jnp.linalg.svd(self._matrix(y), full_matrices=False)
    shrunk = jnp.maximum(sigma - jnp.reshape(t, ()), 0.0)
    z = (u * shrunk) @ vt
    return z.reshape(y.shape), jnp.sum(shrunk).reshape((1,) * y.ndim)

  def screen(self, b: jax.Array, t: jax.Array) -> jax.Array:
    del t
    return jnp.ones((1,) * b.ndim, bool)

  def block_max(self, x: jax.Array) -> jax.Array:
    return jnp.max(x, keepdims=True)

  def block_axes(self, ndim: int) -> Axes:
    return tuple(range(ndim))

  def block_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
    return (1,) * len(shape)


class Regularizer(NamedTuple):
  """A regularizer λ ψ(θ) = λ Σ_leaves ψ_leaf(θ_leaf).

  Attributes:
    strength: λ ≥ 0, a number or an ``optax`` schedule of the step count.
    layout: ``params -> tuple`` of one :class:`LeafPenalty` or ``None`` per
      leaf of ``params`` (in ``jax.tree.leaves`` order); raises ``ValueError``
      when the specification does not fit ``params``.
  """

  strength: optax.ScalarOrSchedule
  layout: Callable[[Any], tuple[LeafPenalty | None, ...]]

  def value(self, params: Any, step: int = 0) -> jax.Array:
    """λ ψ(params), with a scheduled strength evaluated at ``step``."""
    strength = self.strength(step) if callable(self.strength) else self.strength
    penalties = self.layout(params)
    total = sum(
        pen.value(x)
        for pen, x in zip(penalties, jax.tree.leaves(params))
        if pen is not None
    )
    return strength * jnp.asarray(total, dtype=jnp.result_type(float))


def check_regularizer(regularizer: Any) -> None:
  """Raises ``TypeError`` unless ``regularizer`` is a Regularizer or None."""
  if regularizer is not None and not isinstance(regularizer, Regularizer):
    raise TypeError(
        f"regularizer must be a ramda_optax Regularizer or None; got "
        f"{regularizer!r}."
    )


def group_lasso(strength: optax.ScalarOrSchedule, groups: GroupsSpec) -> Regularizer:
  r"""Group lasso: ψ(θ) = λ Σ_g √|g| ‖θ_g‖₂.

  Each regularized leaf is split into groups by the axes a group norm reduces
  over; every index of the remaining axes is one group. The paper's groupings
  in Flax layouts are ``(0, 1, 3)`` for a Conv kernel (H, W, I, O), one group
  per input channel, and ``(1,)`` for a Dense kernel (I, O), one group per
  input feature.

  Args:
    strength: λ ≥ 0, a number or an ``optax`` schedule of the step count.
    groups: a pytree matching params whose leaves are ``None`` (not
      regularized) or tuples of ints (the reduced axes), or a callable
      ``params -> pytree``.

  Returns:
    A :class:`Regularizer`.

  Example:
    >>> import jax.numpy as jnp, ramda_optax
    >>> params = {'kernel': jnp.ones((3, 2)), 'bias': jnp.ones(2)}
    >>> reg = ramda_optax.group_lasso(0.1, {'kernel': (1,), 'bias': None})
    >>> round(float(reg.value(params)), 6)  # 0.1 · 3 groups · √2 · √2
    0.6

  References:
    Yuan & Lin, Model selection and estimation in regression with grouped
    variables, JRSS-B 2006; Huang & Lee, NeurIPS 2024, Section 5.
  """
  _validation.check_range("strength", strength, 0.0)
  if not callable(groups):
    # Fail early on specifications that fit no params at all.
    for axes in jax.tree.leaves(groups, is_leaf=is_axes_leaf):
      if axes is not None and not is_axes_leaf(axes):
        raise ValueError(
            f"groups: leaves must be None or tuples of ints; got {axes!r}."
        )

  def layout(params: Any) -> tuple[GroupNorm | None, ...]:
    shapes = [jnp.shape(x) for x in jax.tree.leaves(params)]
    return tuple(
        None if axes is None
        else GroupNorm(axes, math.prod(shape[i] for i in axes))
        for (_, axes), shape in zip(leaf_groups(groups, params), shapes)
    )

  return Regularizer(strength=strength, layout=layout)


def l1(strength: optax.ScalarOrSchedule, mask: MaskSpec = None) -> Regularizer:
  r"""ℓ1: ψ(θ) = λ Σ_i |θ_i|, with a closed-form prox under any diagonal metric.

  Args:
    strength: λ ≥ 0, a number or an ``optax`` schedule of the step count.
    mask: None (every leaf), or an ``optax.masked``-style pytree of bools
      matching params (True: regularized), or a callable ``params -> pytree``.

  Returns:
    A :class:`Regularizer`.

  References:
    Tibshirani, Regression shrinkage and selection via the lasso, 1996.
  """
  _validation.check_range("strength", strength, 0.0)

  def layout(params: Any) -> tuple[GroupNorm | None, ...]:
    return tuple(
        GroupNorm((), 1) if on else None
        for _, on in leaf_mask(mask, params, lambda x: True)
    )

  return Regularizer(strength=strength, layout=layout)


def nuclear_norm(
    strength: optax.ScalarOrSchedule, mask: MaskSpec = None
) -> Regularizer:
  r"""Nuclear norm: ψ(θ) = λ Σ_i σ_i(M) on each leaf's matrix view M.

  The matrix view keeps the last axis and flattens the others: a Flax Dense
  kernel (I, O) is itself, a Conv kernel (H, W, I, O) becomes (H·W·I, O), so
  a zero singular value removes one rank of the layer's input-to-output map.
  Solved by proximal gradient with singular-value soft-thresholding (use
  ``pg_solver(max_iters=5, rtol=1e-3)`` as the paper does); the SVD of every
  leaf makes it costlier than the group lasso.

  Args:
    strength: λ ≥ 0, a number or an ``optax`` schedule of the step count.
    mask: None (every leaf with two or more dimensions), or an
      ``optax.masked``-style pytree of bools matching params, or a callable
      ``params -> pytree``. A 1-D leaf marked True is refused.

  Returns:
    A :class:`Regularizer`.

  References:
    Huang & Lee, NeurIPS 2024, Section 5 (low-rank MLP on FashionMNIST).
  """
  _validation.check_range("strength", strength, 0.0)

  def layout(params: Any) -> tuple[NuclearNorm | None, ...]:
    flags = leaf_mask(mask, params, lambda x: jnp.ndim(x) >= 2)
    out = []
    for (where, on), x in zip(flags, jax.tree.leaves(params)):
      if on and jnp.ndim(x) < 2:
        raise ValueError(
            f"nuclear_norm: the leaf at {where} has shape {jnp.shape(x)}; a "
            "nuclear norm needs a leaf with at least 2 dimensions (mask it "
            "out)."
        )
      out.append(NuclearNorm() if on else None)
    return tuple(out)

  return Regularizer(strength=strength, layout=layout)
