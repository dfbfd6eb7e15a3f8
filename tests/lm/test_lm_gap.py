"""The transformer track's gap levels: held-out objectives, the tilt sampler, the covering
proposal and its importance-weighted RLOO estimator, and a tiny end-to-end decomposition."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recall_theory.lm import gap, heldout


def test_log_partition_is_log_mean_exp():
  r = np.array([0.0, 0.5, 1.0, 1.0])
  assert heldout.log_partition(r, 0.25) == pytest.approx(math.log(np.mean(np.exp(r / 0.25))))
  # stable far beyond float overflow
  assert heldout.log_partition(np.array([1000.0, 1000.0]), 1.0) == pytest.approx(1000.0)


def test_kl_to_optimum_on_a_finite_space():
  """KL(pi || pi*) from the per-sample terms, against the direct sum over 3 outcomes."""
  ref = np.array([0.7, 0.2, 0.1])
  r = np.array([0.0, 0.3, 1.0])
  beta = 0.5
  tilt = ref * np.exp(r / beta)
  z = tilt.sum()
  tilt /= z
  pi = np.array([0.5, 0.3, 0.2])
  terms = heldout.kl_to_optimum(np.log(pi), np.log(ref), r, beta, math.log(z))
  assert np.sum(pi * terms) == pytest.approx(np.sum(pi * np.log(pi / tilt)))


def test_dpo_pair_optimum_is_the_label_entropy():
  q = np.array([0.9, 0.5, 0.2])
  h_star = np.log(q / (1 - q))
  entropy = -(q * np.log(q) + (1 - q) * np.log(1 - q))
  np.testing.assert_allclose(heldout._dpo_pair_loss(h_star, q), entropy, rtol=1e-12)
  # any other margin costs a KL between Bernoullis
  h = h_star + 0.7
  p = 1 / (1 + np.exp(-h))
  kl = q * np.log(q / p) + (1 - q) * np.log((1 - q) / (1 - p))
  np.testing.assert_allclose(heldout._dpo_pair_loss(h, q) - entropy, kl, rtol=1e-10)


def test_ipo_pair_loss_is_minimised_at_2q_minus_1_over_2tau():
  q, tau = 0.8, 0.25
  hs = np.linspace(-5, 5, 20001)
  best = hs[np.argmin(heldout._ipo_pair_loss(hs, q, tau))]
  assert best == pytest.approx((2 * q - 1) / (2 * tau), abs=1e-3)


def test_tilt_acceptance_is_exp_of_the_reward_below_its_maximum():
  r = np.array([0.0, 0.5, 1.0])
  np.testing.assert_allclose(gap.tilt_acceptance(r, 0.25, 1.0), np.exp((r - 1.0) / 0.25))


def test_rejection_samples_follow_the_tilt():
  """Pool of 3 outcome types with known shares: accepted shares match pi_ref e^{r/beta}/Z."""
  n = 400_000
  rng = np.random.default_rng(0)
  kind = rng.choice(3, size=n, p=[0.6, 0.3, 0.1])
  reward = np.array([0.0, 0.4, 1.0])[kind]
  pool = {"reward": reward}
  idx = gap.tilt_samples(pool, jax.random.key(1), reward_fn=lambda x: 10.0 * x, coefficient=1.8)
  tilt = np.array([0.6, 0.3, 0.1]) * np.exp(10.0 * np.array([0.0, 0.4, 1.0]) / 1.8)
  tilt /= tilt.sum()
  share = np.bincount(kind[idx], minlength=3) / idx.size
  assert np.all(np.abs(share - tilt) <= 4 * np.sqrt(tilt * (1 - tilt) / idx.size))


def test_proposal_draws_and_their_density_ratio():
  n = 10_000
  in_a = np.zeros(n, bool)
  in_a[:100] = True                                 # p = 0.01
  pool = {"reward": np.zeros(n), "in_target": in_a}
  idx = gap.proposal_indices(jax.random.key(0), pool, 200_000, 0.5)
  share_a = np.mean(in_a[idx])
  assert share_a == pytest.approx(0.5 + 0.5 * 0.01, abs=0.005)
  ratio = np.exp(gap.proposal_log_ratio(np.array([True, False]), 0.01, 0.5))
  np.testing.assert_allclose(ratio, [0.5 + 0.5 / 0.01, 0.5])
  # q is a density: E_ref[q/ref] = 1
  assert np.mean(np.exp(gap.proposal_log_ratio(in_a, 0.01, 0.5))) == pytest.approx(1.0)


def test_proposal_refuses_a_pool_without_target_samples():
  from recall_theory.errors import InputError
  with pytest.raises(InputError, match="no sample in the target set"):
    gap.proposal_indices(jax.random.key(0), {"reward": np.zeros(4), "in_target": np.zeros(4, bool)}, 8, 0.5)


def test_importance_loo_estimator_is_unbiased_for_the_rloo_gradient():
  """Tabular softmax policy over 4 outcomes, groups of 2 drawn from a fixed proposal q: the
  exact expectation (every ordered pair enumerated) of mean_i A_i grad log pi(y_i) equals the
  gradient of E_pi[R] - beta KL(pi || ref)."""
  k, beta = 4, 0.3
  theta = jnp.asarray([0.2, -0.4, 0.9, 0.0])
  ref = jnp.asarray([0.5, 0.3, 0.15, 0.05])
  reward = jnp.asarray([0.0, 0.2, 1.0, 0.6])
  q = jnp.asarray([0.25, 0.25, 0.4, 0.1])

  def objective(t):
    pi = jax.nn.softmax(t)
    return jnp.sum(pi * reward) - beta * jnp.sum(pi * (jnp.log(pi) - jnp.log(ref)))

  exact = jax.grad(objective)(theta)
  pi = jax.nn.softmax(theta)
  grad_log_pi = jnp.eye(k) - pi[None, :]             # row y: grad of log pi(y)
  expected = jnp.zeros(k)
  for y1, y2 in itertools.product(range(k), repeat=2):
    ys = jnp.asarray([y1, y2])
    scores = reward[ys] - beta * (jnp.log(pi[ys]) - jnp.log(ref[ys]))
    log_w = jnp.log(pi[ys]) - jnp.log(q[ys])
    adv = gap.importance_loo_advantages(scores, log_w, 2)
    estimate = jnp.mean(adv[:, None] * grad_log_pi[ys], axis=0)
    expected = expected + q[y1] * q[y2] * estimate
  np.testing.assert_allclose(np.asarray(expected), np.asarray(exact), rtol=1e-5, atol=1e-7)


def test_importance_loo_baseline_survives_one_dominant_weight():
  """One draw carries its group's weight (log-weights after normalisation: log 64 and -40):
  the leave-one-out baseline of that draw is the others' weighted score, a plain average here,
  not the rounding noise of ``sum - w_i`` divided by a tiny weight (which made grad_norm inf in
  the covering-sampler RLOO)."""
  g = 64
  log_w = jnp.full((g,), -40.0).at[0].set(jnp.log(64.0)).astype(jnp.float32)
  scores = jnp.linspace(-3.0, 36.0, g, dtype=jnp.float32)
  adv = np.asarray(gap.importance_loo_advantages(scores, log_w, g), np.float64)
  w, s = np.exp(np.asarray(log_w, np.float64)), np.asarray(scores, np.float64)
  expected = np.array([w[i] * (s[i] - np.sum(np.delete(w * s, i)) / np.sum(np.delete(w, i)))
                       for i in range(g)])
  assert np.all(np.isfinite(adv))
  np.testing.assert_allclose(adv, expected, rtol=1e-4, atol=1e-30)


def test_run_gap_test_preset_end_to_end():
  from recall_theory import decomposition as dec
  from recall_theory.lm import presets
  rows = gap.run_gap(presets.TEST, gap.GAP_SIZES["test"], [0, 1], algorithms=("dpo",),
                     pipelines=("K-A", "A"), progress=False, setting="preset=test")
  assert {r["level"] for r in rows} == set(dec.LEVELS)
  assert len(rows) == 2 * 2 * 4
  for r in rows:
    assert 0.0 <= r["aligned_mass_low"] <= r["aligned_mass"] <= r["aligned_mass_high"] <= 1.0
    assert r["plateau"] in ("exact", "reached", "budget")
    if r["level"] != "law":
      assert 1 <= r["steps"] <= r["max_steps"]
  entries = dec.decompose(rows)
  assert {e["pipeline"] for e in entries} == {"K-A", "A"}
  ka = next(e for e in entries if e["pipeline"] == "K-A")
  assert ka["learning_trap"]["n"] == 2


def test_run_gap_refuses_what_it_does_not_cover():
  from recall_theory.errors import InputError
  from recall_theory.lm import presets
  with pytest.raises(InputError, match="covers the algorithms dpo, rloo"):
    gap.run_gap(presets.TEST, gap.GAP_SIZES["test"], [0], algorithms=("simpo",), progress=False)
  with pytest.raises(InputError, match="covers the pipelines"):
    gap.run_gap(presets.TEST, gap.GAP_SIZES["test"], [0], pipelines=("A-K",), progress=False)


def test_ipo_held_out_loss_is_the_label_average_of_the_training_loss():
  """The evaluator's IPO term uses the same (unscaled) margin as losses.ipo_loss."""
  from recall_theory.lm import losses
  tau, q = 0.1, 0.8
  lp1, lp2, r1, r2 = -3.0, -5.0, -3.4, -4.1
  h = (lp1 - r1) - (lp2 - r2)
  expected = (q * float(losses.ipo_loss(lp1, lp2, r1, r2, tau))
              + (1 - q) * float(losses.ipo_loss(lp2, lp1, r2, r1, tau)))
  assert heldout._ipo_pair_loss(np.array(h), q, tau) == pytest.approx(expected)


def test_effective_sample_size_survives_huge_log_weights():
  """The IS-RLOO diagnostic in log space: log-weights of 45 overflow float32's exp."""
  log_w = jnp.asarray([0.0, 1.0, 45.0], jnp.float32)
  ess = jnp.exp(2.0 * jax.nn.logsumexp(log_w) - jax.nn.logsumexp(2.0 * log_w))
  assert np.isfinite(float(ess)) and float(ess) == pytest.approx(1.0, abs=1e-6)
