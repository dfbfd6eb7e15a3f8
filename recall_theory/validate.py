"""Argument checks for the theory functions and the divergences below them: host-side when
concrete, staged ``checkify`` checks when traced (see :mod:`recall_theory.errors`).

It sits below both :mod:`recall_theory.divergences` and :mod:`recall_theory.theory`, so the
theory can import the divergences at the top of a module without an import cycle."""

from __future__ import annotations

import numpy as np

from recall_theory import errors


def recall(value, name: str = "recall") -> None:
  """A probability in [0, 1], representable (not subnormal) in the computation dtype."""
  errors.check_probability(name, value)
  errors.check_normal(name, value)


def beta(value, name: str = "beta") -> None:
  """A coefficient in (0, inf), not subnormal (it would be flushed to 0 and divide by 0).
  The dtype check comes first: under jit a subnormal already compares as 0."""
  errors.check_normal(name, value)
  errors.check_positive(name, value)


def gap(value, name: str = "gap") -> None:
  errors.check_finite(name, value)
  errors.check_normal(name, value)


def budget(value, name: str = "budget") -> None:
  errors.check_nonnegative(name, value)
  errors.check_normal(name, value)


# log-probabilities may round a hair above 0 (log_softmax, logaddexp); probabilities
# passed by mistake are O(1) above it.
_LOG_PROB_SLACK = 1e-6


def log_probs(value, name: str) -> None:
  """Log-probabilities: no NaN, no +inf, every entry <= 0 (-inf is an exact zero)."""
  errors.require(value, name, lambda xp, x: xp.isnan(x), f"{name} must not contain NaN")
  errors.require(value, name, lambda xp, x: x > _LOG_PROB_SLACK,
                 f"{name} must be log-probabilities (<= 0), got {{:g}} (pass log(p), not p)")


def log_distribution(value, name: str, axis: int = -1, tolerance: float | None = None) -> None:
  """Log-probabilities along ``axis`` that form a distribution: not all ``-inf`` and
  ``logsumexp = 0`` within ``tolerance`` (an unnormalised input is named, not used).

  Default tolerance: ``max(1e-3, 8 eps)`` of the input's dtype (bfloat16 rounds log-softmax
  to ~1e-2)."""
  log_probs(value, name)
  if tolerance is None:
    import jax.numpy as jnp
    dtype = jnp.result_type(value if hasattr(value, "dtype") else np.asarray(value))
    eps = float(jnp.finfo(dtype).eps) if jnp.issubdtype(dtype, jnp.inexact) else 0.0
    tolerance = max(1e-3, 8.0 * eps)

  def lse(xp, x):
    top = xp.max(x, axis=axis, keepdims=True)
    safe_top = xp.where(xp.isfinite(top), top, 0.0)
    return xp.log(xp.sum(xp.exp(x - safe_top), axis=axis)) + xp.squeeze(safe_top, axis)

  errors.require(value, name, lambda xp, x: (xp.all(xp.isneginf(x), axis=axis),) * 2,
                 f"{name} is -inf everywhere along axis {axis}: no reference mass anywhere")
  def unnormalised(xp, x):
    total = xp.where(xp.all(xp.isneginf(x), axis=axis), 0.0, lse(xp, x))
    return xp.abs(total) > tolerance, total

  errors.require(value, name, unnormalised,
                 f"{name} must be normalised log-probabilities (logsumexp = 0 along axis {axis}), "
                 f"got logsumexp {{:g}}")


def reward(value, name: str = "reward") -> None:
  errors.check_finite(name, value)


def unit_interval(value, name: str) -> None:
  errors.check_probability(name, value)


def shapes(**arrays) -> tuple[int, ...]:
  return errors.check_broadcastable(**arrays)


def mask(value, name: str):
  """A set's membership mask as booleans. Integer or float masks must hold only 0 and 1
  and are converted with ``!= 0`` (``~`` on an integer is its bitwise not: ``~1 = -2``,
  still true, so a 0/1 mask would select both sides of the set)."""
  import jax.numpy as jnp
  errors.require(value, name, lambda xp, x: (x != 0) & (x != 1),
                 f"{name} must be a boolean mask (True/False, or 0/1), got {{:g}}")
  value = jnp.asarray(value)
  return value if value.dtype == jnp.bool_ else value != 0


def support_batch(value, name: str, axis: int, **arrays) -> None:
  """A scalar, or a batch ``[...]`` over the leading axes of ``arrays`` (``[..., K]``, the
  support last), as a batched beta or n."""
  shape = np.shape(value)
  full = errors.check_broadcastable(**arrays)
  if not shape:
    return
  if axis not in (-1, len(full) - 1):
    raise errors.InputError(f"{name} may be batched ({name}{list(shape)}) only when the support is "
                            f"the last axis, got axis={axis}")
  try:
    np.broadcast_shapes(shape + (1,), full)
  except ValueError:
    given = ", ".join(f"{k}{list(np.shape(v))}" for k, v in arrays.items())
    raise errors.InputError(f"{name}{list(shape)} must broadcast against the batch axes "
                            f"{list(full[:-1])} of {given}") from None
