"""Optima of other regularizers, and how each changes the recall law (theory items 8-9).

All maximise ``E_pi[r] - beta * D(pi, pi_ref)`` (or the algorithm's own population
objective) over distributions on a discrete support; each keeps pi = 0 outside the
reference's support, but they differ in how far they can lift a rare set:

* ``forward_kl_optimum``: D = KL(pi_ref || pi). Stationarity gives
  ``pi(y) = beta pi_ref(y) / (lambda - r(y))`` with ``lambda > max r`` fixed by
  normalisation. Mass covering: for a two-level reward with ``gap/beta = s > 1`` the
  target mass tends to ``1 - 1/s`` as p -> 0+, so this penalty does not trap a rare
  set (but p = 0 still gives exactly 0).
* ``chi2_kl_optimum``: D = KL(pi || pi_ref) + chi^2(pi || pi_ref)/2 (chi-squared
  preference optimisation, Huang et al. 2024). ``u = pi/pi_ref`` solves
  ``u + log u = (r - lambda)/beta``, i.e. ``u = W(exp((r - lambda)/beta))`` (Lambert W):
  the tilt is only polynomial in the reward, so rare sets stay rarer than under KL.
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
from recall_theory.theory import _validate
from recall_theory.theory.gibbs import _along_support, gibbs
from recall_theory.theory.two_level import _float, aligned_logit, log_odds

_BISECTION_STEPS = 100
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
def forward_kl_optimum(log_ref: jax.Array, reward: jax.Array, beta) -> jax.Array:
  """``log pi`` maximising ``E_pi[r] - beta KL(pi_ref || pi)`` (support: last axis).

  ``pi(y) = beta pi_ref(y) / (lambda - r(y))``; ``lambda - r_max`` lies in
  ``[beta pi_ref(argmax r), beta]`` and is found by bisection in log space.
  """
  _validate.log_probs(log_ref, "log_ref")
  _validate.reward(reward)
  _validate.beta(beta)
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

  log_u = _bisect(excess_mass, log_beta + log_top, log_beta)
  log_pi = log_beta + log_ref - jnp.log(jnp.exp(log_u) + (r_max - reward))
  log_pi = jnp.where(in_support, log_pi, -jnp.inf)
  return log_pi - logsumexp(log_pi, axis=-1, keepdims=True)  # remove bisection residue


def forward_kl_aligned_mass(recall, gap, beta) -> jax.Array:
  """Two-level target mass under the forward-KL penalty, in closed form.

  With ``s = gap/beta`` and ``a = 1 - s``, normalisation is the quadratic
  ``(lambda-gap) lambda = beta p lambda + beta (1-p)(lambda-gap)``, whose admissible root
  gives ``pi(A) = 2p / (a + sqrt(a^2 + 4ps))`` (a >= 0) or
  ``(sqrt(a^2 + 4ps) - a) / (2s)`` (a < 0), both free of cancellation. Exactly 0 at p = 0.
  Requires gap >= 0.
  """
  _validate.recall(recall)
  _validate.beta(beta)
  errors.check_nonnegative("gap", gap)
  errors.check_broadcastable(recall=recall, gap=gap, beta=beta)
  p, s = _float(recall), _float(gap) / _float(beta)
  a = 1.0 - s
  root = jnp.sqrt(a * a + 4.0 * p * s)
  safe_s = jnp.where(s > 0, s, 1.0)
  covering = 2.0 * p / jnp.where(a + root > 0, a + root, 1.0)  # a + root = 0 only if p = 0
  mass = jnp.where(a >= 0, covering, (root - a) / (2.0 * safe_s))
  return jnp.where(p <= 0, 0.0, jnp.minimum(mass, 1.0))


# --------------------------------------------------------------------------- chi^2 + KL
def log_lambert_w_exp(z: jax.Array, steps: int = 4) -> jax.Array:
  """``log W(e^z)``: the w solving ``e^w + w = z`` (principal Lambert W in log space).

  Starts from Winitzki's approximation ``W(x) ~ L (1 - log(1+L)/(2+L))``, ``L = log(1+x)``
  (relative error < 2% for all x >= 0, computed as ``L = softplus(z)`` so it never
  overflows), then Halley steps, each cubing the error: 4 reach float64 resolution.
  Stable for z from -700 (W ~ e^z) to 1e6 (W ~ z - log z).
  """
  z = _float(z)
  soft = jax.nn.softplus(jnp.maximum(z, -30.0))
  winitzki = jnp.log(soft) + jnp.log1p(-jnp.log1p(soft) / (2.0 + soft))
  w = jnp.where(z < -30.0, z - jnp.exp(z), winitzki)  # W(x) = x - x^2 + ... for tiny x

  def halley(_, w):
    ew = jnp.exp(w)
    f, df = ew + w - z, ew + 1.0
    return w - f * df / (df * df - 0.5 * f * ew)

  return jax.lax.fori_loop(0, steps, halley, w)


def chi2_kl_optimum(log_ref: jax.Array, reward: jax.Array, beta) -> jax.Array:
  """``log pi`` maximising ``E_pi[r] - beta [KL(pi||pi_ref) + chi^2(pi||pi_ref)/2]``.

  ``log u = log W(exp((r - lambda)/beta))`` with lambda in
  ``[r_min - beta, r_max - beta]`` (support), found by bisection.
  """
  _validate.log_probs(log_ref, "log_ref")
  _validate.reward(reward)
  _validate.beta(beta)
  return _chi2_kl_optimum(_float(log_ref), _float(reward), _float(beta))


@jax.jit
def _chi2_kl_optimum(log_ref, reward, beta):
  log_ref, reward = jnp.broadcast_arrays(log_ref, reward)
  beta = _along_support(beta, -1)
  in_support = jnp.isfinite(log_ref)
  scaled = reward / beta
  lo = jnp.min(jnp.where(in_support, scaled, jnp.inf), axis=-1, keepdims=True) - 1.0
  hi = jnp.max(jnp.where(in_support, scaled, -jnp.inf), axis=-1, keepdims=True) - 1.0

  def log_mass(ell):  # log sum ref * W(exp(r/beta - ell)), decreasing in ell
    terms = jnp.where(in_support, log_ref + log_lambert_w_exp(scaled - ell), -jnp.inf)
    return logsumexp(terms, axis=-1, keepdims=True)

  ell = _bisect(log_mass, lo, hi + 1e-12)
  log_pi = jnp.where(in_support, log_ref + log_lambert_w_exp(scaled - ell), -jnp.inf)
  return log_pi - logsumexp(log_pi, axis=-1, keepdims=True)


def chi2_kl_aligned_mass(recall, gap, beta) -> jax.Array:
  """Two-level target mass under KL + chi^2/2: ``p W(e^{s-l})`` with ``p W(e^{s-l}) +
  (1-p) W(e^{-l}) = 1``, ``s = gap/beta``, l by bisection on [min(0,s)-1, max(0,s)-1]."""
  _validate.recall(recall)
  _validate.gap(gap)
  _validate.beta(beta)
  errors.check_broadcastable(recall=recall, gap=gap, beta=beta)
  return jnp.exp(_chi2_two_level_log_mass(_float(recall), _float(gap), _float(beta)))


@jax.jit
def _chi2_two_level_log_mass(p, gap, beta):
  p, s = jnp.broadcast_arrays(p, gap / beta)
  log_p, log1m_p = jnp.log(p), jnp.log1p(-p)

  def log_total_and_slope(ell):
    log_u_in, log_u_out = log_lambert_w_exp(s - ell), log_lambert_w_exp(-ell)
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
  return log_in - jnp.logaddexp(log_in, log1m_p + log_u_out)


# -------------------------------------------------------------------------------- IPO
def preference_vs_reference(log_ref: jax.Array, reward: jax.Array) -> jax.Array:
  """``P(y > pi_ref) = sum_y' pi_ref(y') sigmoid(r(y) - r(y'))`` (Bradley-Terry), in [0, 1]."""
  ref = jnp.exp(log_ref)
  diffs = reward[..., :, None] - reward[..., None, :]
  return jnp.sum(ref[..., None, :] * jax.nn.sigmoid(diffs), axis=-1)


def ipo_optimum(log_ref: jax.Array, reward: jax.Array, tau) -> jax.Array:
  """``log pi`` of IPO's population optimum with pairs from pi_ref (Azar et al. 2023):
  the Gibbs tilt of the bounded reward ``P(y > pi_ref)`` at temperature ``tau``."""
  _validate.log_probs(log_ref, "log_ref")
  _validate.reward(reward)
  _validate.beta(tau, "tau")
  return gibbs(log_ref, preference_vs_reference(log_ref, reward), tau)[0]


def ipo_aligned_mass(recall, gap, tau) -> jax.Array:
  """Two-level IPO target mass: ``sigmoid(logit p + (sigmoid(gap) - 1/2) / tau)``.

  Under Bradley-Terry, P(A > pi_ref) - P(A^c > pi_ref) = sigmoid(gap) - 1/2 < 1/2
  for every p, so the odds can grow by at most e^{1/(2 tau)} however large the gap.
  """
  _validate.recall(recall)
  _validate.gap(gap)
  _validate.beta(tau, "tau")
  errors.check_broadcastable(recall=recall, gap=gap, tau=tau)
  return jax.nn.sigmoid(aligned_logit(recall, jax.nn.sigmoid(_float(gap)) - 0.5, tau))


# -------------------------------------------------------------------------- best-of-N
def best_of_n(log_ref: jax.Array, reward: jax.Array, n) -> jax.Array:
  """``log pi_BoN``: the law of the highest-reward of N i.i.d. draws from pi_ref.

  ``pi(y) = pi_ref(y) / pi_ref(tie(y)) * (F(y)^N - F(y-)^N)`` with ``F(y) = pi_ref(r <= r(y))``;
  ties are broken uniformly, so tied outputs keep their reference proportions. N may be
  any real >= 1. O(K^2) in the support size K.
  """
  _validate.log_probs(log_ref, "log_ref")
  _validate.reward(reward)
  errors.check_positive("n", n)
  if errors._is_concrete(n) and (jnp.asarray(n) < 1).any():
    raise errors.InputError("n must be >= 1")
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


def best_of_n_aligned_mass(recall, n) -> jax.Array:
  """Top-set mass after best-of-N: ``1 - (1 - p)^N`` (exact 0 at p = 0, 1 at p = 1)."""
  _validate.recall(recall)
  errors.check_positive("n", n)
  if errors._is_concrete(n) and (jnp.asarray(n) < 1).any():
    raise errors.InputError("n must be >= 1")
  return -jnp.expm1(_float(n) * jnp.log1p(-_float(recall)))


def best_of_n_kl_bound(n) -> jax.Array:
  """``log N - (N - 1)/N``: the bound on KL(pi_BoN || pi_ref) (tight without ties as the
  support becomes continuous; Beirami et al. 2024)."""
  errors.check_positive("n", n)
  if errors._is_concrete(n) and (jnp.asarray(n) < 1).any():
    raise errors.InputError("n must be >= 1")
  n = _float(n)
  return jnp.log(n) - (n - 1.0) / n
