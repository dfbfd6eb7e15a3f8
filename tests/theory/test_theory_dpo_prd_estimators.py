"""DPO/IPO exact losses (item 5), PRD and likelihood precision/recall (item 10), KL estimators (item 11)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp as sp_logsumexp

from recall_theory import errors
from recall_theory import theory as th

REF = np.array([0.1, 0.2, 0.3, 0.4])
REWARD = np.array([1.5, -0.5, 0.0, 0.7])


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


# ---------------------------------------------------------------------------------- DPO
def test_dpo_loss_at_reference_is_log2():
  # pi = pi_ref: every implicit reward h is 0, each pair costs log 2, weights sum to 1
  np.testing.assert_allclose(float(th.dpo_loss_exact(np.log(REF), np.log(REF), REWARD, 0.5)), math.log(2),
                             rtol=1e-6)


def test_dpo_loss_numpy_double_sum_and_minimum_at_gibbs():
  with jax.enable_x64(True):
    beta = 0.8
    log_pi = np.log(np.array([0.25, 0.25, 0.25, 0.25]))
    h = beta * (log_pi - np.log(REF))
    w = np.outer(REF, REF)
    brute = 0.0
    for i in range(4):
      for j in range(4):
        p = _sigmoid(REWARD[i] - REWARD[j])
        m = h[i] - h[j]
        brute -= w[i, j] * (p * np.log(_sigmoid(m)) + (1 - p) * np.log(_sigmoid(-m)))
    np.testing.assert_allclose(float(th.dpo_loss_exact(log_pi, np.log(REF), REWARD, beta)), brute, rtol=1e-12)
    # the minimum is the weighted Bernoulli entropy of the labels, attained at the Gibbs optimum
    d = REWARD[:, None] - REWARD[None, :]
    entropy = -(_sigmoid(d) * np.log(_sigmoid(d)) + _sigmoid(-d) * np.log(_sigmoid(-d)))
    np.testing.assert_allclose(float(th.dpo_loss_minimum(REWARD, w)), np.sum(w * entropy), rtol=1e-12)
    log_star = np.asarray(th.gibbs(np.log(REF), REWARD, beta)[0])
    np.testing.assert_allclose(float(th.dpo_loss_exact(log_star, np.log(REF), REWARD, beta)),
                               np.sum(w * entropy), rtol=1e-12)
    # stationary there: the gradient through a softmax parametrisation vanishes
    grad = jax.grad(lambda t: th.dpo_loss_exact(jax.nn.log_softmax(t), np.log(REF), REWARD, beta))(log_star)
    np.testing.assert_allclose(np.asarray(grad), 0.0, atol=1e-12)


def test_dpo_uncovered_outputs_get_no_gradient():
  # pairs never touch outputs 2, 3: their logits receive exactly zero gradient
  w = np.zeros((4, 4))
  w[:2, :2] = np.outer(REF[:2], REF[:2])
  grad = jax.grad(lambda t: th.dpo_loss_exact(jax.nn.log_softmax(t), np.log(REF), REWARD, 1.0, w))(
      jnp.log(jnp.asarray(REF)))
  g = np.asarray(grad)
  assert np.any(np.abs(g[:2]) > 1e-3)
  # softmax couples the logits only through normalisation: the unseen pair keeps its odds
  np.testing.assert_allclose(g[2] / REF[2], g[3] / REF[3], rtol=1e-5)


def test_ipo_loss_hand_value_at_reference():
  # at pi = pi_ref every margin is 0: sum w P(y > y') (1/(2 tau))^2 = (1/2)(1/(2 tau))^2 = 1/(8 tau^2)
  tau = 0.5
  np.testing.assert_allclose(float(th.ipo_loss_exact(np.log(REF), np.log(REF), REWARD, tau)),
                             1 / (8 * tau ** 2), rtol=1e-6)


def test_ipo_loss_stationary_at_ipo_optimum():
  with jax.enable_x64(True):
    tau = 0.6
    log_opt = th.ipo_optimum(np.log(REF), REWARD, tau)
    grad = jax.grad(lambda t: th.ipo_loss_exact(jax.nn.log_softmax(t), np.log(REF), REWARD, tau))(log_opt)
  np.testing.assert_allclose(np.asarray(grad), 0.0, atol=1e-12)


def test_dpo_ipo_bad_temperature():
  with pytest.raises(errors.InputError, match="beta"):
    th.dpo_loss_exact(np.log(REF), np.log(REF), REWARD, 0.0)
  with pytest.raises(errors.InputError, match="tau"):
    th.ipo_loss_exact(np.log(REF), np.log(REF), REWARD, -1.0)


# ---------------------------------------------------------------------------------- PRD
P = np.array([0.5, 0.5, 0.0])
Q = np.array([0.0, 0.5, 0.5])


def _log(x):
  with np.errstate(divide="ignore"):
    return np.log(x)


def test_prd_hand_values():
  lambdas = jnp.array([0.5, 1.0, 2.0])
  # alpha(l) = sum min(l p, q): l=0.5 -> min(.25,0)+min(.25,.5)+0 = 0.25; l=1 -> 0.5; l=2 -> 0.5
  np.testing.assert_allclose(np.asarray(th.prd_precision(_log(P), _log(Q), lambdas)), [0.25, 0.5, 0.5], rtol=1e-6)
  # beta(l) = sum min(p, q/l): l=0.5 -> 0.5; l=1 -> 0.5; l=2 -> 0.25
  np.testing.assert_allclose(np.asarray(th.prd_recall(_log(P), _log(Q), lambdas)), [0.5, 0.5, 0.25], rtol=1e-6)
  assert float(th.max_recall(_log(P), _log(Q))) == 0.5
  assert float(th.max_precision(_log(P), _log(Q))) == 0.5
  precision, recall, lam = th.prd_curve(_log(P), _log(Q), num_angles=11)
  assert precision.shape == recall.shape == lam.shape == (11,)
  np.testing.assert_allclose(np.asarray(lam), np.tan(np.linspace(0, np.pi / 2, 13)[1:-1]), rtol=1e-6)
  assert np.all(np.diff(np.asarray(precision)) >= -1e-7) and np.all(np.diff(np.asarray(recall)) <= 1e-7)
  np.testing.assert_allclose(float(precision[5]), 0.5, rtol=1e-6)  # lambda = tan(pi/4) = 1: 1 - TV


def test_prd_batch_axes_and_float64():
  rng = np.random.default_rng(3)
  logits = rng.normal(size=(2, 3, 6))
  log_p = logits - sp_logsumexp(logits, axis=-1, keepdims=True)
  log_q = np.roll(log_p, 1, axis=-1)
  with jax.enable_x64(True):
    precision, recall, lam = th.prd_curve(log_p, log_q, num_angles=7)
    assert precision.dtype == jnp.float64 and precision.shape == (2, 3, 7)
    p, q = np.exp(log_p), np.exp(log_q)
    brute = np.minimum(np.asarray(lam)[:, None] * p[..., None, :], q[..., None, :]).sum(-1)
    np.testing.assert_allclose(np.asarray(precision), brute, rtol=1e-12)
    # support axis not last
    moved = th.prd_precision(np.moveaxis(log_p, -1, 0), np.moveaxis(log_q, -1, 0), lam, axis=0)
    np.testing.assert_allclose(np.asarray(moved), brute, rtol=1e-12)


def test_loglik_and_support_precision_recall_hand():
  log_p, log_q = np.log([0.5, 0.5]), np.log([0.25, 0.75])
  # E_q[log p] = log 0.5 ; E_p[log q] = 0.5 log 0.25 + 0.5 log 0.75
  np.testing.assert_allclose(float(th.loglik_precision(log_p, log_q)), math.log(0.5), rtol=1e-6)
  np.testing.assert_allclose(float(th.loglik_recall(log_p, log_q)), 0.5 * math.log(0.25) + 0.5 * math.log(0.75),
                             rtol=1e-6)
  # q misses part of p's support: recall -inf; precision finite when q stays inside supp p
  assert float(th.loglik_recall(_log(P), _log(np.array([1.0, 0.0, 0.0])))) == -math.inf
  np.testing.assert_allclose(float(th.loglik_precision(_log(P), _log(np.array([1.0, 0.0, 0.0])))), math.log(0.5),
                             rtol=1e-6)
  # floor 0.3: precision q({p >= 0.3}) = 1, recall p({q >= 0.3}) = 0.5
  prec, rec = th.support_precision_recall(log_p, log_q, 0.3)
  np.testing.assert_allclose([float(prec), float(rec)], [1.0, 0.5], rtol=1e-6)
  with pytest.raises(errors.InputError, match="floor"):
    th.support_precision_recall(log_p, log_q, -0.1)
  with pytest.raises(errors.InputError, match="num_angles"):
    th.prd_curve(log_p, log_q, num_angles=2)


# ------------------------------------------------------------------------ KL estimators
def test_estimator_values_hand():
  # log pi = log 0.2, log ref = log 0.4: k1 = log 0.5 = -0.693147, k2 = 0.240227, k3 = 2 - 1 + log 0.5 = 0.306853
  k1 = math.log(0.5)
  np.testing.assert_allclose(float(th.k1(math.log(0.2), math.log(0.4))), k1, rtol=1e-6)
  np.testing.assert_allclose(float(th.k2(math.log(0.2), math.log(0.4))), 0.5 * k1 ** 2, rtol=1e-6)
  np.testing.assert_allclose(float(th.k3(math.log(0.2), math.log(0.4))), 1.0 + k1, rtol=1e-6)
  assert set(th.KL_ESTIMATORS) == {"k1", "k2", "k3"}
  # unbiasedness of k1 and k3 as values under y ~ pi (exact sums)
  pi, ref = np.array([0.2, 0.5, 0.3]), np.array([0.4, 0.4, 0.2])
  kl = np.sum(pi * np.log(pi / ref))
  np.testing.assert_allclose(np.sum(pi * np.asarray(th.k1(np.log(pi), np.log(ref)))), kl, rtol=1e-6)
  np.testing.assert_allclose(np.sum(pi * np.asarray(th.k3(np.log(pi), np.log(ref)))), kl, rtol=1e-5)
  assert np.all(np.asarray(th.k3(np.log(pi), np.log(ref))) >= 0)


def test_expected_estimator_gradients_closed_forms():
  # softmax logits theta: grad KL(pi||ref) = pi (log pi/ref - KL); grad KL(ref||pi) = pi - ref
  with jax.enable_x64(True):
    theta = np.array([0.3, -1.0, 2.0, 0.0])
    pi = np.exp(theta - sp_logsumexp(theta))
    log_ref = np.log(REF)
    rev = np.sum(pi * np.log(pi / REF))
    g1 = th.expected_estimator_gradient(th.k1, theta, log_ref)
    g2 = th.expected_estimator_gradient(th.k2, theta, log_ref)
    g3 = th.expected_estimator_gradient(th.k3, theta, log_ref)
  np.testing.assert_allclose(np.asarray(g1), 0.0, atol=1e-15)
  np.testing.assert_allclose(np.asarray(g2), pi * (np.log(pi / REF) - rev), rtol=1e-12, atol=1e-15)
  np.testing.assert_allclose(np.asarray(g3), pi - REF, rtol=1e-12, atol=1e-15)
