"""The KL-budget ceiling on target mass, for any algorithm (theory item 4).

If ``KL(pi || pi_ref) <= K`` then, by the data-processing inequality applied to the
indicator of A, ``kl(pi(A) || p) <= K`` with ``p = pi_ref(A)``. Hence

    pi(A) <= t*(p, K) := max{t in [p, 1] : kl(t || p) <= K}          (exact ceiling)
          <= (K + log 2) / log(1/p)                                  (loose bound)

whatever produced pi (PPO, DPO, best-of-N, ...). The Gibbs optimum of a two-level
reward lies exactly on the exact curve. ``kl(. || p)`` is increasing on [p, 1], so
t* is found by bisection on the lift ``s = logit t - logit p >= 0``, vectorised (every
grid cell in parallel, a fixed number of halvings: 2^-120 of the bracket, below float64
resolution). Bracketing the lift, not the logit, keeps a small lift's relative precision
(``t - p ~ sqrt(2 K p (1-p))`` for small K), and there both t - p and kl come from the
series about t = p, without cancellation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from recall_theory import errors
from recall_theory import validate as _validate
from recall_theory.theory.two_level import _float, _lifted_kl, _log_odds

_BISECTION_STEPS = 120


@jax.jit
def _ceiling(p, budget):
  dtype = jnp.result_type(p, budget)
  shape = jnp.broadcast_shapes(p.shape, budget.shape)
  p = jnp.broadcast_to(p.astype(dtype), shape)
  budget = jnp.broadcast_to(budget.astype(dtype), shape)
  log_p, log1m_p = jnp.log(p), jnp.log1p(-p)
  # kl(1 || p) = -log p: budgets at least that reach the whole space.
  reaches_one = budget >= -log_p
  # Bracket the lift s = logit t - logit p: lo = 0 (kl = 0), hi reaches the logit of the
  # largest float < 1.
  one_below = jnp.asarray(1.0, dtype) - jnp.finfo(dtype).eps
  safe_p = jnp.clip(p, jnp.finfo(dtype).tiny, one_below)
  lo = jnp.zeros(shape, dtype)
  hi = jnp.maximum(_log_odds(one_below) - _log_odds(safe_p), 0.0)

  def halve(_, bracket):
    lo, hi = bracket
    mid = 0.5 * (lo + hi)
    below = _lifted_kl(safe_p, mid, log_p, log1m_p)[1] <= budget
    return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

  lo, hi = jax.lax.fori_loop(0, _BISECTION_STEPS, halve, (lo, hi))
  t = jnp.maximum(_lifted_kl(safe_p, lo, log_p, log1m_p)[0], p)  # t* >= p; rounding aside
  t = jnp.where(reaches_one, 1.0, t)
  t = jnp.where(p <= 0, 0.0, t)  # kl(t || 0) = inf for t > 0: nothing can be reached
  return jnp.where(budget <= 0, p, t)


@errors.nan_on_invalid(elementwise=True)
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


@errors.nan_on_invalid(elementwise=True)
def kl_ceiling_loose(recall, budget) -> jax.Array:
  """Closed-form loose ceiling ``min(1, (K + log 2) / log(1/p))`` (0 at p = 0)."""
  _validate.recall(recall)
  _validate.budget(budget)
  errors.check_broadcastable(recall=recall, budget=budget)
  p, k = _float(recall), _float(budget)
  surprise = -jnp.log(p)
  bound = (k + jnp.log(2.0)) / jnp.where(surprise > 0, surprise, 1.0)
  return jnp.where(p <= 0, 0.0, jnp.where(surprise > 0, jnp.minimum(1.0, bound), 1.0))
