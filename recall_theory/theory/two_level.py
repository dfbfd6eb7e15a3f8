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
from recall_theory import validate as _validate


def _float(x):
  x = jnp.asarray(x)
  return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


@errors.nan_on_invalid(elementwise=True)
def log_odds(p: jax.Array) -> jax.Array:
  """``logit p = log p - log(1 - p)``; -inf at 0 and +inf at 1, exact for tiny p.

  ``log(1 - p)``, not ``log1p(-p)``: XLA's vectorised CPU log1p leaves up to 58 ulp in
  float64 (batches of p in [0.01, 0.99], jax 0.10.2) and the two logs nearly cancel for p
  near 1/2, while ``1 - p`` is exact for p >= 1/2 (Sterbenz) and rounds by half an ulp
  below, an absolute error of ~1e-16 in the logit; for tiny p, ``log p`` dominates.
  """
  errors.check_probability("p", p)
  return _log_odds(p)


def _log_odds(p):
  p = _float(p)
  return jnp.log(p) - jnp.log(1 - p)


def _ratio(gap, beta):
  """``gap / beta`` with ``0 / beta = 0`` exactly (also when beta underflows)."""
  gap, beta = _float(gap), _float(beta)
  return jnp.where(gap == 0, 0.0, gap / beta)


def _aligned_logit(p, gap, beta):
  """``logit p + gap/beta`` with the edges explicit: -inf at p = 0 and +inf at p = 1 for
  every gap and beta, so an overflowing ``gap/beta = +-inf`` never meets ``logit p = -+inf``."""
  p = _float(p)
  interior = (p > 0) & (p < 1)
  safe_p = jnp.where(interior, p, 0.5)
  logit = _log_odds(safe_p) + _ratio(gap, beta)
  return jnp.where(p <= 0, -jnp.inf, jnp.where(p >= 1, jnp.inf, logit))


def _check_two_level(recall, gap, beta, beta_name="beta"):
  _validate.recall(recall)
  _validate.gap(gap)
  _validate.beta(beta, beta_name)
  errors.check_broadcastable(recall=recall, gap=gap, **{beta_name: beta})


@errors.nan_on_invalid(elementwise=True)
def aligned_logit(recall, gap, beta) -> jax.Array:
  """``logit pi*(A) = logit p + gap / beta`` (reverse-KL optimum, two-level reward).

  Exactly ``-inf`` at p = 0 and ``+inf`` at p = 1 whatever gap/beta (even when it overflows).
  """
  _check_two_level(recall, gap, beta)
  return _aligned_logit(recall, gap, beta)


@errors.nan_on_invalid(elementwise=True)
def aligned_mass(recall, gap, beta) -> jax.Array:
  """Target mass of the KL-regularized optimum under a two-level reward.

  ``pi*(A) = sigmoid(logit p + gap / beta)`` with ``p = recall = pi_ref(A)``, computed in
  log-odds with the limits explicit (never ``inf - inf``): exactly 0 at p = 0 and 1 at p = 1
  even when ``gap/beta`` overflows (gap 1e300, beta 1e-10), 0/1 when it is -+inf inside.

  Args:
    recall: reference mass on the target set, in [0, 1] (broadcasts).
    gap: reward difference between A and its complement, finite (broadcasts).
    beta: KL coefficient, > 0 (broadcasts).

  Returns:
    The aligned mass, with the broadcast shape.

  Example:
    >>> aligned_mass(1e-6, gap=10.0, beta=1.0)   # 1e-6 * e^10 / (1 - 1e-6 + 1e-6 e^10)
    Array(0.0215..., dtype=float32)

  Reference: theory.md item 2; Korbak et al. (2022).
  """
  _check_two_level(recall, gap, beta)
  return jax.nn.sigmoid(_aligned_logit(recall, gap, beta))


