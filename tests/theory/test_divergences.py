"""Divergences named by direction: hand values, scipy, limits, -inf handling, float64, vmap."""

import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr

from recall_theory import divergences as dv

P = np.array([0.5, 0.5])
Q = np.array([0.25, 0.75])
LP, LQ = np.log(P), np.log(Q)


def test_forward_and_reverse_direction_hand():
  # KL(p||q) = 0.5 log(0.5/0.25) + 0.5 log(0.5/0.75) = 0.5 log 2 + 0.5 log(2/3) = 0.1438410
  np.testing.assert_allclose(float(dv.forward_kl(LP, LQ)), 0.5 * math.log(2) + 0.5 * math.log(2 / 3), rtol=1e-6)
  # reverse_kl(log_p, log_q) = KL(q||p) = 0.25 log 0.5 + 0.75 log 1.5 = 0.1308121
  np.testing.assert_allclose(float(dv.reverse_kl(LP, LQ)), 0.25 * math.log(0.5) + 0.75 * math.log(1.5), rtol=1e-6)
  np.testing.assert_allclose(float(dv.tv(LP, LQ)), 0.25, rtol=1e-6)


def test_against_scipy_random_float64():
  rng = np.random.default_rng(0)
  p = rng.dirichlet(np.ones(7), size=5)
  q = rng.dirichlet(np.ones(7), size=5)
  with jax.enable_x64(True):
    np.testing.assert_allclose(np.asarray(dv.forward_kl(np.log(p), np.log(q))), rel_entr(p, q).sum(-1), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(dv.reverse_kl(np.log(p), np.log(q))), rel_entr(q, p).sum(-1), rtol=1e-12)
    # scipy's jensenshannon is the square root of the symmetric JSD (natural log)
    np.testing.assert_allclose(np.asarray(dv.jsd(np.log(p), np.log(q), 0.5)),
                               jensenshannon(p, q, axis=-1) ** 2, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(dv.tv(np.log(p), np.log(q))), 0.5 * np.abs(p - q).sum(-1), rtol=1e-12)
    m = 0.3 * p + 0.7 * q
    np.testing.assert_allclose(np.asarray(dv.skew_kl(np.log(p), np.log(q), 0.3)), rel_entr(p, m).sum(-1),
                               rtol=1e-12)
    # generalised JSD with beta = 0.2 by numpy
    beta = 0.2
    m = beta * p + (1 - beta) * q
    expected = beta * rel_entr(p, m).sum(-1) + (1 - beta) * rel_entr(q, m).sum(-1)
    np.testing.assert_allclose(np.asarray(dv.jsd(np.log(p), np.log(q), beta)), expected, rtol=1e-10)


def test_jsd_endpoints_and_limits():
  with jax.enable_x64(True):
    assert float(dv.jsd(LP, LQ, 0.0)) == 0.0
    assert float(dv.jsd(LP, LQ, 1.0)) == 0.0
    # jsd / beta -> KL(p||q) as beta -> 0 ; jsd / (1-beta) -> KL(q||p) as beta -> 1
    b = 1e-7
    np.testing.assert_allclose(float(dv.jsd(LP, LQ, b)) / b, float(dv.forward_kl(LP, LQ)), rtol=1e-5)
    np.testing.assert_allclose(float(dv.jsd(LP, LQ, 1 - b)) / b, float(dv.reverse_kl(LP, LQ)), rtol=1e-5)
    assert float(dv.jsd(LP, LQ)) <= math.log(2)
    np.testing.assert_allclose(float(dv.skew_kl(LP, LQ, 0.0)), float(dv.forward_kl(LP, LQ)), rtol=1e-12)
    assert float(dv.skew_kl(LP, LQ, 1.0)) == 0.0


def test_zeros_and_disjoint_supports():
  lp = np.array([0.0, -np.inf])        # p = [1, 0]
  lq = np.array([-np.inf, 0.0])        # q = [0, 1]
  assert float(dv.forward_kl(lp, lq)) == math.inf
  assert float(dv.reverse_kl(lp, lq)) == math.inf
  np.testing.assert_allclose(float(dv.jsd(lp, lq)), math.log(2), rtol=1e-6)
  np.testing.assert_allclose(float(dv.tv(lp, lq)), 1.0, rtol=1e-6)
  # skew KL stays finite: KL(p || 0.1 p + 0.9 q) = log 10
  np.testing.assert_allclose(float(dv.skew_kl(lp, lq, 0.1)), math.log(10), rtol=1e-6)
  # p = 0 where q > 0 contributes 0 (no NaN from -inf - finite)
  lp2 = np.array([0.0, -np.inf])
  lq2 = np.log(np.array([0.5, 0.5]))
  np.testing.assert_allclose(float(dv.forward_kl(lp2, lq2)), math.log(2), rtol=1e-6)
  for name, fn in dv.DIVERGENCES.items():
    assert not np.isnan(float(fn(lp2, lq2))), name


def test_float64_tiny_masses_exact():
  with jax.enable_x64(True):
    tiny = 1e-300
    # 1 - 1e-300 rounds to 1, so the bulk atom is shared exactly; the rare atom's term
    # tiny * (log tiny - log(tiny e^-2)) = 2e-300 must survive (no exp/log underflow)
    lp = np.array([math.log(tiny), 0.0])
    lq = np.array([math.log(tiny) - 2.0, 0.0])
    np.testing.assert_allclose(float(dv.forward_kl(lp, lq)), 2 * tiny, rtol=1e-12)
    np.testing.assert_allclose(float(dv.reverse_kl(lq, lp)), 2 * tiny, rtol=1e-12)
    assert dv.forward_kl(lp, lq).dtype == jnp.float64
    # in float32 the same inputs underflow to exact zeros, never NaN
  assert float(dv.forward_kl(jnp.asarray(lp, jnp.float32), jnp.asarray(lq, jnp.float32))) == 0.0


def test_axis_batch_vmap_jit():
  rng = np.random.default_rng(1)
  p = rng.dirichlet(np.ones(4), size=(3, 2))
  q = rng.dirichlet(np.ones(4), size=(3, 2))
  lp, lq = jnp.log(jnp.asarray(p, jnp.float32)), jnp.log(jnp.asarray(q, jnp.float32))
  for name, fn in dv.DIVERGENCES.items():
    batched = fn(lp, lq)
    assert batched.shape == (3, 2), name
    np.testing.assert_allclose(np.asarray(fn(jnp.moveaxis(lp, -1, 0), jnp.moveaxis(lq, -1, 0), axis=0)),
                               np.asarray(batched), rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(np.asarray(jax.vmap(fn)(lp, lq)), np.asarray(batched), rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(np.asarray(jax.jit(fn)(lp, lq)), np.asarray(batched), rtol=1e-5, err_msg=name)


def test_registry():
  assert set(dv.DIVERGENCES) == {"forward_kl", "reverse_kl", "jsd", "skew_kl", "tv"}
