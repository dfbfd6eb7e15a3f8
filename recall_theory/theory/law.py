"""What the law predicts for a trained run: the learning trap and the sampling trap.

theory.md item 12. Every alignment algorithm's population optimum is a Gibbs tilt of
its reference by its own effective reward, so its aligned mass on the target set A is

    predicted_mass = sigmoid(logit p_ref + Delta / beta)            (learning trap)

with ``p_ref = pi_ref(A)`` and ``Delta = L_A - L_{A^c}`` the soft-max reward gap of
that reward under that reference (``L_S = beta log E_ref[e^{r/beta} | S]``, see
:func:`recall_theory.theory.soft_max_reward`). Independently, an algorithm learns
about A only from draws that land in A: among ``n`` draws from a sampler that keeps
mass ``q`` on A it expects ``n q`` target samples and sees none with probability
``(1 - q)^n`` (sampling trap; :func:`recall_theory.theory.pair_coverage` is n = 2).

All functions broadcast, jit and vmap, and follow their inputs' dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from recall_theory import errors
from recall_theory import validate as _validate
from recall_theory.theory.two_level import _float, _log_odds


@errors.nan_on_invalid(elementwise=True)
def predicted_mass(reference_recall, delta_over_beta) -> jax.Array:
  """``sigmoid(logit p_ref + Delta/beta)``: the optimum's mass on A (learning trap).

  Exactly 0 at ``p_ref = 0`` and 1 at ``p_ref = 1`` for every finite ``Delta/beta``;
  ``Delta/beta = +-inf`` gives 1 / 0 for ``0 < p_ref < 1``.

  Example:
    >>> predicted_mass(1e-3, 4.0)    # 1e-3 e^4 / (1 - 1e-3 + 1e-3 e^4) = 0.0518
  """
  _validate.recall(reference_recall, "reference_recall")
  errors.check_not_nan("delta_over_beta", delta_over_beta)
  errors.check_broadcastable(reference_recall=reference_recall, delta_over_beta=delta_over_beta)
  p = _float(reference_recall)
  d = _float(delta_over_beta)
  logit = _log_odds(p)
  # Keep the support's endpoints exact: never evaluate inf - inf at p in {0, 1}.
  finite_logit = jnp.where(jnp.isfinite(logit), logit, 0.0) + jnp.where(jnp.isnan(d), d, jnp.nan_to_num(d))
  mass = jax.nn.sigmoid(finite_logit)
  mass = jnp.where(jnp.isposinf(d) & (p > 0), 1.0, jnp.where(jnp.isneginf(d) & (p < 1), 0.0, mass))
  return jnp.where(p <= 0, 0.0, jnp.where(p >= 1, 1.0, mass))


@errors.nan_on_invalid(elementwise=True)
def expected_target_samples(sampler_recall, n_samples) -> jax.Array:
  """``n q``: expected count of draws in A among ``n`` draws from a sampler with ``q = sampler(A)``."""
  _validate.recall(sampler_recall, "sampler_recall")
  _validate.budget(n_samples, "n_samples")
  errors.check_broadcastable(sampler_recall=sampler_recall, n_samples=n_samples)
  return _float(n_samples) * _float(sampler_recall)


@errors.nan_on_invalid(elementwise=True)
def prob_no_target_sample(sampler_recall, n_samples) -> jax.Array:
  """``(1 - q)^n``: the chance that ``n`` draws contain no target sample (exact for tiny q)."""
  _validate.recall(sampler_recall, "sampler_recall")
  _validate.budget(n_samples, "n_samples")
  errors.check_broadcastable(sampler_recall=sampler_recall, n_samples=n_samples)
  q, n = _float(sampler_recall), _float(n_samples)
  return jnp.where(n == 0, 1.0, jnp.exp(n * jnp.log1p(-q)))
