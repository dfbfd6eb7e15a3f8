"""Gaussian mixtures in JAX: log-space weights, full covariances.

A mixture ``q(x) = sum_k w_k N(x; mu_k, S_k)`` is a :class:`Mixture` of three arrays,
``log_weights_K``, ``means_KxD`` and ``covs_KxDxD``. Weights live in log space so a
mode that a reference has all but dropped (``w = 1e-300`` in float64) stays exact;
densities are mixed with ``logsumexp``. Every function is pure and vmappable;
:func:`make_mixture` validates host values (positive-definite covariances, weights on
the simplex, no NaN) and raises :class:`~recall_theory.errors.InputError` naming the
argument, before anything is traced.

Example::

  q = make_mixture(weights=[0.5, 0.5], means=[[-1., 0.], [1., 0.]],
                   covs=0.025 * jnp.eye(2)[None].repeat(2, 0))
  log_prob(q, jnp.zeros((3, 2)))        # shape (3,)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from recall_theory.errors import InputError, check_finite, check_positive


class Mixture(NamedTuple):
  """A Gaussian mixture: ``log_weights_K`` (normalised), ``means_KxD``, ``covs_KxDxD``."""
  log_weights_K: jax.Array
  means_KxD: jax.Array
  covs_KxDxD: jax.Array

  @property
  def n_components(self) -> int:
    return self.means_KxD.shape[-2]

  @property
  def dim(self) -> int:
    return self.means_KxD.shape[-1]

  @property
  def weights_K(self) -> jax.Array:
    return jnp.exp(self.log_weights_K)


def validate_mixture(weights=None, means=None, covs=None, *, log_weights=None,
                     name: str = "mixture", atol: float = 1e-6) -> None:
  """Host-side checks; raise InputError naming the bad argument.

  * ``weights`` (or ``log_weights``): shape (K,), non-negative, summing to 1 within ``atol``;
  * ``means``: shape (K, D), finite;
  * ``covs``: shape (K, D, D), symmetric positive definite (Cholesky succeeds).
  """
  means_np = np.asarray(means, dtype=np.float64)
  check_finite(f"{name}.means", means_np)
  if means_np.ndim != 2:
    raise InputError(f"{name}.means must have shape (K, D), got {means_np.shape}")
  k, d = means_np.shape
  if log_weights is not None:
    lw = np.asarray(log_weights, dtype=np.float64)
    if np.isnan(lw).any():
      raise InputError(f"{name}.log_weights must not contain NaN")
    w = np.exp(lw)
    wname = f"{name}.log_weights"
  else:
    w = np.asarray(weights, dtype=np.float64)
    check_finite(f"{name}.weights", w)
    wname = f"{name}.weights"
    if (w < 0).any():
      raise InputError(f"{wname} must be >= 0, got {w[w < 0][0]:g}")
  if w.shape != (k,):
    raise InputError(f"{wname} must have shape ({k},) to match means, got {w.shape}")
  if abs(w.sum() - 1.0) > atol:
    raise InputError(f"{wname} must sum to 1 (within {atol:g}), got sum {w.sum():.8g}")
  covs_np = np.asarray(covs, dtype=np.float64)
  check_finite(f"{name}.covs", covs_np)
  if covs_np.shape != (k, d, d):
    raise InputError(f"{name}.covs must have shape ({k}, {d}, {d}), got {covs_np.shape}")
  if not np.allclose(covs_np, np.swapaxes(covs_np, -1, -2), atol=1e-10, rtol=1e-8):
    raise InputError(f"{name}.covs must be symmetric")
  for i, c in enumerate(covs_np):
    if np.linalg.eigvalsh(c).min() <= 0:
      raise InputError(f"{name}.covs[{i}] must be positive definite "
                       f"(smallest eigenvalue {np.linalg.eigvalsh(c).min():.3g})")


def make_mixture(weights, means, covs, *, dtype=None, name: str = "mixture") -> Mixture:
  """Validated :class:`Mixture` from probabilities ``weights`` (K,), ``means`` (K, D), ``covs``.

  ``covs`` may also be a scalar or (K,) array of isotropic variances.
  """
  means_np = np.asarray(means, dtype=np.float64)
  if means_np.ndim != 2:
    raise InputError(f"{name}.means must have shape (K, D), got {means_np.shape}")
  k, d = means_np.shape
  covs_np = np.asarray(covs, dtype=np.float64)
  if covs_np.ndim <= 1:
    check_positive(f"{name}.covs", covs_np)
    covs_np = np.broadcast_to(covs_np.reshape(-1, 1, 1), (k, 1, 1)) * np.eye(d)
  validate_mixture(weights, means_np, covs_np, name=name)
  dtype = dtype or jnp.result_type(float)
  w = np.asarray(weights, dtype=np.float64)
  with np.errstate(divide="ignore"):
    log_w = np.log(w / w.sum())
  return Mixture(jnp.asarray(log_w, dtype), jnp.asarray(means_np, dtype),
                 jnp.asarray(covs_np, dtype))


def normalize_log_weights(log_weights_K: jax.Array) -> jax.Array:
  """log w - logsumexp(log w): log-weights on the simplex."""
  return log_weights_K - jax.nn.logsumexp(log_weights_K, axis=-1, keepdims=True)


def cholesky_factors(covs_KxDxD: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(L, L^{-1}, log|S|) for each covariance S = L L^T.

  In 2-D (the track's case) the factors are written out (L11 = sqrt(a), L21 = b / L11,
  L22 = sqrt(c - L21^2)), which avoids batched LAPACK calls: much faster to compile and
  run under vmap on CPU. Other dimensions use ``jnp.linalg.cholesky``.
  """
  d = covs_KxDxD.shape[-1]
  if d == 2:
    a, b, c = covs_KxDxD[..., 0, 0], covs_KxDxD[..., 1, 0], covs_KxDxD[..., 1, 1]
    l11 = jnp.sqrt(a)
    l21 = b / l11
    l22 = jnp.sqrt(c - l21 ** 2)
    zero = jnp.zeros_like(a)
    chol = jnp.stack([jnp.stack([l11, zero], -1), jnp.stack([l21, l22], -1)], -2)
    inv = jnp.stack([jnp.stack([1.0 / l11, zero], -1), jnp.stack([-l21 / (l11 * l22), 1.0 / l22], -1)], -2)
    return chol, inv, 2.0 * (jnp.log(l11) + jnp.log(l22))
  chol = jnp.linalg.cholesky(covs_KxDxD)
  eye = jnp.broadcast_to(jnp.eye(d, dtype=chol.dtype), chol.shape)
  inv = jax.scipy.linalg.solve_triangular(chol, eye, lower=True)
  return chol, inv, 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)


