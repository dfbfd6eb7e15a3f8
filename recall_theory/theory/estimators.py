"""Monte-Carlo KL estimators and the divergence their gradients follow (theory item 11).

With ``y ~ pi`` and ``k1 = log pi(y) - log pi_ref(y)`` (Schulman 2020, "Approximating
KL divergence"):

* ``k1`` is unbiased for KL(pi || pi_ref), but ``E_pi[grad k1] = E_pi[grad log pi] = 0``:
  as a loss term (gradient through the log-ratio, samples held fixed) it does nothing;
* ``k2 = k1^2 / 2``: ``E_pi[grad k2] = grad KL(pi || pi_ref)`` (reverse KL, the RLHF penalty);
* ``k3 = exp(-k1) - 1 + k1``: unbiased and non-negative as a *value*, but
  ``E_pi[grad k3] = grad KL(pi_ref || pi)`` (forward KL), so "k3 as a loss" regularises
  toward the forward-KL optimum (see :mod:`recall_theory.theory.regularizers`), not pi*.

Gradients are with respect to the policy's parameters, with samples held fixed (as in a
loss computed on a batch of rollouts).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from recall_theory import errors
from recall_theory import validate as _validate
from recall_theory.theory.two_level import _float


def _log_ratio(log_pi, log_ref):
  """``log pi - log pi_ref`` of two log-probabilities (no NaN, <= 0) that broadcast;
  ``log_pi > -inf`` (an output sampled from pi has pi > 0)."""
  _validate.log_probs(log_pi, "log_pi")
  errors.require(log_pi, "log_pi", lambda xp, x: xp.isneginf(x),
                 "log_pi must be > -inf (the outputs are sampled from pi)")
  _validate.log_probs(log_ref, "log_ref")
  errors.check_broadcastable(log_pi=log_pi, log_ref=log_ref)
  return _float(log_pi) - _float(log_ref)


@errors.nan_on_invalid(elementwise=True)
def k1(log_pi: jax.Array, log_ref: jax.Array) -> jax.Array:
  """``log pi - log pi_ref`` at sampled outputs."""
  return _log_ratio(log_pi, log_ref)


@errors.nan_on_invalid(elementwise=True)
def k2(log_pi: jax.Array, log_ref: jax.Array) -> jax.Array:
  """``(log pi - log pi_ref)^2 / 2``."""
  return 0.5 * jnp.square(_log_ratio(log_pi, log_ref))


@errors.nan_on_invalid(elementwise=True)
def k3(log_pi: jax.Array, log_ref: jax.Array) -> jax.Array:
  """``pi_ref/pi - 1 - log(pi_ref/pi)`` (>= 0), computed as ``expm1(-k1) + k1``."""
  ratio = _log_ratio(log_pi, log_ref)
  return jnp.expm1(-ratio) + ratio


KL_ESTIMATORS = {"k1": k1, "k2": k2, "k3": k3}


@errors.nan_on_invalid
def expected_estimator_gradient(estimator, logits: jax.Array, log_ref: jax.Array) -> jax.Array:
  """``E_{y ~ pi}[grad_logits estimator(log pi(y), log pi_ref(y))]`` on a tabular softmax,
  exactly (a weighted sum over the support, samples held fixed)."""
  _validate.reward(logits, "logits")
  _validate.log_probs(log_ref, "log_ref")
  errors.check_broadcastable(logits=logits, log_ref=log_ref)
  logits = _float(logits)
  pi = jax.lax.stop_gradient(jax.nn.softmax(logits))

  def surrogate(theta):
    return jnp.sum(pi * estimator(jax.nn.log_softmax(theta), log_ref))

  return jax.grad(surrogate)(logits)
