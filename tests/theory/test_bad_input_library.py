"""Issue 9, library part: every extreme or bad call of the theory core and the divergences,
one row each. Bad input raises one named InputError -- eagerly, and with the same message
under ``jax.jit`` and ``jax.vmap`` through ``errors.checked`` (checkify). Edge values are
exact (no NaN) under overflow, underflow and at the recall edges 0 and 1.
"""

import contextlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recall_theory import divergences, errors
from recall_theory import theory as th

LOG_REF = np.log(np.array([0.2, 0.3, 0.5]))
REWARD = np.array([1.0, 0.0, -1.0])
NEG_INF = -np.inf


def _x64(flag):
  return th.float64() if flag else contextlib.nullcontext()


# (id, x64, function, args, message regex). Every row failed before the fix (NaN, a number,
# a bare TypeError, or silently wrong), except where the comment says it pins a kept behaviour.
BAD = [
    # two-level closed forms
    ("aligned_mass/negative-recall", False, th.aligned_mass, (-0.1, 1.0, 1.0), r"^recall must lie in \[0, 1\], got -0\.1$"),
    ("aligned_mass/subnormal-beta", True, th.aligned_mass, (0.0, 1.0, 1e-310), r"^beta = 1e-310 is below the smallest normal float64"),
    ("aligned_mass/subnormal-beta-recall-1", True, th.aligned_mass, (1.0, 1.0, 1e-310), r"^beta = 1e-310 is below"),
    ("aligned_mass/float32-subnormal-recall", False, th.aligned_mass, (np.float32(1e-40), 1.0, 1.0),
     r"^recall = 9\.99995e-41 is below the smallest normal float32 \(1\.17549e-38\) and would be flushed to zero; use float64"),
    ("aligned_kl/float32-subnormal-recall", False, th.aligned_kl, (1e-40, 1.0, 1.0),
     r"^recall = 9\.99995e-41 is below the smallest normal float32"),
    ("ipo_aligned_mass/subnormal-tau", True, th.ipo_aligned_mass, (0.0, 1.0, 1e-310), r"^tau = 1e-310 is below the smallest normal float64"),
    ("bernoulli_kl/a-above-one", False, th.bernoulli_kl, (2.0, 0.3), r"^a must lie in \[0, 1\], got 2$"),
    ("kl_ceiling/negative-recall", False, th.kl_ceiling, (-0.1, 1.0), r"^recall must lie in \[0, 1\], got -0\.1$"),
    ("best_of_n/n-below-one", False, th.best_of_n, (LOG_REF, REWARD, 0.5), r"^n must be >= 1, got 0\.5$"),
    ("best_of_n_aligned_mass/n-below-one", False, th.best_of_n_aligned_mass, (0.3, 0.5), r"^n must be >= 1, got 0\.5$"),
    # shapes: a named InputError, not a bare broadcasting TypeError
    ("required_gap/shapes", False, th.required_gap, (np.full(3, 0.1), np.full(4, 0.5), 1.0),
     r"^shapes do not broadcast: recall\[3\], target_mass\[4\], beta\[\]$"),
    ("kl_ceiling_loose/shapes", False, th.kl_ceiling_loose, (np.full(3, 0.1), np.ones(4)),
     r"^shapes do not broadcast: recall\[3\], budget\[4\]$"),
    ("dpo_loss_exact/shapes", False, th.dpo_loss_exact, (LOG_REF, LOG_REF, np.zeros(4), 1.0),
     r"^shapes must match: log_pi\[3\], log_ref\[3\], reward\[4\]$"),
    ("forward_kl/shapes", False, divergences.forward_kl, (LOG_REF, np.log(np.full(4, 0.25))),
     r"^shapes do not broadcast: log_p\[3\], log_q\[4\]$"),
    # references
    ("gibbs/all-minus-inf-reference", False, th.gibbs, (np.full(3, NEG_INF), REWARD, 1.0),
     r"^log_ref is -inf everywhere along axis -1: no reference mass anywhere$"),
    ("gibbs/probabilities-as-log-ref", False, th.gibbs, (np.array([0.2, 0.3, 0.5]), REWARD, 1.0),
     r"^log_ref must be log-probabilities \(<= 0\), got 0\.2 \(pass log\(p\), not p\)$"),
    ("forward_kl_optimum/probabilities-as-log-ref", False, th.forward_kl_optimum,
     (np.array([0.2, 0.3, 0.5]), REWARD, 1.0), r"^log_ref must be log-probabilities"),
    ("chi2_kl_optimum/all-minus-inf-reference", False, th.chi2_kl_optimum, (np.full(3, NEG_INF), REWARD, 1.0),
     r"^log_ref is -inf everywhere"),
    # DPO
    ("dpo_loss_exact/nan-log-pi", False, th.dpo_loss_exact, (np.array([np.nan, -1.0, -1.0]), LOG_REF, REWARD, 1.0),
     r"^log_pi must not contain NaN$"),
    ("dpo_loss_exact/inf-reward", False, th.dpo_loss_exact, (LOG_REF, LOG_REF, np.array([np.inf, 0.0, 0.0]), 1.0),
     r"^reward must be finite \(no NaN or inf\)$"),
    ("dpo_loss_exact/probabilities-as-log-pi", False, th.dpo_loss_exact, (np.exp(LOG_REF), LOG_REF, REWARD, 1.0),
     r"^log_pi must be log-probabilities"),
    # divergences
    ("jsd/beta-above-one", False, divergences.jsd, (LOG_REF, LOG_REF[::-1], 2.0), r"^beta must lie in \[0, 1\], got 2$"),
    ("skew_kl/negative-alpha", False, divergences.skew_kl, (LOG_REF, LOG_REF[::-1], -1.0),
     r"^alpha must lie in \[0, 1\], got -1$"),
    ("forward_kl/nan", False, divergences.forward_kl, (np.array([np.nan, 0.0]), np.log([0.5, 0.5])),
     r"^log_p must not contain NaN$"),
    ("reverse_kl/probabilities", False, divergences.reverse_kl, (np.array([0.5, 0.5]), np.array([0.9, 0.1])),
     r"^log_p must be log-probabilities \(<= 0\), got 0\.5"),
    ("tv/unnormalised", False, divergences.tv, (np.log([0.5, 0.6]), np.log([0.5, 0.5])),
     r"^log_p must be normalised log-probabilities \(logsumexp = 0 along axis -1\), got logsumexp 0\.0953102$"),
    # issue 24: NaN in, silent NaN out (now named)
    ("predicted_mass/nan-delta", False, th.predicted_mass, (0.3, np.nan), r"^delta_over_beta must not contain NaN$"),
    ("log_lambert_w_exp/nan", False, th.log_lambert_w_exp, (np.nan,), r"^z must not contain NaN$"),
    ("prd_curve/nan-log-p", False, th.prd_curve, (np.array([np.nan, 0.0]), np.log([0.5, 0.5])),
     r"^log_p must not contain NaN$"),
    ("k3/nan-log-pi", False, th.k3, (np.array([np.nan]), np.array([-1.0])), r"^log_pi must not contain NaN$"),
    ("loglik_precision/nan-log-q", False, th.loglik_precision, (np.log([0.1, 0.9]), np.array([np.nan, 0.0])),
     r"^log_q must not contain NaN$"),
    # issue 24: probabilities passed as log-probabilities
    ("prd_curve/probabilities", False, th.prd_curve, (np.array([0.5, 0.5]), np.array([0.5, 0.5])),
     r"^log_p must be log-probabilities \(<= 0\), got 0\.5 \(pass log\(p\), not p\)$"),
    ("loglik_recall/probabilities", False, th.loglik_recall, (np.array([0.5, 0.5]), np.log([0.5, 0.5])),
     r"^log_p must be log-probabilities \(<= 0\), got 0\.5"),
    ("k1/probabilities", False, th.k1, (np.array([0.5]), np.array([0.4])), r"^log_pi must be log-probabilities \(<= 0\), got 0\.5"),
    # issue 24: a mask that is neither boolean nor 0/1; a batched beta of the wrong shape
    ("set_mass/mask-of-twos", False, th.set_mass, (LOG_REF, REWARD, 1.0, np.array([0, 2, 0])),
     r"^in_set must be a boolean mask \(True/False, or 0/1\), got 2$"),
    ("gibbs/batched-beta-shape", False, th.gibbs, (np.log(np.full((2, 4), 0.25)), np.zeros((2, 4)), np.ones(3)),
     r"^beta\[3\] must broadcast against the batch axes \[2\] of log_ref\[2, 4\], reward\[2, 4\]$"),
]


