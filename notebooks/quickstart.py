# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Quickstart: a CNN that loses whole channels
#
# RAMDA (Huang & Lee, NeurIPS 2024) trains a network under a structured
# regularizer and returns weights in which whole groups are exactly zero. Here
# a small Flax CNN learns MNIST digits with **channel-wise group lasso** on its
# convolutions and **input-wise group lasso** on its classifier; we watch the
# channels disappear, then cut them out of the model.
#
# Everything runs on the MNIST subset bundled with `ramda_optax` (8,000
# training and 2,000 validation images), in about a minute on a laptop CPU.

# %%
import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import ramda_optax as ro

train, valid = ro.datasets.load_mnist10k()  # NumPy arrays
x_train, y_train = jnp.asarray(train.images), jnp.asarray(train.labels)
x_valid, y_valid = jnp.asarray(valid.images), jnp.asarray(valid.labels)
print(x_train.shape, x_valid.shape)

# %% [markdown]
# ## The model and its groups
#
# Two 3×3 convolutions with max pooling and a dense classifier.
# `ro.groups.structured` turns a params tree into the paper's groups: one
# group per **input channel** of each conv kernel (axes H, W, O of a
# `(H, W, I, O)` kernel) and one per **input feature** of each dense kernel.
# Biases are left free. When input channel *c* of the second convolution is
# zero, output channel *c* of the first one is dead and can be removed.


# %%
class SmallCNN(nn.Module):
  """conv 16 → pool → conv 32 → pool → dense 10."""

  @nn.compact
  def __call__(self, x):
    x = nn.max_pool(nn.relu(nn.Conv(16, (3, 3))(x)), (2, 2), (2, 2))
    x = nn.max_pool(nn.relu(nn.Conv(32, (3, 3))(x)), (2, 2), (2, 2))
    return nn.Dense(10)(x.reshape(len(x), -1))


model = SmallCNN()
params = model.init(jax.random.key(0), x_train[:1])["params"]
groups = ro.groups.structured(params)
jax.tree.map(lambda p, g: (p.shape, g), params, groups)

# %% [markdown]
# ## The optimizer
#
# `ro.ramda` is an ordinary `optax.GradientTransformation`. The paper's
# stage-wise schedule (`ro.stagewise_schedule`) decays the learning rate at
# each milestone, restarts the dual averaging there, and ramps the averaging
# weight up to 1 in the last stage, so that the weights W end up exactly equal
# to the structured subproblem solution θ̂. Each step's subproblem is solved
# exactly for the group lasso (`ro.default_solver()`); `solver=ro.pg_solver()`
# gives the paper's inexact proximal gradient instead.

# %%
EPOCHS, BATCH = 10, 128
steps_per_epoch = len(y_train) // BATCH
milestone = 7 * steps_per_epoch  # one restart, for the last 3 epochs

optimizer = ro.ramda(
    **ro.stagewise_schedule(1e-2, 0.1, [milestone]),
    regularizer=ro.group_lasso(1e-4, groups),
)
opt_state = optimizer.init(params)


def loss_fn(params, images, labels):
  logits = model.apply({"params": params}, images)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


@jax.jit
def train_step(params, opt_state, batch):
  grads = jax.grad(loss_fn)(params, x_train[batch], y_train[batch])
  updates, opt_state = optimizer.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


@jax.jit
def evaluate(params, opt_state):
  logits = model.apply({"params": params}, x_valid)
  theta = ro.subproblem_solution(opt_state, params)
  return (
      100 * jnp.mean(jnp.argmax(logits, -1) == y_valid),
      100 * ro.weighted_group_sparsity(params, groups),
      100 * ro.weighted_group_sparsity(theta, groups),
  )


# %% [markdown]
# ## Training
#
# Each epoch records the validation accuracy and the **weighted group
# sparsity**: the share of regularized parameters that sit in all-zero
# groups, for W and for θ̂ (`ro.subproblem_solution` rebuilds θ̂ from the
# optimizer state).