@errors.nan_on_invalid(elementwise=True)
def aligned_log_mass(recall, gap, beta) -> jax.Array:
  """``log pi*(A)`` (accurate when the mass itself underflows; -inf at p = 0, 0 at p = 1)."""
  _check_two_level(recall, gap, beta)
  return jax.nn.log_sigmoid(_aligned_logit(recall, gap, beta))


@errors.nan_on_invalid(elementwise=True)
def required_gap(recall, target_mass, beta) -> jax.Array:
  """Reward gap that lifts recall p to aligned mass t: ``beta (logit t - logit p)``.

  Exactly 0 when t = p (also at p = t = 0 and p = t = 1, where the logits are infinite);
  +inf when p = 0 < t or t = 1 > p (no finite gap reaches), -inf when t = 0 < p or p = 1 > t.
  """
  _validate.recall(recall)
  _validate.recall(target_mass, "target_mass")
  _validate.beta(beta)
  errors.check_broadcastable(recall=recall, target_mass=target_mass, beta=beta)
  p, t, beta = _float(recall), _float(target_mass), _float(beta)
  logit_t, logit_p = _log_odds(t), _log_odds(p)
  # inf - inf only happens at t = p in {0, 1}; there the answer is 0.
  diff = jnp.where(t == p, 0.0, logit_t - logit_p)
  return jnp.where(diff == 0, 0.0, beta * diff)


@errors.nan_on_invalid(elementwise=True)
def bernoulli_kl(a, b) -> jax.Array:
  """``kl(a || b) = a log(a/b) + (1-a) log((1-a)/(1-b))`` with 0 log 0 = 0.

  +inf when b in {0, 1} and a differs from b. Near ``a = b`` the two logarithms cancel to
  first order, so there ``d = a - b`` and

      kl = d^2 / (b (1-b)) + a f(d/b) + (1-a) f(-d/(1-b)),   f(x) = log(1+x) - x,

  with f from a series: ``kl(0.3 || 0.3 + 1e-12) = 2.38e-24`` to full precision (the
  direct form returns 0).
  """
  _validate.recall(a, "a")
  _validate.recall(b, "b")
  errors.check_broadcastable(a=a, b=b)
  a, b = _float(a), _float(b)
  direct = _bernoulli_kl_logs(jnp.log(a), jnp.log1p(-a), jnp.log(b), jnp.log1p(-b))
  near, series = _bernoulli_kl_near(a, b, a - b)
  return jnp.where(near, series, direct)


def _bernoulli_kl_near(a, b, d):
  """``(near, kl(a || b))`` by the series about ``a = b``, given ``d = a - b`` (computed
  by the caller without cancellation); ``near`` marks where it applies (``|d/b|`` and
  ``|d/(1-b)|`` below 1/4, 0 < b < 1). Elsewhere the series value is meaningless."""
  inside = (b > 0) & (b < 1)
  safe_b = jnp.where(inside, b, 0.5)
  d = jnp.where(inside, d, 0.0)
  x_in, x_out = d / safe_b, -d / (1.0 - safe_b)
  near = inside & (jnp.abs(x_in) < 0.25) & (jnp.abs(x_out) < 0.25)
  # d x_in / (1-b), not d^2 / (b (1-b)): d^2 underflows for d < 1.5e-154 (b = 1e-300, d = 1e-302)
  # while the divergence itself, ~d^2 / (2b), is a normal float down to d ~ 1e-304
  series = (d * x_in / (1.0 - safe_b) + a * _log1p_minus_x(jnp.where(near, x_in, 0.0))
            + (1.0 - a) * _log1p_minus_x(jnp.where(near, x_out, 0.0)))
  return near, jnp.maximum(series, 0.0)


def _lift(p, s):
  """``d = sigmoid(logit p + s) - p`` without cancellation, for 0 < p < 1 and |s| < 1:

      d = p (1-p) (e^s - 1) / (1 + p (e^s - 1)).

  Outside that range it returns 0 (the callers use it only near s = 0)."""
  small = jnp.abs(s) < 1.0
  grow = jnp.expm1(jnp.where(small, s, 0.0))
  return jnp.where(small, p * (1.0 - p) * grow / (1.0 + p * grow), 0.0)