@pytest.mark.parametrize("row", BAD, ids=[r[0] for r in BAD])
def test_bad_input_named_eager_jit_and_vmap(row):
  _, x64, fn, args, pattern = row
  with _x64(x64):
    args = tuple(a if isinstance(a, np.ndarray) else np.asarray(a) for a in args)
    with pytest.raises(errors.InputError, match=pattern) as eager:
      fn(*args)
    message = str(eager.value)
    assert "\n" not in message
    # the same error, same text, through checkify under jit and under vmap
    with pytest.raises(errors.InputError) as jitted:
      errors.checked(fn)(*args)
    assert str(jitted.value) == message
    batched = tuple(np.stack([a, a]) for a in args)
    with pytest.raises(errors.InputError) as vmapped:
      errors.checked(jax.vmap(fn))(*batched)
    assert str(vmapped.value) == message


def test_plain_jit_stays_jittable_and_unchecked_path_has_no_error():
  # Without `checked` the staged checks compile to nothing: jit/vmap work as before.
  assert float(jax.jit(th.aligned_mass)(0.5, 0.0, 1.0)) == 0.5
  np.testing.assert_allclose(np.asarray(jax.vmap(th.aligned_mass, (0, None, None))(jnp.array([0.1, 0.5]), 0.0, 1.0)),
                             [0.1, 0.5],
                             rtol=1e-6)
  # valid input through `checked` returns the value (theory re-exports the channel)
  assert th.checked is errors.checked and th.validation is errors.validation
  assert float(th.checked(th.aligned_mass)(0.5, 0.0, 1.0)) == 0.5
  # composite jitted code: the check inside a lax.map body still surfaces as the InputError
  body = lambda p: th.kl_ceiling(p, 1.0)
  with pytest.raises(errors.InputError, match=r"^recall must lie in \[0, 1\], got -0\.1$"):
    th.checked(lambda ps: jax.lax.map(body, ps))(jnp.array([0.2, -0.1]))
  # static arguments pass through to jax.jit
  safe_gibbs = th.checked(th.gibbs, static_argnames=("axis",))
  with pytest.raises(errors.InputError, match="log_ref is -inf everywhere along axis 0"):
    safe_gibbs(jnp.full((3, 2), -jnp.inf), jnp.zeros((3, 2)), 1.0, axis=0)


