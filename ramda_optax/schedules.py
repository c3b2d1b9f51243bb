"""The paper's stage-wise schedule: decays, restarts and the momentum ramp."""

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import optax

from ramda_optax import _validation
from ramda_optax import accumulator

METHODS = ("ramda", "rmda", "lr_decay")


def value_at(schedule: optax.ScalarOrSchedule, count: Any) -> Any:
  """A hyperparameter's value at step ``count``: ``schedule(count)`` for a
  schedule, else the number itself."""
  return schedule(count) if callable(schedule) else schedule


def stagewise_schedule(
    learning_rate: float,
    c: float | None,
    milestones: Sequence[int],
    gamma: float = 0.1,
    *,
    method: str = "ramda",
) -> dict[str, Any]:
  r"""The stage-wise schedule of Huang & Lee (2024), App. A.1, as kwargs.

  At each milestone the learning rate is multiplied by γ. For the
  dual-averaging methods the dual averaging also restarts there (and, for
  RAMDA, ε is multiplied by γ); the averaging weight c is constant until the
  last stage, whose j-th step uses c_j = min(c √j, 1), so that W becomes θ̂
  exactly after ⌈1/c²⌉ steps. The last stage starts at the last milestone, or
  at step 0 when there is none. ProxSGD, ProxGen and ProxSSI only decay the
  learning rate (``method="lr_decay"``).

  Args:
    learning_rate: the first stage's learning rate, ≥ 0.
    c: the averaging weight 1 − momentum, in (0, 1]; ignored (may be None)
      for ``"lr_decay"``.
    milestones: strictly increasing global steps, ≥ 1.
    gamma: the decay factor in (0, 1].
    method: ``"ramda"``, ``"rmda"`` or ``"lr_decay"``.

  Returns:
    Keyword arguments for :func:`ramda_optax.ramda` (``learning_rate``,
    ``momentum``, ``restart_steps``, ``eps_decay``), :func:`ramda_optax.rmda`
    (the same without ``eps_decay``) or the proximal methods
    (``learning_rate``).

  Example:
    >>> import ramda_optax
    >>> kwargs = ramda_optax.stagewise_schedule(1e-2, 0.01, [1000, 2000])
    >>> opt = ramda_optax.ramda(**kwargs)
  """
  if method not in METHODS:
    raise ValueError(f"method must be one of {METHODS}; got {method!r}.")
  _validation.check_range("learning_rate", learning_rate, 0.0)
  _validation.check_range("gamma", gamma, 0.0, 1.0, low_open=True)
  milestones = accumulator.check_restart_steps(milestones)
  lr = optax.piecewise_constant_schedule(
      learning_rate, {m: gamma for m in milestones}
  )
  if method == "lr_decay":
    return {"learning_rate": lr}
  if c is None:
    raise ValueError(f"c must lie in (0, 1] for method {method!r}; got None.")
  _validation.check_range("c", c, 0.0, 1.0, low_open=True)
  last = milestones[-1] if milestones else 0

  def momentum(count):
    # (In the default float dtype: float64 under x64, at an int32 count.)
    j = jnp.asarray(jnp.maximum(count - last + 1, 1), float)
    ramp = jnp.minimum(c * jnp.sqrt(j), 1.0)
    return 1.0 - jnp.where(count >= last, ramp, c)

  kwargs = {"learning_rate": lr, "momentum": momentum, "restart_steps": milestones}
  if method == "ramda":
    kwargs["eps_decay"] = gamma
  return kwargs
