"""EM, the KD recipe, forward versus reverse KL."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recall_theory.errors import InputError
from recall_theory.mog import distill as kd
from recall_theory.mog import mixture as mx
from recall_theory.mog import quadrature as qd
from recall_theory.mog.em import fit_em, top_components_init, validate_em_inputs
from recall_theory.mog.moments import moment_match



def _target():
  return mx.make_mixture([0.4, 0.6], [[-1.0, 0.0], [1.0, 0.5]], 0.03, dtype=jnp.float64)


def test_em_recovers_a_mixture_and_never_decreases_likelihood():
  p = _target()
  x = mx.sample(jax.random.PRNGKey(0), p, 4000)
  init = mx.make_mixture([0.5, 0.5], [[-0.5, 0.2], [0.5, 0.2]], 0.2, dtype=jnp.float64)
  fitted, ll = fit_em(x, init, 40)
  assert np.all(np.diff(np.asarray(ll)) >= -1e-10)
  np.testing.assert_allclose(fitted.means_KxD, p.means_KxD, atol=0.02)
  np.testing.assert_allclose(fitted.weights_K, p.weights_K, atol=0.03)


def test_weighted_em_on_grid_is_exact_moment_matching_for_one_component():
  p = _target()
  grid = qd.make_grid(-3, 3, 121, jnp.float64)
  weights = jnp.exp(qd.log_density_on_grid(p, grid) + grid.log_cell_area)
  init = mx.make_mixture([1.0], [[0.0, 0.0]], 1.0, dtype=jnp.float64)
  fitted = fit_em(grid.points_GxD, init, 3, weights_N=weights, reg=0.0).mixture
  mm = moment_match(p)
  np.testing.assert_allclose(fitted.means_KxD, mm.means_KxD, atol=1e-9)
  np.testing.assert_allclose(fitted.covs_KxDxD, mm.covs_KxDxD, atol=1e-9)


def test_masked_components_stay_at_zero_weight():
  p = _target()
  x = mx.sample(jax.random.PRNGKey(1), p, 1000)
  init = top_components_init(p, 2, jnp.array([True, False]))
  fitted = fit_em(x, init, 10, active_K=jnp.array([True, False])).mixture
  assert float(fitted.weights_K[1]) == 0.0
  np.testing.assert_allclose(float(fitted.weights_K[0]), 1.0)


def test_em_input_errors():
  with pytest.raises(InputError, match="data must not contain NaN"):
    validate_em_inputs(np.array([[0.0, np.nan]]), 1, 5)
  with pytest.raises(InputError, match="n_components"):
    validate_em_inputs(np.zeros((3, 2)), 4, 5)


def test_selective_weights_by_hand():
  lw = jnp.log(jnp.array([0.5, 0.25, 0.25]))
  prof = jnp.array([0.0, 0.0, -0.5])
  got = jnp.exp(kd.selective_log_weights(lw, prof, 0.5))
  raw = np.array([0.5 ** 2, 0.25 ** 2, (0.25 * np.exp(-0.5)) ** 2])
  np.testing.assert_allclose(got, raw / raw.sum(), rtol=1e-12)


def test_forward_kl_covers_and_reverse_kl_seeks_a_mode():
  p = mx.make_mixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.0]], 0.03, dtype=jnp.float64)
  grid = qd.make_grid(-2.5, 2.5, 101, jnp.float64)
  log_p = qd.log_density_on_grid(p, grid)
  forward = moment_match(p)
  assert abs(float(forward.means_KxD[0, 0])) < 1e-9  # sits between the modes
  init = mx.make_mixture([1.0], [[0.3, 0.1]], 0.2, dtype=jnp.float64)
  reverse, loss = kd.distill_reverse_kl_grid(init, log_p, grid, n_steps=300, learning_rate=0.03)
  assert abs(float(reverse.means_KxD[0, 0]) - 1.0) < 0.05  # settles on the nearer mode
  assert float(loss[-1]) < 0.75 and float(loss[-1]) > np.log(2) - 0.05  # KL -> log 2 for one of two modes


@pytest.mark.parametrize("dim", [2, 3])
def test_one_component_em_step_is_the_weighted_covariance(dim):
  """The M-step's scatter (written out in 2-D, an einsum otherwise) against numpy."""
  rng = np.random.default_rng(dim)
  x = rng.normal(size=(50, dim)) @ rng.normal(size=(dim, dim))
  w = rng.uniform(0.1, 2.0, size=50)
  init = mx.Mixture(jnp.zeros(1), jnp.zeros((1, dim)), jnp.eye(dim)[None])
  fitted = fit_em(jnp.asarray(x), init, 1, weights_N=jnp.asarray(w), reg=0.0).mixture
  mean = (w[:, None] * x).sum(0) / w.sum()
  cov = ((x - mean).T * w) @ (x - mean) / w.sum()
  np.testing.assert_allclose(fitted.means_KxD[0], mean, rtol=1e-12)
  np.testing.assert_allclose(fitted.covs_KxDxD[0], cov, rtol=1e-12)
