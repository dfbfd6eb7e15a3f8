"""The KL-regularized optimum on a discrete support (theory items 1-3).

For a reference pi_ref, reward r and beta > 0, the objective
``J(pi) = E_pi[r] - beta * KL(pi || pi_ref)`` is maximised uniquely by the Gibbs tilt

    pi*(y) = pi_ref(y) exp(r(y)/beta) / Z,      Z = E_{pi_ref}[exp(r/beta)],

and for every pi, ``J(pi) + beta * KL(pi || pi*) = beta * log Z`` (Korbak et al. 2022,
"RL with KL penalties is better viewed as Bayesian inference"; Rafailov et al. 2023,
"Direct Preference Optimization", eq. 4). Everything here is computed in log space:
``log_ref`` may hold ``-inf`` (outputs outside the reference's support, which pi*
inherits exactly) and masses down to ``exp(-745)`` in float64.

Shapes: ``log_ref`` and ``reward`` broadcast; the support is the last axis (``axis``),
all leading axes are batch axes, so every function vmaps and jits as is.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from recall_theory import errors
from recall_theory import validate as _validate
from recall_theory.divergences import reverse_kl


def _along_support(beta, axis: int) -> jax.Array:
  """Give a batched beta ``[...]`` a unit support axis so it broadcasts against ``[..., K]``."""
  beta = jnp.asarray(beta)
  return jnp.expand_dims(beta, axis) if beta.ndim else beta


@errors.nan_on_invalid
def gibbs(log_ref: jax.Array, reward: jax.Array, beta, axis: int = -1) -> tuple[jax.Array, jax.Array]:
  """Gibbs optimum ``(log_pi, log_z)`` of ``E_pi[r] - beta KL(pi || pi_ref)``.

  Args:
    log_ref: ``[..., K]`` normalised log-probabilities of the reference (``-inf`` allowed).
    reward: ``[..., K]`` finite rewards.
    beta: scalar or ``[...]`` batch of KL coefficients, > 0.
    axis: the support axis (must be the last one when beta is batched).

  Returns:
    ``log_pi`` ``[..., K]``: ``log_ref + r/beta - log Z``; ``log_z`` ``[...]``:
    ``log E_ref[exp(r/beta)]``.

  Example:
    >>> log_pi, log_z = gibbs(jnp.log(jnp.array([0.9, 0.1])), jnp.array([0., 1.]), 1.0)
    >>> # pi*(1) = 0.1 e / (0.9 + 0.1 e) = 0.2320

  Reference: Korbak et al. (2022); Rafailov et al. (2023), eq. (4).
  """
  _validate.log_distribution(log_ref, "log_ref", axis)
  _validate.reward(reward)
  _validate.beta(beta)
  _validate.support_batch(beta, "beta", axis, log_ref=log_ref, reward=reward)
  log_pi, log_z_shifted, r_max = _gibbs(_float(log_ref), _float(reward), beta, axis)
  return log_pi, jnp.squeeze(log_z_shifted + _scaled(r_max, beta, axis), axis=axis)


def _gibbs(log_ref, reward, beta, axis):
  """``(log_pi, log Z - r_max/beta, r_max)`` (both keepdims), r_max over the support.

  Tilting by ``(r - r_max)/beta`` keeps every exponent <= 0, so a reward gap that overflows
  ``r/beta`` (float32 1e30 / 1e-10) gives -inf, never inf - inf."""
  r_max = _support_max(log_ref, reward, axis)
  logits = log_ref + _scaled(reward - r_max, beta, axis)
  log_z_shifted = logsumexp(logits, axis=axis, keepdims=True)
  return logits - log_z_shifted, log_z_shifted, r_max


def _float(x):
  x = jnp.asarray(x)
  return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def _support_max(log_ref, reward, axis):
  """Largest reward on the reference's support (0 if the support is empty), keepdims."""
  top = jnp.max(jnp.where(jnp.isfinite(log_ref), reward, -jnp.inf), axis=axis, keepdims=True)
  return jnp.where(jnp.isfinite(top), top, 0.0)


def _scaled(reward, beta, axis):
  """``reward / beta`` with 0 / beta = 0 exactly."""
  return jnp.where(reward == 0, 0.0, reward / _along_support(beta, axis))


@errors.nan_on_invalid
def log_partition(log_ref: jax.Array, reward: jax.Array, beta, axis: int = -1) -> jax.Array:
  """``log Z = log E_{pi_ref}[exp(r / beta)]`` (shape: batch axes)."""
  return gibbs(log_ref, reward, beta, axis)[1]


@errors.nan_on_invalid
def expected_reward(log_pi: jax.Array, reward: jax.Array, axis: int = -1) -> jax.Array:
  """``E_pi[r]``, with 0 contribution from outputs where pi = 0."""
  _validate.log_probs(log_pi, "log_pi")
  _validate.reward(reward)
  errors.check_broadcastable(log_pi=log_pi, reward=reward)
  pi = jnp.exp(log_pi)
  return jnp.sum(jnp.where(pi > 0, pi * reward, 0.0), axis=axis)


