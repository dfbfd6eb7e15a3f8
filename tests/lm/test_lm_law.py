"""The LM track's law estimators: reference recall, soft-max reward gap, intervals."""

import math

import numpy as np
import pytest

from recall_theory.lm import law


def _two_level(n_target=50, n_other=950):
  reward = np.r_[np.ones(n_target), np.zeros(n_other)]
  return reward, reward > 0.5


def test_two_level_gap_is_exact_for_every_algorithm():
  reward, in_a = _two_level()
  rng = np.random.default_rng(0)
  # RLOO tilts by R / rloo_beta; DPO by c R / beta (Bradley-Terry at scale c)
  s = law.reference_statistics(reward, in_a, algorithm="rloo", beta=1.0, rloo_beta=0.2,
                               ipo_beta=0.1, bt_scale=10.0, rng=rng)
  assert s["delta_over_beta"] == pytest.approx(5.0)
  assert s["delta_over_beta_interval"] == pytest.approx((5.0, 5.0))  # no spread to resample
  assert s["reference_recall"] == 0.05
  lo, hi = s["reference_recall_interval"]
  assert lo < 0.05 < hi
  s = law.reference_statistics(reward, in_a, algorithm="dpo", beta=2.0, rloo_beta=0.2,
                               ipo_beta=0.1, bt_scale=10.0, rng=rng)
  assert s["delta_over_beta"] == pytest.approx(5.0)
  # IPO: r(x) = P(x beats a reference sample); gap = (r(1) - r(0)) / tau
  s = law.reference_statistics(reward, in_a, algorithm="ipo", beta=2.0, rloo_beta=0.2,
                               ipo_beta=0.1, bt_scale=10.0, rng=rng)
  sig = lambda z: 1 / (1 + math.exp(-z))
  r1 = 0.05 * 0.5 + 0.95 * sig(10.0)
  r0 = 0.05 * sig(-10.0) + 0.95 * 0.5
  assert s["delta_over_beta"] == pytest.approx((r1 - r0) / 0.1, rel=1e-9)


def test_soft_max_gap_matches_definition_and_bootstrap_covers_it():
  rng = np.random.default_rng(1)
  reward = rng.uniform(size=4000)
  in_a = reward > 0.9
  beta = 0.1
  got = law.soft_max_gap(reward, in_a, beta, target_bounds=(0.5, 1.0), rng=rng)
  l_a = np.log(np.mean(np.exp(reward[in_a] / beta)))
  l_c = np.log(np.mean(np.exp(reward[~in_a] / beta)))
  assert got["value"] == pytest.approx(l_a - l_c)
  assert got["low"] < got["value"] < got["high"] and not got["bracketed"]


def test_no_sample_in_target_is_bracketed_by_the_reward_range():
  reward = np.zeros(1000)
  got = law.soft_max_gap(reward, reward > 0.5, 0.25, target_bounds=(0.5, 1.0),
                         rng=np.random.default_rng(0))
  assert got["bracketed"]
  assert (got["low"], got["value"], got["high"]) == pytest.approx((2.0, 3.0, 4.0))


def test_simpo_has_no_prediction():
  reward, in_a = _two_level()
  s = law.reference_statistics(reward, in_a, algorithm="simpo", beta=1.0, rloo_beta=0.2,
                               ipo_beta=0.1, bt_scale=10.0, rng=np.random.default_rng(0))
  assert math.isnan(s["delta_over_beta"]) and "reference-free" in s["estimator"]
  assert s["reference_recall"] == 0.05


def test_trap_boundary():
  assert law.trap_boundary(0.5) == pytest.approx(0.0)
  assert law.trap_boundary(1e-3) == pytest.approx(math.log(999))
