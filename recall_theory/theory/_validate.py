"""Host-side argument checks for the theory functions (skipped for jax tracers)."""

from __future__ import annotations

from recall_theory import errors


def recall(value, name: str = "recall") -> None:
  errors.check_probability(name, value)


def beta(value, name: str = "beta") -> None:
  errors.check_positive(name, value)


def gap(value, name: str = "gap") -> None:
  errors.check_finite(name, value)


def budget(value, name: str = "budget") -> None:
  errors.check_nonnegative(name, value)


def log_probs(value, name: str) -> None:
  """log-probabilities: no NaN, no +inf (-inf is an exact zero and allowed)."""
  if not errors._is_concrete(value):
    return
  import numpy as np
  arr = np.asarray(value, dtype=np.float64)
  if np.isnan(arr).any():
    raise errors.InputError(f"{name} must not contain NaN")
  if np.isposinf(arr).any():
    raise errors.InputError(f"{name} must be log-probabilities (<= 0), got +inf")


def reward(value, name: str = "reward") -> None:
  errors.check_finite(name, value)
