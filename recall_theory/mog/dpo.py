"""DPO for a mixture policy: preference pairs from the reference, Bradley-Terry labels.

Data: pairs (x, x') ~ pi_ref x pi_ref, labelled x > x' with probability
sigma(r(x) - r(x')) (Bradley-Terry on the oracle reward), each label flipped with
probability ``label_noise``; a finite budget of ``n_pairs`` pairs.

Loss (Rafailov et al. 2023), with implicit reward h(x) = beta [log pi(x) - log pi_ref(x)]:

  L = -mean log sigma(h(x_chosen) - h(x_rejected)).

Population optimum with full pair coverage and no noise: the Gibbs tilt pi* (theory item 5).
Pairs come from pi_ref, so a reference that never samples the target gives DPO no pair that
mentions it (the DPO form of the sampling trap); beta is applied exactly once, inside h.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from recall_theory.errors import check_positive
from recall_theory.mog.divergence_guard import Watch, new_watch, update_watch
from recall_theory.mog.mixture import Mixture, log_prob, sample
from recall_theory.mog.params import MixtureParams, all_finite, to_mixture
from recall_theory.plateau import PlateauRule, PlateauState, plateau_schedule, run_to_plateau

DPO_QUANTITIES = ("DPO loss", "policy parameters")


class DPOConfig(NamedTuple):
  n_steps: int = 300
  learning_rate: float = 0.02
  n_pairs: int = 2048
  label_noise: float = 0.0


class PreferencePairs(NamedTuple):
  """Chosen and rejected points (N, D) with their reference log-probabilities (N,)."""
  chosen_NxD: jax.Array
  rejected_NxD: jax.Array
  ref_log_prob_chosen_N: jax.Array
  ref_log_prob_rejected_N: jax.Array


def make_preference_pairs(key: jax.Array, reference: Mixture, reward: Any, n_pairs: int,
                          label_noise=0.0) -> PreferencePairs:
  """Sample pairs from ``reference`` and label them by Bradley-Terry on ``reward`` (+ flips)."""
  k1, k2, k3, k4 = jax.random.split(key, 4)
  x1 = sample(k1, reference, n_pairs)
  x2 = sample(k2, reference, n_pairs)
  first_wins = jax.random.bernoulli(k3, jax.nn.sigmoid(reward(x1) - reward(x2)))
  flip = jax.random.bernoulli(k4, label_noise, (n_pairs,))
  first_wins = jnp.logical_xor(first_wins, flip)
  chosen = jnp.where(first_wins[:, None], x1, x2)
  rejected = jnp.where(first_wins[:, None], x2, x1)
  return PreferencePairs(chosen, rejected, log_prob(reference, chosen), log_prob(reference, rejected))


def make_dpo_loss(beta):
  """DPO sigmoid loss on :class:`PreferencePairs` (returns (loss, aux with the mean margin))."""

  def loss_fn(params: MixtureParams, pairs: PreferencePairs):
    policy = to_mixture(params)
    h_chosen = beta * (log_prob(policy, pairs.chosen_NxD) - pairs.ref_log_prob_chosen_N)
    h_rejected = beta * (log_prob(policy, pairs.rejected_NxD) - pairs.ref_log_prob_rejected_N)
    margin = h_chosen - h_rejected
    return -jnp.mean(jax.nn.log_sigmoid(margin)), {"margin": jnp.mean(margin)}

  return loss_fn


def train_dpo(init: MixtureParams, pairs: PreferencePairs, beta,
              config: DPOConfig = DPOConfig()) -> tuple[MixtureParams, jax.Array, Watch]:
  """Full-batch Adam on the DPO loss; returns (params, loss per step (n_steps,), watch)."""
  check_positive("beta", beta)
  opt = optax.adam(config.learning_rate)
  update = _dpo_step(pairs, beta, opt)

  def step(carry, t):
    params, opt_state, watch, loss = update(t, *carry)
    return (params, opt_state, watch), loss

  (params, _, watch), loss_T = jax.lax.scan(
      step, (init, opt.init(init), new_watch()), jnp.arange(config.n_steps))
  return params, loss_T, watch


def _dpo_step(pairs: PreferencePairs, beta, opt):
  grad_fn = jax.value_and_grad(make_dpo_loss(beta), has_aux=True)

  def update(t, params, opt_state, watch):
    (loss, _), grads = grad_fn(params, pairs)
    updates, opt_state = opt.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    watch = update_watch(watch, t, jnp.stack([jnp.isfinite(loss), all_finite(params)]))
    return params, opt_state, watch, loss

  return update


def train_dpo_to_plateau(init: MixtureParams, pairs: PreferencePairs, beta, config: DPOConfig,
                         rule: PlateauRule, evaluate: Callable
                         ) -> tuple[MixtureParams, Watch, PlateauState]:
  """Full-batch DPO until the plateau rule holds or ``config.n_steps`` (the budget) have run.

  ``evaluate(params) -> (objective, mass)``: the held-out DPO loss (label averaged, on pairs
  it never trained on) and the exact aligned mass. Learning rate as in
  :func:`recall_theory.mog.pg.train_pg_to_plateau`.
  """
  check_positive("beta", beta)
  opt = optax.adam(plateau_schedule(config.learning_rate, constant_steps=rule.first_check))
  update = _dpo_step(pairs, beta, opt)

  def step(t, carry):
    return update(t, *carry)[:3]

  final = run_to_plateau(step, lambda c: evaluate(c[0]), (init, opt.init(init), new_watch()),
                         rule, config.n_steps)
  params, _, watch = final.carry
  return params, watch, final._replace(carry=None)


def label_probability(reward: Any, first_NxD: jax.Array, second_NxD: jax.Array,
                      label_noise=0.0) -> jax.Array:
  """P(first preferred): ``noise + (1 - 2 noise) sigmoid(r(first) - r(second))`` (N,)."""
  clean = jax.nn.sigmoid(reward(first_NxD) - reward(second_NxD))
  return label_noise + (1.0 - 2.0 * label_noise) * clean


def held_out_dpo_loss(params: MixtureParams, first_NxD, second_NxD, ref_first_N, ref_second_N,
                      q_N, beta) -> jax.Array:
  """Label-averaged DPO loss ``-q log sigmoid(h) - (1-q) log sigmoid(-h)`` over held-out pairs,
  ``h = beta [log pi/pi_ref (first) - log pi/pi_ref (second)]``."""
  policy = to_mixture(params)
  h = beta * ((log_prob(policy, first_NxD) - ref_first_N) - (log_prob(policy, second_NxD) - ref_second_N))
  return jnp.mean(-(q_N * jax.nn.log_sigmoid(h) + (1.0 - q_N) * jax.nn.log_sigmoid(-h)))
