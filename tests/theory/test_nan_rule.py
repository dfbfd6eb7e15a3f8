"""Issue 24: NaN and inf in, for every public theory function (and the divergences).

Each argument of each function, in turn, gets one entry replaced by NaN, +inf, -inf, a
negative number, a number above one or zero. The call must then be one of:

* eagerly a named ``InputError`` and, under a plain ``jax.jit``, NaN in every floating
  output (never a plausible number);
* eagerly a value without NaN (inf where it is the right limit: ``k1`` against a
  zero-probability reference, ``predicted_mass`` at ``Delta/beta = inf``), and the same
  value under ``jax.jit``.

A function that returned NaN eagerly from NaN input without naming it, or a number under
jit from input the eager call refuses, fails here.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recall_theory import divergences, errors
from recall_theory import theory as th

LOG_REF = np.log(np.array([0.2, 0.3, 0.5]))
LOG_PI = np.log(np.array([0.5, 0.3, 0.2]))
REWARD = np.array([1.0, 0.0, -1.0])
MASK = np.array([True, False, False])
PAIRS = np.full((3, 3), 1.0 / 9.0)
LAMBDAS = np.array([0.5, 1.0, 2.0])

# name: (function, valid arguments, static keyword arguments)
PUBLIC = {
    "log_odds": (th.log_odds, (0.3,), {}),
    "aligned_logit": (th.aligned_logit, (0.3, 1.0, 1.0), {}),
    "aligned_mass": (th.aligned_mass, (0.3, 1.0, 1.0), {}),
    "aligned_log_mass": (th.aligned_log_mass, (0.3, 1.0, 1.0), {}),
    "aligned_kl": (th.aligned_kl, (0.3, 1.0, 1.0), {}),
    "required_gap": (th.required_gap, (0.3, 0.6, 1.0), {}),
    "bernoulli_kl": (th.bernoulli_kl, (0.2, 0.3), {}),
    "pair_coverage": (th.pair_coverage, (0.3,), {}),
    "kl_ceiling": (th.kl_ceiling, (0.3, 1.0), {}),
    "kl_ceiling_loose": (th.kl_ceiling_loose, (0.3, 1.0), {}),
    "gibbs": (th.gibbs, (LOG_REF, REWARD, 1.0), {}),
    "log_partition": (th.log_partition, (LOG_REF, REWARD, 1.0), {}),
    "kl_cost": (th.kl_cost, (LOG_REF, REWARD, 1.0), {}),
    "expected_reward": (th.expected_reward, (LOG_PI, REWARD), {}),
    "objective": (th.objective, (LOG_PI, LOG_REF, REWARD, 1.0), {}),
    "soft_max_reward": (th.soft_max_reward, (LOG_REF, REWARD, 1.0, MASK), {}),
    "set_mass": (th.set_mass, (LOG_REF, REWARD, 1.0, MASK), {}),
    "forward_kl_optimum": (th.forward_kl_optimum, (LOG_REF, REWARD, 1.0), {}),
    "forward_kl_aligned_mass": (th.forward_kl_aligned_mass, (0.3, 1.0, 1.0), {}),
    "log_lambert_w_exp": (th.log_lambert_w_exp, (2.0,), {}),
    "chi2_kl_optimum": (th.chi2_kl_optimum, (LOG_REF, REWARD, 1.0), {}),
    "chi2_kl_aligned_mass": (th.chi2_kl_aligned_mass, (0.3, 1.0, 1.0), {}),
    "preference_vs_reference": (th.preference_vs_reference, (LOG_REF, REWARD), {}),
    "ipo_optimum": (th.ipo_optimum, (LOG_REF, REWARD, 1.0), {}),
    "ipo_aligned_mass": (th.ipo_aligned_mass, (0.3, 1.0, 1.0), {}),
    "best_of_n": (th.best_of_n, (LOG_REF, REWARD, 4.0), {}),
    "best_of_n_aligned_mass": (th.best_of_n_aligned_mass, (0.3, 4.0), {}),
    "best_of_n_kl_bound": (th.best_of_n_kl_bound, (4.0,), {}),
    "dpo_loss_exact": (th.dpo_loss_exact, (LOG_PI, LOG_REF, REWARD, 1.0), {}),
    "ipo_loss_exact": (th.ipo_loss_exact, (LOG_PI, LOG_REF, REWARD, 1.0), {}),
    "dpo_loss_minimum": (th.dpo_loss_minimum, (REWARD, PAIRS), {}),
    "prd_curve": (th.prd_curve, (LOG_PI, LOG_REF), {"num_angles": 5}),
    "prd_precision": (th.prd_precision, (LOG_PI, LOG_REF, LAMBDAS), {}),
    "prd_recall": (th.prd_recall, (LOG_PI, LOG_REF, LAMBDAS), {}),
    "max_recall": (th.max_recall, (LOG_PI, LOG_REF), {}),
    "max_precision": (th.max_precision, (LOG_PI, LOG_REF), {}),
    "loglik_precision": (th.loglik_precision, (LOG_PI, LOG_REF), {}),
    "loglik_recall": (th.loglik_recall, (LOG_PI, LOG_REF), {}),
    "support_precision_recall": (th.support_precision_recall, (LOG_PI, LOG_REF, 0.1), {}),
    "k1": (th.k1, (LOG_PI, LOG_REF), {}),
    "k2": (th.k2, (LOG_PI, LOG_REF), {}),
    "k3": (th.k3, (LOG_PI, LOG_REF), {}),
    "expected_estimator_gradient": (lambda logits, log_ref: th.expected_estimator_gradient(th.k3, logits, log_ref),
                                    (REWARD, LOG_REF), {}),
    "predicted_mass": (th.predicted_mass, (0.3, 2.0), {}),
    "expected_target_samples": (th.expected_target_samples, (0.3, 10.0), {}),
    "prob_no_target_sample": (th.prob_no_target_sample, (0.3, 10.0), {}),
    "forward_kl": (divergences.forward_kl, (LOG_PI, LOG_REF), {}),
    "reverse_kl": (divergences.reverse_kl, (LOG_PI, LOG_REF), {}),
    "jsd": (divergences.jsd, (LOG_PI, LOG_REF, 0.5), {}),
    "skew_kl": (divergences.skew_kl, (LOG_PI, LOG_REF, 0.1), {}),
    "tv": (divergences.tv, (LOG_PI, LOG_REF), {}),
}

POISONS = [math.nan, math.inf, -math.inf, -0.5, 2.0, 0.0]


def test_every_public_theory_function_is_listed():
  listed = {fn for fn, _, _ in PUBLIC.values()}
  skip = {th.checked, th.validation, th.float64, th.expected_estimator_gradient}
  public = {value for name, value in vars(th).items()
            if callable(value) and not name.startswith("_") and not isinstance(value, type) and value not in skip}
  assert public - listed == set()


def _poisoned(args, position, value):
  """``args`` with the first entry of argument ``position`` replaced by ``value``."""
  arg = np.array(args[position], dtype=np.float64)
  arg.reshape(-1)[0] = value
  return args[:position] + (arg,) + args[position + 1:]


def _floats(out):
  return [np.asarray(leaf, np.float64) for leaf in jax.tree_util.tree_leaves(out)
          if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.inexact)]


@pytest.mark.parametrize("name", list(PUBLIC))
def test_nan_and_inf_are_named_eagerly_and_nan_under_jit(name):
  fn, args, static = PUBLIC[name]
  call = lambda *a: fn(*a, **static)
  jitted = jax.jit(call)
  for position in range(len(args)):
    for value in POISONS:
      bad = _poisoned(args, position, value)
      case = (name, position, value)
      try:
        eager = _floats(call(*bad))
      except errors.InputError:
        for leaf in _floats(jitted(*bad)):
          assert np.isnan(leaf).any(), ("a plausible number under jit from invalid input", case, leaf)
        continue
      for leaf in eager:
        assert not np.isnan(leaf).any(), ("silent NaN", case, leaf)
      for leaf, under_jit in zip(eager, _floats(jitted(*bad))):
        np.testing.assert_allclose(under_jit, leaf, rtol=1e-5, atol=1e-6, err_msg=str(case))
