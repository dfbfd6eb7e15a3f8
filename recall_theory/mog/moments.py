"""Moment matching: the forward-KL projection of a mixture onto one Gaussian.

argmin_{N(m, C)} KL(q || N(m, C)) over all Gaussians is attained at the total mean and
covariance of q (exponential-family moment matching):

  m = sum_k w_k mu_k,   C = sum_k w_k [S_k + (mu_k - m)(mu_k - m)^T].

Forward-KL distillation of any teacher onto a single-Gaussian student is therefore
exact and needs no optimisation (theory item 7). Example: two unit-weight modes at
+-1 on the x axis with covariance s I give m = 0, C = diag(s + 1, s).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from recall_theory.mog.mixture import Mixture


def mixture_moments(mixture: Mixture) -> tuple[jax.Array, jax.Array]:
  """Total mean (D,) and covariance (D, D) of the mixture."""
  w_K = mixture.weights_K
  mean_D = jnp.einsum("k,kd->d", w_K, mixture.means_KxD)
  diff_KxD = mixture.means_KxD - mean_D
  cov_DxD = (jnp.einsum("k,kij->ij", w_K, mixture.covs_KxDxD)
             + jnp.einsum("k,ki,kj->ij", w_K, diff_KxD, diff_KxD))
  return mean_D, cov_DxD


def moment_match(mixture: Mixture) -> Mixture:
  """The single Gaussian (a one-component Mixture) closest to ``mixture`` in KL(q || .)."""
  mean_D, cov_DxD = mixture_moments(mixture)
  return Mixture(jnp.zeros((1,), mean_D.dtype), mean_D[None], cov_DxD[None])


def weighted_moments(x_NxD: jax.Array, weights_N: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Mean and covariance of a weighted point set (weights need not be normalised)."""
  w_N = weights_N / jnp.sum(weights_N)
  mean_D = w_N @ x_NxD
  diff = x_NxD - mean_D
  return mean_D, jnp.einsum("n,ni,nj->ij", w_N, diff, diff)
