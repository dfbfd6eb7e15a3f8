"""The KL-budget ceiling on target mass, for any algorithm (theory item 4).

If ``KL(pi || pi_ref) <= K`` then, by the data-processing inequality applied to the
indicator of A, ``kl(pi(A) || p) <= K`` with ``p = pi_ref(A)``. Hence

    pi(A) <= t*(p, K) := max{t in [p, 1] : kl(t || p) <= K}          (exact ceiling)
          <= (K + log 2) / log(1/p)                                  (loose bound)

whatever produced pi (PPO, DPO, best-of-N, ...). The Gibbs optimum of a two-level
reward lies exactly on the exact curve. ``kl(. || p)`` is increasing on [p, 1], so
t* is found by bisection in logit space, vectorised (every grid cell in parallel, a
fixed number of halvings: 2^-120 of the bracket, below float64 resolution).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from recall_theory import errors
from recall_theory.theory import _validate
from recall_theory.theory.two_level import _bernoulli_kl_logs, _float, log_odds

_BISECTION_STEPS = 120


def _kl_at_logit(x, log_p, log1m_p):
  return _bernoulli_kl_logs(jax.nn.log_sigmoid(x), jax.nn.log_sigmoid(-x), log_p, log1m_p)


@jax.jit
def _ceiling(p, budget):
  dtype = jnp.result_type(p, budget)
  p = p.astype(dtype)
  budget = budget.astype(dtype)
  log_p, log1m_p = jnp.log(p), jnp.log1p(-p)
  # kl(1 || p) = -log p: budgets at least that reach the whole space.
  reaches_one = budget >= -log_p
  # Bracket in logit space: lo = logit p (kl = 0), hi = logit of the largest float < 1.
  hi_bound = log_odds(jnp.asarray(1.0, dtype) - jnp.finfo(dtype).eps)
  safe_p = jnp.clip(p, jnp.finfo(dtype).tiny, 1.0 - jnp.finfo(dtype).eps)
  lo = jnp.broadcast_to(log_odds(safe_p), jnp.broadcast_shapes(p.shape, budget.shape))
  hi = jnp.broadcast_to(hi_bound, lo.shape)
  log_p_b = jnp.broadcast_to(log_p, lo.shape)
  log1m_p_b = jnp.broadcast_to(log1m_p, lo.shape)

  def halve(_, bracket):
    lo, hi = bracket
    mid = 0.5 * (lo + hi)
    below = _kl_at_logit(mid, log_p_b, log1m_p_b) <= budget
    return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

  lo, hi = jax.lax.fori_loop(0, _BISECTION_STEPS, halve, (lo, hi))
  t = jax.nn.sigmoid(lo)
  t = jnp.where(reaches_one, 1.0, t)
  t = jnp.where(p <= 0, 0.0, t)  # kl(t || 0) = inf for t > 0: nothing can be reached
  return jnp.where(budget <= 0, p, t)


def kl_ceiling(recall, budget) -> jax.Array:
  """Largest target mass of any policy within KL budget of the reference.

  Solves ``kl(t || p) = K`` for ``t >= p`` (the exact inverse of the Bernoulli KL),
  returning 1 when ``K >= log(1/p)`` and 0 when ``p = 0``.

  Args:
    recall: ``p = pi_ref(A)`` in [0, 1] (broadcasts).
    budget: ``K = `` bound on ``KL(pi || pi_ref)``, >= 0 (broadcasts).

  Returns:
    ``t*(p, K)`` with the broadcast shape.

  Example:
    >>> kl_ceiling(1e-6, 1.0)   # kl(t || 1e-6) = 1  ->  t = 0.0951281
  """
  _validate.recall(recall)
  _validate.budget(budget)
  errors.check_broadcastable(recall=recall, budget=budget)
  return _ceiling(_float(recall), _float(budget))


def kl_ceiling_loose(recall, budget) -> jax.Array:
  """Closed-form loose ceiling ``min(1, (K + log 2) / log(1/p))`` (0 at p = 0)."""
  _validate.recall(recall)
  _validate.budget(budget)
  errors.check_broadcastable(recall=recall, budget=budget)
  p, k = _float(recall), _float(budget)
  surprise = -jnp.log(p)
  bound = (k + jnp.log(2.0)) / jnp.where(surprise > 0, surprise, 1.0)
  return jnp.where(p <= 0, 0.0, jnp.where(surprise > 0, jnp.minimum(1.0, bound), 1.0))
