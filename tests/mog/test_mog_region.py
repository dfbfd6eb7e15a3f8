"""Exact target masses: the orthant cdf against scipy and brute force, the edge-aligned rule's convergence,
and the reference recall that the midpoint grid got wrong (issue 8, defect 3)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from recall_theory.errors import InputError
from recall_theory.mog import mixture as mx
from recall_theory.mog import quadrature as qd
from recall_theory.mog.region import (bvn_upper, gaussian_box_mass, make_region_rule, make_target_region,
                                      mixture_region_mass, tilt_kl, tilt_log_integrals, tilted_mass)
from recall_theory.mog.reward import make_bump_reward
from recall_theory.mog.setup import TARGETS, MogConfig, target_region


def _scipy_upper(h, k, rho):
  """P(Z1 > h, Z2 > k) = P(-Z1 < -h, -Z2 < -k) by scipy's bivariate cdf (Genz, tight tolerances)."""
  return stats.multivariate_normal([0.0, 0.0], [[1.0, rho], [rho, 1.0]]).cdf([-h, -k])


def test_bvn_upper_matches_scipy_over_all_correlations():
  rng = np.random.default_rng(0)
  h, k = rng.uniform(-4, 4, (2, 200))
  rho = np.concatenate([rng.uniform(-0.9, 0.9, 100), rng.choice([-1, 1], 100) * rng.uniform(0.925, 0.9999, 100)])
  ours = np.asarray(bvn_upper(jnp.asarray(h), jnp.asarray(k), jnp.asarray(rho)))
  ref = np.array([_scipy_upper(a, b, r) for a, b, r in zip(h, k, rho)])
  np.testing.assert_allclose(ours, ref, atol=1e-12)
  np.testing.assert_allclose(float(bvn_upper(0.0, 0.0, 0.5)), 1 / 3, atol=1e-15)  # 1/4 + asin(r)/(2 pi)


@pytest.mark.parametrize("h, k, rho", [(6.0, 7.0, 0.1), (9.5, -3.2, 0.05), (8.0, 8.0, 0.95), (3.0, 9.0, -0.3)])
def test_bvn_upper_keeps_relative_accuracy_in_the_tails(h, k, rho):
  # Brute force: int_h^inf phi(x) P(Z2 > k | x) dx, the conditional tail from the survival function.
  f = lambda x: stats.norm.pdf(x) * stats.norm.sf((k - rho * x) / np.sqrt(1 - rho ** 2))
  ref, _ = integrate.quad(f, h, h + 12, epsabs=0, epsrel=1e-13, limit=200)
  assert ref > 0
  # Negative correlation: Phi(-h)Phi(-k) and the (negative) integral cancel partly; ~1e-8 relative remains.
  np.testing.assert_allclose(float(bvn_upper(h, k, rho)), ref, rtol=1e-9 if rho > 0 else 1e-7)


def test_gaussian_box_mass_against_scipy_and_brute_force():
  mean = jnp.asarray([[0.8, 0.3], [-0.2, 0.9]])
  cov = jnp.asarray([[[0.05, 0.02], [0.02, 0.04]], [[0.03, -0.01], [-0.01, 0.06]]])
  boxes = [((0.5, 0.5), (np.inf, np.inf)), ((-np.inf, 0.5), (-0.5, np.inf)), ((0.0, -np.inf), (1.0, 0.4)),
           ((-np.inf, -np.inf), (np.inf, 0.2))]
  for lo, hi in boxes:
    ours = np.asarray(gaussian_box_mass(mean, cov, lo, hi))
    for i in range(2):
      dist = stats.multivariate_normal(np.asarray(mean[i]), np.asarray(cov[i]))
      ref = dist.cdf(np.asarray(hi), lower_limit=np.asarray(lo))
      np.testing.assert_allclose(ours[i], ref, atol=1e-10)
      clip = lambda v, c: float(np.clip(v, c - 3, c + 3))
      brute, _ = integrate.dblquad(lambda y, x: dist.pdf([x, y]), clip(lo[0], mean[i, 0]), clip(hi[0], mean[i, 0]),
                                   clip(lo[1], mean[i, 1]), clip(hi[1], mean[i, 1]), epsabs=1e-11)
      np.testing.assert_allclose(ours[i], brute, atol=1e-7)


def test_target_regions_are_the_voronoi_boxes():
  one = target_region(MogConfig())
  np.testing.assert_array_equal(one.lo_RxD, [[0.5, 0.5]])
  np.testing.assert_array_equal(one.hi_RxD, [[np.inf, np.inf]])
  two = target_region(MogConfig(target="two"))
  np.testing.assert_array_equal(two.lo_RxD, [[-np.inf, 0.5], [0.5, 0.5]])
  np.testing.assert_array_equal(two.hi_RxD, [[-0.5, np.inf], [np.inf, np.inf]])
  # A hexagonal arrangement has cells that are not boxes: refused by name, not approximated.
  hexagon = tuple((float(np.cos(a)), float(np.sin(a))) for a in np.linspace(0, 2 * np.pi, 7)[:-1])
  with pytest.raises(InputError, match="not an axis-aligned box"):
    make_target_region(hexagon, np.arange(6) == 0)