def test_jit_traced_with_validation_off_stages_no_check():
  # the opt-out is read at trace time: a function traced inside it carries no check at all
  # (fresh lambdas: jax caches traces per function object, so a function traced before
  # keeps the checks it was traced with)
  with th.validation(False):
    jaxpr = jax.make_jaxpr(lambda p, g, b: th.aligned_mass(p, g, b))(0.5, 1.0, 1.0)
  assert "check" not in str(jaxpr)
  assert "check" in str(jax.make_jaxpr(lambda p, g, b: th.aligned_mass(p, g, b))(0.5, 1.0, 1.0))


def test_validation_opt_out():
  with th.validation(False):
    assert not errors.validation_enabled()
    th.bernoulli_kl(np.nan, 0.3)  # unchecked: valid input is the caller's promise
    th.kl_ceiling(-0.1, 1.0)
  assert errors.validation_enabled()
  with pytest.raises(errors.InputError):
    th.bernoulli_kl(np.nan, 0.3)


# (id, x64, function, args, expected): exact values where the old code gave NaN or 0.
EXACT = [
    ("aligned_mass/recall-0-overflowing-gap", True, th.aligned_mass, (0.0, 1e300, 1e-10), 0.0),
    ("aligned_mass/recall-1-overflowing-gap", True, th.aligned_mass, (1.0, 1e300, 1e-10), 1.0),
    ("aligned_mass/recall-1-overflowing-negative-gap", True, th.aligned_mass, (1.0, -1e300, 1e-10), 1.0),
    ("aligned_mass/recall-0-float32-gap-1e30", False, th.aligned_mass, (0.0, 1e30, 1e-10), 0.0),
    ("aligned_mass/recall-1-float32-gap-1e30", False, th.aligned_mass, (1.0, 1e30, 1e-10), 1.0),
    ("aligned_mass/interior-float32-gap-1e30", False, th.aligned_mass, (0.5, 1e30, 1e-10), 1.0),
    ("aligned_log_mass/recall-0", True, th.aligned_log_mass, (0.0, 1e300, 1e-10), -np.inf),
    ("aligned_kl/recall-0-overflowing-gap", True, th.aligned_kl, (0.0, 1e300, 1e-10), 0.0),
    ("chi2_kl_aligned_mass/recall-0-beta-1e-300", True, th.chi2_kl_aligned_mass, (0.0, 1.0, 1e-300), 0.0),
    ("chi2_kl_aligned_mass/recall-1-beta-1e-300", True, th.chi2_kl_aligned_mass, (1.0, 1.0, 1e-300), 1.0),
    ("ipo_aligned_mass/recall-0-tau-1e-300", True, th.ipo_aligned_mass, (0.0, 1.0, 1e-300), 0.0),
    ("forward_kl_aligned_mass/recall-0-overflowing-gap", True, th.forward_kl_aligned_mass, (0.0, 1e300, 1e-10), 1.0),
    ("required_gap/0-to-0", False, th.required_gap, (0.0, 0.0, 1.0), 0.0),
    ("required_gap/1-to-1", False, th.required_gap, (1.0, 1.0, 1.0), 0.0),
    ("required_gap/0-to-half", False, th.required_gap, (0.0, 0.5, 1.0), np.inf),
    ("required_gap/1-to-0", False, th.required_gap, (1.0, 0.0, 1.0), -np.inf),
    ("bernoulli_kl/near-equal", True, th.bernoulli_kl, (0.3, 0.3 + 1e-12), 2.3808470405901375e-24),  # mpmath, 50 digits
    # issue 24 (mpmath, 50 digits): the direct form gave 8.2e-17 and 0.3000000010307
    ("aligned_kl/small-lift", True, th.aligned_kl, (0.3, 1e-8, 1.0), 1.0500000028000000e-17),
    ("kl_ceiling/small-budget", True, th.kl_ceiling, (0.3, 1e-20), 0.30000000006480739588),
    ("log_lambert_w_exp/inf", False, th.log_lambert_w_exp, (np.inf,), np.inf),
    ("log_lambert_w_exp/minus-inf", False, th.log_lambert_w_exp, (-np.inf,), -np.inf),
    # issue 24: an integer 0/1 mask (before 0.2049: ~1 = -2 is true, so A^c was all of Y)
    ("set_mass/integer-mask", True, th.set_mass, (np.log([0.9, 0.1]), np.array([0.0, 1.0]), 1.0, np.array([0, 1])),
     0.1 * math.e / (0.9 + 0.1 * math.e)),
    ("set_mass/float-mask", True, th.set_mass, (np.log([0.9, 0.1]), np.array([0.0, 1.0]), 1.0, np.array([0.0, 1.0])),
     0.1 * math.e / (0.9 + 0.1 * math.e)),
]


