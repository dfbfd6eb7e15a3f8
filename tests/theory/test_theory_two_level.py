"""Two-level closed forms (theory items 2-5): hand values, limits, float64, jit/vmap, bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recall_theory import errors
from recall_theory import theory as th

BETAS = np.array([1e-3, 1e-1, 1.0, 10.0, 1e3])
GAPS = np.array([-1e3, -10.0, -1.0, 0.0, 1.0, 10.0, 1e3])


# ----------------------------------------------------------------------------- hand values
def test_aligned_mass_hand_value():
  # 1e-6 e^10 / (1 - 1e-6 + 1e-6 e^10) = 0.0220264658 / 1.0220254658 = 0.021551...
  expected = 1e-6 * math.exp(10) / (1 - 1e-6 + 1e-6 * math.exp(10))
  np.testing.assert_allclose(float(th.aligned_mass(1e-6, 10.0, 1.0)), expected, rtol=1e-5)
  # pi*(A) = 0.1 e / (0.9 + 0.1 e) = 0.271828 / 1.171828 = 0.231969...
  np.testing.assert_allclose(float(th.aligned_mass(0.1, 1.0, 1.0)), 0.1 * math.e / (0.9 + 0.1 * math.e),
                             rtol=1e-6)
  # gap 0: no tilt, mass stays p
  np.testing.assert_allclose(np.asarray(th.aligned_mass(np.array([1e-3, 0.3, 0.9]), 0.0, 2.0)),
                             [1e-3, 0.3, 0.9], rtol=1e-6)
  # gap/beta = log((1-p)/p): mass exactly 1/2 (p = 0.01 -> gap = log 99 = 4.59512)
  np.testing.assert_allclose(float(th.aligned_mass(0.01, 2.0 * math.log(99.0), 2.0)), 0.5, rtol=1e-6)


def test_aligned_mass_depends_only_on_gap_over_beta():
  a = th.aligned_mass(1e-4, 3.0, 0.5)
  b = th.aligned_mass(1e-4, 600.0, 100.0)
  np.testing.assert_allclose(float(a), float(b), rtol=1e-6)


def test_aligned_logit_and_log_mass_hand():
  # logit 0.2 + 3/2 = log(0.25) + 1.5 = -1.386294 + 1.5 = 0.113706
  np.testing.assert_allclose(float(th.aligned_logit(0.2, 3.0, 2.0)), math.log(0.25) + 1.5, rtol=1e-6)
  # log pi*(A) for p = 1e-30, gap/beta = 5: log(1e-30 e^5 / (1 + 1e-30 e^5)) ~ -69.0776 + 5
  with jax.enable_x64(True):
    np.testing.assert_allclose(float(th.aligned_log_mass(1e-30, 5.0, 1.0)), math.log(1e-30) + 5.0, rtol=1e-12)
    # underflow regime: p = 1e-300, gap/beta = -100 -> mass e^-790 underflows, log does not
    np.testing.assert_allclose(float(th.aligned_log_mass(1e-300, -100.0, 1.0)), math.log(1e-300) - 100.0,
                               rtol=1e-12)


def test_log_odds_hand_and_limits():
  np.testing.assert_allclose(float(th.log_odds(0.75)), math.log(3.0), rtol=1e-6)
  assert float(th.log_odds(0.0)) == -math.inf
  assert float(th.log_odds(1.0)) == math.inf
  with jax.enable_x64(True):
    # logit(1e-300) = log(1e-300) - log1p(-1e-300) = -690.7755...
    np.testing.assert_allclose(float(th.log_odds(1e-300)), math.log(1e-300), rtol=1e-15)
  # integer input is promoted to float
  assert jnp.issubdtype(th.log_odds(0).dtype, jnp.floating)


def test_required_gap_hand_and_roundtrip():
  # beta (logit t - logit p) = 2 (log 1 - log(0.01/0.99)) = 2 log 99 = 9.19024
  np.testing.assert_allclose(float(th.required_gap(0.01, 0.5, 2.0)), 2 * math.log(99.0), rtol=1e-6)
  assert float(th.required_gap(0.0, 0.5, 1.0)) == math.inf  # trap: no finite gap
  assert float(th.required_gap(0.3, 0.3, 5.0)) == 0.0
  with jax.enable_x64(True):
    p = np.array([1e-300, 1e-100, 1e-10, 0.3])
    t = np.array([0.5, 1e-50, 0.9, 0.1])
    g = th.required_gap(p, t, 0.7)
    np.testing.assert_allclose(np.asarray(th.aligned_mass(p, g, 0.7)), t, rtol=1e-10)


def test_bernoulli_kl_hand_values():
  # kl(0.5||0.25) = 0.5 log 2 + 0.5 log(2/3) = 0.143841
  np.testing.assert_allclose(float(th.bernoulli_kl(0.5, 0.25)), 0.5 * math.log(2) + 0.5 * math.log(2 / 3),
                             rtol=1e-6)
  assert float(th.bernoulli_kl(0.3, 0.3)) == 0.0
  # kl(1 || p) = -log p ; kl(0 || p) = -log(1-p)   (0 log 0 = 0)
  np.testing.assert_allclose(float(th.bernoulli_kl(1.0, 0.2)), -math.log(0.2), rtol=1e-6)
  np.testing.assert_allclose(float(th.bernoulli_kl(0.0, 0.2)), -math.log(0.8), rtol=1e-6)
  assert float(th.bernoulli_kl(0.5, 0.0)) == math.inf
  assert float(th.bernoulli_kl(0.5, 1.0)) == math.inf
  assert float(th.bernoulli_kl(0.0, 0.0)) == 0.0


def test_bernoulli_kl_against_scipy():
  from scipy.special import rel_entr
  rng = np.random.default_rng(0)
  a, b = rng.uniform(size=50), rng.uniform(size=50)
  expected = rel_entr(a, b) + rel_entr(1 - a, 1 - b)
  with jax.enable_x64(True):
    np.testing.assert_allclose(np.asarray(th.bernoulli_kl(a, b)), expected, rtol=1e-12)


def test_aligned_kl_equals_bernoulli_kl_of_mass_and_brute_force():
  # brute force: a 4-atom reference, 2 atoms in A, reverse KL summed directly in numpy
  with jax.enable_x64(True):
    ref = np.array([0.3, 0.7, 3.0, 6.0]) * 1e-3 / 1.0
    ref[2:] = ref[2:] / ref[2:].sum() * (1 - ref[:2].sum())
    p = ref[:2].sum()
    gap, beta = 4.0, 0.8
    tilt = ref * np.exp(np.array([gap, gap, 0.0, 0.0]) / beta)
    pi = tilt / tilt.sum()
    brute = float(np.sum(pi * np.log(pi / ref)))
    np.testing.assert_allclose(float(th.aligned_kl(p, gap, beta)), brute, rtol=1e-12)
    np.testing.assert_allclose(float(th.aligned_mass(p, gap, beta)), pi[:2].sum(), rtol=1e-12)
  assert float(th.aligned_kl(0.0, 5.0, 1.0)) == 0.0  # nothing to move
  assert float(th.aligned_kl(1.0, 5.0, 1.0)) == 0.0


def test_pair_coverage_hand_values():
  # 1 - (1 - p)^2: p = 0.1 -> 0.19, p = 0.5 -> 0.75, p = 1 -> 1, p = 0 -> 0
  np.testing.assert_allclose(np.asarray(th.pair_coverage(np.array([0.0, 0.1, 0.5, 1.0]))),
                             [0.0, 0.19, 0.75, 1.0], rtol=1e-6)
  with jax.enable_x64(True):
    np.testing.assert_allclose(float(th.pair_coverage(1e-300)), 2e-300, rtol=1e-12)
    # brute-force double sum over a 3-atom reference, A = {0}
    ref = np.array([1e-8, 0.4, 0.6 - 1e-8])
    touches = np.zeros((3, 3), bool)
    touches[0, :] = touches[:, 0] = True
    brute = np.sum(np.where(touches, np.outer(ref, ref), 0.0))
    np.testing.assert_allclose(float(th.pair_coverage(ref[0])), brute, rtol=1e-12)


# --------------------------------------------------------------------------------- edges
@pytest.mark.parametrize("dtype64", [False, True])
def test_aligned_mass_exact_edges_every_gap_beta(dtype64):
  with jax.enable_x64(dtype64):
    g, b = np.meshgrid(GAPS, BETAS)
    zero = np.asarray(th.aligned_mass(0.0, g, b))
    one = np.asarray(th.aligned_mass(1.0, g, b))
  assert zero.shape == g.shape
  assert np.all(zero == 0.0), zero
  assert np.all(one == 1.0), one


def test_float64_tiny_recall_is_exact():
  with jax.enable_x64(True):
    m = th.aligned_mass(1e-300, 0.0, 1.0)
    assert m.dtype == jnp.float64
    np.testing.assert_allclose(float(m), 1e-300, rtol=1e-12)
    # p = 1e-300, gap/beta = 690: p e^690 / (1 + p e^690) with p e^690 = e^(690 - 690.7755) = 0.46046
    x = 1e-300 * math.exp(690.0)
    np.testing.assert_allclose(float(th.aligned_mass(1e-300, 690.0, 1.0)), x / (1 + x), rtol=1e-10)


def test_float64_context_manager():
  assert jnp.zeros(1).dtype == jnp.float32
  with th.float64():
    assert jnp.zeros(1).dtype == jnp.float64
    assert th.aligned_mass(1e-300, 1.0, 1.0).dtype == jnp.float64
    np.testing.assert_allclose(float(th.aligned_mass(1e-300, 0.0, 1.0)), 1e-300, rtol=1e-12)
  assert jnp.zeros(1).dtype == jnp.float32


def test_every_public_theory_function_is_tested():
  import pathlib
  text = "".join(p.read_text() for p in pathlib.Path(__file__).parent.glob("test_*.py"))
  import types
  public = [n for n in th.__all__ if not isinstance(getattr(th, n), types.ModuleType)]  # __all__ also lists submodules
  missing = [name for name in public if f"th.{name}" not in text]
  assert not missing, missing


def test_float32_default_dtype_and_tiny_recall():
  m = th.aligned_mass(1e-30, 10.0, 1.0)
  assert m.dtype == jnp.float32
  np.testing.assert_allclose(float(m), 1e-30 * math.exp(10.0), rtol=1e-5)


def test_no_nan_on_extreme_grid():
  p = np.concatenate([[0.0], np.logspace(-30, -1e-3, 40), [1.0]])
  pp, gg, bb = np.meshgrid(p, GAPS, BETAS, indexing="ij")
  m = np.asarray(th.aligned_mass(pp, gg, bb))
  k = np.asarray(th.aligned_kl(pp, gg, bb))
  assert np.all(np.isfinite(m)) and np.all((m >= 0) & (m <= 1))
  assert np.all(np.isfinite(k)) and np.all(k >= -1e-7)  # rounding only


def test_aligned_kl_never_negative():
  p = np.concatenate([[0.0], np.logspace(-30, -1e-3, 40), [1.0]])
  pp, gg, bb = np.meshgrid(p, GAPS, BETAS, indexing="ij")
  assert np.all(np.asarray(th.aligned_kl(pp, gg, bb)) >= 0)
  assert float(th.aligned_kl(5.877669e-30, 0.0, 1.0)) == 0.0


# --------------------------------------------------------------------- shapes, jit, vmap
def test_broadcasting_shapes():
  out = th.aligned_mass(np.full((3, 1), 0.1), np.ones((1, 4)), np.ones(4))
  assert out.shape == (3, 4)
  assert th.aligned_kl(np.full((2, 1, 1), 0.1), np.ones((5, 1)), np.ones(3)).shape == (2, 5, 3)
  assert th.pair_coverage(np.full((2, 3), 0.2)).shape == (2, 3)


def test_jit_and_vmap_match_batched_call():
  p = jnp.array([1e-6, 1e-3, 0.2, 0.7])
  g = jnp.array([10.0, -1.0, 2.0, 0.5])
  b = jnp.array([1.0, 0.1, 3.0, 0.2])
  batched = th.aligned_mass(p, g, b)
  np.testing.assert_allclose(np.asarray(jax.jit(th.aligned_mass)(p, g, b)), np.asarray(batched), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(jax.vmap(th.aligned_mass)(p, g, b)), np.asarray(batched), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(jax.vmap(th.aligned_kl)(p, g, b)), np.asarray(th.aligned_kl(p, g, b)),
                             rtol=1e-6)
  np.testing.assert_allclose(np.asarray(jax.vmap(th.pair_coverage)(p)), np.asarray(th.pair_coverage(p)),
                             rtol=1e-6)


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("fn", [th.aligned_mass, th.aligned_kl])
@pytest.mark.parametrize("args,name", [
    ((0.1, 1.0, 0.0), "beta"), ((0.1, 1.0, -1.0), "beta"), ((0.1, 1.0, math.inf), "beta"),
    ((-0.1, 1.0, 1.0), "recall"), ((1.5, 1.0, 1.0), "recall"), ((math.nan, 1.0, 1.0), "recall"),
    ((0.1, math.nan, 1.0), "gap"), ((0.1, math.inf, 1.0), "gap"), ((0.1, 1.0, math.nan), "beta"),
])
def test_bad_input_names_argument(fn, args, name):
  with pytest.raises(errors.InputError, match=name):
    fn(*args)


def test_mismatched_shapes_raise_input_error():
  with pytest.raises(errors.InputError, match=r"recall\[3\].*gap\[4\]"):
    th.aligned_mass(np.full(3, 0.1), np.ones(4), 1.0)


def test_required_gap_and_pair_coverage_bad_input():
  with pytest.raises(errors.InputError, match="target_mass"):
    th.required_gap(0.1, 1.5, 1.0)
  with pytest.raises(errors.InputError, match="recall"):
    th.required_gap(-0.1, 0.5, 1.0)
  with pytest.raises(errors.InputError, match="beta"):
    th.required_gap(0.1, 0.5, 0.0)
  with pytest.raises(errors.InputError, match="recall"):
    th.pair_coverage(1.01)


def test_aligned_log_mass_validates_recall():
  with pytest.raises(errors.InputError, match="recall"):
    th.aligned_log_mass(2.0, 1.0, 1.0)


def test_bernoulli_kl_validates_probabilities():
  with pytest.raises(errors.InputError):
    th.bernoulli_kl(1.5, 0.1)