@pytest.fixture(scope="module")
def students():
  four = mx.make_mixture([0.25] * 4, [[-1, -1], [0, -1], [1, -1], [1, 0]], [0.03, 0.025, 0.028, 0.026],
                         dtype=jnp.float64)
  three = mx.make_mixture([1 / 3] * 3, [[-1, -1], [0, -1], [1, -1]], [0.03, 0.025, 0.028], dtype=jnp.float64)
  return {"4-mode": four, "3-mode": three}


@pytest.mark.parametrize("name", ["4-mode", "3-mode"])
def test_region_rule_converges_and_agrees_with_the_cdf(students, name):
  q = students[name]
  region = target_region(MogConfig())
  reward = make_bump_reward(TARGETS["one"], 0.3, jnp.float64)
  exact_recall = float(mixture_region_mass(q, region))
  masses = []
  for finest, coarsest, order in ((0.02, 0.4, 6), (0.004, 0.2, 8), (0.002, 0.1, 12)):
    rule = make_region_rule(region, [[1.0, 1.0]], finest=finest, coarsest=coarsest, order=order)
    log_q = mx.log_prob(q, rule.points_QxD)
    # No tilt (reward 0): the rule reproduces the orthant cdf, also for the 1e-20 mass of the 3-mode student.
    ia, iac = tilt_log_integrals(log_q, jnp.zeros_like(log_q), 1.0, rule)
    np.testing.assert_allclose(float(tilted_mass(ia, iac)), exact_recall, rtol=1e-6)
    masses.append([float(tilted_mass(*tilt_log_integrals(log_q, reward(rule.points_QxD), b, rule)))
                   for b in (1.0, 0.1, 0.01)])
  masses = np.asarray(masses)
  coarse_change = np.abs(masses[1] / masses[0] - 1).max()
  fine_change = np.abs(masses[2] / masses[1] - 1).max()
  assert fine_change < 1e-9, masses
  assert fine_change <= coarse_change


def test_tilt_kl_matches_the_kl_of_the_tilted_density(students):
  q = students["4-mode"]
  region = target_region(MogConfig())
  reward = make_bump_reward(TARGETS["one"], 0.3, jnp.float64)
  rule = make_region_rule(region, [[1.0, 1.0]])
  grid = qd.make_grid(-3, 3, 301, jnp.float64)
  log_q_G = qd.log_density_on_grid(q, grid)
  beta = 0.5  # wide enough for the midpoint grid to be exact
  log_pi_G, _ = qd.tilt_on_grid(log_q_G, reward(grid.points_GxD), beta, grid)
  ref = float(qd.kl_on_grid(log_pi_G, log_q_G, grid))
  ours = float(tilt_kl(mx.log_prob(q, rule.points_QxD), reward(rule.points_QxD), beta, rule))
  # KL = E[r]/beta - log Z: a difference of close terms, so compared in absolute terms (KL ~ 3e-4 here).
  np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-8)



def _tail_tilt_kl_mpmath(weights, means, variances, center, width, beta, dps=50):
  """KL(pi || ref) over R^2 of ref = sum_k w_k N(mu_k, v_k I) tilted by u = R/beta,
  R(x) = exp(-|x - c|^2 / (2 width^2)), to ~30 digits, independently of any quadrature rule.

  R^n is the bump of width^2/n, so each moment is a product of 1-D Gaussian convolutions:
  E_ref[R^n] = sum_k w_k prod_d sqrt(s/(s + v_k)) exp(-(mu_kd - c_d)^2 / (2 (s + v_k))),
  s = width^2/n. With m_n = E_ref[u^n], Z - 1 = sum_{n>=1} m_n/n!, E_ref[u e^u] =
  sum_{n>=1} m_n/(n-1)!, and KL = E_ref[u e^u]/Z - log Z (at 50 digits the cancellation
  of the two ~1e-8 terms leaves ~35 digits of a 1e-15 KL)."""
  import mpmath
  with mpmath.workdps(dps):
    w2, b = mpmath.mpf(width) ** 2, mpmath.mpf(beta)
    z_minus_1 = mean_u_eu = mpmath.mpf(0)
    for n in range(1, 80):  # u <= 1/beta <= 1: the terms fall like 1/n!
      moment = mpmath.mpf(0)
      for wk, mu, v in zip(weights, means, variances):
        s, v = w2 / n, mpmath.mpf(v)
        moment += mpmath.mpf(wk) * mpmath.fprod(
            mpmath.sqrt(s / (s + v)) * mpmath.exp(-(mpmath.mpf(m) - c) ** 2 / (2 * (s + v)))
            for m, c in zip(mu, center))
      m_n = moment / b ** n
      z_minus_1 += m_n / mpmath.factorial(n)
      mean_u_eu += m_n / mpmath.factorial(n - 1)
    return float(mean_u_eu / (1 + z_minus_1) - mpmath.log1p(z_minus_1))