@pytest.mark.parametrize("row", EXACT, ids=[r[0] for r in EXACT])
def test_edges_exact(row):
  _, x64, fn, args, expected = row
  with _x64(x64):
    value = float(fn(*args))
    jitted = float(jax.jit(fn)(*args))
  if expected == 0.0 or math.isinf(expected):
    assert value == expected and jitted == expected
  else:
    # abs=0: pytest.approx's default absolute slack of 1e-12 would pass any tiny value
    assert value == pytest.approx(expected, rel=1e-12, abs=0)
    assert jitted == pytest.approx(expected, rel=1e-6, abs=0)


def test_gibbs_float32_overflowing_tilt():
  log_pi, log_z = th.gibbs(jnp.log(jnp.array([0.5, 0.5], jnp.float32)), jnp.array([0.0, 1e30], jnp.float32), 1e-10)
  np.testing.assert_array_equal(np.exp(np.asarray(log_pi)), [0.0, 1.0])
  assert float(log_z) == math.inf  # log Z = 1e40 + log(1/2) itself overflows float32
  # the set-mass law agrees and stays exact
  in_set = jnp.array([False, True])
  assert float(th.set_mass(jnp.log(jnp.array([0.5, 0.5])), jnp.array([0.0, 1e30]), 1e-10, in_set)) == 1.0


