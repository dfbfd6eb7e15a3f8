"""Divergences between discrete distributions, named by direction.

Shared by alignment regularizers (theory, mixtures) and distillation losses
(transformers). Inputs are **log-probabilities** along ``axis`` (normalised), so
rare outputs down to exp(-700) in float64 stay exact; mixtures of distributions are
formed with ``logsumexp``, never by adding log-probabilities.

Conventions (fixed here because libraries disagree):

* ``forward_kl(log_p, log_q) = KL(p || q) = sum p log(p/q)``: mass-covering for a
  model q fitted to data p (maximum likelihood, sequence-level distillation).
* ``reverse_kl(log_p, log_q) = KL(q || p) = sum q log(q/p)``: mode-seeking; the
  RLHF penalty KL(pi || pi_ref) is ``reverse_kl(log_ref, log_pi)``.
* ``jsd(log_p, log_q, beta) = beta KL(p||M) + (1-beta) KL(q||M)``, ``M = beta p +
  (1-beta) q``. ``beta -> 0`` gives ``beta * forward_kl`` to first order and
  ``beta -> 1`` gives ``(1-beta) * reverse_kl``; ``beta = 1/2`` is the symmetric JSD.
* ``skew_kl(log_p, log_q, alpha) = KL(p || alpha p + (1-alpha) q)`` (alpha=0: forward KL).
* ``tv(log_p, log_q) = 1/2 sum |p - q|``.

Terms with p = 0 contribute 0 (0 log 0 = 0); KL is +inf where p > 0 = q.

Inputs are validated (:mod:`recall_theory.errors`; staged checks under ``jit``, raised by
``errors.checked``; off inside ``errors.validation(False)``): no NaN, log-probabilities
(<= 0: probabilities passed by mistake are named), normalised along ``axis`` (logsumexp 0
within 1e-3), shapes that broadcast, ``beta`` and ``alpha`` in [0, 1]. Under a plain
``jit``/``vmap`` an invalid input gives NaN (:func:`recall_theory.errors.nan_on_invalid`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from recall_theory import errors
from recall_theory import validate as _validate


def _check(log_p, log_q, axis, names=("log_p", "log_q")):
  _validate.log_distribution(log_p, names[0], axis)
  _validate.log_distribution(log_q, names[1], axis)
  errors.check_broadcastable(**{names[0]: log_p, names[1]: log_q})


def _xlogy_diff(log_a: jax.Array, log_b: jax.Array) -> jax.Array:
  """a * (log a - log b) with 0 where a == 0 (handles -inf without NaN)."""
  a = jnp.exp(log_a)
  diff = jnp.where(a > 0, log_a - log_b, 0.0)
  return jnp.where(a > 0, a * diff, 0.0)


@errors.nan_on_invalid
def forward_kl(log_p: jax.Array, log_q: jax.Array, axis: int = -1) -> jax.Array:
  """KL(p || q) = sum_y p(y) [log p(y) - log q(y)] over ``axis``."""
  _check(log_p, log_q, axis)
  return jnp.sum(_xlogy_diff(log_p, log_q), axis=axis)


@errors.nan_on_invalid
def reverse_kl(log_p: jax.Array, log_q: jax.Array, axis: int = -1) -> jax.Array:
  """KL(q || p) = sum_y q(y) [log q(y) - log p(y)] over ``axis``."""
  _check(log_p, log_q, axis)
  return jnp.sum(_xlogy_diff(log_q, log_p), axis=axis)


def _log_mix(log_p: jax.Array, log_q: jax.Array, weight_p) -> jax.Array:
  """log(w p + (1-w) q) by logaddexp; exact at w in {0, 1} (log 0 = -inf drops a term)."""
  dtype = jnp.result_type(log_p, log_q)
  weight_p = jnp.asarray(weight_p, dtype=dtype)
  return jnp.logaddexp(jnp.log(weight_p) + log_p, jnp.log1p(-weight_p) + log_q)


@errors.nan_on_invalid
def jsd(log_p: jax.Array, log_q: jax.Array, beta=0.5, axis: int = -1) -> jax.Array:
  """Generalised Jensen-Shannon: beta KL(p||M) + (1-beta) KL(q||M), M = beta p + (1-beta) q.

  ``beta`` is a scalar in [0, 1]. At beta = 1/2 this is the usual JSD (<= log 2).
  Both endpoints give 0 (M collapses onto one argument): use forward_kl /
  reverse_kl for the limits, which ``jsd / beta`` and ``jsd / (1-beta)`` approach.
  """
  _check(log_p, log_q, axis)
  errors.check_probability("beta", beta)
  log_m = _log_mix(log_p, log_q, beta)
  return (beta * jnp.sum(_xlogy_diff(log_p, log_m), axis=axis)
          + (1.0 - beta) * jnp.sum(_xlogy_diff(log_q, log_m), axis=axis))


@errors.nan_on_invalid
def skew_kl(log_p: jax.Array, log_q: jax.Array, alpha=0.1, axis: int = -1) -> jax.Array:
  """Skew KL: KL(p || alpha p + (1-alpha) q); finite for alpha > 0 even where q = 0."""
  _check(log_p, log_q, axis)
  errors.check_probability("alpha", alpha)
  return jnp.sum(_xlogy_diff(log_p, _log_mix(log_p, log_q, alpha)), axis=axis)


@errors.nan_on_invalid
def tv(log_p: jax.Array, log_q: jax.Array, axis: int = -1) -> jax.Array:
  """Total variation 1/2 sum |p - q|."""
  _check(log_p, log_q, axis)
  return 0.5 * jnp.sum(jnp.abs(jnp.exp(log_p) - jnp.exp(log_q)), axis=axis)


DIVERGENCES = {
    "forward_kl": forward_kl,
    "reverse_kl": reverse_kl,
    "jsd": jsd,
    "skew_kl": skew_kl,
    "tv": tv,
}
