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
import numpy as np

from recall_theory import errors
from recall_theory import validate as _validate
from recall_theory.theory.two_level import _float


def _check_pairs(log_pi, log_ref, reward, pair_weights):
  _validate.log_probs(log_pi, "log_pi")
  _validate.log_distribution(log_ref, "log_ref")
  _validate.reward(reward)
  errors.check_same_shape(log_pi=log_pi, log_ref=log_ref, reward=reward)
  if len(np.shape(log_ref)) != 1:
    raise errors.InputError(f"log_pi, log_ref, reward must be [K] vectors, got shape {list(np.shape(log_ref))}")
  if pair_weights is not None:
    k = np.shape(log_ref)[0]
    if np.shape(pair_weights) != (k, k):
      raise errors.InputError(f"pair_weights must have shape [{k}, {k}], got {list(np.shape(pair_weights))}")
    errors.check_nonnegative("pair_weights", pair_weights)


def _arrays(*values):
  """Lists and tuples as float arrays (after the checks, which accept them)."""
  return tuple(None if v is None else _float(v) for v in values)


def _pair_terms(log_pi, log_ref, scale, pair_weights):
  """Implicit-reward margins ``h(y) - h(y')``, ``h = scale (log pi - log pi_ref)`` on the
  support, with the diagonal exactly 0 and ``inf - inf`` (two outputs both at pi = 0)
  resolved to 0: such a pair's loss is then finite, and the +inf of the loss comes from the
  pairs that set a zero-probability output against a positive one."""
  if pair_weights is None:
    ref = jnp.exp(log_ref)
    pair_weights = ref[:, None] * ref[None, :]
  implicit = scale * jnp.where(jnp.isfinite(log_ref), log_pi - jnp.where(jnp.isfinite(log_ref), log_ref, 0.0), 0.0)
  margin = implicit[:, None] - implicit[None, :]
  margin = jnp.where(jnp.isnan(margin) | jnp.eye(log_ref.shape[0], dtype=bool), 0.0, margin)
  return margin, pair_weights


@errors.nan_on_invalid
def dpo_loss_exact(log_pi: jax.Array, log_ref: jax.Array, reward: jax.Array, beta,
                   pair_weights: jax.Array | None = None) -> jax.Array:
  """Exact-expectation DPO loss over all ordered pairs of a ``[K]`` support.

  Args:
    log_pi: ``[K]`` policy log-probabilities (``<= 0``, no NaN).
    log_ref: ``[K]`` normalised reference log-probabilities.
    reward: ``[K]`` finite rewards defining Bradley-Terry labels.
    beta: DPO temperature, > 0 (applied once, inside the implicit reward).
    pair_weights: ``[K, K]`` non-negative pair-sampling law; default ``pi_ref(y) pi_ref(y')``.

  Returns:
    Scalar loss (nats); ``+inf`` when pi = 0 on an output that a weighted pair sets against
    a positive one (the label says it wins sometimes, so its log-likelihood is -inf).
    Example: with pi = pi_ref every h is 0 and the loss is ``log 2``.
  """
  _check_pairs(log_pi, log_ref, reward, pair_weights)
  _validate.beta(beta)
  log_pi, log_ref, reward, pair_weights = _arrays(log_pi, log_ref, reward, pair_weights)
  margin, pair_weights = _pair_terms(log_pi, log_ref, beta, pair_weights)
  prefer = jax.nn.sigmoid(reward[:, None] - reward[None, :])
  # p log sigmoid(m) with p = 0 is 0 even at m = -inf (no 0 * inf)
  per_pair = (jnp.where(prefer > 0, prefer * jax.nn.log_sigmoid(margin), 0.0)
              + jnp.where(prefer < 1, (1.0 - prefer) * jax.nn.log_sigmoid(-margin), 0.0))
  return -jnp.sum(jnp.where(pair_weights > 0, pair_weights * per_pair, 0.0))


@errors.nan_on_invalid
def dpo_loss_minimum(reward: jax.Array, pair_weights: jax.Array) -> jax.Array:
  """The value of :func:`dpo_loss_exact` at its minimiser: the weighted Bernoulli entropy
  of the Bradley-Terry labels, ``sum w H(sigmoid(r - r'))``."""
  _validate.reward(reward)
  if len(np.shape(reward)) != 1:
    raise errors.InputError(f"reward must be a [K] vector, got shape {list(np.shape(reward))}")
  k = np.shape(reward)[0]
  if np.shape(pair_weights) != (k, k):
    raise errors.InputError(f"pair_weights must have shape [{k}, {k}], got {list(np.shape(pair_weights))}")
  errors.check_nonnegative("pair_weights", pair_weights)
  reward, pair_weights = _arrays(reward, pair_weights)
  diff = reward[:, None] - reward[None, :]
  entropy = -(jax.nn.sigmoid(diff) * jax.nn.log_sigmoid(diff)
              + jax.nn.sigmoid(-diff) * jax.nn.log_sigmoid(-diff))
  return jnp.sum(pair_weights * entropy)


@errors.nan_on_invalid
def ipo_loss_exact(log_pi: jax.Array, log_ref: jax.Array, reward: jax.Array, tau,
                   pair_weights: jax.Array | None = None) -> jax.Array:
  """Exact-expectation IPO loss ``E_{(y_w, y_l)}[(h(y_w) - h(y_l) - 1/(2 tau))^2]`` with
  ``h = log pi - log pi_ref`` and winners drawn by Bradley-Terry (Azar et al. 2023).

  With pairs from pi_ref its minimiser is :func:`recall_theory.theory.ipo_optimum`.
  """
  _check_pairs(log_pi, log_ref, reward, pair_weights)
  _validate.beta(tau, "tau")
  log_pi, log_ref, reward, pair_weights = _arrays(log_pi, log_ref, reward, pair_weights)
  margin, pair_weights = _pair_terms(log_pi, log_ref, 1.0, pair_weights)
  prefer = jax.nn.sigmoid(reward[:, None] - reward[None, :])
  per_pair = jnp.where(prefer > 0, prefer * (margin - 0.5 / tau) ** 2, 0.0)
  return jnp.sum(jnp.where(pair_weights > 0, pair_weights * per_pair, 0.0))
