"""Exact tilt of a Gaussian mixture: pi*(x) = pi_ref(x) exp(r(x)/beta) / Z (theory item 6).

The KL-regularised optimum of E_pi[r] - beta KL(pi || pi_ref) is the Gibbs tilt of the
reference (theory item 1). For a mixture reference and a quadratic or linear reward the
tilt is again a mixture with the same number of components, in closed form:

* quadratic ``r(x) = -(x - c)^T Q (x - c) / 2`` (Q positive definite):
    S'_k = (S_k^{-1} + Q/beta)^{-1},  mu'_k = S'_k (S_k^{-1} mu_k + Q c / beta),
    log w'_k = log w_k + log N(c; mu_k, S_k + beta Q^{-1}) - logsumexp(...);
  and log Z = log sum_k w_k N(c; mu_k, S_k + beta Q^{-1}) + (D/2) log(2 pi beta) - (1/2) log|Q|.
* linear ``r(x) = a^T x``:
    mu'_k = mu_k + S_k a / beta,  S'_k = S_k,
    log w'_k = log w_k + a^T mu_k / beta + a^T S_k a / (2 beta^2) (normalised).

Any other reward: :func:`recall_theory.mog.quadrature.tilt_on_grid` is the exact
reference on a 2-D grid. Reference: Rafailov et al. 2023 (Gibbs optimum); the Gaussian
product identity N(x; mu, S) N(x; c, B) = N(c; mu, S + B) N(x; mu', S').
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from recall_theory.errors import check_positive
from recall_theory.mog.mixture import Mixture, normalize_log_weights


def _gauss_log_pdf(x_D: jax.Array, mean_KxD: jax.Array, cov_KxDxD: jax.Array) -> jax.Array:
  chol = jnp.linalg.cholesky(cov_KxDxD)
  white = jax.scipy.linalg.solve_triangular(chol, (x_D - mean_KxD)[..., None], lower=True)[..., 0]
  log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
  d = x_D.shape[-1]
  return -0.5 * (d * math.log(2 * math.pi) + log_det + jnp.sum(white ** 2, -1))


def tilt_quadratic(reference: Mixture, center_D: jax.Array, precision_DxD: jax.Array,
                   beta) -> tuple[Mixture, jax.Array]:
  """Tilt ``reference`` by r(x) = -(x-c)^T Q (x-c)/2 at temperature ``beta``.

  Returns the tilted :class:`Mixture` and log Z = log E_ref[exp(r/beta)].
  """
  check_positive("beta", beta)
  q_over_beta = precision_DxD / beta
  prec_KxDxD = jnp.linalg.inv(reference.covs_KxDxD)
  new_cov = jnp.linalg.inv(prec_KxDxD + q_over_beta)
  new_mean = jnp.einsum("kij,kj->ki", new_cov,
                        jnp.einsum("kij,kj->ki", prec_KxDxD, reference.means_KxD)
                        + (q_over_beta @ center_D)[None])
  spread = reference.covs_KxDxD + beta * jnp.linalg.inv(precision_DxD)[None]
  log_joint_K = reference.log_weights_K + _gauss_log_pdf(center_D, reference.means_KxD, spread)
  d = center_D.shape[-1]
  log_z = (jax.nn.logsumexp(log_joint_K) + 0.5 * d * jnp.log(2 * math.pi * beta)
           - 0.5 * jnp.linalg.slogdet(precision_DxD)[1])
  return Mixture(normalize_log_weights(log_joint_K), new_mean, new_cov), log_z


def tilt_linear(reference: Mixture, direction_D: jax.Array, beta) -> tuple[Mixture, jax.Array]:
  """Tilt ``reference`` by r(x) = a^T x; returns the tilted mixture and log Z."""
  check_positive("beta", beta)
  s_a_KxD = jnp.einsum("kij,j->ki", reference.covs_KxDxD, direction_D)
  log_mgf_K = reference.means_KxD @ direction_D / beta + (s_a_KxD @ direction_D) / (2 * beta ** 2)
  log_joint_K = reference.log_weights_K + log_mgf_K
  return (Mixture(normalize_log_weights(log_joint_K), reference.means_KxD + s_a_KxD / beta,
                  reference.covs_KxDxD), jax.nn.logsumexp(log_joint_K))