@pytest.mark.parametrize("beta", [1.0, 3.0, 10.0])
def test_tilt_kl_of_a_barely_moved_reference_against_mpmath(beta):
  # The 3-mode student (no mass near the target) tilted by the bump at (1, 1): KL 1.3e-13 ..
  # 1.3e-15. The old form E_pi[u] - log Z carried -log M ~ +1.1e-9 (the default rule's
  # reference mass is M = 1 - 1.1e-9) and, where M = 1, lost all digits to cancellation.
  weights, means, variances = [1 / 3] * 3, [[-1, -1], [0, -1], [1, -1]], [0.03, 0.025, 0.028]
  q = mx.make_mixture(weights, means, variances, dtype=jnp.float64)
  center = TARGETS["one"][0]
  reward = make_bump_reward(TARGETS["one"], 0.3, jnp.float64)
  truth = _tail_tilt_kl_mpmath(weights, means, variances, center, 0.3, beta)
  assert 1e-16 < truth < 1e-12
  region = target_region(MogConfig())

  def both(rule):
    log_q, r = mx.log_prob(q, rule.points_QxD), reward(rule.points_QxD)
    log_f = log_q + r / beta + rule.log_weights_Q
    log_z = jax.nn.logsumexp(log_f)
    old = float(jnp.sum(jnp.exp(log_f - log_z) * r) / beta - log_z)  # the form before the fix
    return float(tilt_kl(log_q, r, beta, rule)), old, float(jax.nn.logsumexp(log_q + rule.log_weights_Q))

  # Default rule: what the runs use. It integrates the student to 1 - 1.1e-9, and KL (a variance
  # of u, ~ E_ref[u^2]/2, carried by the far tail of the modes) to ~2e-8 relative: rtol 1e-7.
  ours, old, log_m = both(make_region_rule(region, [[1.0, 1.0]]))
  assert -1e-8 < log_m < -1e-10
  np.testing.assert_allclose(ours, truth, rtol=1e-7)
  assert abs(old - truth) > 1e-9  # the defect: off by -log M, 4 to 6 orders above the KL
  np.testing.assert_allclose(old - truth, -log_m, rtol=1e-3)
  # A refined rule integrates the student to M = 1 (to rounding) and the KL to ~5e-15 relative:
  # the sum of non-negative terms keeps ~13 digits of a 1e-15 KL (rtol 1e-12 leaves a margin of
  # 100 for the rule's own error); the old difference of two ~1e-8 terms keeps none of them.
  ours, old, log_m = both(make_region_rule(region, [[1.0, 1.0]], finest=0.004, coarsest=0.2, order=8))
  assert abs(log_m) < 1e-14
  np.testing.assert_allclose(ours, truth, rtol=1e-12)
  assert abs(old - truth) > 1e3 * abs(ours - truth)


def test_default_seed0_reference_recall_is_exact_not_the_midpoint_value():
  """Issue 8 defect 3: the seed-0 4-mode student's recall is 1.52e-4, not the midpoint grid's 8.77e-5."""
  from recall_theory.mog.grid_run import build_problem
  from recall_theory.mog.pipelines import references
  config = MogConfig()
  problem = build_problem(config, jnp.float64)
  teacher, student = jax.jit(lambda: references(0, 0, problem, config))()
  w = np.exp(np.asarray(student.log_weights_K))
  scipy_mass = sum(wk * stats.multivariate_normal(np.asarray(m), np.asarray(c)).cdf(
      [np.inf, np.inf], lower_limit=[0.5, 0.5]) for wk, m, c in zip(w, student.means_KxD, student.covs_KxDxD) if wk > 0)
  ours = float(mixture_region_mass(student, problem.region))
  np.testing.assert_allclose(ours, scipy_mass, rtol=1e-6)
  np.testing.assert_allclose(ours, 1.52e-4, rtol=0.01)
  # The old estimate, cells assigned to A by their centre on the 101-point grid, is 42% low.
  midpoint = float(jnp.sum(jnp.exp(qd.log_density_on_grid(student, problem.grid) + problem.grid.log_cell_area)
                           * problem.land.target_G))
  assert midpoint < 0.7 * ours


def test_a_model_inside_the_target_has_mass_one_not_one_plus_rounding():
  """Weights 0.7, 0.2, 0.1 of exp(log w) sum to 1.0000000000000002 in float64; q(A) is a probability."""
  region = target_region(MogConfig())
  q = mx.make_mixture([0.7, 0.2, 0.1], [[1.0, 1.0]] * 3, 1e-4, dtype=jnp.float64)
  per_k = sum(gaussian_box_mass(q.means_KxD, q.covs_KxDxD, lo, hi) for lo, hi in zip(region.lo_RxD, region.hi_RxD))
  assert float(jnp.sum(jnp.exp(q.log_weights_K) * per_k)) > 1.0  # the premise: unclipped, above 1
  assert float(mixture_region_mass(q, region)) == 1.0