def test_chi2_kl_optimum_tiny_beta_is_argmax():
  with th.float64():
    pi = np.exp(np.asarray(th.chi2_kl_optimum(LOG_REF, REWARD, 1e-300)))
    tied = np.exp(np.asarray(th.chi2_kl_optimum(LOG_REF, np.array([1.0, 1.0, -1.0]), 1e-300)))
  np.testing.assert_allclose(pi, [1.0, 0.0, 0.0], atol=1e-15)
  np.testing.assert_allclose(tied, [0.4, 0.6, 0.0], rtol=1e-12, atol=1e-15)  # ties keep reference shares


def test_dpo_loss_zero_policy_mass_on_supported_output_is_inf():
  log_pi = np.array([NEG_INF, np.log(0.5), np.log(0.5)])
  assert float(th.dpo_loss_exact(log_pi, LOG_REF, REWARD, 1.0)) == math.inf
  assert float(th.ipo_loss_exact(log_pi, LOG_REF, REWARD, 1.0)) == math.inf
  # at pi = pi_ref every implicit reward is 0: log 2 exactly as before
  assert float(th.dpo_loss_exact(LOG_REF, LOG_REF, REWARD, 1.0)) == pytest.approx(math.log(2), rel=1e-6)


def test_log_lambert_w_exp_huge_arguments():
  # Halley's f'^2 overflowed for z > 1e154 (float64) / 1e19 (float32): check e^w + w = z
  with th.float64():
    z = np.array([1e154, 1e200, 1e300, 1.7e308])
    w = np.asarray(th.log_lambert_w_exp(z))
  np.testing.assert_allclose(np.exp(w) + w, z, rtol=1e-12)
  z32 = jnp.array([1e19, 1e30, 3e38], jnp.float32)
  w32 = th.log_lambert_w_exp(z32)
  np.testing.assert_allclose(np.exp(np.asarray(w32, np.float64)) + np.asarray(w32), np.asarray(z32, np.float64),
                             rtol=1e-4)


# Issue 24: eager-only refusals (the value cannot reach a jitted call as it is: a string, a
# complex number the cast would truncate, a float64 that float32 would turn into inf).
EAGER = [
    ("aligned_mass/string", th.aligned_mass, ("0.5", 1.0, 1.0), {},
     r"^recall must be a real number or array of them, got '0\.5'$"),
    ("aligned_mass/complex", th.aligned_mass, (0.5 + 0.5j, 1.0, 1.0), {}, r"^recall must be real, got complex \(0\.5\+0\.5j\)$"),
    ("bernoulli_kl/complex-array", th.bernoulli_kl, (np.array([0.2 + 1j]), 0.3), {}, r"^a must be real"),
    ("best_of_n_aligned_mass/float32-n-1e300", th.best_of_n_aligned_mass, (0.0, 1e300), {},
     r"^n = 1e\+300 overflows float32 \(largest 3\.40282e\+38\); use float64$"),
    ("prob_no_target_sample/float32-n-1e300", th.prob_no_target_sample, (0.0, 1e300), {},
     r"^n_samples = 1e\+300 overflows float32"),
    ("best_of_n_kl_bound/float32-n-1e300", th.best_of_n_kl_bound, (1e300,), {}, r"^n = 1e\+300 overflows float32"),
    ("prd_curve/num-angles-string", th.prd_curve, (np.log([0.5, 0.5]), np.log([0.5, 0.5])), {"num_angles": "5"},
     r"^num_angles must be an integer in \[3, inf\], got '5'$"),
    # kept: refused before too
    ("prd_curve/num-angles-fraction", th.prd_curve, (np.log([0.5, 0.5]), np.log([0.5, 0.5])), {"num_angles": 5.5},
     r"^num_angles must be an integer in \[3, inf\], got 5\.5$"),
    ("gibbs/batched-beta-other-axis", th.gibbs, (np.log(np.full((2, 4), 0.5)), np.zeros((2, 4)), np.ones(4)), {"axis": 0},
     r"^beta may be batched \(beta\[4\]\) only when the support is the last axis, got axis=0$"),
]


@pytest.mark.parametrize("row", EAGER, ids=[r[0] for r in EAGER])
def test_bad_input_named_eagerly(row):
  _, fn, args, kwargs, pattern = row
  with pytest.raises(errors.InputError, match=pattern):
    fn(*args, **kwargs)


