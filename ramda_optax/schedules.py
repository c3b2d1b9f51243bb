"""The paper's stage-wise schedule: decays, restarts and the momentum ramp."""

from collections.abc import Sequence
from typing import NamedTuple

import jax.numpy as jnp
import optax

from ramda_optax import _validation
from ramda_optax import dual_averaging


class StagewiseSchedule(NamedTuple):
  """Keyword arguments of :func:`ramda_optax.ramda` for a stage-wise run.

  Pass them on with ``ramda(**schedule._asdict(), regularizer=...)``.
  """

  learning_rate: optax.Schedule
  momentum: optax.Schedule
  restart_steps: tuple[int, ...]
  eps_decay: float


def stagewise_schedule(
    learning_rate: float,
    c: float,
    milestones: Sequence[int],
    gamma: float = 0.1,
) -> StagewiseSchedule:
  r"""The stage-wise schedule of Huang & Lee (2024), App. A.1.

  At each milestone the learning rate and ε are multiplied by γ and the dual
  averaging restarts. The averaging weight c is constant until the last
  stage; in the last stage (which starts at the last milestone, or at step 0
  when there is none) its j-th step uses c_j = min(c √j, 1), so that W
  becomes θ̂ exactly after ⌈1/c²⌉ steps.

  Args:
    learning_rate: the first stage's learning rate, ≥ 0.
    c: the averaging weight 1 − momentum, in (0, 1].
    milestones: strictly increasing global steps, ≥ 1.
    gamma: the decay factor in (0, 1].

  Returns:
    A :class:`StagewiseSchedule` of ``ramda`` keyword arguments.

  Example:
    >>> import ramda_optax
    >>> sched = ramda_optax.stagewise_schedule(1e-2, 0.01, [1000, 2000])
    >>> opt = ramda_optax.ramda(**sched._asdict())
  """
  _validation.check_range("learning_rate", learning_rate, 0.0)
  _validation.check_range("c", c, 0.0, 1.0, low_open=True)
  _validation.check_range("gamma", gamma, 0.0, 1.0, low_open=True)
  milestones = dual_averaging.check_restart_steps(milestones)
  last = milestones[-1] if milestones else 0

  def momentum(count):
    j = jnp.maximum(count - last + 1, 1)
    ramp = jnp.minimum(c * jnp.sqrt(j), 1.0)
    return 1.0 - jnp.where(count >= last, ramp, c)

  return StagewiseSchedule(
      learning_rate=optax.piecewise_constant_schedule(
          learning_rate, {m: gamma for m in milestones}
      ),
      momentum=momentum,
      restart_steps=milestones,
      eps_decay=gamma,
  )
