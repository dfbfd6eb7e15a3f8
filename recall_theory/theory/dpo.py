"""DPO in exact expectation on a discrete support (theory item 5).

With Bradley-Terry preferences ``P(y > y') = sigmoid(r(y) - r(y'))`` and pairs
``(y, y')`` drawn with probability ``w(y, y')``, DPO minimises

    L(pi) = - sum_{y,y'} w(y,y') [ P(y > y') log sigmoid(h(y) - h(y'))
                                   + P(y' > y) log sigmoid(h(y') - h(y)) ],
    h = beta (log pi - log pi_ref)   (the implicit reward).

Each pair term is minimised at ``h(y) - h(y') = r(y) - r(y')``; when the pairs connect
every output (e.g. ``w`` with full support) the unique normalised minimiser is the Gibbs
optimum ``pi*``. With pairs drawn from pi_ref, a pair touches A with probability
``1 - (1-p)^2 ~ 2p`` (:func:`recall_theory.theory.pair_coverage`), and outputs no pair
touches get no gradient: on tabular logits their odds never move (the minimiser is not
unique), so DPO cannot lift an unseen rare mode by itself. Rafailov et al. (2023).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from recall_theory.theory import _validate


def dpo_loss_exact(log_pi: jax.Array, log_ref: jax.Array, reward: jax.Array, beta,
                   pair_weights: jax.Array | None = None) -> jax.Array:
  """Exact-expectation DPO loss over all ordered pairs of a ``[K]`` support.

  Args:
    log_pi: ``[K]`` policy log-probabilities (finite where pair_weights touch).
    log_ref: ``[K]`` reference log-probabilities.
    reward: ``[K]`` rewards defining Bradley-Terry labels.
    beta: DPO temperature, > 0 (applied once, inside the implicit reward).
    pair_weights: ``[K, K]`` pair-sampling law; default ``pi_ref(y) pi_ref(y')``.

  Returns:
    Scalar loss (nats). Example: with pi = pi_ref every h is 0 and the loss is ``log 2``.
  """
  _validate.beta(beta)
  if pair_weights is None:
    ref = jnp.exp(log_ref)
    pair_weights = ref[:, None] * ref[None, :]
  implicit = beta * jnp.where(jnp.isfinite(log_ref), log_pi - log_ref, 0.0)
  margin = implicit[:, None] - implicit[None, :]
  prefer = jax.nn.sigmoid(reward[:, None] - reward[None, :])
  per_pair = prefer * jax.nn.log_sigmoid(margin) + (1.0 - prefer) * jax.nn.log_sigmoid(-margin)
  return -jnp.sum(jnp.where(pair_weights > 0, pair_weights * per_pair, 0.0))


def dpo_loss_minimum(reward: jax.Array, pair_weights: jax.Array) -> jax.Array:
  """The value of :func:`dpo_loss_exact` at its minimiser: the weighted Bernoulli entropy
  of the Bradley-Terry labels, ``sum w H(sigmoid(r - r'))``."""
  diff = reward[:, None] - reward[None, :]
  entropy = -(jax.nn.sigmoid(diff) * jax.nn.log_sigmoid(diff)
              + jax.nn.sigmoid(-diff) * jax.nn.log_sigmoid(-diff))
  return jnp.sum(pair_weights * entropy)


def ipo_loss_exact(log_pi: jax.Array, log_ref: jax.Array, reward: jax.Array, tau,
                   pair_weights: jax.Array | None = None) -> jax.Array:
  """Exact-expectation IPO loss ``E_{(y_w, y_l)}[(h(y_w) - h(y_l) - 1/(2 tau))^2]`` with
  ``h = log pi - log pi_ref`` and winners drawn by Bradley-Terry (Azar et al. 2023).

  With pairs from pi_ref its minimiser is :func:`recall_theory.theory.ipo_optimum`.
  """
  _validate.beta(tau, "tau")
  if pair_weights is None:
    ref = jnp.exp(log_ref)
    pair_weights = ref[:, None] * ref[None, :]
  implicit = jnp.where(jnp.isfinite(log_ref), log_pi - log_ref, 0.0)
  margin = implicit[:, None] - implicit[None, :]
  prefer = jax.nn.sigmoid(reward[:, None] - reward[None, :])
  per_pair = prefer * (margin - 0.5 / tau) ** 2
  return jnp.sum(jnp.where(pair_weights > 0, pair_weights * per_pair, 0.0))