# Issue 24: under a plain jit / vmap an invalid input gives NaN, never a plausible number
# (before: 0.0, 3.79, 0.1, 1.0, ...). Each row: (id, function, bad args, good args).
PLAIN_JIT = [
    ("aligned_mass/negative-recall", th.aligned_mass, (-0.1, 1.0, 1.0), (0.1, 1.0, 1.0)),
    ("bernoulli_kl/a-above-one", th.bernoulli_kl, (2.0, 0.3), (0.2, 0.3)),
    ("kl_ceiling/negative-budget", th.kl_ceiling, (0.1, -1.0), (0.1, 1.0)),
    ("aligned_mass/zero-beta", th.aligned_mass, (0.1, 1.0, 0.0), (0.1, 1.0, 1.0)),
    ("best_of_n_aligned_mass/n-below-one", th.best_of_n_aligned_mass, (0.3, 0.5), (0.3, 2.0)),
    ("predicted_mass/nan-delta", th.predicted_mass, (0.3, np.nan), (0.3, 1.0)),  # kept (NaN in, NaN out)
    ("gibbs/unnormalised", th.gibbs, (np.log([0.5, 0.6]), np.zeros(2), 1.0), (np.log([0.5, 0.5]), np.zeros(2), 1.0)),
    ("set_mass/mask-of-twos", th.set_mass, (LOG_REF, REWARD, 1.0, np.array([0, 2, 0])),
     (LOG_REF, REWARD, 1.0, np.array([0, 1, 0]))),
    ("tv/probabilities", divergences.tv, (np.array([0.5, 0.5]), np.log([0.5, 0.5])),
     (np.log([0.5, 0.5]), np.log([0.5, 0.5]))),
]


@pytest.mark.parametrize("row", PLAIN_JIT, ids=[r[0] for r in PLAIN_JIT])
def test_plain_jit_invalid_gives_nan(row):
  _, fn, bad, good = row
  for leaf in jax.tree_util.tree_leaves(jax.jit(fn)(*bad)):
    assert np.isnan(np.asarray(leaf)).all()
  # under vmap only the invalid batch element is NaN
  batched = tuple(np.stack([np.asarray(g, np.float64), np.asarray(b, np.float64)]) for g, b in zip(good, bad))
  for leaf in jax.tree_util.tree_leaves(jax.vmap(fn)(*batched)):
    leaf = np.asarray(leaf)
    assert not np.isnan(leaf[0]).any() and np.isnan(leaf[1]).all()


def test_plain_jit_elementwise_nan_marks_only_the_bad_entries():
  masses = jax.jit(th.aligned_mass)(jnp.array([0.1, -0.1, 0.5, 2.0]), 1.0, jnp.array([1.0, 1.0, 0.0, 1.0]))
  assert np.isnan(np.asarray(masses)).tolist() == [False, True, True, True]
  assert float(masses[0]) == pytest.approx(float(th.aligned_mass(0.1, 1.0, 1.0)))


def test_checked_holds_python_ints_static():
  # before: ConcretizationTypeError unless the caller passed static_argnames
  log_pi, log_z = errors.checked(th.gibbs)(np.log([0.9, 0.1]), np.array([0.0, 1.0]), 1.0, axis=-1)
  assert float(np.exp(log_pi[1])) == pytest.approx(0.2320, abs=1e-4)
  with pytest.raises(errors.InputError, match="log_ref is -inf everywhere along axis 0"):
    errors.checked(th.gibbs)(jnp.full((3, 2), -jnp.inf), jnp.zeros((3, 2)), 1.0, 0)
  precision, recall, lambdas = errors.checked(th.prd_curve)(np.log([0.5, 0.5]), np.log([0.9, 0.1]), num_angles=5)
  assert precision.shape == (5,) and lambdas.shape == (5,)


def test_lists_and_whole_floats_accepted():
  # issue 24: dpo_loss_exact with Python lists and prd_curve(num_angles=5.0) were raw TypeErrors
  half = math.log(0.5)
  assert float(th.dpo_loss_exact([half, half], [half, half], [0.0, 1.0], 1.0)) == pytest.approx(math.log(2), rel=1e-6)
  assert float(th.ipo_loss_exact([half, half], [half, half], [0.0, 1.0], 1.0)) == pytest.approx(0.125, rel=1e-6)
  precision, _, lambdas = th.prd_curve(np.log([0.5, 0.5]), np.log([0.5, 0.5]), num_angles=5.0)
  assert lambdas.shape == (5,) and float(precision[2]) == pytest.approx(1.0)
