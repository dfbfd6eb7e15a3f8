"""Input validation shared by every track.

Checks run on concrete (host) values before anything is traced, so a bad argument
fails with a message that names it and its allowed range, never from inside jit.
The command line turns :class:`InputError` into one line on stderr and exit code 2.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


class InputError(ValueError):
  """A user-supplied argument is outside its allowed range."""


class TrainingDivergedError(RuntimeError):
  """A training run produced a non-finite value; the message names step and quantity."""


def _as_array(name: str, value: Any) -> np.ndarray:
  try:
    arr = np.asarray(value, dtype=np.float64)
  except (TypeError, ValueError) as err:
    raise InputError(f"{name} must be numeric, got {value!r}") from err
  if np.isnan(arr).any():
    raise InputError(f"{name} must not contain NaN")
  return arr


def _is_concrete(value: Any) -> bool:
  """False for jax tracers: validation is skipped under jit/vmap (values unknown)."""
  try:
    import jax.core
    return not isinstance(value, jax.core.Tracer)
  except ImportError:  # pragma: no cover
    return True


def check_probability(name: str, value: Any) -> None:
  """Raise unless every entry of ``value`` lies in [0, 1] and none is NaN."""
  if not _is_concrete(value):
    return
  arr = _as_array(name, value)
  if (arr < 0).any() or (arr > 1).any():
    bad = arr[(arr < 0) | (arr > 1)].ravel()[0]
    raise InputError(f"{name} must lie in [0, 1], got {bad:g}")


def check_positive(name: str, value: Any, *, allow_inf: bool = False) -> None:
  """Raise unless every entry of ``value`` is > 0 (and finite unless allow_inf)."""
  if not _is_concrete(value):
    return
  arr = _as_array(name, value)
  if (arr <= 0).any():
    bad = arr[arr <= 0].ravel()[0]
    raise InputError(f"{name} must be > 0, got {bad:g}")
  if not allow_inf and np.isinf(arr).any():
    raise InputError(f"{name} must be finite (0 < {name} < inf)")


def check_nonnegative(name: str, value: Any) -> None:
  """Raise unless every entry of ``value`` is >= 0 and finite."""
  if not _is_concrete(value):
    return
  arr = _as_array(name, value)
  if (arr < 0).any():
    bad = arr[arr < 0].ravel()[0]
    raise InputError(f"{name} must be >= 0, got {bad:g}")
  if np.isinf(arr).any():
    raise InputError(f"{name} must be finite")


def check_finite(name: str, value: Any) -> None:
  """Raise if ``value`` has NaN or +-inf entries."""
  if not _is_concrete(value):
    return
  arr = _as_array(name, value)
  if not np.isfinite(arr).all():
    raise InputError(f"{name} must be finite (no NaN or inf)")


def check_int_range(name: str, value: Any, low: int, high: float = math.inf) -> int:
  """Return ``value`` as int if low <= value <= high, else raise."""
  if isinstance(value, bool) or not float(value).is_integer():
    raise InputError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
  value = int(value)
  if not low <= value <= high:
    raise InputError(f"{name} must be an integer in [{low}, {high}], got {value}")
  return value


def check_broadcastable(**arrays: Any) -> tuple[int, ...]:
  """Return the broadcast shape of the named arrays or raise naming them."""
  shapes = {k: np.shape(v) for k, v in arrays.items()}
  try:
    return np.broadcast_shapes(*shapes.values())
  except ValueError as err:
    desc = ", ".join(f"{k}{list(s)}" for k, s in shapes.items())
    raise InputError(f"shapes do not broadcast: {desc}") from err


def check_same_shape(**arrays: Any) -> None:
  """Raise unless all named arrays have identical shapes."""
  shapes = {k: np.shape(v) for k, v in arrays.items()}
  if len(set(shapes.values())) > 1:
    desc = ", ".join(f"{k}{list(s)}" for k, s in shapes.items())
    raise InputError(f"shapes must match: {desc}")
