"""Other regularizers (theory items 8-9) against scipy root finding, Lambert W and enumeration."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.special import lambertw
from scipy.special import logsumexp as sp_logsumexp

from recall_theory import errors
from recall_theory import theory as th

# issue 21: this module printed 5 divide-by-zero warnings (its own np.log of zero masses);
# any RuntimeWarning here is now a failure, so they cannot come back unnoticed
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

REF = np.array([0.05, 0.15, 0.3, 0.5])
REWARD = np.array([2.0, 1.0, -0.5, 0.0])


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


# ---------------------------------------------------------------------------- forward KL
def _forward_kl_brentq(ref, reward, beta):
  # pi = beta ref / (lambda - r), lambda > max r, sum pi = 1; solved for u = lambda - max r > 0
  # (so that the root is not lost to cancellation when lambda is close to max r)
  gaps = reward.max() - reward
  u = brentq(lambda u: np.sum(beta * ref / (u + gaps)) - 1.0, beta * ref[reward.argmax()] * 0.5, beta + 1.0,
             xtol=1e-300, rtol=1e-15)
  return beta * ref / (u + gaps)


@pytest.mark.parametrize("beta", [0.05, 0.5, 3.0])
def test_forward_kl_optimum_vs_brentq(beta):
  with jax.enable_x64(True):
    pi = np.exp(np.asarray(th.forward_kl_optimum(np.log(REF), REWARD, beta)))
  np.testing.assert_allclose(pi, _forward_kl_brentq(REF, REWARD, beta), rtol=1e-9)


def test_forward_kl_optimum_hand_two_outputs():
  # ref = [1/2, 1/2], r = [0, 1], beta = 1: 0.5/(l-1) + 0.5/l = 1 -> l^2 - 2l + 1/2 = 0,
  # l = 1 + sqrt(1/2) -> pi(1) = 0.5 / sqrt(1/2) = 1/sqrt(2) = 0.7071068
  pi = np.exp(np.asarray(th.forward_kl_optimum(np.log([0.5, 0.5]), np.array([0.0, 1.0]), 1.0)))
  np.testing.assert_allclose(pi, [1 - 2 ** -0.5, 2 ** -0.5], rtol=1e-5)
  np.testing.assert_allclose(float(th.forward_kl_aligned_mass(0.5, 1.0, 1.0)), 2 ** -0.5, rtol=1e-6)


def test_forward_kl_optimum_support_batch_vmap():
  log_ref = np.log(np.array([[1.0, 0.4, 0.6], [0.2, 0.3, 0.5]]))
  log_ref[0, 0] = -np.inf
  reward = np.array([[5.0, 0.0, 1.0], [1.0, 0.0, 2.0]])
  beta = np.array([0.5, 2.0])
  out = th.forward_kl_optimum(log_ref, reward, beta)
  assert out.shape == (2, 3)
  # output 0 is outside the support but its reward 5 beats lambda_0: lambda = 5, so
  # pi = [1 - 0.04 - 0.075, 0.5*0.4/5, 0.5*0.6/4] (theory item 8; it used to be 0)
  np.testing.assert_allclose(np.exp(np.asarray(out[0])), [0.885, 0.04, 0.075], rtol=1e-5)
  np.testing.assert_allclose(np.asarray(jnp.exp(out).sum(-1)), 1.0, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(jax.vmap(th.forward_kl_optimum)(log_ref, reward, beta)),
                             np.asarray(out), rtol=1e-5)


def _forward_two_level_brentq(p, gap, beta):
  # beta p / (l - gap) + beta (1 - p) / l = 1 with l > gap >= 0; solved for u = l - gap
  u = brentq(lambda u: beta * p / u + beta * (1 - p) / (u + gap) - 1.0, beta * p * 0.5, beta + 1.0,
             xtol=1e-300, rtol=1e-15)
  return beta * p / u


@pytest.mark.parametrize("p,gap,beta", [(0.5, 1.0, 1.0), (1e-3, 0.5, 1.0), (1e-3, 5.0, 1.0),
                                        (0.2, 30.0, 2.0), (1e-8, 2.0, 1.0), (0.9, 0.1, 3.0)])
def test_forward_kl_aligned_mass_vs_brentq(p, gap, beta):
  with jax.enable_x64(True):
    np.testing.assert_allclose(float(th.forward_kl_aligned_mass(p, gap, beta)),
                               _forward_two_level_brentq(p, gap, beta), rtol=1e-9)


def test_forward_kl_aligned_mass_limits():
  with jax.enable_x64(True):
    s = np.array([1.5, 2.0, 4.0, 100.0])
    # p = 0: KL(pi_ref || pi) does not charge for mass outside the support: t = 1 - 1/s
    np.testing.assert_allclose(np.asarray(th.forward_kl_aligned_mass(0.0, s, 1.0)), 1 - 1 / s, rtol=1e-14)
    # p -> 0+ with s > 1: 1 - 1/s (mass covering: the rare set is not trapped)
    np.testing.assert_allclose(np.asarray(th.forward_kl_aligned_mass(1e-200, s, 1.0)), 1 - 1 / s, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(th.forward_kl_aligned_mass(1e-200, 2.0 * s, 2.0)), 1 - 1 / s,
                               rtol=1e-12)
    # s <= 1: mass ~ p / (1 - s) -> 0
    np.testing.assert_allclose(float(th.forward_kl_aligned_mass(1e-200, 0.5, 1.0)), 2e-200, rtol=1e-10)
    assert float(th.forward_kl_aligned_mass(1.0, 3.0, 1.0)) == 1.0
    np.testing.assert_allclose(float(th.forward_kl_aligned_mass(0.3, 0.0, 1.0)), 0.3, rtol=1e-12)
  # float32 as well
  np.testing.assert_allclose(float(th.forward_kl_aligned_mass(1e-30, 4.0, 1.0)), 0.75, rtol=1e-6)


@pytest.mark.parametrize("s,expected", [(1.5, 1 / 3), (3.0, 2 / 3), (10.0, 0.9), (1.0, 0.0), (0.5, 0.0)])
def test_forward_kl_aligned_mass_at_zero_recall(s, expected):
  # theory item 8: at p = 0 the optimum is t = max(0, 1 - 1/s) (it used to return 0 for every s)
  with jax.enable_x64(True):
    assert float(th.forward_kl_aligned_mass(0.0, s, 1.0)) == pytest.approx(expected, abs=1e-15)
    assert float(th.forward_kl_aligned_mass(0.0, 2.0 * s, 2.0)) == pytest.approx(expected, abs=1e-15)
    # continuous at p -> 0: the root of s t^2 - (s-1) t - p = 0 approaches the same value
    near = np.asarray(th.forward_kl_aligned_mass(np.array([1e-300, 1e-20, 1e-16]), s, 1.0))
    np.testing.assert_allclose(near, expected, atol=1e-7)
  assert float(th.forward_kl_aligned_mass(0.0, s, 1.0)) == pytest.approx(expected, abs=1e-6)  # float32


def test_forward_kl_aligned_mass_overflowing_gap_and_escape_threshold():
  with jax.enable_x64(True):
    # gap/beta = inf: all mass moves to A (was NaN), at p = 0, 1e-300 and 0.5
    np.testing.assert_array_equal(np.asarray(th.forward_kl_aligned_mass(np.array([0.0, 1e-300, 0.5]), 1e300, 1e-10)),
                                  1.0)
    # escape t >= 1/2 iff s + 4p >= 2, for every s > 0 (s <= 1 included; always for s >= 2):
    # the quadratic s t^2 - (s-1) t - p is (2 - s - 4p)/4 at t = 1/2
    for s in (0.1, 0.5, 1.0, 1.2, 1.5, 1.9):
      edge = (2 - s) / 4
      assert float(th.forward_kl_aligned_mass(edge, s, 1.0)) == pytest.approx(0.5, abs=1e-12)
      assert float(th.forward_kl_aligned_mass(edge * 0.99, s, 1.0)) < 0.5 < float(
          th.forward_kl_aligned_mass(min(1.0, edge * 1.01), s, 1.0))
    assert float(th.forward_kl_aligned_mass(0.0, 2.0, 1.0)) == 0.5


@pytest.mark.parametrize("s,p,root", [
    # s t^2 - (s-1) t - p = 0 solved by hand: s = 0.5 -> t^2 + t - 2p = 0; s = 1 -> t^2 = p
    (0.5, 0.45, (np.sqrt(4.6) - 1) / 2),   # 0.5724...
    (1.0, 0.3, np.sqrt(0.3)),              # 0.5477...
    (0.5, 0.3, (np.sqrt(3.4) - 1) / 2),    # s + 4p = 1.7 < 2: trapped (0.4220...)
])
def test_forward_kl_escape_rule_below_s_one(s, p, root):
  # the old rule ("only for s >= 2, or 1 < s < 2 with p >= (2-s)/4") called the first two trapped
  with jax.enable_x64(True):
    t = float(th.forward_kl_aligned_mass(p, s, 1.0))
    assert t == pytest.approx(root, rel=1e-13)
    assert (t >= 0.5) == (s + 4 * p >= 2)
    if s < 1:   # the docstring's bracket p <= t <= p/(1-s); t is far from p/(1-s) here
      assert p <= t <= p / (1 - s)



def test_verify_escape_check_catches_the_old_rule():
  # the verify check "forward_kl_escape_rule" must fail on the rule the docs used to state
  from recall_theory import verify
  old_rule = lambda s, p: (s >= 2.0) | ((s > 1.0) & (s + 4.0 * p >= 2.0))
  with jax.enable_x64(True):
    _, err_old = verify.forward_kl_escape_errors(rule=old_rule)
    _, err_new = verify.forward_kl_escape_errors()
  tolerance = verify.CHECKS["forward_kl_escape_rule"].tolerance
  # the old rule calls every escaping cell with s <= 1 trapped. Grid s = k/100, p = j/400: off the
  # boundary (k + j = 200 is left out) that is j = 201 - k .. 399 for k = 1..100, plus the 100
  # cells p = (2 - s)/4 (1 + 1e-9) just above it
  expected = sum(399 - (201 - k) + 1 for k in range(1, 101)) + 100
  assert float(err_old) == expected > tolerance
  assert float(err_new) <= tolerance


def _forward_kl_brute_force(ref, reward, beta):
  """Maximise E_pi[r] - beta KL(ref || pi) over the simplex directly (SLSQP on pi itself,
  so outputs outside the reference's support can reach exactly 0)."""
  from scipy.optimize import minimize
  support = ref > 0

  def negative(pi):
    kl = np.sum(ref[support] * (np.log(ref[support]) - np.log(np.maximum(pi[support], 1e-300))))
    return -(pi @ reward - beta * kl)

  start = np.where(support, ref, 0.0) * 0.5 + 0.5 / len(ref)
  best = minimize(negative, start, method="SLSQP", bounds=[(1e-12 if s else 0.0, 1.0) for s in support],
                  constraints=[{"type": "eq", "fun": lambda pi: pi.sum() - 1.0}],
                  options={"ftol": 1e-15, "maxiter": 1000})
  return best.x / best.x.sum()


def _log_ref(ref):
  """log of a reference with zeros: -inf marks outputs outside its support (the input these
  optima take), so numpy's divide-by-zero warning is expected and silenced here only."""
  with np.errstate(divide="ignore"):
    return np.log(np.asarray(ref, dtype=np.float64))


@pytest.mark.parametrize("ref,reward,beta", [
    ([0.5, 0.5, 0.0], [0.0, 0.0, 3.0], 1.0),           # hand: pi = [1/6, 1/6, 2/3]
    ([0.3, 0.0, 0.7, 0.0], [1.0, 4.0, 0.0, 2.5], 0.5),  # leftover on the best unsupported output
    ([0.2, 0.0, 0.8], [1.0, 0.5, 0.0], 1.0),            # r_u below lambda_0: support keeps all
    ([0.6, 0.4, 0.0, 0.0], [0.0, 1.0, 5.0, 5.0], 2.0),  # two tied best unsupported outputs
])
def test_forward_kl_optimum_outside_support_vs_brute_force(ref, reward, beta):
  ref, reward = np.array(ref), np.array(reward)
  with jax.enable_x64(True):
    pi = np.exp(np.asarray(th.forward_kl_optimum(_log_ref(ref), reward, beta)))
  np.testing.assert_allclose(pi.sum(), 1.0, rtol=1e-12)
  brute = _forward_kl_brute_force(ref, reward, beta)
  np.testing.assert_allclose(pi, brute, atol=2e-5)
  # objective at the closed form is at least the brute-force optimum's
  kl = lambda q: np.sum(ref[ref > 0] * np.log(ref[ref > 0] / q[ref > 0]))
  assert pi @ reward - beta * kl(pi) >= brute @ reward - beta * kl(brute) - 1e-9
  if ref[2] == 0.0 and len(ref) == 3 and reward[2] == 3.0:
    np.testing.assert_allclose(pi, [1 / 6, 1 / 6, 2 / 3], rtol=1e-12)


def test_forward_kl_optimum_two_level_zero_recall_matches_closed_form():
  with jax.enable_x64(True):
    for s in (0.5, 1.5, 3.0, 10.0):
      ref = np.array([0.0, 0.0, 0.25, 0.75])
      pi = np.exp(np.asarray(th.forward_kl_optimum(_log_ref(ref), np.array([s, s, 0.0, 0.0]), 1.0)))
      np.testing.assert_allclose(pi[:2].sum(), float(th.forward_kl_aligned_mass(0.0, s, 1.0)), atol=1e-14)
      np.testing.assert_allclose(pi[0], pi[1], rtol=1e-14)


def test_forward_kl_aligned_mass_bad_input():
  with pytest.raises(errors.InputError, match="gap"):
    th.forward_kl_aligned_mass(0.1, -1.0, 1.0)
  with pytest.raises(errors.InputError, match="beta"):
    th.forward_kl_aligned_mass(0.1, 1.0, 0.0)
  with pytest.raises(errors.InputError, match="recall"):
    th.forward_kl_aligned_mass(1.5, 1.0, 1.0)


def test_forward_kl_aligned_mass_mismatched_shapes():
  with pytest.raises(errors.InputError, match="gap"):
    th.forward_kl_aligned_mass(np.full(3, 0.1), np.ones(4), 1.0)


# ------------------------------------------------------------------------- Lambert W
def test_log_lambert_w_exp_vs_scipy():
  z = np.concatenate([np.linspace(-700, -31, 7), np.linspace(-30, 30, 61), [100.0, 500.0, 700.0]])
  with jax.enable_x64(True):
    w = np.asarray(th.log_lambert_w_exp(z))
  expected = np.log(lambertw(np.exp(z)).real)
  np.testing.assert_allclose(w, expected, rtol=1e-13, atol=1e-13)
  # hand: W(1) = Omega = 0.5671432904, so log W(e^0) = log Omega = -Omega
  np.testing.assert_allclose(w[np.argmin(np.abs(z))], -0.5671432904097838, rtol=1e-12)


def test_log_lambert_w_exp_huge_argument_residual():
  # e^z overflows for z = 1e6: check the defining equation e^w + w = z instead (w ~ z - log z)
  with jax.enable_x64(True):
    z = np.array([1e3, 1e5, 1e6])
    w = np.asarray(th.log_lambert_w_exp(z))
  np.testing.assert_allclose(np.exp(w) + w, z, rtol=1e-14)
  # float32 default: finite and close
  w32 = np.asarray(th.log_lambert_w_exp(jnp.array([-700.0, 0.0, 10.0, 1e6], jnp.float32)))
  assert np.all(np.isfinite(w32))
  np.testing.assert_allclose(w32[:3], np.log(lambertw(np.exp([-700.0, 0.0, 10.0])).real), rtol=2e-6)


# ------------------------------------------------------------------------- chi^2 + KL
def _chi2_brentq(ref, reward, beta):
  u_of = lambda lam: lambertw(np.exp((reward - lam) / beta)).real  # u + log u = (r - lam)/beta
  lam = brentq(lambda lam: np.sum(ref * u_of(lam)) - 1.0, reward.min() - beta - 1.0, reward.max() + 1.0,
               xtol=1e-14, rtol=1e-15)
  return ref * u_of(lam)


@pytest.mark.parametrize("beta", [0.2, 1.0, 5.0])
def test_chi2_kl_optimum_vs_scipy(beta):
  with jax.enable_x64(True):
    pi = np.exp(np.asarray(th.chi2_kl_optimum(np.log(REF), REWARD, beta)))
  np.testing.assert_allclose(pi, _chi2_brentq(REF, REWARD, beta), rtol=1e-9)


def _chi2_two_level_brentq(p, gap, beta):
  s = gap / beta
  w = lambda x: lambertw(np.exp(x)).real
  ell = brentq(lambda l: p * w(s - l) + (1 - p) * w(-l) - 1.0, min(0, s) - 2.0, max(0, s) + 2.0,
               xtol=1e-15, rtol=1e-15)
  return p * w(s - ell)


@pytest.mark.parametrize("p,gap,beta", [(0.3, 1.0, 1.0), (1e-3, 5.0, 1.0), (1e-6, 20.0, 2.0),
                                        (0.5, -2.0, 1.0), (1e-10, 100.0, 1.0)])
def test_chi2_kl_aligned_mass_vs_scipy(p, gap, beta):
  with jax.enable_x64(True):
    np.testing.assert_allclose(float(th.chi2_kl_aligned_mass(p, gap, beta)), _chi2_two_level_brentq(p, gap, beta),
                               rtol=1e-9)


def test_chi2_kl_aligned_mass_edges_and_below_kl():
  with jax.enable_x64(True):
    gaps = np.array([-10.0, 0.0, 1.0, 50.0])
    assert np.all(np.asarray(th.chi2_kl_aligned_mass(0.0, gaps, 1.0)) == 0.0)
    np.testing.assert_allclose(np.asarray(th.chi2_kl_aligned_mass(1.0, gaps, 1.0)), 1.0, rtol=1e-12)
    np.testing.assert_allclose(float(th.chi2_kl_aligned_mass(0.3, 0.0, 1.0)), 0.3, rtol=1e-12)
    # the chi^2 term only adds a penalty: the rare set is lifted less than under KL alone
    p = np.logspace(-12, -1, 12)
    assert np.all(np.asarray(th.chi2_kl_aligned_mass(p, 5.0, 1.0)) < np.asarray(th.aligned_mass(p, 5.0, 1.0)))
  with pytest.raises(errors.InputError, match="beta"):
    th.chi2_kl_aligned_mass(0.1, 1.0, -1.0)
  with pytest.raises(errors.InputError, match="gap"):
    th.chi2_kl_aligned_mass(0.1, math.nan, 1.0)
  with pytest.raises(errors.InputError, match=r"recall\[3\]"):
    th.chi2_kl_aligned_mass(np.full(3, 0.1), np.ones(4), 1.0)


def test_chi2_kl_odds_lift_below_e_s_and_tends_to_lambert_w():
  # theory item 8 (issue 8 defect 2): log lift = s - (u_A - u_Ac) < s, and -> W(e^{s+1}) as p -> 0.
  # The lift is NOT bounded by IPO's e^{1/(2 tau)}: at s = 10 it is 8.82 > e^{1/2} (tau = beta = 1).
  s = np.array([0.1, 1.0, 3.0, 10.0, 30.0])
  p = np.array([1e-300, 1e-100, 1e-12, 1e-4, 0.1, 0.5])
  with jax.enable_x64(True):
    t = np.asarray(th.chi2_kl_aligned_mass(p[:, None], s[None, :], 1.0))
  log_lift = np.log(t) - np.log1p(-t) - (np.log(p) - np.log1p(-p))[:, None]
  assert np.all(log_lift < s[None, :])
  assert np.all(log_lift > 0)
  np.testing.assert_allclose(np.exp(log_lift[0]), lambertw(np.exp(s + 1)).real, rtol=1e-10)
  np.testing.assert_allclose(np.exp(log_lift[0, 3]), 8.822674899385971, rtol=1e-10)  # W(e^11)
  assert np.exp(log_lift[0, 3]) > math.exp(0.5)
  # the lift grows with p from its p -> 0 limit (which is therefore its infimum)
  assert np.all(np.diff(log_lift, axis=0) >= -1e-12)


# -------------------------------------------------------------------------------- IPO
def test_preference_vs_reference_hand():
  # ref = [1/2, 1/2], r = [0, g]: P(y0 > ref) = 0.5 sigma(0) + 0.5 sigma(-g); P(y1 > ref) = 0.5 sigma(g) + 0.25
  g = 2.0
  pref = np.asarray(th.preference_vs_reference(np.log([0.5, 0.5]), np.array([0.0, g])))
  np.testing.assert_allclose(pref, [0.25 + 0.5 * _sigmoid(-g), 0.25 + 0.5 * _sigmoid(g)], rtol=1e-6)


def test_ipo_optimum_vs_numpy_tilt():
  tau = 0.7
  pref = np.array([np.sum(REF * _sigmoid(r - REWARD)) for r in REWARD])
  logits = np.log(REF) + pref / tau
  with jax.enable_x64(True):
    out = np.asarray(th.ipo_optimum(np.log(REF), REWARD, tau))
  np.testing.assert_allclose(out, logits - sp_logsumexp(logits), rtol=1e-12)
  with pytest.raises(errors.InputError, match="tau"):
    th.ipo_optimum(np.log(REF), REWARD, 0.0)


def test_ipo_aligned_mass_hand_and_bound():
  # sigmoid(logit p + (sigmoid(gap) - 1/2)/tau): p = 1/2, gap = 50, tau = 1 -> sigmoid(1/2) = 0.6224593
  np.testing.assert_allclose(float(th.ipo_aligned_mass(0.5, 50.0, 1.0)), _sigmoid(0.5), rtol=1e-6)
  # two-level general route: ipo_optimum on a 2+3-atom reference gives the same target mass
  with jax.enable_x64(True):
    p, gap, tau = 1e-4, 3.0, 0.4
    ref = np.array([p / 2, p / 2, (1 - p) / 3, (1 - p) / 3, (1 - p) / 3])
    reward = np.array([gap, gap, 0.0, 0.0, 0.0])
    general = np.exp(np.asarray(th.ipo_optimum(_log_ref(ref), reward, tau)))[:2].sum()
    np.testing.assert_allclose(float(th.ipo_aligned_mass(p, gap, tau)), general, rtol=1e-10)
    # odds gain at most e^(1/(2 tau)) however large the gap
    pp = np.logspace(-300, -1, 30)
    m = np.asarray(th.ipo_aligned_mass(pp, 1e6, tau))
    gain = np.log(m / (1 - m)) - np.log(pp / (1 - pp))
    assert np.all(gain <= 0.5 / tau + 1e-9)
    assert float(th.ipo_aligned_mass(0.0, 1e6, tau)) == 0.0
  with pytest.raises(errors.InputError, match="tau"):
    th.ipo_aligned_mass(0.1, 1.0, 0.0)


# ------------------------------------------------------------------------- best-of-N
def _bon_enumerate(ref, reward, n):
  out = np.zeros(len(ref))
  for draws in itertools.product(range(len(ref)), repeat=n):
    prob = np.prod(ref[list(draws)])
    best = max(reward[d] for d in draws)
    winners = [d for d in draws if reward[d] == best]
    for d in winners:
      out[d] += prob / len(winners)
  return out


@pytest.mark.parametrize("n", [1, 2, 3])
def test_best_of_n_vs_enumeration_with_ties(n):
  ref = np.array([0.1, 0.2, 0.3, 0.4])
  reward = np.array([1.0, 0.0, 1.0, -1.0])  # outputs 0 and 2 tie
  with jax.enable_x64(True):
    closed = np.exp(np.asarray(th.best_of_n(_log_ref(ref), reward, float(n))))
  np.testing.assert_allclose(closed, _bon_enumerate(ref, reward, n), rtol=1e-12, atol=1e-15)


def test_best_of_n_hand_and_real_n():
  # distinct rewards, sorted ref [0.5, 0.3, 0.2] by reward: F = 0.5, 0.8, 1.0
  # pi = F^N - F_-^N with N = 2.5: [0.5^2.5, 0.8^2.5 - 0.5^2.5, 1 - 0.8^2.5]
  ref = np.array([0.5, 0.3, 0.2])
  n = 2.5
  expected = [0.5 ** n, 0.8 ** n - 0.5 ** n, 1 - 0.8 ** n]
  with jax.enable_x64(True):
    np.testing.assert_allclose(np.exp(np.asarray(th.best_of_n(_log_ref(ref), np.array([0.0, 1.0, 2.0]), n))),
                               expected, rtol=1e-12)
  # N = 1 is the reference itself; support is inherited
  out = np.exp(np.asarray(th.best_of_n(np.array([-np.inf, math.log(0.5), math.log(0.5)]), np.array([9.0, 0.0, 1.0]), 1.0)))
  np.testing.assert_allclose(out, [0.0, 0.5, 0.5], rtol=1e-6)


def test_best_of_n_batch_vmap_and_bad_n():
  log_ref = np.log(np.tile(REF, (3, 1)))
  reward = np.stack([REWARD, -REWARD, REWARD * 2])
  n = np.array([1.0, 2.0, 8.0])
  out = th.best_of_n(log_ref, reward, n)
  assert out.shape == (3, 4)
  np.testing.assert_allclose(np.asarray(jax.vmap(th.best_of_n)(log_ref, reward, n)), np.asarray(out), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(jnp.exp(out).sum(-1)), 1.0, rtol=1e-5)
  for bad in (0.5, 0.0, -1.0, math.nan):
    with pytest.raises(errors.InputError, match="n "):
      th.best_of_n(np.log(REF), REWARD, bad)


def test_best_of_n_aligned_mass_hand_and_edges():
  # 1 - (1 - 0.1)^3 = 1 - 0.729 = 0.271
  np.testing.assert_allclose(float(th.best_of_n_aligned_mass(0.1, 3.0)), 0.271, rtol=1e-6)
  n = np.array([1.0, 2.0, 10.0, 1e6])
  assert np.all(np.asarray(th.best_of_n_aligned_mass(0.0, n)) == 0.0)
  assert np.all(np.asarray(th.best_of_n_aligned_mass(1.0, n)) == 1.0)
  np.testing.assert_allclose(np.asarray(th.best_of_n_aligned_mass(0.3, 1.0)), 0.3, rtol=1e-6)
  with jax.enable_x64(True):
    # small p: 1 - (1-p)^N = N p to first order, exact in log space
    np.testing.assert_allclose(float(th.best_of_n_aligned_mass(1e-300, 1000.0)), 1e-297, rtol=1e-12)
  with pytest.raises(errors.InputError, match="recall"):
    th.best_of_n_aligned_mass(1.5, 2.0)
  with pytest.raises(errors.InputError, match="n "):
    th.best_of_n_aligned_mass(0.5, 0.0)


def test_best_of_n_kl_bound_hand_and_brute_force():
  # log N - (N-1)/N: N = 1 -> 0; N = 2 -> log 2 - 1/2 = 0.1931472; N = 4 -> log 4 - 3/4 = 0.6362944
  np.testing.assert_allclose(np.asarray(th.best_of_n_kl_bound(np.array([1.0, 2.0, 4.0]))),
                             [0.0, math.log(2) - 0.5, math.log(4) - 0.75], rtol=1e-6, atol=1e-7)
  # 400 equally likely distinct outputs: KL of best-of-4 approaches the bound from below
  m, n = 400, 4.0
  f = np.arange(1, m + 1) / m
  pi = f ** n - (f - 1 / m) ** n
  brute = np.sum(pi * np.log(pi * m))
  assert brute <= float(th.best_of_n_kl_bound(n)) and float(th.best_of_n_kl_bound(n)) - brute < 5e-3


def test_best_of_n_kl_bound_bad_n():
  with pytest.raises(errors.InputError, match="n"):
    th.best_of_n_kl_bound(0.0)
