"""Finding the leaves of a pytree (gradients, params, optimizer state) that
hold a NaN or an infinity.

* :func:`nonfinite_leaves` (host side): the key paths of the bad leaves.
* :func:`check_finite` (jit-friendly): one bool per leaf.
* :func:`report_nonfinite` (inside jit): a ``jax.debug.callback`` that names
  the bad leaves when there are any.

What a non-finite gradient does without ``optax.apply_if_finite``
------------------------------------------------------------------

Nothing raises, and the inner solvers stay bounded: every loop is a
``lax.while_loop`` capped at ``max_iters`` (a PG loop over NaN iterates never
meets its stopping test and runs exactly ``max_iters`` times; the exact
solver's Newton loop stops at a NaN). What
happens instead, as measured on this package (``tests/test_conformance.py``
pins it), for :func:`ramda_optax.ramda` and a bad entry i of a group g:

* NaN gradient. V_i and U_i become NaN and stay NaN until the next restart
  (they are sums), so P_i = ∛U_i + ε is NaN at every later step; α and the
  other entries stay finite. The parameters stay finite: the NaN is masked
  without a sign, because the safe division in a − V/P treats a NaN P_i as
  "no curvature" (NaN > 0 is False), and the screening test
  ‖P_g W⁰_g − V_g‖ > τ√|g| is False for a NaN norm.

  - group lasso (``pg_solver`` or ``exact_solver``): the whole group g is
    screened out, so θ̂_g = 0 at every later step and W_g decays to 0 by the
    factor ``momentum`` per step (at once with ``momentum=0``). It looks like
    learned structure: :func:`ramda_optax.subproblem_zero_groups` and the
    sparsity metrics count it.
  - no regularizer: θ̂_i = W⁰_i; the entry is pulled back to the anchor and
    stays there. ℓ1: θ̂_i = 0 (an entry without curvature goes to the
    minimiser of τ|θ_i|).
  - nuclear norm: the whole leaf becomes NaN (the SVD of a NaN matrix).

* ±∞ gradient. V_i = ±∞ and U_i = P_i = +∞. Without a regularizer or with
  ℓ1, V_i/P_i = ∞/∞ is NaN and so is W_i. With the group lasso it depends on
  the signs: if g_i has the sign of W⁰_i, P_i W⁰_i − V_i = ∞ − ∞ is NaN and
  group g is screened out as above; otherwise it is infinite, group g stays
  active, W_i becomes NaN and the PG loop runs to ``max_iters``. W_i then
  stays NaN: the next gradient at W_i is NaN, which turns V_i into NaN and
  screens the group out.

Wherever θ̂_i is NaN, the θ̂ that the dual-averaging state keeps (for
:func:`ramda_optax.subproblem_solution`) holds the NaN too.

RMDA and ProxSGD (scalar metric): θ̂_i is NaN and the rest of θ̂_g is zero
(for ±∞ all of θ̂_g is NaN). With the nuclear norm, an infinite entry is
turned into NaN before the SVD (XLA:CPU's SVD may never return on infinite
input), and the leaf becomes NaN.
ProxGen and ProxSSI keep NaN Adam moments for good (an EMA never forgets a
NaN, and they do not restart) and zero group g at every later step.

So wrap the optimizer when non-finite gradients can happen (mixed precision,
loss spikes)::

  opt = optax.apply_if_finite(ramda_optax.ramda(...), max_consecutive_errors=5)

which skips the step and leaves the parameters and the inner state untouched.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _is_inexact(x: Any) -> bool:
  dtype = getattr(x, "dtype", None)
  return dtype is not None and jnp.issubdtype(dtype, jnp.inexact)


def _leaf_finite(x: Any) -> jax.Array:
  if not _is_inexact(x):
    return jnp.ones((), bool)
  return jnp.all(jnp.isfinite(x))


def nonfinite_leaves(tree: Any) -> list[str]:
  """Key paths of the leaves of ``tree`` that hold a NaN or an infinity.

  Host side (it reads the values); leaves that are not floating-point
  arrays are skipped.

  Args:
    tree: any pytree, e.g. gradients or an optimizer state.

  Returns:
    The ``jax.tree_util.keystr`` paths of the non-finite leaves, in
    ``jax.tree.leaves`` order; empty when everything is finite.

  Example:
    >>> import jax.numpy as jnp, ramda_optax
    >>> grads = {'w': jnp.array([1.0, jnp.nan]), 'b': jnp.array([jnp.inf]),
    ...          'c': jnp.ones(2)}
    >>> ramda_optax.nonfinite_leaves(grads)
    ["['b']", "['w']"]
  """
  paths = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if _is_inexact(leaf) and not bool(_leaf_finite(leaf)):
      paths.append(jax.tree_util.keystr(path))
  return paths


def check_finite(tree: Any) -> Any:
  """One flag per leaf: True where the leaf holds no NaN and no infinity.

  Works inside ``jax.jit``; leaves that are not floating-point arrays are
  True.

  Args:
    tree: any pytree of arrays.

  Returns:
    A pytree like ``tree`` of bool scalars.

  Example:
    >>> import jax, jax.numpy as jnp, ramda_optax
    >>> flags = jax.jit(ramda_optax.check_finite)(
    ...     {'w': jnp.array([1.0, jnp.nan]), 'b': jnp.zeros(2)})
    >>> {k: bool(v) for k, v in flags.items()}
    {'b': True, 'w': False}
  """
  return jax.tree.map(_leaf_finite, tree)


def _print(message: str) -> None:
  print(message)


def report_nonfinite(
    tree: Any,
    name: str = "tree",
    callback: Callable[[str], None] = _print,
) -> None:
  """Reports, from inside ``jax.jit``, which leaves of ``tree`` are not finite.

  A ``jax.debug.callback`` calls ``callback`` with ``"{name}: non-finite
  values at [paths]"`` when some leaf holds a NaN or an infinity, and does
  nothing otherwise. The callback runs asynchronously; call
  ``jax.effects_barrier()`` to wait for it.

  Args:
    tree: any pytree of arrays (e.g. the gradients of a train step).
    name: what to call the tree in the message.
    callback: ``str -> None``; ``print`` by default (``logging.warning``
      works too).

  Example:
    >>> import jax, jax.numpy as jnp, ramda_optax
    >>> @jax.jit
    ... def step(grads):
    ...   ramda_optax.report_nonfinite(grads, name="grads")
    ...   return jax.tree.map(lambda g: 2 * g, grads)
    >>> bad = {'w': jnp.array([1.0, jnp.nan]), 'b': jnp.zeros(2)}
    >>> _ = step(bad); jax.effects_barrier()
    grads: non-finite values at ["['w']"]
    >>> _ = step({'w': jnp.ones(2), 'b': jnp.zeros(2)}); jax.effects_barrier()
  """
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  paths = [jax.tree_util.keystr(path) for path, _ in leaves]
  flags = [_leaf_finite(leaf) for _, leaf in leaves]

  def host(flags):
    bad = [p for p, ok in zip(paths, flags) if not bool(np.asarray(ok))]
    if bad:
      callback(f"{name}: non-finite values at {bad}")

  jax.debug.callback(host, flags)