def component_log_prob(mixture: Mixture, x_NxD: jax.Array) -> jax.Array:
  """log N(x_n; mu_k, S_k) for every point and component, shape (N, K).

  Only the K covariances are factorised; the N x K Mahalanobis terms are the inverse Cholesky
  factors applied to x - mu, so batches of points stay cheap under vmap. In 2-D (the track's
  case) that product is written out, w_0 = L^-1_00 d_0, w_1 = L^-1_10 d_0 + L^-1_11 d_1: the
  same arithmetic as the einsum of :func:`component_log_prob_einsum`, but elementwise, so XLA
  fuses it with the logsumexp around it instead of issuing N x K tiny dot products
  (``experiments/bench_mog.py --stages`` times both forms).
  """
  if mixture.means_KxD.shape[-1] != 2 or x_NxD.shape[-1] != 2:
    return component_log_prob_einsum(mixture, x_NxD)  # (a dimension mismatch fails there, by shape)
  _, inv_chol_KxDxD, log_det_K = cholesky_factors(mixture.covs_KxDxD)
  d0_NxK = x_NxD[:, None, 0] - mixture.means_KxD[None, :, 0]
  d1_NxK = x_NxD[:, None, 1] - mixture.means_KxD[None, :, 1]
  w0_NxK = inv_chol_KxDxD[None, :, 0, 0] * d0_NxK
  w1_NxK = inv_chol_KxDxD[None, :, 1, 0] * d0_NxK + inv_chol_KxDxD[None, :, 1, 1] * d1_NxK
  return -0.5 * (2 * math.log(2 * math.pi) + log_det_K[None] + (w0_NxK ** 2 + w1_NxK ** 2))


def component_log_prob_einsum(mixture: Mixture, x_NxD: jax.Array) -> jax.Array:
  """:func:`component_log_prob` in any dimension: whitening by an einsum, shape (N, K)."""
  _, inv_chol_KxDxD, log_det_K = cholesky_factors(mixture.covs_KxDxD)
  d = mixture.means_KxD.shape[-1]
  diff_NxKxD = x_NxD[:, None, :] - mixture.means_KxD[None]
  white_NxKxD = jnp.einsum("kij,nkj->nki", inv_chol_KxDxD, diff_NxKxD)
  return -0.5 * (d * math.log(2 * math.pi) + log_det_K[None] + jnp.sum(white_NxKxD ** 2, -1))


