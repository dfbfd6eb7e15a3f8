"""Gibbs optimum (theory items 1-3): hand values, brute force, scipy, vmap/jit, bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp as sp_logsumexp

from recall_theory import errors
from recall_theory import theory as th

LOG_REF = np.log(np.array([0.9, 0.1]))
REWARD = np.array([0.0, 1.0])


def test_gibbs_hand_value():
  log_pi, log_z = th.gibbs(LOG_REF, REWARD, 1.0)
  # pi*(1) = 0.1 e / (0.9 + 0.1 e) = 0.2718282 / 1.1718282 = 0.2319693
  np.testing.assert_allclose(float(jnp.exp(log_pi[1])), 0.1 * math.e / (0.9 + 0.1 * math.e), rtol=1e-6)
  np.testing.assert_allclose(float(jnp.exp(log_pi[0])), 0.9 / (0.9 + 0.1 * math.e), rtol=1e-6)
  # log Z = log(0.9 + 0.1 e) = log 1.1718282 = 0.1585604
  np.testing.assert_allclose(float(log_z), math.log(0.9 + 0.1 * math.e), rtol=1e-6)
  np.testing.assert_allclose(float(th.log_partition(LOG_REF, REWARD, 1.0)), math.log(0.9 + 0.1 * math.e),
                             rtol=1e-6)


def test_gibbs_limits_in_beta():
  reward = np.array([0.0, 2.0, 1.0])
  log_ref = np.log(np.array([0.5, 0.2, 0.3]))
  with jax.enable_x64(True):
    hot = np.exp(np.asarray(th.gibbs(log_ref, reward, 1e6)[0]))    # beta -> inf: reference
    cold = np.exp(np.asarray(th.gibbs(log_ref, reward, 1e-3)[0]))  # beta -> 0: argmax
  np.testing.assert_allclose(hot, [0.5, 0.2, 0.3], rtol=1e-5)
  np.testing.assert_allclose(cold, [0.0, 1.0, 0.0], atol=1e-12)


def test_gibbs_inherits_support_and_no_nan():
  log_ref = np.array([-np.inf, np.log(0.25), np.log(0.75)])
  log_pi, _ = th.gibbs(log_ref, np.array([100.0, 0.0, 1.0]), 0.01)
  assert float(log_pi[0]) == -math.inf  # an output the reference never makes stays impossible
  assert np.all(~np.isnan(np.asarray(log_pi)))
  np.testing.assert_allclose(float(jnp.sum(jnp.exp(log_pi))), 1.0, rtol=1e-6)


def test_gibbs_against_numpy_brute_force_and_variational_identity():
  rng = np.random.default_rng(1)
  with jax.enable_x64(True):
    logits = rng.normal(size=(20, 6)) * 3
    log_ref = logits - sp_logsumexp(logits, axis=-1, keepdims=True)
    reward = rng.normal(size=(20, 6))
    beta = np.exp(rng.uniform(np.log(1e-2), np.log(1e2), size=20))
    log_pi, log_z = th.gibbs(log_ref, reward, beta)
    expected_log_z = sp_logsumexp(log_ref + reward / beta[:, None], axis=-1)
    np.testing.assert_allclose(np.asarray(log_z), expected_log_z, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(log_pi), log_ref + reward / beta[:, None] - expected_log_z[:, None],
                               rtol=1e-10, atol=1e-12)
    # J(pi) + beta KL(pi || pi*) = beta log Z for an arbitrary pi (numpy route for the KL)
    other = rng.normal(size=(20, 6))
    log_q = other - sp_logsumexp(other, axis=-1, keepdims=True)
    q = np.exp(log_q)
    kl_q_star = np.sum(q * (log_q - np.asarray(log_pi)), axis=-1)
    lhs = np.asarray(th.objective(log_q, log_ref, reward, beta)) + beta * kl_q_star
    np.testing.assert_allclose(lhs, beta * expected_log_z, rtol=1e-10)
    # and pi* beats every other pi
    assert np.all(np.asarray(th.objective(log_pi, log_ref, reward, beta))
                  >= np.asarray(th.objective(log_q, log_ref, reward, beta)))


def test_expected_reward_hand_and_zero_mass():
  # E[r] = 0.25 * 4 + 0.75 * 0 = 1; outputs with pi = 0 contribute nothing even with huge reward
  log_pi = np.array([math.log(0.25), math.log(0.75), -np.inf])
  np.testing.assert_allclose(float(th.expected_reward(log_pi, np.array([4.0, 0.0, 1e30]))), 1.0, rtol=1e-6)


def test_objective_hand_value():
  # pi = [0.5, 0.5], ref = [0.9, 0.1], r = [0, 1], beta = 2:
  # E[r] = 0.5, KL = 0.5 log(0.5/0.9) + 0.5 log(0.5/0.1) = 0.5 (log 5 - log 1.8) = 0.5108256
  kl = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(5.0)
  np.testing.assert_allclose(float(th.objective(np.log([0.5, 0.5]), LOG_REF, REWARD, 2.0)), 0.5 - 2 * kl,
                             rtol=1e-6)


def test_kl_cost_hand_and_two_level():
  # KL(pi*||ref) with pi* = [0.9, 0.1e]/Z: E[r]/beta - log Z = 0.2319693 - 0.1585604 = 0.0734089
  pi1 = 0.1 * math.e / (0.9 + 0.1 * math.e)
  expected = pi1 * math.log(pi1 / 0.1) + (1 - pi1) * math.log((1 - pi1) / 0.9)
  np.testing.assert_allclose(float(th.kl_cost(LOG_REF, REWARD, 1.0)), expected, rtol=1e-5)
  np.testing.assert_allclose(expected, pi1 - math.log(0.9 + 0.1 * math.e), rtol=1e-12)


def test_kl_cost_exchange_rate_by_finite_differences():
  # dE[r]/dKL = beta along the beta path (central differences in float64, no autodiff)
  with jax.enable_x64(True):
    log_ref = np.log(np.array([0.2, 0.3, 0.5]))
    reward = np.array([1.0, -0.5, 0.3])
    beta, h = 0.7, 1e-5
    er = lambda b: float(th.expected_reward(th.gibbs(log_ref, reward, b)[0], reward))
    kl = lambda b: float(th.kl_cost(log_ref, reward, b))
    rate = (er(beta + h) - er(beta - h)) / (kl(beta + h) - kl(beta - h))
  np.testing.assert_allclose(rate, beta, rtol=1e-6)


def test_soft_max_reward_and_set_mass_hand():
  # ref = [0.1, 0.2, 0.7], A = {0, 1}, r = [1, 2, 0], beta = 1
  log_ref = np.log(np.array([0.1, 0.2, 0.7]))
  reward = np.array([1.0, 2.0, 0.0])
  in_set = np.array([True, True, False])
  # L_A = log((0.1 e + 0.2 e^2) / 0.3)
  l_a = math.log((0.1 * math.e + 0.2 * math.e ** 2) / 0.3)
  np.testing.assert_allclose(float(th.soft_max_reward(log_ref, reward, 1.0, in_set)), l_a, rtol=1e-6)
  # pi*(A) = (0.1 e + 0.2 e^2) / (0.1 e + 0.2 e^2 + 0.7) = 1.749647 / 2.449647 = 0.714244
  mass = (0.1 * math.e + 0.2 * math.e ** 2) / (0.1 * math.e + 0.2 * math.e ** 2 + 0.7)
  np.testing.assert_allclose(float(th.set_mass(log_ref, reward, 1.0, in_set)), mass, rtol=1e-6)
  # empty set: L = -inf; set of zero reference mass: pi*(A) = 0; full set: 1
  assert float(th.soft_max_reward(log_ref, reward, 1.0, np.zeros(3, bool))) == -math.inf
  log_ref0 = np.array([-np.inf, np.log(0.5), np.log(0.5)])
  assert float(th.set_mass(log_ref0, reward, 1e-3, np.array([True, False, False]))) == 0.0
  assert float(th.set_mass(log_ref0, reward, 1e-3, np.array([True, True, True]))) == 1.0


def test_set_mass_matches_aligned_mass_for_two_level_rewards_float64():
  with jax.enable_x64(True):
    for p, gap, beta in [(1e-300, 600.0, 1.0), (1e-12, 5.0, 0.1), (0.3, -2.0, 3.0)]:
      log_ref = np.log(np.array([p / 2, p / 2, (1 - p) / 3, (1 - p) / 3, (1 - p) / 3]))
      reward = np.array([gap, gap, 0.0, 0.0, 0.0]) + 7.0  # a common shift changes nothing
      in_set = np.array([True, True, False, False, False])
      np.testing.assert_allclose(float(th.set_mass(log_ref, reward, beta, in_set)),
                                 float(th.aligned_mass(p, gap, beta)), rtol=1e-10)


def test_vmap_and_jit_equal_batched_call():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(8, 5))
  log_ref = jnp.asarray(logits - sp_logsumexp(logits, axis=-1, keepdims=True), jnp.float32)
  reward = jnp.asarray(rng.normal(size=(8, 5)), jnp.float32)
  beta = jnp.asarray(np.exp(rng.normal(size=8)), jnp.float32)
  batched_pi, batched_z = th.gibbs(log_ref, reward, beta)
  vm_pi, vm_z = jax.vmap(th.gibbs)(log_ref, reward, beta)
  np.testing.assert_allclose(np.asarray(vm_pi), np.asarray(batched_pi), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(np.asarray(vm_z), np.asarray(batched_z), rtol=1e-6)
  jit_pi, _ = jax.jit(th.gibbs)(log_ref, reward, beta)
  np.testing.assert_allclose(np.asarray(jit_pi), np.asarray(batched_pi), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(np.asarray(jax.vmap(th.kl_cost)(log_ref, reward, beta)),
                             np.asarray(th.kl_cost(log_ref, reward, beta)), rtol=1e-5, atol=1e-6)
  assert batched_pi.dtype == jnp.float32 and batched_pi.shape == (8, 5) and batched_z.shape == (8,)


@pytest.mark.parametrize("kwargs,name", [
    (dict(beta=0.0), "beta"), (dict(beta=-1.0), "beta"), (dict(beta=math.nan), "beta"),
    (dict(log_ref=np.array([math.nan, 0.0])), "log_ref"), (dict(log_ref=np.array([math.inf, 0.0])), "log_ref"),
    (dict(reward=np.array([math.nan, 0.0])), "reward"), (dict(reward=np.array([math.inf, 0.0])), "reward"),
])
def test_bad_input_names_argument(kwargs, name):
  args = dict(log_ref=LOG_REF, reward=REWARD, beta=1.0) | kwargs
  for fn in (th.gibbs, th.kl_cost, th.log_partition):
    with pytest.raises(errors.InputError, match=name):
      fn(args["log_ref"], args["reward"], args["beta"])


def test_gibbs_mismatched_shapes_raise_input_error():
  with pytest.raises(errors.InputError, match="reward"):
    th.gibbs(np.log(np.ones(3) / 3), np.zeros(4), 1.0)
