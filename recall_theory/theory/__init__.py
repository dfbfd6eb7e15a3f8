"""Closed-form analyses of the KL-regularized optimum and of how recall bounds it.

Every function is pure, jittable and vmappable, works in log space, and follows its
inputs' dtype: enable float64 (``jax.config.update("jax_enable_x64", True)`` or the
``with recall_theory.theory.float64():`` context) for recalls below ~1e-38.

Arguments are validated (one named :class:`recall_theory.errors.InputError`): eagerly on
the host, and under ``jit``/``vmap`` through :func:`checked` (``checkify``), which raises
the same error with the same message::

    th.checked(jax.vmap(th.aligned_mass))(jnp.array([0.1, -0.1]), 1.0, 1.0)  # InputError

Under a plain ``jax.jit``/``jax.vmap`` the checks raise nothing and an invalid input gives
NaN instead (the convention of ``jax.scipy``; elementwise for the closed forms, the whole
output of the call for functions of a support); ``with th.validation(False):`` skips them
everywhere (hot loops). Measured cost: ``python experiments/bench_validation.py``.

Identities (theory.md items), each checked numerically by ``recall-theory verify``:

1. :func:`gibbs` -- the optimum ``pi* = pi_ref exp(r/beta)/Z`` and ``log Z``.
2. :func:`set_mass`, :func:`aligned_mass` -- the set-mass law ``logit pi*(A) = logit p + gap/beta``.
3. :func:`kl_cost`, :func:`aligned_kl` -- the KL the optimum pays.
4. :func:`kl_ceiling`, :func:`kl_ceiling_loose` -- the most any policy within a KL budget reaches.
5. :func:`dpo_loss_exact`, :func:`pair_coverage` -- DPO's population optimum and sampling trap.
8. :func:`forward_kl_optimum`, :func:`chi2_kl_optimum`, :func:`ipo_optimum` (+ two-level masses).
9. :func:`best_of_n`, :func:`best_of_n_aligned_mass`, :func:`best_of_n_kl_bound`.
10. :func:`prd_curve`, :func:`loglik_precision`, :func:`loglik_recall`, :func:`support_precision_recall`.
11. :func:`k1`, :func:`k2`, :func:`k3` -- KL estimators and the gradients they follow.
12. :func:`predicted_mass`, :func:`expected_target_samples`, :func:`prob_no_target_sample` -- what
    the law predicts for a trained run (learning trap and sampling trap).
"""

import contextlib

import jax

from recall_theory.errors import checked, validation
from recall_theory.theory.ceiling import kl_ceiling, kl_ceiling_loose
from recall_theory.theory.dpo import dpo_loss_exact, dpo_loss_minimum, ipo_loss_exact
from recall_theory.theory.estimators import KL_ESTIMATORS, expected_estimator_gradient, k1, k2, k3
from recall_theory.theory.gibbs import (
    expected_reward,
    gibbs,
    kl_cost,
    log_partition,
    objective,
    set_mass,
    soft_max_reward,
)
from recall_theory.theory.prd import (
    loglik_precision,
    loglik_recall,
    max_precision,
    max_recall,
    prd_curve,
    prd_precision,
    prd_recall,
    support_precision_recall,
)
from recall_theory.theory.regularizers import (
    best_of_n,
    best_of_n_aligned_mass,
    best_of_n_kl_bound,
    chi2_kl_aligned_mass,
    chi2_kl_optimum,
    forward_kl_aligned_mass,
    forward_kl_optimum,
    ipo_aligned_mass,
    ipo_optimum,
    log_lambert_w_exp,
    preference_vs_reference,
)
from recall_theory.theory.law import expected_target_samples, predicted_mass, prob_no_target_sample
from recall_theory.theory.two_level import (
    aligned_kl,
    aligned_log_mass,
    aligned_logit,
    aligned_mass,
    bernoulli_kl,
    log_odds,
    pair_coverage,
    required_gap,
)


@contextlib.contextmanager
def float64():
  """Context in which new jax arrays default to float64 (for recalls down to 1e-300)."""
  with jax.enable_x64(True):
    yield


import types as _types

__all__ = [name for name, value in globals().items()
           if not name.startswith("_") and not isinstance(value, _types.ModuleType)]
