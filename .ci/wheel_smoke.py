"""One jitted RAMDA step from the installed wheel, on the bundled data.

.ci/run runs it with a fresh environment's Python from outside the source
tree, so that ``import ramda_optax`` finds the installed wheel.
"""

import importlib.metadata
import pathlib
import sys

import jax
import jax.numpy as jnp
import optax

import ramda_optax


def main():
  package = pathlib.Path(ramda_optax.__file__).resolve().parent
  assert package.is_relative_to(pathlib.Path(sys.prefix).resolve()), package
  assert (package / "py.typed").is_file()
  # The CPU kernels' sources ship in the wheel and build where they land.
  for name in ("ramda_group_step.cc", "ramda_pg_leaf.cc", "parallel.h"):
    assert (package / "csrc" / name).is_file(), name
  assert ramda_optax.cpu_kernel.available(), ramda_optax.cpu_kernel.library()
  meta = importlib.metadata.metadata("ramda-optax")
  assert meta["License-Expression"] == "Apache-2.0", meta["License-Expression"]

  train, validation = ramda_optax.datasets.load_mnist10k()
  assert train.images.shape == (8000, 28, 28, 1), train.images.shape
  assert validation.labels.shape == (2000,), validation.labels.shape
  x = jnp.asarray(train.images[:256].reshape(256, -1))
  y = jnp.asarray(train.labels[:256])

  # Logistic regression, one group per input pixel.
  params = {"w": jnp.zeros((784, 10)), "b": jnp.zeros(10)}
  optimizer = ramda_optax.ramda(
      1e-2, regularizer=ramda_optax.group_lasso(1e-3, {"w": (1,), "b": None}))
  state = optimizer.init(params)

  @jax.jit
  def step(params, state):
    loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(
        x @ p["w"] + p["b"], y).mean()
    value, grads = jax.value_and_grad(loss)(params)
    updates, state = optimizer.update(grads, state, params)
    return optax.apply_updates(params, updates), state, value

  params, state, value = step(params, state)
  leaves = jax.tree.leaves((params, state, value))
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in leaves
             if jnp.issubdtype(x.dtype, jnp.inexact))
  assert float(optax.tree.norm(params)) > 0
  sparsity = float(ramda_optax.weighted_group_sparsity(
      params, {"w": (1,), "b": None}))
  print(f"ramda-optax {meta['Version']} from {package}: one jitted RAMDA "
        f"step, loss {float(value):.4f}, weighted group sparsity "
        f"{sparsity:.3f}")


if __name__ == "__main__":
  main()
