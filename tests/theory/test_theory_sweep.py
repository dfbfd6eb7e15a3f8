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
      # reverse KL pays aligned_kl (from the logit: no cancellation at mass ~ p); the others kl(mass || p)
      expected_kl = (th.aligned_kl(p[None, :], gap, beta) if name == "reverse_kl"
                     else th.bernoulli_kl(np.clip(mass, 0, 1), p[None, :]))
      np.testing.assert_allclose(kl, np.asarray(expected_kl), rtol=1e-6, atol=1e-300, err_msg=name)
  # ceilings: K = 0 -> p; K = 1e3 -> 1 wherever log(1/p) <= 1e3 (all p here)
  np.testing.assert_allclose(result["ceiling"][0], p, rtol=1e-12)
  np.testing.assert_array_equal(result["ceiling"][2], 1.0)
  # half-mass boundary: reverse-KL mass is exactly 1/2 at gap/beta = log((1-p)/p)
  with jax.enable_x64(True):
    np.testing.assert_allclose(np.asarray(th.aligned_mass(p, result["half_mass_ratio"], 1.0)), 0.5, rtol=1e-12)


def test_tidy_columns_shape_and_order(small_result):
  result = small_result
  cols = sweep.tidy_columns(result)
  assert list(cols) == list(sweep.CSV_COLUMNS)
  assert list(cols)[:8] == ["map", "regularizer", "recall", "beta", "gap", "gap_over_beta", "aligned_mass", "kl"]
  n = 2 * 5 * 7 * 9  # maps x regularizers x n_y x n_recall
  assert all(len(v) == n for v in cols.values())
  first = slice(0, 63)
  assert set(cols["map"][first]) == {"gap_over_beta"} and set(cols["regularizer"][first]) == {"reverse_kl"}
  np.testing.assert_allclose(cols["recall"][:9], result["recall"])
  np.testing.assert_array_equal(cols["reference_recall"], cols["recall"])
  np.testing.assert_allclose(cols["gap_over_beta"][:9], result["ratio"][0])
  np.testing.assert_allclose(cols["aligned_mass"][first], result["mass_gap_over_beta"][0].ravel())
  beta_rows = cols["map"] == "beta"
  np.testing.assert_allclose(cols["gap"][beta_rows], 1.0)
  np.testing.assert_allclose(cols["gap_over_beta"], cols["gap"] / cols["beta"])


def test_law_columns_exact(small_result):
  """predicted_mass = sigmoid(logit p + gap/beta) for every regularizer's cell; kl_ceiling =
  theory.kl_ceiling(p, kl): the same bisection's value, and each exact optimum's own mass."""
  result = small_result
  p = result["recall"][None, :]
  with jax.enable_x64(True):
    for map_name, gap, beta in (("gap_over_beta", result["ratio"][:, None], 1.0),
                                ("beta", 1.0, result["beta_axis"][:, None])):
      np.testing.assert_allclose(result[f"predicted_mass_{map_name}"], np.asarray(th.aligned_mass(p, gap, beta)),
                                 rtol=1e-12)
      for g in range(len(sweep.REGULARIZERS)):
        kl, mass = result[f"kl_{map_name}"][g], result[f"mass_{map_name}"][g]
        ceiling = result[f"kl_ceiling_{map_name}"][g]
        np.testing.assert_allclose(ceiling, np.asarray(th.kl_ceiling(np.broadcast_to(p, kl.shape), kl)),
                                   rtol=1e-9, atol=1e-300)
        # every optimum lies on the ceiling of its own KL: to float precision where the KL is
        # computed from the logit (reverse KL); kl(mass || p) of the others cancels at mass ~ p
        # (theory.bernoulli_kl), so there the ceiling is only as good as that KL
        if sweep.REGULARIZERS[g] == "reverse_kl":
          np.testing.assert_allclose(ceiling, mass, rtol=1e-9, atol=1e-300)
        np.testing.assert_allclose(ceiling, mass, rtol=1e-6, atol=1e-12)


