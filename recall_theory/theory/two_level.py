"""The two-level reward in closed form: recall in, aligned mass out (theory items 2-4).

A two-level reward gives every output in the target set A the reward ``gap`` more
than every output outside it. Writing ``p = pi_ref(A)`` (the reference's **recall**
of A), the reverse-KL optimum puts mass

    pi*(A) = sigmoid(logit p + gap / beta)                        (set-mass law)

on A. Mass 1/2 needs ``gap/beta >= log((1-p)/p)``; ``p = 0`` gives ``pi*(A) = 0`` for
every finite gap and beta: the support is inherited (the low-recall trap in one line).
Its KL cost is the Bernoulli divergence ``kl(pi*(A) || p)``; and *any* policy within
KL budget K of the reference has ``pi(A) <= kl_ceiling(p, K)`` (data processing), a
curve pi* lies exactly on.

All functions broadcast their arguments, jit and vmap, and work in log space, so
``p`` down to 1e-300 is exact in float64 (and to ~1e-38 in float32).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from recall_theory import errors
from recall_theory.theory import _validate


def _float(x):
  x = jnp.asarray(x)
  return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def log_odds(p: jax.Array) -> jax.Array:
  """``logit p = log p - log(1 - p)``; -inf at 0 and +inf at 1, exact for tiny p."""
  p = _float(p)
  return jnp.log(p) - jnp.log1p(-p)


def aligned_logit(recall, gap, beta) -> jax.Array:
  """``logit pi*(A) = logit p + gap / beta`` (reverse-KL optimum, two-level reward)."""
  _validate.recall(recall)
  _validate.gap(gap)
  _validate.beta(beta)
  errors.check_broadcastable(recall=recall, gap=gap, beta=beta)
  return log_odds(recall) + _float(gap) / _float(beta)


def aligned_mass(recall, gap, beta) -> jax.Array:
  """Target mass of the KL-regularized optimum under a two-level reward.

  ``pi*(A) = sigmoid(logit p + gap / beta)`` with ``p = recall = pi_ref(A)``.

  Args:
    recall: reference mass on the target set, in [0, 1] (broadcasts).
    gap: reward difference between A and its complement, finite (broadcasts).
    beta: KL coefficient, > 0 (broadcasts).

  Returns:
    The aligned mass, with the broadcast shape; exactly 0 at recall 0 and 1 at recall 1.

  Example:
    >>> aligned_mass(1e-6, gap=10.0, beta=1.0)   # 1e-6 * e^10 / (1 - 1e-6 + 1e-6 e^10)
    Array(0.0215..., dtype=float32)

  Reference: theory.md item 2; Korbak et al. (2022).
  """
  _validate.recall(recall)
  _validate.gap(gap)
  _validate.beta(beta)
  errors.check_broadcastable(recall=recall, gap=gap, beta=beta)
  return jax.nn.sigmoid(aligned_logit(recall, gap, beta))


def aligned_log_mass(recall, gap, beta) -> jax.Array:
  """``log pi*(A)`` (accurate when the mass itself underflows)."""
  return jax.nn.log_sigmoid(aligned_logit(recall, gap, beta))


def required_gap(recall, target_mass, beta) -> jax.Array:
  """Reward gap that lifts recall p to aligned mass t: ``beta (logit t - logit p)``.

  +inf when p = 0 < t (no finite gap escapes the trap).
  """
  _validate.recall(recall)
  _validate.recall(target_mass, "target_mass")
  _validate.beta(beta)
  return _float(beta) * (log_odds(target_mass) - log_odds(recall))


def bernoulli_kl(a, b) -> jax.Array:
  """``kl(a || b) = a log(a/b) + (1-a) log((1-a)/(1-b))`` with 0 log 0 = 0.

  +inf when b in {0, 1} and a differs from b.
  """
  _validate.recall(a, "a")
  _validate.recall(b, "b")
  errors.check_broadcastable(a=a, b=b)
  a, b = _float(a), _float(b)
  return _bernoulli_kl_logs(jnp.log(a), jnp.log1p(-a), jnp.log(b), jnp.log1p(-b))


def _bernoulli_kl_logs(log_a, log1m_a, log_b, log1m_b) -> jax.Array:
  """kl(a||b) from the four logs, so that a = sigmoid(x) needs no exp/log round trip."""
  a, one_minus_a = jnp.exp(log_a), jnp.exp(log1m_a)
  first = jnp.where(a > 0, a * (log_a - jnp.where(a > 0, log_b, 0.0)), 0.0)
  second = jnp.where(one_minus_a > 0, one_minus_a * (log1m_a - jnp.where(one_minus_a > 0, log1m_b, 0.0)), 0.0)
  # Each term can round below zero when a ~ b; the divergence itself never is.
  return jnp.maximum(first + second, 0.0)


def aligned_kl(recall, gap, beta) -> jax.Array:
  """``KL(pi* || pi_ref) = kl(pi*(A) || p)`` for the two-level reward (theory item 3)."""
  _validate.recall(recall)
  _validate.gap(gap)
  _validate.beta(beta)
  x = aligned_logit(recall, gap, beta)
  p = _float(recall)
  return _bernoulli_kl_logs(jax.nn.log_sigmoid(x), jax.nn.log_sigmoid(-x), jnp.log(p), jnp.log1p(-p))


def pair_coverage(recall) -> jax.Array:
  """Probability that a preference pair drawn i.i.d. from pi_ref involves A.

  ``1 - (1 - p)^2 ~ 2p``: the sampling trap of DPO-style data (theory item 5).
  """
  _validate.recall(recall)
  p = _float(recall)
  return -jnp.expm1(2.0 * jnp.log1p(-p))
