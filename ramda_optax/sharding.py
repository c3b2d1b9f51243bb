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


def group_axis_specs(params: Any, groups: Any, axis_name: str,
                     axis_size: int) -> Any:
  """Partition specs that split each grouped leaf along the one axis its
  groups do not span, over ``axis_size`` devices of the mesh axis
  ``axis_name``, where that size divides it, and replicate every other leaf.

  That axis indexes the groups: a conv kernel's input channels and a dense
  kernel's input features under :func:`ramda_optax.groups.structured`'s
  defaults. On such shards the kernels of the default solver step each
  device's own groups, with no gather (:mod:`ramda_optax.partitioning`); a
  leaf split along an axis that its groups span is gathered for the
  kernel's step.

  Args:
    params: the parameters (concrete or abstract).
    groups: the group lasso's groups, a pytree like ``params`` of the axes
      each group spans, or None for a leaf without groups.
    axis_name: the mesh axis to split along.
    axis_size: its number of devices.

  Returns:
    A pytree like ``params`` of ``PartitionSpec``.

  Example:
    >>> import jax.numpy as jnp, ramda_optax
    >>> params = {"conv": jnp.zeros((3, 3, 8, 16)), "bias": jnp.zeros(16)}
    >>> groups = {"conv": (0, 1, 3), "bias": None}
    >>> specs = ramda_optax.sharding.group_axis_specs(params, groups, "model", 2)
    >>> tuple(specs["conv"]), tuple(specs["bias"])
    ((None, None, 'model', None), ())
  """
  leaves, treedef = jax.tree.flatten(params)
  specs = []
  for leaf, axes in zip(leaves, treedef.flatten_up_to(groups)):
    shape = jax.numpy.shape(leaf)
    spanned = () if axes is None else {a % len(shape) for a in axes}
    free = [d for d in range(len(shape)) if d not in spanned]
    if axes is None or len(free) != 1 or shape[free[0]] % axis_size:
      specs.append(PartitionSpec())
    else:
      specs.append(PartitionSpec(*(axis_name if d == free[0] else None
                                   for d in range(len(shape)))))
  return treedef.unflatten(specs)