def test_small_kl_at_tiny_recall_keeps_its_digits():
  """kl(t || p) ~ p s^2 / 2 is a normal float at p = 1e-300, s = 0.01 although (t - p)^2 is not:
  aligned_kl and bernoulli_kl match mpmath, and the sweep's Newton ceiling (same lifted kernel)
  matches theory.kl_ceiling and the optimum's own mass p e^s / (1 - p + p e^s)."""
  with jax.enable_x64(True):
    p = np.array([1e-300, 2.9e-263, 1e-200, 1e-150])
    mass = p * np.exp(0.01)
    kl = np.asarray(th.aligned_kl(p, 0.01, 1.0))
    np.testing.assert_allclose(kl[0], 5.033458667362303662e-305, rtol=1e-13)  # mpmath, 60 digits
    np.testing.assert_allclose(float(th.bernoulli_kl(1.01e-300, 1e-300)), 4.9834161699763001621e-305, rtol=1e-12)  # mpmath, of the two floats
    np.testing.assert_allclose(kl, p * (0.01 * math.exp(0.01) - math.expm1(0.01)), rtol=1e-10)  # + O(p^2)
    ceiling, converged = (np.asarray(v) for v in sweep.kl_ceiling_from(p, kl, mass))
    assert converged.all()
    np.testing.assert_allclose(ceiling, np.asarray(th.kl_ceiling(p, kl)), rtol=1e-14, atol=0)
    np.testing.assert_allclose(ceiling, mass, rtol=1e-13, atol=0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_newton_ceiling_matches_bisection_from_any_start(dtype):
  """kl_ceiling_from converges to theory.kl_ceiling from good and bad starts, incl. the ends
  (K = 0 -> p, K >= -log p -> 1); cells it reports as converged agree to float precision."""
  rng = np.random.default_rng(0)
  tiny = 1e-30 if dtype == "float32" else 1e-300
  p = np.exp(rng.uniform(np.log(tiny), np.log(0.9), 400)).astype(dtype)
  k = np.exp(rng.uniform(-30, 5, 400)).astype(dtype)
  k[:5] = 0.0
  k[5:10] = -np.log(p[5:10]) * 1.5
  with jax.enable_x64(dtype == "float64"):
    reference = np.asarray(th.kl_ceiling(p, k))
    for start in (reference, p, np.full_like(p, 0.5)):
      ceiling, converged = (np.asarray(v) for v in sweep.kl_ceiling_from(p, k, start))
      # float32: kl itself carries ~1e-7 relative noise, and t moves by dK / (logit t - logit p),
      # large where t is near p: both solvers land anywhere in that band (seen: 1.5e-4)
      tol = 1e-3 if dtype == "float32" else 1e-9
      np.testing.assert_allclose(ceiling[converged], reference[converged], rtol=tol)
    ceiling, converged = (np.asarray(v) for v in sweep.kl_ceiling_from(p, k, reference))
  assert converged.mean() > 0.95  # started at the answer: essentially every cell converges
  np.testing.assert_array_equal(ceiling[:5], p[:5])
  np.testing.assert_array_equal(ceiling[5:10], 1.0)


def _assert_same(actual, expected, key):
  """Equal to a few ulp: XLA may vectorise blocks of another shape differently."""
  actual, expected = np.asarray(actual), np.asarray(expected)
  if expected.dtype.kind == "f":
    np.testing.assert_allclose(actual, expected, rtol=1e-13, atol=0, err_msg=key)
  else:
    np.testing.assert_array_equal(actual, expected, err_msg=key)


@pytest.mark.parametrize("chunk_cells", [9, 20, 1 << 20])
def test_blocks_of_any_size_give_the_same_grid(small_result, chunk_cells):
  """Blocks of 1 row, of several rows with a padded last block, or the whole map: same numbers."""
  config = dataclasses.replace(SMALL, chunk_cells=chunk_cells)
  assert config.rows_per_chunk == min(7, max(1, chunk_cells // 9))
  result = sweep.compute_sweep(config)
  for key, value in small_result.items():
    _assert_same(result[key], value, key)


def test_stream_sweep_writes_the_arrays_of_compute_sweep(tmp_path, small_result):
  config = dataclasses.replace(SMALL, chunk_cells=20)  # 2 rows per block: 4 blocks per map, last padded
  with sweep.stream_sweep(config, tmp_path) as files:
    assert files.bisection_fallbacks >= 0 and files.above_ceiling == 0
    for key, value in small_result.items():
      _assert_same(files.result[key], value, key)
    assert [p.name for p in files.paths] == ["recall_sweep.csv", "recall_sweep.npz", "recall_ceiling.csv"]
  assert sorted(p.name for p in tmp_path.iterdir()) == ["recall_ceiling.csv", "recall_sweep.csv",
                                                         "recall_sweep.npz"]  # scratch arrays removed
  with np.load(tmp_path / "recall_sweep.npz") as data:  # np.savez's layout, readable by np.load
    assert set(data.files) == set(small_result)
    for key in data.files:
      _assert_same(data[key], small_result[key], key)
  lines = (tmp_path / "recall_sweep.csv").read_text().splitlines()
  assert lines[0] == ",".join(sweep.CSV_COLUMNS) and len(lines) == 1 + 2 * 5 * 7 * 9
  # recall 1e-300 needs 3-digit exponents in the recall and cell fields; beta/gap keep 2 digits.
  # kl(t || 1e-300) at gap/beta = 0.01 is 5.0334586673623e-305 (mpmath, 60 digits: 5.03345866736...e-305);
  # the direct two-log form cancels to 5.0334586650e-305 (relative 5e-10), and a series with d^2
  # underflowed to 0
  assert lines[1] == ("gap_over_beta,reverse_kl,1.00000000e-300,1.00000000e+00,1.00000000e-02,1.00000000e-02,"
                      "1.01005017e-300,5.03345867e-305,1.00000000e-300,1.01005017e-300,1.01005017e-300")


def test_subsample_keeps_ends_and_shapes(small_result):
  coarse = sweep.subsample(small_result, 4)
  assert coarse["recall"].size == 4 and coarse["ratio"].size == 4
  np.testing.assert_array_equal(coarse["recall"][[0, -1]], small_result["recall"][[0, -1]])
  np.testing.assert_array_equal(coarse["mass_beta"],
                                small_result["mass_beta"][:, coarse["y_index"]][:, :, coarse["recall_index"]])
  assert coarse["ceiling"].shape == (3, 4) and coarse["predicted_mass_beta"].shape == (4, 4)
  assert sweep.subsample(small_result, 100)["recall"].size == 9  # never more points than the grid


def test_aligned_mass_by_regularizer_unknown_name():
  with pytest.raises(errors.InputError, match="unknown regularizer 'foo'"):
    sweep.aligned_mass_by_regularizer("foo", 0.1, 1.0, 1.0)


@pytest.mark.parametrize("change,match", [
    (dict(recall_min=0.0), "--recall-min"), (dict(recall_min=2.0), "--recall-min"),
    (dict(recall_min=1e-3, recall_max=1e-4), "--recall-min/--recall-max"),
    (dict(recall_max=1.5), "--recall-max"), (dict(recall_min=math.nan), "--recall-min"),
    (dict(ratio_min=0.0), "--ratio-min"), (dict(ratio_min=10.0, ratio_max=1.0), "--ratio-min"),
    (dict(beta_min=-1.0), "--beta-min"), (dict(beta_max=math.inf), "--beta-min/--beta-max"),
    (dict(n_recall=1), "--resolution"), (dict(n_y=10_001), "--resolution"),
    (dict(recall_min=1e-320), "smallest normal float64"),
    (dict(dtype="float32", recall_min=1e-39), "smallest normal float32"), (dict(budgets=()), "--budgets"),
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
