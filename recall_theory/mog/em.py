"""Expectation-maximisation for Gaussian mixtures, in JAX (jit- and vmap-friendly).

Maximum likelihood on samples is forward-KL fitting, argmin_q KL(p_data || q), so EM is
the package's forward-KL distillation onto a K-component mixture. Points may carry
weights: with the cell masses of a density on a quadrature grid as weights, EM
minimises the exact forward KL to that density (no sampling noise).

One iteration (weights a_n, responsibilities r_nk = p(k | x_n)):

  n_k = sum_n a_n r_nk,  w_k = n_k / sum_j n_j,  mu_k = sum_n a_n r_nk x_n / n_k,
  S_k = sum_n a_n r_nk (x_n - mu_k)(x_n - mu_k)^T / n_k + reg I.

Each iteration never decreases the weighted log-likelihood (Dempster et al. 1977).
A fixed iteration count (``lax.scan``) keeps shapes static for vmap. ``active_K``
masks components out of the family (log-weight fixed at -1e4, i.e. weight exactly 0),
so families of different sizes share one array shape inside a vmapped grid.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from recall_theory.errors import InputError, check_finite, check_int_range
from recall_theory.mog.mixture import Mixture, joint_log_prob

DEAD_LOG_WEIGHT = -1e4  # exp(-1e4) == 0 in every float dtype: a masked component


class EMResult(NamedTuple):
  """The fitted mixture and the weighted mean log-likelihood after each iteration (n_iter,)."""
  mixture: Mixture
  log_likelihood_T: jax.Array


def em_step(mixture: Mixture, x_NxD: jax.Array, weights_N: jax.Array, active_K: jax.Array,
            reg: float) -> tuple[Mixture, jax.Array]:
  """One EM iteration; returns the new mixture and the weighted mean log-likelihood before it."""
  log_joint_NxK = joint_log_prob(mixture, x_NxD)
  log_lik_N = jax.nn.logsumexp(log_joint_NxK, axis=-1)
  resp_NxK = jnp.exp(log_joint_NxK - log_lik_N[:, None]) * weights_N[:, None]
  total = jnp.sum(weights_N)
  mean_ll = jnp.sum(weights_N * log_lik_N) / total
  n_K = jnp.sum(resp_NxK, axis=0)
  alive_K = active_K & (n_K > 1e-12 * total)
  safe_n_K = jnp.where(alive_K, n_K, 1.0)
  means_KxD = (resp_NxK.T @ x_NxD) / safe_n_K[:, None]
  d = x_NxD.shape[-1]
  covs_KxDxD = (_weighted_scatter(resp_NxK, x_NxD, means_KxD) / safe_n_K[:, None, None]
                + reg * jnp.eye(d, dtype=x_NxD.dtype))
  # A component that lost all its points keeps its parameters (and a zero weight).
  means_KxD = jnp.where(alive_K[:, None], means_KxD, mixture.means_KxD)
  covs_KxDxD = jnp.where(alive_K[:, None, None], covs_KxDxD, mixture.covs_KxDxD)
  log_w_K = jnp.where(alive_K, jnp.log(safe_n_K) - jnp.log(total), DEAD_LOG_WEIGHT)
  log_w_K = jnp.where(alive_K, log_w_K - jax.nn.logsumexp(jnp.where(alive_K, log_w_K, -jnp.inf)),
                      DEAD_LOG_WEIGHT)
  return Mixture(log_w_K, means_KxD, covs_KxDxD), mean_ll


def _weighted_scatter(resp_NxK: jax.Array, x_NxD: jax.Array, means_KxD: jax.Array) -> jax.Array:
  """sum_n r_nk (x_n - mu_k)(x_n - mu_k)^T, shape (K, D, D).

  In 2-D the three distinct entries are elementwise products summed over n, which XLA fuses;
  the general einsum builds N x K tiny outer products.
  """
  if x_NxD.shape[-1] == 2:
    d0_NxK = x_NxD[:, None, 0] - means_KxD[None, :, 0]
    d1_NxK = x_NxD[:, None, 1] - means_KxD[None, :, 1]
    s00_K = jnp.sum(resp_NxK * d0_NxK * d0_NxK, axis=0)
    s01_K = jnp.sum(resp_NxK * d0_NxK * d1_NxK, axis=0)
    s11_K = jnp.sum(resp_NxK * d1_NxK * d1_NxK, axis=0)
    return jnp.stack([jnp.stack([s00_K, s01_K], -1), jnp.stack([s01_K, s11_K], -1)], -2)
  return _weighted_scatter_einsum(resp_NxK, x_NxD, means_KxD)


def _weighted_scatter_einsum(resp_NxK: jax.Array, x_NxD: jax.Array, means_KxD: jax.Array) -> jax.Array:
  """:func:`_weighted_scatter` in any dimension, by one einsum."""
  diff_NxKxD = x_NxD[:, None, :] - means_KxD[None]
  return jnp.einsum("nk,nki,nkj->kij", resp_NxK, diff_NxKxD, diff_NxKxD)


def fit_em(x_NxD: jax.Array, init: Mixture, n_iter: int = 50, *, weights_N: jax.Array | None = None,
           active_K: jax.Array | None = None, reg: float = 1e-6) -> EMResult:
  """Run ``n_iter`` EM iterations from ``init`` on (optionally weighted) points.

  Args:
    x_NxD: data points; weights_N: non-negative weights (default all ones).
    init: starting mixture (K components); active_K: bool mask of components in the family.
    reg: ridge added to every covariance (keeps them positive definite).
  Returns:
    EMResult(mixture, log_likelihood_T).
  Example::
    fit_em(sample(key, p, 2000), init=p).mixture   # re-fits p to its own samples
  """
  if weights_N is None:
    weights_N = jnp.ones(x_NxD.shape[:1], x_NxD.dtype)
  if active_K is None:
    active_K = jnp.ones(init.log_weights_K.shape, bool)
  init = init._replace(log_weights_K=jnp.where(active_K, init.log_weights_K, DEAD_LOG_WEIGHT))

  def body(mixture, _):
    new, ll = em_step(mixture, x_NxD, weights_N, active_K, reg)
    return new, ll

  mixture, ll_T = jax.lax.scan(body, init, None, length=n_iter)
  return EMResult(mixture, ll_T)


def validate_em_inputs(x_NxD, n_components: int, n_iter: int) -> None:
  """Host-side checks: finite data of shape (N, D), 1 <= n_components <= N, n_iter >= 1."""
  check_finite("data", x_NxD)
  shape = jnp.shape(x_NxD)
  if len(shape) != 2:
    raise InputError(f"data must have shape (N, D), got {shape}")
  check_int_range("n_components", n_components, 1, shape[0])
  check_int_range("n_iter", n_iter, 1)


def top_components_init(source: Mixture, n_components: int, active_K: jax.Array | None = None) -> Mixture:
  """Student initialised on the ``n_components`` heaviest components of ``source``.

  Equal weights over the active ones; the student starts where the teacher puts most
  mass (the usual warm start for distillation), which makes the fit deterministic.
  """
  _, idx = jax.lax.top_k(source.log_weights_K, n_components)
  if active_K is None:
    active_K = jnp.ones((n_components,), bool)
  log_w = jnp.where(active_K, 0.0, DEAD_LOG_WEIGHT)
  log_w = log_w - jax.nn.logsumexp(jnp.where(active_K, log_w, -jnp.inf))
  log_w = jnp.where(active_K, log_w, DEAD_LOG_WEIGHT)
  return Mixture(log_w.astype(source.means_KxD.dtype), source.means_KxD[idx], source.covs_KxDxD[idx])
