"""Shardings for optimizer states under JAX SPMD.

Params and the optimizer state should carry the same sharding: every
params-shaped buffer of the state (W⁰, V, U, Adam moments...) is sharded like
the params, and scalars are replicated. Group norms over sharded axes then
become collectives under jit; the nuclear norm's SVD gathers each matrix.
"""

from typing import Any

import jax
from jax.sharding import NamedSharding, PartitionSpec


def state_shardings(
    state: Any, params: Any, param_shardings: Any, mesh: jax.sharding.Mesh
) -> Any:
  """Shardings for an optimizer state, following the params'.

  Args:
    state: the optimizer state, concrete or abstract (``jax.eval_shape``).
    params: the parameters (concrete or abstract).
    param_shardings: a pytree like ``params`` of shardings.
    mesh: the device mesh; leaves that are not params-shaped (counts,
      scalars, per-leaf iteration counts) are replicated over it.

  Returns:
    A pytree like ``state`` of shardings, for ``jax.jit``'s
    ``in_shardings``/``out_shardings`` or ``jax.device_put``.

  Example:
    >>> import jax, jax.numpy as jnp, numpy as np, ramda_optax
    >>> from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    >>> mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
    >>> params = {"w": jnp.ones((4, 2))}
    >>> shardings = {"w": NamedSharding(mesh, P("data", None))}
    >>> opt = ramda_optax.ramda(1e-2)
    >>> abstract = jax.eval_shape(opt.init, params)
    >>> state_sh = ramda_optax.sharding.state_shardings(abstract, params, shardings, mesh)
    >>> tuple(state_sh.dual.grad_sum["w"].spec)
    ('data', None)
  """
  treedef = jax.tree.structure(params)
  shapes = [jax.numpy.shape(x) for x in jax.tree.leaves(params)]
  replicated = NamedSharding(mesh, PartitionSpec())

  def params_like(node: Any) -> bool:
    return jax.tree.structure(node) == treedef and [
        jax.numpy.shape(x) for x in jax.tree.leaves(node)
    ] == shapes

  return jax.tree.map(
      lambda node: param_shardings if params_like(node) else replicated,
      state,
      is_leaf=params_like,
  )