def _lifted_kl(p, s, log_p, log1m_p):
  """``(t, kl(t || p))`` for ``t = sigmoid(logit p + s)``, 0 < p < 1: the series about
  ``t = p`` (from :func:`_lift`) where it applies, the log-sigmoid form elsewhere."""
  x = _log_odds(p) + s
  d = _lift(p, s)
  near, series = _bernoulli_kl_near(p + d, p, d)
  near = near & (jnp.abs(s) < 1.0)  # where _lift gave its 0
  direct = _bernoulli_kl_logs(jax.nn.log_sigmoid(x), jax.nn.log_sigmoid(-x), log_p, log1m_p)
  return jnp.where(near, p + d, jax.nn.sigmoid(x)), jnp.where(near, series, direct)


def _log1p_minus_x(x):
  """``log(1 + x) - x`` without cancellation for |x| < 1/4: with ``y = x/(2+x)``,
  ``log(1+x) = 2 atanh y`` and ``x - 2y = x y``, so it is ``2 (atanh y - y) - x y`` and
  ``atanh y - y = y^3 (1/3 + y^2/5 + y^4/7 + ...)`` (|y| < 1/7: 16 terms reach 1e-27)."""
  y = x / (2.0 + x)
  y2 = y * y
  tail = jnp.zeros_like(y)
  for k in range(16, 0, -1):
    tail = 1.0 / (2 * k + 1) + y2 * tail
  return 2.0 * y * y2 * tail - x * y


def _bernoulli_kl_logs(log_a, log1m_a, log_b, log1m_b) -> jax.Array:
  """kl(a||b) from the four logs, so that a = sigmoid(x) needs no exp/log round trip."""
  a, one_minus_a = jnp.exp(log_a), jnp.exp(log1m_a)
  first = jnp.where(a > 0, a * (log_a - jnp.where(a > 0, log_b, 0.0)), 0.0)
  second = jnp.where(one_minus_a > 0, one_minus_a * (log1m_a - jnp.where(one_minus_a > 0, log1m_b, 0.0)), 0.0)
  # Each term can round below zero when a ~ b; the divergence itself never is.
  return jnp.maximum(first + second, 0.0)


@errors.nan_on_invalid(elementwise=True)
def aligned_kl(recall, gap, beta) -> jax.Array:
  """``KL(pi* || pi_ref) = kl(pi*(A) || p)`` for the two-level reward (theory item 3).

  For a small ``s = gap/beta`` the two terms of the Bernoulli KL cancel: there
  ``pi*(A) - p = p (1-p) (e^s - 1) / (1 + p (e^s - 1))`` feeds the series of
  :func:`bernoulli_kl` (``kl ~ p (1-p) s^2 / 2``; ``aligned_kl(0.3, 1e-8, 1) = 1.05e-17``).
  """
  _check_two_level(recall, gap, beta)
  x = _aligned_logit(recall, gap, beta)
  p = _float(recall)
  log_p, log1m_p = jnp.log(p), jnp.log1p(-p)
  direct = _bernoulli_kl_logs(jax.nn.log_sigmoid(x), jax.nn.log_sigmoid(-x), log_p, log1m_p)
  interior = (p > 0) & (p < 1)
  safe_p = jnp.where(interior, p, 0.5)
  _, lifted = _lifted_kl(safe_p, jnp.broadcast_to(_ratio(gap, beta), jnp.shape(x)), log_p, log1m_p)
  return jnp.where(interior, lifted, direct)


@errors.nan_on_invalid(elementwise=True)
def pair_coverage(recall) -> jax.Array:
  """Probability that a preference pair drawn i.i.d. from pi_ref involves A.

  ``1 - (1 - p)^2 ~ 2p``: the sampling trap of DPO-style data (theory item 5).
  """
  _validate.recall(recall)
  p = _float(recall)
  return -jnp.expm1(2.0 * jnp.log1p(-p))
