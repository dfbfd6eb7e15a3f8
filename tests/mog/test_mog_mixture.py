"""Mixtures, tilts, moments and quadrature, checked against independent routes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from recall_theory.errors import InputError
from recall_theory.mog import mixture as mx
from recall_theory.mog import quadrature as qd
from recall_theory.mog.moments import mixture_moments, moment_match
from recall_theory.mog.tilt import tilt_linear, tilt_quadratic



def _two_modes():
  return mx.make_mixture([0.3, 0.7], [[-0.8, 0.1], [0.6, -0.2]],
                         [[[0.05, 0.01], [0.01, 0.03]], [[0.04, -0.015], [-0.015, 0.06]]], dtype=jnp.float64)


def test_log_prob_matches_scipy():
  q = _two_modes()
  x = np.array([[0.0, 0.0], [-0.8, 0.1], [1.5, -1.0]])
  ref = np.log(0.3 * stats.multivariate_normal(q.means_KxD[0], q.covs_KxDxD[0]).pdf(x)
               + 0.7 * stats.multivariate_normal(q.means_KxD[1], q.covs_KxDxD[1]).pdf(x))
  np.testing.assert_allclose(mx.log_prob(q, jnp.asarray(x)), ref, rtol=1e-12)


def test_samples_have_the_mixture_moments():
  q = _two_modes()
  x = mx.sample(jax.random.PRNGKey(0), q, 200_000)
  mean, cov = mixture_moments(q)
  np.testing.assert_allclose(x.mean(0), mean, atol=5e-3)
  np.testing.assert_allclose(np.cov(np.asarray(x).T), cov, atol=5e-3)


def test_bad_mixtures_name_the_argument():
  with pytest.raises(InputError, match="covs\\[0\\] must be positive definite"):
    mx.make_mixture([1.0], [[0.0, 0.0]], [[[1.0, 2.0], [2.0, 1.0]]])
  with pytest.raises(InputError, match="weights must sum to 1"):
    mx.make_mixture([0.5, 0.6], [[0.0, 0.0], [1.0, 1.0]], 0.1)
  with pytest.raises(InputError, match="means must not contain NaN"):
    mx.make_mixture([1.0], [[np.nan, 0.0]], 0.1)


def test_temperature_is_exact_for_one_gaussian():
  grid = qd.make_grid(-3, 3, 121, jnp.float64)
  g = mx.make_mixture([1.0], [[0.2, -0.1]], [[[0.1, 0.03], [0.03, 0.2]]], dtype=jnp.float64)
  t = 0.4
  powered, _ = qd.log_normalize(qd.log_density_on_grid(g, grid) / t, grid)
  np.testing.assert_allclose(qd.log_density_on_grid(mx.with_temperature(g, t), grid), powered, atol=1e-8)


def test_sharpen_and_entropy_bounds():
  q = _two_modes()
  np.testing.assert_allclose(mx.sharpen(q, 2.0).weights_K, np.array([0.09, 0.49]) / 0.58, rtol=1e-12)
  lo, hi = mx.entropy_bounds(q)
  h, se = mx.entropy_mc(jax.random.PRNGKey(1), q, 50_000)
  assert lo - 4 * se <= h <= hi + 4 * se
  single = mx.make_mixture([1.0], [[0.0, 0.0]], 0.3, dtype=jnp.float64)
  np.testing.assert_allclose(mx.entropy_bounds(single)[0], 1 + np.log(2 * np.pi * 0.3), rtol=1e-12)


def test_quadratic_tilt_matches_quadrature():
  q = _two_modes()
  grid = qd.make_grid(-3, 3, 161, jnp.float64)
  center = jnp.array([0.9, 0.4])
  prec = jnp.array([[3.0, 0.5], [0.5, 2.0]])
  beta = 0.7
  reward_G = -0.5 * jnp.einsum("gi,ij,gj->g", grid.points_GxD - center, prec, grid.points_GxD - center)
  log_pi_G, log_z = qd.tilt_on_grid(qd.log_density_on_grid(q, grid), reward_G, beta, grid)
  tilted, log_z_closed = tilt_quadratic(q, center, prec, beta)
  np.testing.assert_allclose(qd.log_density_on_grid(tilted, grid), log_pi_G, atol=1e-9)
  np.testing.assert_allclose(log_z_closed, log_z, atol=1e-10)


def test_linear_tilt_matches_quadrature():
  q = _two_modes()
  grid = qd.make_grid(-4, 4, 201, jnp.float64)
  a = jnp.array([0.5, -0.3])
  beta = 0.5
  log_pi_G, log_z = qd.tilt_on_grid(qd.log_density_on_grid(q, grid), grid.points_GxD @ a, beta, grid)
  tilted, log_z_closed = tilt_linear(q, a, beta)
  np.testing.assert_allclose(qd.log_density_on_grid(tilted, grid), log_pi_G, atol=1e-9)
  np.testing.assert_allclose(log_z_closed, log_z, atol=1e-10)


def test_moment_match_is_the_forward_kl_minimiser():
  q = _two_modes()
  grid = qd.make_grid(-4, 4, 161, jnp.float64)
  log_q = qd.log_density_on_grid(q, grid)
  g = moment_match(q)
  kl = lambda m: qd.kl_on_grid(log_q, qd.log_density_on_grid(m, grid), grid)
  best = kl(g)
  for shift in ([0.05, 0.0], [0.0, -0.05]):
    assert kl(g._replace(means_KxD=g.means_KxD + jnp.asarray(shift))) > best
  for scale in (0.9, 1.1):
    assert kl(g._replace(covs_KxDxD=g.covs_KxDxD * scale)) > best
  # Hand value: modes at +-1 with covariance s I give C = diag(s + 1, s).
  sym = mx.make_mixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.0]], 0.2, dtype=jnp.float64)
  np.testing.assert_allclose(mixture_moments(sym)[1], np.diag([1.2, 0.2]), atol=1e-12)


def test_tilted_components_recombine_to_the_tilt():
  q = _two_modes()
  grid = qd.make_grid(-3, 3, 121, jnp.float64)
  reward_G = jnp.exp(-jnp.sum((grid.points_GxD - jnp.array([0.6, 0.0])) ** 2, -1) / 0.18)
  log_w, log_t_GxK, _, _ = qd.tilted_components(q, reward_G, 0.3, grid)
  log_pi_G, _ = qd.tilt_on_grid(qd.log_density_on_grid(q, grid), reward_G, 0.3, grid)
  np.testing.assert_allclose(jax.nn.logsumexp(log_w[None] + log_t_GxK, -1), log_pi_G, atol=1e-10)


def test_two_d_log_density_and_its_gradient_match_the_einsum_form():
  """The written-out 2-D whitening is the einsum's arithmetic: equal values and gradients, also
  under vmap, and a 3-D mixture still takes the einsum route (checked against scipy)."""
  q = _two_modes()
  x = jax.random.normal(jax.random.PRNGKey(3), (257, 2), jnp.float64)
  np.testing.assert_allclose(mx.component_log_prob(q, x), mx.component_log_prob_einsum(q, x), rtol=1e-14)
  loss = lambda form: lambda m: jnp.sum(jax.nn.logsumexp(m.log_weights_K + form(m, x), axis=-1))
  grads = [jax.grad(loss(form))(q) for form in (mx.component_log_prob, mx.component_log_prob_einsum)]
  for a, b in zip(*grads):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
  batch = jnp.stack([x, -x])
  np.testing.assert_allclose(jax.vmap(lambda xx: mx.component_log_prob(q, xx))(batch),
                             jax.vmap(lambda xx: mx.component_log_prob_einsum(q, xx))(batch), rtol=1e-14)
  q3 = mx.make_mixture([1.0], [[0.1, -0.2, 0.3]], [[[0.5, 0.1, 0.0], [0.1, 0.4, 0.05], [0.0, 0.05, 0.3]]],
                       dtype=jnp.float64)
  x3 = np.array([[0.0, 0.0, 0.0], [1.0, -1.0, 0.5]])
  ref = stats.multivariate_normal(q3.means_KxD[0], q3.covs_KxDxD[0]).logpdf(x3)
  np.testing.assert_allclose(mx.component_log_prob(q3, jnp.asarray(x3))[:, 0], ref, rtol=1e-12)
  with pytest.raises((TypeError, ValueError)):  # 3-D points for a 2-D mixture: a shape error, not a silent slice
    mx.component_log_prob(q, jnp.zeros((4, 3)))