# %%
key = jax.random.key(1)
history = []
for epoch in range(EPOCHS):
  key, sub = jax.random.split(key)
  order = np.asarray(jax.random.permutation(sub, len(y_train)))
  for i in range(steps_per_epoch):
    params, opt_state = train_step(
        params, opt_state, order[i * BATCH:(i + 1) * BATCH])
  history.append([float(x) for x in evaluate(params, opt_state)])
  print(f"epoch {epoch + 1:2d}: accuracy {history[-1][0]:.2f}%, "
        f"sparsity W {history[-1][1]:.1f}%, θ̂ {history[-1][2]:.1f}%")

# %%
history = np.array(history)
epochs = np.arange(1, EPOCHS + 1)
fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3), dpi=60)
left.plot(epochs, history[:, 1], label="W")
left.plot(epochs, history[:, 2], "--", label=r"$\hat\theta$")
left.set(xlabel="epoch", ylabel="weighted group sparsity (%)")
left.axvline(milestone / steps_per_epoch, color="gray", lw=0.5)
left.legend()
right.plot(epochs, history[:, 0])
right.set(xlabel="epoch", ylabel="validation accuracy (%)")
fig.tight_layout()

# %% [markdown]
# θ̂ is sparse from the first epochs; W follows in the last stage (after the
# gray line), when the averaging weight reaches 1. At the end both agree:

# %%
assert history[-1, 1] == history[-1, 2]
print(ro.structure_report(params, groups))

# %% [markdown]
# ## Compaction
#
# Zero input channels of `Conv_1` mean dead output channels of `Conv_0`; zero
# input features of `Dense_0` mean dead channels of `Conv_1` (a channel is
# removed when its rows are zero at every spatial position). `ro.compact`
# removes them and returns smaller params together with the new widths (`features`), and
# `ro.model_cost` counts parameters and multiply-accumulates.

# %%
layers = (ro.compaction.Conv("Conv_0"), ro.compaction.Pool((2, 2), (2, 2)),
          ro.compaction.Conv("Conv_1"), ro.compaction.Pool((2, 2), (2, 2)),
          ro.compaction.Flatten(), ro.compaction.Dense("Dense_0"))
small = ro.compact(params, layers)
print("output units kept per layer:", small.features)


class NarrowCNN(nn.Module):
  """SmallCNN with the widths compaction found."""

  widths: tuple[int, int]

  @nn.compact
  def __call__(self, x):
    for width in self.widths:
      x = nn.max_pool(nn.relu(nn.Conv(width, (3, 3))(x)), (2, 2), (2, 2))
    return nn.Dense(10)(x.reshape(len(x), -1))


narrow = NarrowCNN((small.features["Conv_0"], small.features["Conv_1"]))
big_logits = model.apply({"params": params}, x_valid)
small_logits = narrow.apply({"params": small.params}, x_valid)
before = ro.model_cost(params, layers, (28, 28, 1))
after = ro.model_cost(small.params, layers, (28, 28, 1))
print(f"parameters {before.params:,} → {after.params:,} "
      f"({after.params / before.params:.2f}×)")
print(f"MACs       {before.macs:,} → {after.macs:,} "
      f"({after.macs / before.macs:.2f}×)")
print(f"accuracy   {100 * jnp.mean(big_logits.argmax(-1) == y_valid):.2f}%"
      f" → {100 * jnp.mean(small_logits.argmax(-1) == y_valid):.2f}%")
print(f"largest logit change: {jnp.max(jnp.abs(big_logits - small_logits)):.1e}")

# %% [markdown]
# The narrow model computes the same function (up to float rounding) with a
# fraction of the work. Next: `structure_identification.ipynb` follows how
# and when the zero pattern settles, and `custom_regularizer.ipynb` builds a
# new regularizer and preconditioner.