def joint_log_prob(mixture: Mixture, x_NxD: jax.Array) -> jax.Array:
  """log w_k + log N(x_n; mu_k, S_k), shape (N, K) (the E-step's unnormalised responsibilities)."""
  return mixture.log_weights_K[None] + component_log_prob(mixture, x_NxD)


def log_prob(mixture: Mixture, x_NxD: jax.Array) -> jax.Array:
  """log q(x_n) = logsumexp_k [log w_k + log N(x_n; mu_k, S_k)], shape (N,)."""
  return jax.nn.logsumexp(joint_log_prob(mixture, x_NxD), axis=-1)


def responsibilities(mixture: Mixture, x_NxD: jax.Array) -> jax.Array:
  """Posterior component probabilities p(k | x_n), shape (N, K)."""
  return jax.nn.softmax(joint_log_prob(mixture, x_NxD), axis=-1)


def sample(key: jax.Array, mixture: Mixture, n: int) -> jax.Array:
  """``n`` independent draws, shape (n, D): component by its weight, then Gaussian."""
  key_k, key_z = jax.random.split(key)
  comp_N = jax.random.categorical(key_k, mixture.log_weights_K, shape=(n,))
  chol_KxDxD = cholesky_factors(mixture.covs_KxDxD)[0]
  z_NxD = jax.random.normal(key_z, (n, mixture.dim), dtype=mixture.means_KxD.dtype)
  # One-hot contraction instead of indexing: a gather under vmap is slow on CPU; K is small.
  onehot_NxK = jax.nn.one_hot(comp_N, mixture.n_components, dtype=z_NxD.dtype)
  return onehot_NxK @ mixture.means_KxD + jnp.einsum("nk,kij,nj->ni", onehot_NxK, chol_KxDxD, z_NxD)


def entropy_mc(key: jax.Array, mixture: Mixture, n: int = 4096) -> tuple[jax.Array, jax.Array]:
  """Monte Carlo entropy H(q) = -E_q[log q] and its standard error (no closed form exists)."""
  lp_N = log_prob(mixture, sample(key, mixture, n))
  return -jnp.mean(lp_N), jnp.std(lp_N) / jnp.sqrt(n)


def entropy_bounds(mixture: Mixture) -> tuple[jax.Array, jax.Array]:
  """Exact bounds sum_k w_k H(N_k) <= H(q) <= that + H(w) (Huber et al. 2008)."""
  d = mixture.dim
  log_det_K = jnp.linalg.slogdet(mixture.covs_KxDxD)[1]
  h_comp_K = 0.5 * (d * (1.0 + math.log(2 * math.pi)) + log_det_K)
  w_K = mixture.weights_K
  lower = jnp.sum(w_K * h_comp_K)
  h_w = -jnp.sum(jnp.where(w_K > 0, w_K * mixture.log_weights_K, 0.0))
  return lower, lower + h_w


def sharpen(mixture: Mixture, gamma) -> Mixture:
  """Weight sharpening w_k -> w_k^gamma / sum_j w_j^gamma (gamma > 1 is selective)."""
  return mixture._replace(log_weights_K=normalize_log_weights(gamma * mixture.log_weights_K))


def with_temperature(mixture: Mixture, temperature) -> Mixture:
  """The mixture sampled at temperature T, q^(1/T)/Z, in the separated-modes approximation.

  For one Gaussian, N(mu, S)^(1/T) normalises to N(mu, T S). For modes that do not
  overlap, the k-th bump of q^(1/T) therefore has covariance T S_k and mass
  proportional to w_k^(1/T) |S_k|^((1-1/T)/2) (the common (2 pi)^... and T^(D/2)
  factors cancel). T < 1 sharpens (lower recall), T > 1 flattens. Exact for K = 1.
  """
  log_det_K = jnp.linalg.slogdet(mixture.covs_KxDxD)[1]
  log_w = mixture.log_weights_K / temperature + 0.5 * (1.0 - 1.0 / temperature) * log_det_K
  return Mixture(normalize_log_weights(log_w), mixture.means_KxD, temperature * mixture.covs_KxDxD)
