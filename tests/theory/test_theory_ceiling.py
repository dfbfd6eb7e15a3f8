"""KL-budget ceiling (theory item 4) against scipy's brentq, hand values and exact edges."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq

from recall_theory import errors
from recall_theory import theory as th


def _kl(t, p):
  out = 0.0
  if t > 0:
    out += t * math.log(t / p)
  if t < 1:
    out += (1 - t) * math.log((1 - t) / (1 - p))
  return out


def _brentq_ceiling(p, budget):
  if budget >= -math.log(p):
    return 1.0
  return brentq(lambda t: _kl(t, p) - budget, p, 1.0, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)


@pytest.mark.parametrize("p,budget", [(1e-6, 1.0), (0.3, 0.1), (1e-3, 0.01), (0.5, 0.6), (1e-12, 10.0),
                                      (1e-100, 5.0), (1e-300, 1.0), (0.9, 1e-4)])
def test_kl_ceiling_equals_brentq_float64(p, budget):
  with jax.enable_x64(True):
    t = float(th.kl_ceiling(p, budget))
  np.testing.assert_allclose(t, _brentq_ceiling(p, budget), rtol=1e-10)


def test_kl_ceiling_hand_value_and_float32():
  # kl(t || 1e-6) = 1: brentq gives t = 0.09512813...; float32 route agrees to 1e-5
  expected = _brentq_ceiling(1e-6, 1.0)
  np.testing.assert_allclose(expected, 0.0951281, rtol=1e-5)
  t = th.kl_ceiling(1e-6, 1.0)
  assert t.dtype == jnp.float32
  np.testing.assert_allclose(float(t), expected, rtol=1e-5)


@pytest.mark.parametrize("x64", [False, True])
def test_kl_ceiling_exact_edges(x64):
  budgets = np.array([0.0, 1e-3, 1.0, 100.0])
  with jax.enable_x64(x64):
    assert np.all(np.asarray(th.kl_ceiling(0.0, budgets)) == 0.0)     # p = 0: nothing reachable
    assert np.all(np.asarray(th.kl_ceiling(1.0, budgets)) == 1.0)     # p = 1: already all
    p = np.array([1e-30, 1e-3, 0.2, 0.7])
    np.testing.assert_array_equal(np.asarray(th.kl_ceiling(p, 0.0)), np.asarray(jnp.asarray(p)))  # K = 0: p
    # K >= log(1/p) reaches 1 exactly: p = 0.1 needs log 10 = 2.302585
    assert float(th.kl_ceiling(0.1, math.log(10.0) + 1e-3)) == 1.0
    assert float(th.kl_ceiling(0.1, math.log(10.0) - 1e-2)) < 1.0


def test_kl_ceiling_monotone_and_between_p_and_loose():
  with jax.enable_x64(True):
    p = np.logspace(-300, -0.01, 60)
    budgets = np.array([1e-3, 0.1, 1.0, 10.0, 100.0])
    t = np.asarray(th.kl_ceiling(p[None, :], budgets[:, None]))
    loose = np.asarray(th.kl_ceiling_loose(p[None, :], budgets[:, None]))
  assert t.shape == (5, 60)
  assert np.all(t >= p[None, :]) and np.all(t <= 1.0)
  assert np.all(np.diff(t, axis=0) >= 0)  # more budget reaches more
  assert np.all(loose >= t - 1e-15)


def test_kl_ceiling_loose_hand_values():
  # (K + log 2) / log(1/p): K = 1, p = 1e-6 -> 1.693147 / 13.815511 = 0.1225541
  np.testing.assert_allclose(float(th.kl_ceiling_loose(1e-6, 1.0)), (1 + math.log(2)) / math.log(1e6),
                             rtol=1e-6)
  assert float(th.kl_ceiling_loose(0.0, 1.0)) == 0.0
  assert float(th.kl_ceiling_loose(0.4, 10.0)) == 1.0  # capped


def test_kl_ceiling_loose_at_recall_one():
  # log(1/p) = 0 at p = 1: the bound must be 1 (it bounds the exact ceiling, which is 1), not -inf
  assert float(th.kl_ceiling_loose(1.0, 1.0)) == 1.0


def test_gibbs_two_level_lies_on_ceiling():
  with jax.enable_x64(True):
    p = np.array([1e-200, 1e-20, 1e-4, 0.2])
    gap, beta = np.array([300.0, 20.0, 5.0, 1.0]), np.array([1.0, 1.0, 0.5, 2.0])
    budget = th.aligned_kl(p, gap, beta)
    np.testing.assert_allclose(np.asarray(th.kl_ceiling(p, budget)), np.asarray(th.aligned_mass(p, gap, beta)),
                               rtol=1e-9)


def test_broadcasting_jit_vmap():
  p = jnp.array([1e-6, 1e-3, 0.1])
  k = jnp.array([0.1, 1.0, 5.0])
  batched = th.kl_ceiling(p, k)
  np.testing.assert_allclose(np.asarray(jax.vmap(th.kl_ceiling)(p, k)), np.asarray(batched), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(jax.jit(th.kl_ceiling)(p, k)), np.asarray(batched), rtol=1e-6)
  assert th.kl_ceiling(p[:, None], k[None, :]).shape == (3, 3)
  assert th.kl_ceiling_loose(p[:, None], k[None, :]).shape == (3, 3)


@pytest.mark.parametrize("fn", [th.kl_ceiling, th.kl_ceiling_loose])
@pytest.mark.parametrize("args,name", [((0.1, -1.0), "budget"), ((0.1, math.inf), "budget"),
                                       ((0.1, math.nan), "budget"), ((-0.1, 1.0), "recall"),
                                       ((1.1, 1.0), "recall"), ((math.nan, 1.0), "recall")])
def test_bad_input(fn, args, name):
  with pytest.raises(errors.InputError, match=name):
    fn(*args)


def test_mismatched_shapes():
  with pytest.raises(errors.InputError, match=r"recall\[3\], budget\[4\]"):
    th.kl_ceiling(np.full(3, 0.1), np.ones(4))
