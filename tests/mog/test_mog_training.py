"""Trained alignment (PPO-style PG, DPO) against the exact optimum, and divergence reporting."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recall_theory.errors import TrainingDivergedError
from recall_theory.mog import mixture as mx
from recall_theory.mog import quadrature as qd
from recall_theory.mog.divergence_guard import raise_if_diverged
from recall_theory.mog.dpo import DPO_QUANTITIES, DPOConfig, make_dpo_loss, make_preference_pairs, train_dpo
from recall_theory.mog.params import from_mixture, to_mixture
from recall_theory.mog.pg import PG_QUANTITIES, PGConfig, train_pg
from recall_theory.mog.reward import make_quadratic_reward
from recall_theory.mog.tilt import tilt_quadratic


BETA = 1.0


@pytest.fixture(scope="module")
def problem():
  """A reference whose quadratic tilt is again a 2-component mixture (the family can represent pi*)."""
  ref = mx.make_mixture([0.5, 0.5], [[-0.6, 0.0], [0.6, 0.3]], 0.05, dtype=jnp.float64)
  reward = make_quadratic_reward([0.8, 0.4], 2.0 * np.eye(2), dtype=jnp.float64)
  exact, _ = tilt_quadratic(ref, reward.center_D, reward.precision_DxD, BETA)
  grid = qd.make_grid(-2.5, 2.5, 101, jnp.float64)
  kl_to_exact = jax.jit(lambda m: qd.kl_on_grid(qd.log_density_on_grid(m, grid),
                                                qd.log_density_on_grid(exact, grid), grid))
  return ref, reward, exact, kl_to_exact


def test_params_round_trip(problem):
  ref = problem[0]
  back = to_mixture(from_mixture(ref))
  np.testing.assert_allclose(back.covs_KxDxD, ref.covs_KxDxD, atol=1e-12)
  np.testing.assert_allclose(back.log_weights_K, ref.log_weights_K, atol=1e-12)


def test_policy_gradient_approaches_the_exact_tilt(problem):
  ref, reward, exact, kl_to_exact = problem
  params, trace, watch = jax.jit(lambda k: train_pg(k, from_mixture(ref), ref, reward, BETA,
                                                    PGConfig(n_steps=300, batch_size=256, learning_rate=0.02)))(
      jax.random.PRNGKey(0))
  raise_if_diverged(watch, "policy gradient", PG_QUANTITIES)
  start, end = float(kl_to_exact(ref)), float(kl_to_exact(to_mixture(params)))
  # J(pi*) - J(pi) = beta KL(pi || pi*) (theory item 1): the objective gap shrinks 20-fold or more.
  assert start > 0.4
  assert end < start / 20, (start, end)


def test_dpo_approaches_the_exact_tilt(problem):
  ref, reward, exact, kl_to_exact = problem
  pairs = make_preference_pairs(jax.random.PRNGKey(1), ref, reward, 4096)
  params, loss, watch = jax.jit(lambda p: train_dpo(from_mixture(ref), p, BETA,
                                                    DPOConfig(n_steps=300, learning_rate=0.03)))(pairs)
  raise_if_diverged(watch, "DPO", DPO_QUANTITIES)
  start, end = float(kl_to_exact(ref)), float(kl_to_exact(to_mixture(params)))
  assert float(loss[-1]) < float(loss[0])
  assert end < start / 10, (start, end)


def test_dpo_loss_by_hand(problem):
  ref = problem[0]
  x = jnp.array([[0.0, 0.0], [1.0, 1.0]])
  pairs = make_preference_pairs(jax.random.PRNGKey(2), ref, lambda z: z[:, 0], 4)
  loss, aux = make_dpo_loss(0.5)(from_mixture(ref), pairs)  # policy == reference: margin 0
  np.testing.assert_allclose(loss, np.log(2.0), atol=1e-12)
  # Shift the policy's log-ratio by +c on chosen and 0 on rejected: loss = -log sigmoid(beta c).
  logp_c = mx.log_prob(ref, pairs.chosen_NxD)
  shifted = pairs._replace(ref_log_prob_chosen_N=logp_c - 2.0, ref_log_prob_rejected_N=mx.log_prob(ref, pairs.rejected_NxD))
  loss2, _ = make_dpo_loss(0.5)(from_mixture(ref), shifted)
  np.testing.assert_allclose(loss2, -np.log(1 / (1 + np.exp(-1.0))), atol=1e-12)
  del x


def test_label_noise_flips_preferences(problem):
  ref = problem[0]
  r = lambda z: 50.0 * z[:, 0]  # nearly deterministic labels: the right-hand point wins
  clean = make_preference_pairs(jax.random.PRNGKey(3), ref, r, 4000, 0.0)
  noisy = make_preference_pairs(jax.random.PRNGKey(3), ref, r, 4000, 0.3)
  agree = lambda p: float(jnp.mean(p.chosen_NxD[:, 0] >= p.rejected_NxD[:, 0]))
  assert agree(clean) > 0.97
  assert abs(agree(noisy) - (0.7 * agree(clean) + 0.3 * (1 - agree(clean)))) < 0.03


def test_non_finite_training_names_step_and_quantity(problem):
  ref = problem[0]
  bad_reward = lambda x: jnp.where(x[:, 0] > -10.0, jnp.nan, 0.0)
  _, _, watch = train_pg(jax.random.PRNGKey(0), from_mixture(ref), ref, bad_reward, BETA, PGConfig(n_steps=3))
  with pytest.raises(TrainingDivergedError, match=r"policy gradient: surrogate loss became non-finite at step 0"):
    raise_if_diverged(watch, "policy gradient", PG_QUANTITIES)
