"""Construction-time checks of hyperparameters."""

import math
from typing import Any

import jax


def _concrete_float(value: Any) -> float | None:
  """Returns ``value`` as a float when it is a known number, else None.

  Schedules (callables) and traced arrays (e.g. hyperparameters injected by
  ``optax.inject_hyperparams`` under ``jax.jit``) cannot be checked here.
  """
  if callable(value) or isinstance(value, jax.core.Tracer):
    return None
  try:
    return float(value)
  except (TypeError, ValueError) as e:
    raise TypeError(f"expected a number or a schedule, got {value!r}") from e


def check_range(
    name: str,
    value: Any,
    low: float,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
  """Raises ``ValueError`` naming ``name`` if ``value`` is outside the range."""
  x = _concrete_float(value)
  if x is None:
    return
  too_low = x <= low if low_open else x < low
  too_high = x >= high if high_open else x > high
  if math.isnan(x) or too_low or too_high:
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    raise ValueError(
        f"{name} must lie in {lo}{low}, {high}{hi}; got {value!r}."
    )


def check_int(name: str, value: Any, low: int) -> None:
  """Raises ``ValueError`` naming ``name`` unless ``value`` is an int >= low."""
  if isinstance(value, bool) or not isinstance(value, int) or value < low:
    raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")


def check_params(params: Any, name: str) -> None:
  """Raises ``ValueError`` naming optimizer ``name`` when ``params`` is None."""
  if params is None:
    raise ValueError(
        f"{name} needs params: call update(updates, state, params)."
    )
