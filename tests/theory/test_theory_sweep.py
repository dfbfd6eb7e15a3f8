"""The recall sweep module: config validation, exact values per regularizer, no NaN on the defaults."""

import dataclasses
import math

import jax
import numpy as np
import pytest

from recall_theory import errors
from recall_theory import sweep
from recall_theory import theory as th

SMALL = sweep.SweepConfig(recall_min=1e-300, recall_max=0.5, n_recall=9, n_y=7, ratio_min=1e-2,
                          ratio_max=1e3, beta_min=1e-3, beta_max=1e3, budgets=(0.0, 1.0, 1e3))


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


@pytest.fixture(scope="module")
def small_result():
  return sweep.compute_sweep(SMALL)


@pytest.fixture(scope="module", params=["float32", "float64"])
def default_sweep(request):
  return request.param, sweep.compute_sweep(sweep.SweepConfig(dtype=request.param))


def test_default_grids_have_no_nan_or_inf(default_sweep):
  dtype, result = default_sweep
  config = sweep.SweepConfig()
  assert result["mass_gap_over_beta"].shape == (5, config.n_y, config.n_recall)
  assert result["mass_gap_over_beta"].dtype == np.dtype(dtype)
  for key, value in result.items():
    if value.dtype.kind == "f":
      assert np.all(np.isfinite(value)), (dtype, key, np.argwhere(~np.isfinite(value))[:3])
  for key in ("mass_gap_over_beta", "mass_beta", "ceiling", "ceiling_loose"):
    assert np.all((result[key] >= 0) & (result[key] <= 1)), (dtype, key)
  for key in ("kl_gap_over_beta", "kl_beta"):
    assert np.all(result[key] >= -1e-6), (dtype, key)


def test_default_reverse_kl_mass_matches_numpy_formula(default_sweep):
  dtype, result = default_sweep
  # pi*(A) = 1 / (1 + (1-p)/p e^{-gap/beta}) evaluated in numpy float64
  p, ratio = result["recall"].astype(np.float64), result["ratio"].astype(np.float64)
  expected = 1.0 / (1.0 + (1 - p[None, :]) / p[None, :] * np.exp(-ratio[:, None]))
  rtol = 1e-4 if dtype == "float32" else 1e-10
  np.testing.assert_allclose(result["mass_gap_over_beta"][0], expected, rtol=rtol)


def test_small_sweep_values_per_regularizer_float64(small_result):
  result = small_result
  p, ratio, beta_axis = result["recall"], result["ratio"], result["beta_axis"]
  np.testing.assert_allclose(p[[0, -1]], [1e-300, 0.5], rtol=1e-12)
  regs = list(result["regularizers"])
  assert regs == list(sweep.REGULARIZERS)
  # both maps stacked into one [2Y, R] evaluation per regularizer (one compilation each)
  gap = np.concatenate([ratio * 1.0, np.ones_like(beta_axis)])[:, None]
  beta = np.concatenate([np.ones_like(ratio), beta_axis])[:, None]
  with jax.enable_x64(True):
    for g, name in enumerate(regs):
      mass = np.concatenate([result["mass_gap_over_beta"][g], result["mass_beta"][g]])
      kl = np.concatenate([result["kl_gap_over_beta"][g], result["kl_beta"][g]])
      if name == "reverse_kl":
        expected = th.aligned_mass(p[None, :], gap, beta)
      elif name == "forward_kl":
        expected = th.forward_kl_aligned_mass(p[None, :], gap, beta)
      elif name == "chi2_kl":
        expected = th.chi2_kl_aligned_mass(p[None, :], gap, beta)
      elif name == "ipo":
        expected = th.ipo_aligned_mass(p[None, :], gap, beta)
      else:  # N = e^{gap/beta}: 1 - (1 - p)^N, by numpy in log space (N capped in the module)
        log_n = np.minimum(gap / beta, 0.99 * math.log(np.finfo(np.float64).max))
        expected = -np.expm1(np.exp(log_n) * np.log1p(-p[None, :]))
      np.testing.assert_allclose(mass, np.asarray(expected), rtol=1e-9, err_msg=name)
      np.testing.assert_allclose(kl, np.asarray(th.bernoulli_kl(np.clip(mass, 0, 1), p[None, :])),
                                 rtol=1e-6, atol=1e-300, err_msg=name)
  # ceilings: K = 0 -> p; K = 1e3 -> 1 wherever log(1/p) <= 1e3 (all p here)
  np.testing.assert_allclose(result["ceiling"][0], p, rtol=1e-12)
  np.testing.assert_array_equal(result["ceiling"][2], 1.0)
  # half-mass boundary: reverse-KL mass is exactly 1/2 at gap/beta = log((1-p)/p)
  with jax.enable_x64(True):
    np.testing.assert_allclose(np.asarray(th.aligned_mass(p, result["half_mass_ratio"], 1.0)), 0.5, rtol=1e-12)


def test_tidy_columns_shape_and_order(small_result):
  result = small_result
  cols = sweep.tidy_columns(result)
  assert list(cols) == ["map", "regularizer", "recall", "beta", "gap", "gap_over_beta", "aligned_mass", "kl"]
  n = 2 * 5 * 7 * 9  # maps x regularizers x n_y x n_recall
  assert all(len(v) == n for v in cols.values())
  first = slice(0, 63)
  assert set(cols["map"][first]) == {"gap_over_beta"} and set(cols["regularizer"][first]) == {"reverse_kl"}
  np.testing.assert_allclose(cols["recall"][:9], result["recall"])
  np.testing.assert_allclose(cols["gap_over_beta"][:9], result["ratio"][0])
  np.testing.assert_allclose(cols["aligned_mass"][first], result["mass_gap_over_beta"][0].ravel())
  beta_rows = cols["map"] == "beta"
  np.testing.assert_allclose(cols["gap"][beta_rows], 1.0)
  np.testing.assert_allclose(cols["gap_over_beta"], cols["gap"] / cols["beta"])


def test_aligned_mass_by_regularizer_unknown_name():
  with pytest.raises(errors.InputError, match="unknown regularizer 'foo'"):
    sweep.aligned_mass_by_regularizer("foo", 0.1, 1.0, 1.0)


@pytest.mark.parametrize("change,match", [
    (dict(recall_min=0.0), "--recall-min"), (dict(recall_min=2.0), "--recall-min"),
    (dict(recall_min=1e-3, recall_max=1e-4), "--recall-min/--recall-max"),
    (dict(recall_max=1.5), "--recall-max"), (dict(recall_min=math.nan), "--recall-min"),
    (dict(ratio_min=0.0), "--ratio-min"), (dict(ratio_min=10.0, ratio_max=1.0), "--ratio-min"),
    (dict(beta_min=-1.0), "--beta-min"), (dict(beta_max=math.inf), "--beta-min/--beta-max"),
    (dict(n_recall=1), "--resolution"), (dict(n_y=5000), "--resolution"),
    (dict(fixed_beta=0.0), "--beta"), (dict(fixed_gap=-1.0), "--gap"), (dict(fixed_gap=math.inf), "--gap"),
    (dict(budgets=(1.0, -0.5)), "--budgets"), (dict(regularizers=("foo",)), "--regularizers"),
    (dict(regularizers=()), "--regularizers"), (dict(dtype="float16"), "--dtype"),
    (dict(dtype="float32", recall_min=1e-40), "--recall-min"),
])
def test_config_validation(change, match):
  with pytest.raises(errors.InputError, match=match):
    dataclasses.replace(sweep.SweepConfig(), **change).validate()


def test_default_config_is_valid():
  config = sweep.SweepConfig()
  assert config.validate() is config
