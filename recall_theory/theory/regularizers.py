"""Optima of other regularizers, and how each changes the recall law (theory items 8-9).

All maximise ``E_pi[r] - beta * D(pi, pi_ref)`` (or the algorithm's own population
objective) over distributions on a discrete support. All but the forward KL keep pi = 0
outside the reference's support; they differ in how far they can lift a rare set:

* ``forward_kl_optimum``: D = KL(pi_ref || pi). Stationarity gives
  ``pi(y) = beta pi_ref(y) / (lambda - r(y))`` on the reference's support, with
  ``lambda = max(lambda_0, r_u)``: D does not charge for mass where pi_ref = 0, so when the
  best unsupported reward r_u beats the support's normaliser lambda_0 the left-over mass
  moves there. Two-level reward, ``s = gap/beta``: ``t = pi(A)`` solves
  ``s t^2 - (s-1) t - p = 0``, so ``t -> 1 - 1/s`` as p -> 0 and ``t = max(0, 1 - 1/s)``
  at p = 0 exactly. It does not trap a rare set as KL(pi || pi_ref) does. Escape
  (``t >= 1/2``) holds iff ``s + 4p >= 2``, for every ``s > 0``: the quadratic is
  ``(2 - s - 4p)/4`` at ``t = 1/2`` and ``-p <= 0`` at ``t = 0``, so its non-negative root
  passes 1/2 exactly when that value is <= 0 (always for ``s >= 2``; for ``s <= 1`` too,
  once ``p >= (2 - s)/4 >= 1/4``).
* ``chi2_kl_optimum``: D = KL(pi || pi_ref) + chi^2(pi || pi_ref)/2 (chi-squared
  preference optimisation, Huang et al. 2024). ``u = pi/pi_ref`` solves
  ``u + log u = (r - lambda)/beta``, i.e. ``u = W(exp((r - lambda)/beta))`` (Lambert W).
  Two-level reward, ``s = gap/beta``: subtracting the two stationarity equations gives
  ``log(odds lift) = s - (u_A - u_Ac) < s``, so the lift is below KL's ``e^s``, and as
  p -> 0 it tends to ``W(e^{s+1}) ~ s + 1 - log(s + 1)`` (8.82 at s = 10): only linear in
  s, so a rare set stays rare (mass ~ p W(e^{s+1})) unless the gap is of order beta/p.
  Unlike IPO, it has no bound independent of the gap (``e^{1/(2 tau)}`` is IPO's).
* ``ipo_optimum``: IPO (Azar et al. 2023) with Bradley-Terry preferences is the Gibbs
  tilt of the bounded reward ``P(y > pi_ref) in [0, 1]`` at temperature tau, so the
  mass ratio pi(A)/pi_ref(A) is at most ``e^{1/tau}``.
* ``best_of_n``: in reward order, ``pi_BoN(y) = F(y)^N - F(y-)^N`` (ties split in
  proportion to pi_ref); a top set of mass p gets ``1 - (1-p)^N`` and
  ``KL(pi_BoN || pi_ref) <= log N - (N-1)/N`` (Beirami et al. 2024).

Normalising constants are found by vectorised bisection (fixed step count), so every
function jits and vmaps over batch axes. The support is the last axis.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from recall_theory import errors
from recall_theory import validate as _validate
from recall_theory.theory.gibbs import _along_support, gibbs
from recall_theory.theory.two_level import _aligned_logit, _check_two_level, _float

_BISECTION_STEPS = 100


def _check_support(log_ref, reward):
  """A normalised reference ``[..., K]`` and finite rewards that broadcast against it."""
  _validate.log_distribution(log_ref, "log_ref")
  _validate.reward(reward)
  errors.check_broadcastable(log_ref=log_ref, reward=reward)


def _check_n(n):
  errors.check_finite("n", n)
  errors.require(n, "n", lambda xp, x: x < 1, "n must be >= 1, got {:g}")
  errors.check_normal("n", n)  # float32 n = 1e300 overflows to inf
_NEWTON_STEPS = 14


def _bisect(fn, lo, hi, steps=_BISECTION_STEPS):
  """Root of a decreasing ``fn`` on [lo, hi], elementwise; returns the midpoint."""

  def halve(_, bracket):
    lo, hi = bracket
    mid = 0.5 * (lo + hi)
    positive = fn(mid) > 0
    return jnp.where(positive, mid, lo), jnp.where(positive, hi, mid)

  lo, hi = jax.lax.fori_loop(0, steps, halve, (lo, hi))
  return 0.5 * (lo + hi)


# ----------------------------------------------------------------------------- forward KL
@errors.nan_on_invalid
def forward_kl_optimum(log_ref: jax.Array, reward: jax.Array, beta) -> jax.Array:
  """``log pi`` maximising ``E_pi[r] - beta KL(pi_ref || pi)`` (support: last axis).

  On the reference's support stationarity gives ``pi(y) = beta pi_ref(y) / (lambda - r(y))``.
  ``KL(pi_ref || pi)`` does not charge for mass where ``pi_ref = 0``, so (KKT)

      lambda = max(lambda_0, r_u),

  with ``lambda_0`` the constant that normalises the support alone
  (``lambda_0 - r_max`` lies in ``[beta pi_ref(argmax r), beta]``, found by bisection in
  log space) and ``r_u`` the best reward outside the support. When ``r_u > lambda_0`` the
  mass left over, ``1 - sum_y beta pi_ref(y) / (r_u - r(y))``, goes to the unsupported
  outputs with reward ``r_u`` (split equally among ties: the optimum is not unique there).

  Args:
    log_ref: ``[..., K]`` reference log-probabilities (``-inf`` outside its support).
    reward: ``[..., K]`` finite rewards.
    beta: scalar or ``[...]`` batch of coefficients, > 0.

  Returns:
    ``[..., K]`` log-probabilities of the optimum.

  Example:
    >>> # ref = [1/2, 1/2, 0], r = [0, 0, 3], beta = 1: lambda_0 = 1 < r_u = 3, so
    >>> # pi = [1/6, 1/6, 2/3]: two thirds of the mass leave the reference's support.

  Reference: theory.md item 8.
  """
  _check_support(log_ref, reward)
  _validate.beta(beta)
  _validate.support_batch(beta, "beta", -1, log_ref=log_ref, reward=reward)
  return _forward_kl_optimum(_float(log_ref), _float(reward), _float(beta))


@jax.jit
def _forward_kl_optimum(log_ref, reward, beta):
  log_ref, reward = jnp.broadcast_arrays(log_ref, reward)
  beta = _along_support(beta, -1)
  in_support = jnp.isfinite(log_ref)
  r_max = jnp.max(jnp.where(in_support, reward, -jnp.inf), axis=-1, keepdims=True)
  log_top = logsumexp(jnp.where(in_support & (reward >= r_max), log_ref, -jnp.inf), axis=-1,
                      keepdims=True)
  log_beta = jnp.log(beta) * jnp.ones_like(r_max)

  def excess_mass(log_u):  # sum_y beta ref / (r_max + u - r) - 1, decreasing in u
    gaps = jnp.exp(log_u) + (r_max - reward)
    terms = jnp.where(in_support, log_beta + log_ref - jnp.log(gaps), -jnp.inf)
    return logsumexp(terms, axis=-1, keepdims=True)

  u_support = jnp.exp(_bisect(excess_mass, log_beta + log_top, log_beta))  # lambda_0 - r_max
  # lambda - r_max = max(lambda_0, r_u) - r_max, kept as a difference (no cancellation).
  r_unsupported = jnp.max(jnp.where(in_support, -jnp.inf, reward), axis=-1, keepdims=True)
  leaves_support = (r_unsupported - r_max) > u_support
  u = jnp.where(leaves_support, r_unsupported - r_max, u_support)
  log_pi = jnp.where(in_support, log_beta + log_ref - jnp.log(u + (r_max - reward)), -jnp.inf)
  log_support = logsumexp(log_pi, axis=-1, keepdims=True)
  # Left-over mass on the best unsupported outputs; without it, renormalise away the
  # bisection residue of lambda_0.
  best_outside = ~in_support & (reward >= r_unsupported)
  n_best = jnp.sum(best_outside, axis=-1, keepdims=True)
  log_left = jnp.log(-jnp.expm1(jnp.minimum(log_support, 0.0))) - jnp.log(jnp.maximum(n_best, 1))
  return jnp.where(leaves_support,
                   jnp.where(best_outside, log_left, log_pi),
                   log_pi - log_support)


@errors.nan_on_invalid(elementwise=True)
def forward_kl_aligned_mass(recall, gap, beta) -> jax.Array:
  """Two-level target mass under the forward-KL penalty, in closed form.

  With ``s = gap/beta``, ``t = pi(A)`` is the non-negative root of

      s t^2 - (s - 1) t - p = 0,

  (normalisation ``beta p/(lambda - gap) + beta (1-p)/lambda = 1``). Computed without
  cancellation as ``2p / ((1-s) + sqrt((1-s)^2 + 4ps))`` for ``s <= 1`` and as
  ``(c + sqrt(c^2 + 4p/s)) / 2``, ``c = 1 - 1/s``, for ``s > 1`` (finite as s -> inf), with
  ``1 - s = (beta - gap)/beta`` and ``1 - 1/s = (gap - beta)/gap`` (exact subtractions).
  The root is continuous in p and exact at p = 0: there ``KL(pi_ref || pi)`` does not
  charge for mass outside the reference's support, and the optimum is
  ``t = max(0, 1 - 1/s)`` (theory.md item 8), e.g. 1/3, 2/3, 0.9 for s = 1.5, 3, 10.

  Escaping the trap (``t >= 1/2``) holds iff ``s + 4p >= 2``, for every ``s >= 0``: with
  ``f(t) = s t^2 - (s - 1) t - p`` (convex, ``f(0) = -p <= 0``) the root is >= 1/2 iff
  ``f(1/2) = (2 - s - 4p)/4 <= 0``. So ``s >= 2`` always escapes, and ``s < 2`` escapes
  once ``p >= (2 - s)/4``, ``s <= 1`` included (e.g. s = 0.5, p = 0.45 gives
  ``t = (sqrt(4.6) - 1)/2``; s = 1, p = 0.3 gives ``t = sqrt(0.3)``). For ``s < 1``,
  ``f(p) = s p (p - 1) <= 0 <= f(p/(1 - s)) = s p^2/(1 - s)^2`` bracket the root:
  ``p <= t <= p/(1 - s)``, and ``t ~ p/(1 - s)`` only while ``p s << (1 - s)^2``.

  Args:
    recall: ``p = pi_ref(A)`` in [0, 1] (broadcasts).
    gap: reward gap between A and its complement, >= 0 (broadcasts).
    beta: coefficient, > 0 (broadcasts).

  Returns:
    ``pi(A)`` with the broadcast shape.

  Example:
    >>> forward_kl_aligned_mass(0.0, 3.0, 1.0)   # 1 - 1/3
    Array(0.6666667, dtype=float32)

  Reference: theory.md item 8.
  """
  _validate.recall(recall)
  _validate.beta(beta)
  _validate.gap(gap)
  errors.check_nonnegative("gap", gap)
  errors.check_broadcastable(recall=recall, gap=gap, beta=beta)
  p, gap, beta = _float(recall), _float(gap), _float(beta)
  s = jnp.where(gap == 0, 0.0, gap / beta)
  # 1 - s and 1 - 1/s as (beta - gap)/beta and (gap - beta)/gap: the subtraction of two
  # close inputs is exact (Sterbenz), so t near s = 1 keeps full relative precision.
  a = jnp.where(s <= 1.0, (beta - gap) / beta, 0.0)
  # s <= 1: rationalised root, no cancellation; a + root = 0 only at p = 0, s = 1 (t = 0).
  root = jnp.sqrt(a * a + 4.0 * p * jnp.minimum(s, 1.0))
  covering = 2.0 * p / jnp.where(a + root > 0, a + root, 1.0)
  # s > 1: divided through by s, so s = inf (gap/beta overflowing) gives t = 1.
  escapes = s > 1.0
  safe_gap = jnp.where(escapes, gap, 1.0)
  inv_s = jnp.where(escapes, beta / safe_gap, 0.5)
  c = jnp.where(escapes, (safe_gap - beta) / safe_gap, 0.5)
  escaping = 0.5 * (c + jnp.sqrt(c * c + 4.0 * p * inv_s))
  mass = jnp.where(escapes, escaping, covering)
  return jnp.where(p >= 1.0, 1.0, jnp.clip(mass, 0.0, 1.0))


# --------------------------------------------------------------------------- chi^2 + KL
@errors.nan_on_invalid(elementwise=True)
def log_lambert_w_exp(z: jax.Array, steps: int = 4) -> jax.Array:
  """``log W(e^z)``: the w solving ``e^w + w = z`` (principal Lambert W in log space).

  Starts from Winitzki's approximation ``W(x) ~ L (1 - log(1+L)/(2+L))``, ``L = log(1+x)``
  (relative error < 2% for all x >= 0, computed as ``L = softplus(z)`` so it never
  overflows), then Halley steps, each cubing the error: 4 reach float64 resolution.
  Stable for z from -700 (W ~ e^z) to 1e6 (W ~ z - log z); ``z = +-inf`` gives ``+-inf``
  (``W(e^z) -> inf`` and ``W(0) = 0``).
  """
  errors.check_not_nan("z", z)
  steps = errors.check_int_range("steps", steps, 0)
  z = _float(z)
  return jnp.where(jnp.isinf(z), z, _log_lambert_w_exp(jnp.where(jnp.isinf(z), 0.0, z), steps))


def _log_lambert_w_exp(z, steps=4):
  """:func:`log_lambert_w_exp` of a finite z, unchecked (inner loops)."""
  soft = jax.nn.softplus(jnp.maximum(z, -30.0))
  winitzki = jnp.log(soft) + jnp.log1p(-jnp.log1p(soft) / (2.0 + soft))
  w = jnp.where(z < -30.0, z - jnp.exp(z), winitzki)  # W(x) = x - x^2 + ... for tiny x

  def halley(_, w):
    # f = e^w + w - z, f' = e^w + 1, f'' = e^w. The step f f' / (f'^2 - f f''/2) is written
    # as f / (f' - (f/2) sigmoid(w)) (f''/f' = sigmoid(w)), so f'^2 never overflows
    # (it did for z > 1e154 in float64, z > 1e19 in float32).
    ew = jnp.exp(w)
    f, df = ew + w - z, ew + 1.0
    return w - f / (df - 0.5 * f * jax.nn.sigmoid(w))

  return jax.lax.fori_loop(0, steps, halley, w)


@errors.nan_on_invalid
def chi2_kl_optimum(log_ref: jax.Array, reward: jax.Array, beta) -> jax.Array:
  """``log pi`` maximising ``E_pi[r] - beta [KL(pi||pi_ref) + chi^2(pi||pi_ref)/2]``.

  ``log u = log W(exp((r - lambda)/beta))`` with lambda in
  ``[r_min - beta, r_max - beta]`` (support), found by bisection.
  """
  _check_support(log_ref, reward)
  _validate.beta(beta)
  _validate.support_batch(beta, "beta", -1, log_ref=log_ref, reward=reward)
  return _chi2_kl_optimum(_float(log_ref), _float(reward), _float(beta))


@jax.jit
def _chi2_kl_optimum(log_ref, reward, beta):
  log_ref, reward = jnp.broadcast_arrays(log_ref, reward)
  beta = _along_support(beta, -1)
  in_support = jnp.isfinite(log_ref)
  # (r - r_max)/beta <= 0 on the support: no overflow for tiny beta (1e-300)
  r_max = jnp.max(jnp.where(in_support, reward, -jnp.inf), axis=-1, keepdims=True)
  shifted = jnp.where(in_support, reward - jnp.where(jnp.isfinite(r_max), r_max, 0.0), 0.0)
  scaled = jnp.where(shifted == 0, 0.0, shifted / beta)
  lo = jnp.min(jnp.where(in_support, scaled, jnp.inf), axis=-1, keepdims=True) - 1.0
  hi = jnp.max(jnp.where(in_support, scaled, -jnp.inf), axis=-1, keepdims=True) - 1.0

  def log_mass(ell):  # log sum ref * W(exp(r/beta - ell)), decreasing in ell
    terms = jnp.where(in_support, log_ref + _log_lambert_w_exp(scaled - ell), -jnp.inf)
    return logsumexp(terms, axis=-1, keepdims=True)

  ell = _bisect(log_mass, lo, hi + 1e-12)
  log_pi = jnp.where(in_support, log_ref + _log_lambert_w_exp(scaled - ell), -jnp.inf)
  return log_pi - logsumexp(log_pi, axis=-1, keepdims=True)


@errors.nan_on_invalid(elementwise=True)
def chi2_kl_aligned_mass(recall, gap, beta) -> jax.Array:
  """Two-level target mass under KL + chi^2/2 (theory.md item 8).

  ``pi(A) = p W(e^{s-l})`` with ``p W(e^{s-l}) + (1-p) W(e^{-l}) = 1``, ``s = gap/beta``;
  ``l`` by safeguarded Newton on a bracket. The odds lift ``u_A / u_Ac`` satisfies
  ``log lift = s - (u_A - u_Ac)``: below ``e^s`` (the KL lift) for every ``s > 0``, and
  ``-> W(e^{s+1})`` as ``p -> 0`` (8.82 at s = 10, against e^10 = 22026 under KL). It is
  *not* bounded by ``e^{1/(2 tau)}``: that bound belongs to IPO (:func:`ipo_aligned_mass`).

  Args:
    recall: ``p`` in [0, 1]; gap: finite; beta: > 0 (all broadcast).

  Returns:
    ``pi(A)``; exactly 0 at p = 0 and 1 at p = 1.

  Example:
    >>> chi2_kl_aligned_mass(1e-6, 10.0, 1.0)   # ~ 1e-6 * W(e^11) = 8.82e-6

  Reference: Huang et al. (2024), chi^2 preference optimisation; theory.md item 8.
  """
  _validate.recall(recall)
  _validate.gap(gap)
  _validate.beta(beta)
  errors.check_broadcastable(recall=recall, gap=gap, beta=beta)
  return jnp.exp(_chi2_two_level_log_mass(_float(recall), _float(gap), _float(beta)))


@jax.jit
def _chi2_two_level_log_mass(p, gap, beta):
  p, s = jnp.broadcast_arrays(p, jnp.where(gap == 0, 0.0, gap / beta))
  edge = (p <= 0) | (p >= 1)
  p_edge, s_edge = p, s
  p = jnp.where(edge, 0.5, p)
  s = jnp.where(jnp.isinf(s), 0.0, s)  # gap/beta overflowed: the limit is explicit below
  log_p, log1m_p = jnp.log(p), jnp.log1p(-p)

  def log_total_and_slope(ell):
    log_u_in, log_u_out = _log_lambert_w_exp(s - ell), _log_lambert_w_exp(-ell)
    a, b = log_p + log_u_in, log1m_p + log_u_out
    total = jnp.logaddexp(a, b)
    # d log W(e^z) / dz = 1 / (1 + W): the slope of log(total) in ell, always < 0
    slope = -(jnp.exp(a - total) / (1.0 + jnp.exp(log_u_in))
              + jnp.exp(b - total) / (1.0 + jnp.exp(log_u_out)))
    return total, slope, log_u_in, log_u_out

  # Bracket: each term alone reaching 1 bounds l from below, both at 1/2 bound it from
  # above (u = W(e^z) has z = u + log u). Then safeguarded Newton on log(total) = 0:
  # a step leaving the bracket is replaced by bisection.
  def ell_for(log_weight, shift, share):  # solves weight * W(e^{shift - l}) = share
    u = share * jnp.exp(-log_weight)
    return shift - u - jnp.log(u)

  lo = jnp.maximum(ell_for(log_p, s, 1.0), ell_for(log1m_p, 0.0, 1.0))
  hi = jnp.maximum(ell_for(log_p, s, 0.5), ell_for(log1m_p, 0.0, 0.5))

  def step(_, state):
    lo, hi, ell = state
    total, slope, _, _ = log_total_and_slope(ell)
    lo = jnp.where(total > 0, ell, lo)
    hi = jnp.where(total > 0, hi, ell)
    newton = ell - total / slope
    inside = (newton >= lo) & (newton <= hi)  # a converged step sits on a bracket end
    return lo, hi, jnp.where(inside, newton, 0.5 * (lo + hi))

  _, _, ell = jax.lax.fori_loop(0, _NEWTON_STEPS, step, (lo, hi, lo))
  _, _, log_u_in, log_u_out = log_total_and_slope(ell)
  log_in = log_p + log_u_in
  log_mass = log_in - jnp.logaddexp(log_in, log1m_p + log_u_out)
  # the edges explicitly: the bracket is infinite there (log p or log(1-p) = -inf)
  # gap/beta = +inf moves all mass to A, -inf all of it away (for 0 < p < 1)
  log_mass = jnp.where(jnp.isposinf(s_edge), 0.0, jnp.where(jnp.isneginf(s_edge), -jnp.inf, log_mass))
  return jnp.where(p_edge <= 0, -jnp.inf, jnp.where(p_edge >= 1, 0.0, log_mass))


# -------------------------------------------------------------------------------- IPO
@errors.nan_on_invalid
def preference_vs_reference(log_ref: jax.Array, reward: jax.Array) -> jax.Array:
  """``P(y > pi_ref) = sum_y' pi_ref(y') sigmoid(r(y) - r(y'))`` (Bradley-Terry), in [0, 1]."""
  _check_support(log_ref, reward)
  log_ref, reward = jnp.broadcast_arrays(_float(log_ref), _float(reward))
  ref = jnp.exp(log_ref)
  diffs = reward[..., :, None] - reward[..., None, :]
  return jnp.sum(ref[..., None, :] * jax.nn.sigmoid(diffs), axis=-1)


@errors.nan_on_invalid
def ipo_optimum(log_ref: jax.Array, reward: jax.Array, tau) -> jax.Array:
  """``log pi`` of IPO's population optimum with pairs from pi_ref (Azar et al. 2023):
  the Gibbs tilt of the bounded reward ``P(y > pi_ref)`` at temperature ``tau``."""
  _check_support(log_ref, reward)
  _validate.beta(tau, "tau")
  return gibbs(log_ref, preference_vs_reference(log_ref, reward), tau)[0]


@errors.nan_on_invalid(elementwise=True)
def ipo_aligned_mass(recall, gap, tau) -> jax.Array:
  """Two-level IPO target mass: ``sigmoid(logit p + (sigmoid(gap) - 1/2) / tau)``.

  Under Bradley-Terry, P(A > pi_ref) - P(A^c > pi_ref) = sigmoid(gap) - 1/2 < 1/2
  for every p, so the odds can grow by at most e^{1/(2 tau)} however large the gap.
  """
  _check_two_level(recall, gap, tau, "tau")
  return jax.nn.sigmoid(_aligned_logit(recall, jax.nn.sigmoid(_float(gap)) - 0.5, tau))


# -------------------------------------------------------------------------- best-of-N
@errors.nan_on_invalid
def best_of_n(log_ref: jax.Array, reward: jax.Array, n) -> jax.Array:
  """``log pi_BoN``: the law of the highest-reward of N i.i.d. draws from pi_ref.

  ``pi(y) = pi_ref(y) / pi_ref(tie(y)) * (F(y)^N - F(y-)^N)`` with ``F(y) = pi_ref(r <= r(y))``;
  ties are broken uniformly, so tied outputs keep their reference proportions. N may be
  any real >= 1. O(K^2) in the support size K.
  """
  _check_support(log_ref, reward)
  _check_n(n)
  _validate.support_batch(n, "n", -1, log_ref=log_ref, reward=reward)
  return _best_of_n(_float(log_ref), _float(reward), _float(n))


@jax.jit
def _best_of_n(log_ref, reward, n):
  log_ref, reward = jnp.broadcast_arrays(log_ref, reward)
  n = _along_support(n, -1)
  other = log_ref[..., None, :]
  below_or_tied = reward[..., None, :] <= reward[..., :, None]
  strictly_below = reward[..., None, :] < reward[..., :, None]
  tied = below_or_tied & ~strictly_below
  log_f_le = logsumexp(jnp.where(below_or_tied, other, -jnp.inf), axis=-1)
  log_f_lt = logsumexp(jnp.where(strictly_below, other, -jnp.inf), axis=-1)
  log_tie = logsumexp(jnp.where(tied, other, -jnp.inf), axis=-1)
  # log(F_le^N - F_lt^N) = N log F_le + log(1 - exp(N (log F_lt - log F_le)))
  ratio = jnp.where(jnp.isfinite(log_f_lt), n * (log_f_lt - log_f_le), -jnp.inf)
  log_group = n * log_f_le + jnp.log(-jnp.expm1(ratio))
  in_support = jnp.isfinite(log_ref)
  return jnp.where(in_support, log_ref - log_tie + log_group, -jnp.inf)


@errors.nan_on_invalid(elementwise=True)
def best_of_n_aligned_mass(recall, n) -> jax.Array:
  """Top-set mass after best-of-N: ``1 - (1 - p)^N`` (exact 0 at p = 0, 1 at p = 1)."""
  _validate.recall(recall)
  _check_n(n)
  errors.check_broadcastable(recall=recall, n=n)
  p = _float(recall)
  # 1 - (1-p)^N >= p for N >= 1 exactly; the rounding of log1p(-p) can land a few ulp below
  return jnp.maximum(-jnp.expm1(_float(n) * jnp.log1p(-p)), p)


@errors.nan_on_invalid(elementwise=True)
def best_of_n_kl_bound(n) -> jax.Array:
  """``log N - (N - 1)/N``: the bound on KL(pi_BoN || pi_ref) (tight without ties as the
  support becomes continuous; Beirami et al. 2024)."""
  _check_n(n)
  n = _float(n)
  return jnp.log(n) - (n - 1.0) / n
