"""Distillation of a mixture teacher into a smaller mixture family: forward KL, reverse KL, temperature.

The knowledge-distillation (KD) recipe used by both pipelines, identically:

1. **Selective sampling** of the source: component weights are re-weighted by the
   recipe's *selection profile* and raised to 1/tau (sampling temperature tau on the
   weights, tau < 1 sharpens: w_k -> (w_k s_k)^{1/tau} / Z):
   :func:`selective_log_weights`. With an equal-weight ground truth, which modes a
   sharpened teacher keeps is decided by small weight differences; the profile fixes them
   (log s_k = 0 on the modes a student variant keeps, -margin on the others), so both
   students drop the target. Everything after the profile is *relative* to the source's
   own probabilities, which is why the order of the pipelines matters: aligning first
   makes the target probable, and sharpening then amplifies it instead of dropping it.
   (A fixed multiplicative filter alone would commute with the tilt and make A-K = K-A.)
2. **Forward-KL fit** of the K-component student (mass-covering maximum likelihood):
   EM on samples of the selective source (:func:`distill_forward_samples`, the trained
   route) or EM with exact expectations on the quadrature grid
   (:func:`distill_forward_grid`, the exact route), both initialised on the K heaviest
   source components.

:func:`distill_reverse_kl_grid` is the mode-seeking alternative, argmin_q KL(q || p)
over the family by gradient descent with exact expectations; it also gives the exact
optimum of KL-regularised alignment *within* a family (J(q) = beta log Z - beta KL(q || pi*)).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from recall_theory.mog.em import fit_em, top_components_init
from recall_theory.mog.mixture import Mixture, component_log_prob, log_prob, normalize_log_weights, sample
from recall_theory.mog.params import from_mixture, to_mixture
from recall_theory.mog.quadrature import Grid


def selective_log_weights(log_weights_K: jax.Array, log_profile_K: jax.Array, temperature) -> jax.Array:
  """log of (w_k s_k)^{1/tau} / sum_j (w_j s_j)^{1/tau}: the KD recipe's sharpened weights."""
  return normalize_log_weights((log_weights_K + log_profile_K) / temperature)


def distill_forward_samples(key: jax.Array, source: Mixture, active_K: jax.Array, *, n_samples: int,
                            n_iter: int = 60, reg: float = 1e-6) -> Mixture:
  """Forward-KL (maximum-likelihood) fit of a len(active_K)-component student to samples of ``source``."""
  x_NxD = sample(key, source, n_samples)
  init = top_components_init(source, active_K.shape[0], active_K)
  return fit_em(x_NxD, init, n_iter, active_K=active_K, reg=reg).mixture


def distill_forward_grid(source_log_weights_K: jax.Array, source_log_comp_GxK: jax.Array,
                         source_means_KxD: jax.Array, source_covs_KxDxD: jax.Array, grid: Grid,
                         active_K: jax.Array, *, n_iter: int = 60, reg: float = 1e-6) -> Mixture:
  """Exact forward-KL projection by EM with quadrature weights.

  The source is sum_k w_k T_k(x) with component log-densities ``source_log_comp_GxK`` on the
  grid (for a tilted teacher, T_k are the tilted components); the student is initialised on
  the heaviest components' moments (``source_means_KxD``, ``source_covs_KxDxD``). Every
  covariance gets the within-cell variance h^2/12 of the grid's piecewise-constant density
  (Sheppard's correction; 0.8% of the mode variance at the default h): without it a component
  narrower than a cell (very small beta) would collapse onto one grid point.
  """
  reg = reg + jnp.exp(grid.log_cell_area) / 12.0
  log_src_G = jax.nn.logsumexp(source_log_weights_K[None] + source_log_comp_GxK, axis=-1)
  weights_G = jnp.exp(log_src_G + grid.log_cell_area)
  proxy = Mixture(source_log_weights_K, source_means_KxD, source_covs_KxDxD)
  init = top_components_init(proxy, active_K.shape[0], active_K)
  return fit_em(grid.points_GxD, init, n_iter, weights_N=weights_G, active_K=active_K, reg=reg).mixture


def reverse_kl_on_grid(student: Mixture, log_target_G: jax.Array, grid: Grid) -> jax.Array:
  """KL(q || p) = sum_g q (log q - log p) h^2 for a mixture q and a density p on the grid."""
  log_q_G = log_prob(student, grid.points_GxD)
  return jnp.sum(jnp.exp(log_q_G + grid.log_cell_area) * (log_q_G - log_target_G))


def distill_reverse_kl_grid(init: Mixture, log_target_G: jax.Array, grid: Grid, *, n_steps: int = 300,
                            learning_rate: float = 0.02) -> tuple[Mixture, jax.Array]:
  """argmin over the family of KL(q || p), Adam from ``init`` with exact expectations.

  Returns the fitted mixture and the KL after each step (n_steps,). Mode-seeking: a
  one-component student of a two-mode target settles on one mode.
  """
  opt = optax.adam(learning_rate)

  def loss_fn(params):
    return reverse_kl_on_grid(to_mixture(params), log_target_G, grid)

  def step(carry, _):
    params, opt_state = carry
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  params = from_mixture(init)
  (params, _), loss_T = jax.lax.scan(step, (params, opt.init(params)), None, length=n_steps)
  return to_mixture(params), loss_T


def component_log_density_on_grid(mixture: Mixture, grid: Grid) -> jax.Array:
  """log N_k at every grid point, shape (G, K)."""
  return component_log_prob(mixture, grid.points_GxD)
