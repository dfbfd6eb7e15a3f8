"""Precision and recall of a model q against a reference p, on discrete supports (item 10).

* PRD curves (Sajjadi et al. 2018, "Assessing generative models via precision and
  recall"): for slopes lambda > 0,
  ``alpha(lambda) = sum_y min(lambda p(y), q(y))`` (precision) and
  ``beta(lambda) = alpha(lambda)/lambda = sum_y min(p(y), q(y)/lambda)`` (recall).
  ``alpha(1) = beta(1) = 1 - TV(p, q)``; ``beta(lambda -> 0) = p(supp q)`` (maximal
  recall); ``alpha(lambda -> inf) = q(supp p)`` (maximal precision).
* Log-likelihood precision/recall (the set-up of the paper): precision
  ``E_q[log p]`` (are the model's outputs likely under the truth?) and recall
  ``E_p[log q]`` (does the model keep the truth's outputs?). -inf when the model
  misses part of p's support: recall is exactly what distillation gives up.
* Support-based: precision ``q({p >= d})``, recall ``p({q >= d})`` for a density floor d.

``p`` is the ground truth (or teacher), ``q`` the model; inputs are log-probabilities
(no NaN, <= 0: probabilities passed by mistake are refused by name) that broadcast.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from recall_theory import errors
from recall_theory import validate as _validate
from recall_theory.theory.two_level import _float


def _check(log_p, log_q):
  _validate.log_probs(log_p, "log_p")
  _validate.log_probs(log_q, "log_q")
  errors.check_broadcastable(log_p=log_p, log_q=log_q)
  return _float(log_p), _float(log_q)


def _check_lambdas(lambdas):
  errors.check_positive("lambdas", lambdas)
  lambdas = _float(lambdas)
  if lambdas.ndim != 1:
    raise errors.InputError(f"lambdas must be a [A] vector, got shape {list(lambdas.shape)}")
  return lambdas


@errors.nan_on_invalid
def prd_curve(log_p: jax.Array, log_q: jax.Array, num_angles: int = 1001,
              axis: int = -1) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Precision/recall curve at slopes ``lambda = tan(theta)``, theta uniform in (0, pi/2).

  Returns ``(precision [..., A], recall [..., A], lambdas [A])``.
  """
  num_angles = errors.check_int_range("num_angles", num_angles, 3)
  log_p, log_q = _check(log_p, log_q)
  dtype = jnp.result_type(log_p, log_q, float)
  angles = jnp.linspace(0.0, jnp.pi / 2, num_angles + 2, dtype=dtype)[1:-1]
  lambdas = jnp.tan(angles)
  precision = prd_precision(log_p, log_q, lambdas, axis)
  return precision, precision / lambdas, lambdas


@errors.nan_on_invalid
def prd_precision(log_p: jax.Array, log_q: jax.Array, lambdas: jax.Array, axis: int = -1) -> jax.Array:
  """``alpha(lambda) = sum min(lambda p, q)`` for each lambda (trailing output axis)."""
  log_p, log_q = _check(log_p, log_q)
  lambdas = _check_lambdas(lambdas)
  p = jnp.moveaxis(jnp.exp(log_p), axis, -1)[..., None, :]
  q = jnp.moveaxis(jnp.exp(log_q), axis, -1)[..., None, :]
  return jnp.sum(jnp.minimum(lambdas[:, None] * p, q), axis=-1)


@errors.nan_on_invalid
def prd_recall(log_p: jax.Array, log_q: jax.Array, lambdas: jax.Array, axis: int = -1) -> jax.Array:
  """``beta(lambda) = sum min(p, q / lambda)`` (computed directly, not as alpha/lambda)."""
  log_p, log_q = _check(log_p, log_q)
  lambdas = _check_lambdas(lambdas)
  p = jnp.moveaxis(jnp.exp(log_p), axis, -1)[..., None, :]
  q = jnp.moveaxis(jnp.exp(log_q), axis, -1)[..., None, :]
  return jnp.sum(jnp.minimum(p, q / lambdas[:, None]), axis=-1)


@errors.nan_on_invalid
def max_recall(log_p: jax.Array, log_q: jax.Array, axis: int = -1) -> jax.Array:
  """``p(supp q)``: the limit of PRD recall as lambda -> 0."""
  log_p, log_q = _check(log_p, log_q)
  return jnp.sum(jnp.where(jnp.isfinite(log_q), jnp.exp(log_p), 0.0), axis=axis)


@errors.nan_on_invalid
def max_precision(log_p: jax.Array, log_q: jax.Array, axis: int = -1) -> jax.Array:
  """``q(supp p)``: the limit of PRD precision as lambda -> inf."""
  log_p, log_q = _check(log_p, log_q)  # named as given, before the swap
  return max_recall(log_q, log_p, axis)


@errors.nan_on_invalid
def loglik_precision(log_p: jax.Array, log_q: jax.Array, axis: int = -1) -> jax.Array:
  """``E_q[log p]`` (0 log 0 = 0; -inf if q puts mass where p = 0)."""
  log_p, log_q = _check(log_p, log_q)
  q = jnp.exp(log_q)
  return jnp.sum(jnp.where(q > 0, q * log_p, 0.0), axis=axis)


@errors.nan_on_invalid
def loglik_recall(log_p: jax.Array, log_q: jax.Array, axis: int = -1) -> jax.Array:
  """``E_p[log q]`` (-inf if q misses part of p's support)."""
  log_p, log_q = _check(log_p, log_q)  # named as given, before the swap
  return loglik_precision(log_q, log_p, axis)


@errors.nan_on_invalid
def support_precision_recall(log_p: jax.Array, log_q: jax.Array, floor,
                             axis: int = -1) -> tuple[jax.Array, jax.Array]:
  """``(q({p >= floor}), p({q >= floor}))``, the support-based precision and recall."""
  errors.check_nonnegative("floor", floor)
  log_p, log_q = _check(log_p, log_q)
  p, q = jnp.exp(log_p), jnp.exp(log_q)
  precision = jnp.sum(jnp.where(p >= floor, q, 0.0), axis=axis)
  recall = jnp.sum(jnp.where(q >= floor, p, 0.0), axis=axis)
  return precision, recall
