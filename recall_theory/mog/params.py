"""Unconstrained parameters of a trainable Gaussian mixture (policy gradient, DPO, reverse KL).

``MixtureParams(logits_K, means_KxD, chol_raw_KxDxD)``: the weights are softmax(logits);
each covariance is L L^T with L lower triangular whose diagonal is exp(diag(chol_raw)),
so every parameter value is a valid mixture. A masked component (logit -1e4) keeps a zero
weight and a zero gradient, so families of different sizes share one shape.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from recall_theory.mog.mixture import Mixture, cholesky_factors, normalize_log_weights


class MixtureParams(NamedTuple):
  logits_K: jax.Array
  means_KxD: jax.Array
  chol_raw_KxDxD: jax.Array


def to_mixture(params: MixtureParams) -> Mixture:
  """The mixture the parameters describe."""
  d = params.means_KxD.shape[-1]
  lower = jnp.tril(params.chol_raw_KxDxD, k=-1)
  diag = jnp.exp(jnp.diagonal(params.chol_raw_KxDxD, axis1=-2, axis2=-1))
  chol = lower + diag[..., None] * jnp.eye(d, dtype=diag.dtype)
  covs = chol @ jnp.swapaxes(chol, -1, -2)
  return Mixture(normalize_log_weights(params.logits_K), params.means_KxD, covs)


def from_mixture(mixture: Mixture) -> MixtureParams:
  """Parameters whose :func:`to_mixture` is ``mixture`` (up to rounding)."""
  chol = cholesky_factors(mixture.covs_KxDxD)[0]
  d = mixture.means_KxD.shape[-1]
  log_diag = jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1))
  raw = jnp.tril(chol, k=-1) + log_diag[..., None] * jnp.eye(d, dtype=chol.dtype)
  return MixtureParams(mixture.log_weights_K, mixture.means_KxD, raw)


def all_finite(tree) -> jax.Array:
  """True when every leaf of ``tree`` is finite (a scalar bool, jit-friendly)."""
  leaves = jax.tree_util.tree_leaves(tree)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))