@errors.nan_on_invalid
def objective(log_pi: jax.Array, log_ref: jax.Array, reward: jax.Array, beta, axis: int = -1) -> jax.Array:
  """``J(pi) = E_pi[r] - beta KL(pi || pi_ref)``."""
  _validate.beta(beta)
  return expected_reward(log_pi, reward, axis) - jnp.asarray(beta) * reverse_kl(log_ref, log_pi, axis)


@errors.nan_on_invalid
def kl_cost(log_ref: jax.Array, reward: jax.Array, beta, axis: int = -1) -> jax.Array:
  """``KL(pi* || pi_ref) = E_{pi*}[r] / beta - log Z`` (theory item 3).

  Along the beta path the exchange rate is ``dE_{pi*}[r] / dKL = beta``.
  """
  _validate.log_distribution(log_ref, "log_ref", axis)
  _validate.reward(reward)
  _validate.beta(beta)
  _validate.support_batch(beta, "beta", axis, log_ref=log_ref, reward=reward)
  log_ref, reward = _float(log_ref), _float(reward)
  # E[r]/beta - log Z = E[r - r_max]/beta - (log Z - r_max/beta): no cancellation of two
  # large terms when r/beta is large.
  log_pi, log_z_shifted, r_max = _gibbs(log_ref, reward, beta, axis)
  mean_shifted = expected_reward(log_pi, reward - r_max, axis)
  return jnp.where(mean_shifted == 0, 0.0, mean_shifted / jnp.asarray(beta)) - jnp.squeeze(log_z_shifted, axis)


@errors.nan_on_invalid
def soft_max_reward(log_ref: jax.Array, reward: jax.Array, beta, in_set: jax.Array,
                    axis: int = -1) -> jax.Array:
  """Soft-max reward of a set S: ``L_S = beta log E_{pi_ref}[exp(r/beta) | S]``.

  ``in_set`` is a ``[..., K]`` mask of S: booleans, or 0/1 (converted). Returns ``-inf``
  when pi_ref(S) = 0.
  """
  _validate.log_probs(log_ref, "log_ref")
  _validate.reward(reward)
  _validate.beta(beta)
  errors.check_broadcastable(log_ref=log_ref, reward=reward, in_set=in_set)
  _validate.support_batch(beta, "beta", axis, log_ref=log_ref, reward=reward, in_set=in_set)
  in_set = _validate.mask(in_set, "in_set")
  log_ref, reward = _float(log_ref), _float(reward)
  log_set = logsumexp(jnp.where(in_set, log_ref, -jnp.inf), axis=axis)
  # shifted by the set's largest reward so that r/beta cannot overflow
  r_top = _support_max(jnp.where(in_set, log_ref, -jnp.inf), reward, axis)
  tilted = log_ref + _scaled(reward - r_top, beta, axis)
  log_tilt = logsumexp(jnp.where(in_set, tilted, -jnp.inf), axis=axis)
  return jnp.where(jnp.isfinite(log_set),
                   jnp.squeeze(r_top, axis) + jnp.asarray(beta) * (log_tilt - log_set), -jnp.inf)


@errors.nan_on_invalid
def set_mass(log_ref: jax.Array, reward: jax.Array, beta, in_set: jax.Array,
             axis: int = -1) -> jax.Array:
  """``pi*(A)`` by the set-mass law (theory item 2), computed from the logit identity

      logit pi*(A) = logit pi_ref(A) + (L_A - L_{A^c}) / beta.

  Exact 0 when pi_ref(A) = 0 and exact 1 when pi_ref(A^c) = 0. ``in_set``: booleans, or
  0/1 (converted; any other value is refused).
  """
  _validate.log_probs(log_ref, "log_ref")
  _validate.reward(reward)
  _validate.beta(beta)
  errors.check_broadcastable(log_ref=log_ref, reward=reward, in_set=in_set)
  in_set = _validate.mask(in_set, "in_set")
  log_ref = _float(log_ref)
  log_in = logsumexp(jnp.where(in_set, log_ref, -jnp.inf), axis=axis)
  log_out = logsumexp(jnp.where(in_set, -jnp.inf, log_ref), axis=axis)
  l_in = soft_max_reward(log_ref, reward, beta, in_set, axis)
  l_out = soft_max_reward(log_ref, reward, beta, ~in_set, axis)
  # Empty sides are handled explicitly so no inf - inf appears.
  finite = jnp.isfinite(log_in) & jnp.isfinite(log_out)
  logit = jnp.where(finite, (log_in - log_out) + (l_in - l_out) / beta, 0.0)
  return jnp.where(~jnp.isfinite(log_in), 0.0, jnp.where(~jnp.isfinite(log_out), 1.0,
                                                         jax.nn.sigmoid(logit)))
