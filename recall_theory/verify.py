"""Numerical verification of every identity and bound the theory core implements.

Each check draws seeded random instances (extreme ones included: recall down to
1e-300, beta from 1e-3 to 1e3), computes the same quantity by two *independent*
routes (closed form vs direct optimisation with optax, vs autodiff, vs brute-force
sums or enumeration) and reports the largest discrepancy against a fixed tolerance.
Runs in float64. ``recall-theory verify`` prints the table; the test suite runs each
check as a test.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import logsumexp

from recall_theory import divergences, progress
from recall_theory import theory as th


@dataclasses.dataclass(frozen=True)
class CheckResult:
  name: str
  item: str
  description: str
  instances: int
  max_error: float
  tolerance: float

  @property
  def passed(self) -> bool:
    return bool(np.isfinite(self.max_error) and self.max_error <= self.tolerance)


@dataclasses.dataclass(frozen=True)
class Check:
  """``run(key) -> (instances, max_error)``; with ``jit`` the whole check is traced and
  compiled as one program (the error may then be a jax scalar), instead of dispatching
  each of its operations eagerly (which compiled hundreds of small kernels)."""
  name: str
  item: str
  description: str
  tolerance: float
  run: Callable[[jax.Array], tuple[int, float]]
  jit: bool = False


CHECKS: dict[str, Check] = {}


def _check(name: str, item: str, tolerance: float, description: str, jit: bool = True):
  def register(fn):
    CHECKS[name] = Check(name, item, description, tolerance, fn, jit)
    return fn
  return register


def _worst(*errors):
  """The largest entry of all the error arrays (works on tracers: no Python ``max``)."""
  return jnp.max(jnp.stack([jnp.max(jnp.asarray(e, dtype=jnp.result_type(float))) for e in errors]))


# ------------------------------------------------------------------ random instances
def _log_uniform(key, shape, lo, hi):
  return jnp.exp(jax.random.uniform(key, shape, minval=math.log(lo), maxval=math.log(hi)))


def _random_log_probs(key, shape, zero_fraction=0.0, spread=3.0):
  """Normalised log-probabilities with ~zero_fraction exact zeros (never all zero)."""
  k_logits, k_zero = jax.random.split(key)
  logits = spread * jax.random.normal(k_logits, shape)
  zero = jax.random.uniform(k_zero, shape) < zero_fraction
  zero = zero.at[..., 0].set(False)
  logits = jnp.where(zero, -jnp.inf, logits)
  return logits - logsumexp(logits, axis=-1, keepdims=True)


def _two_level_instance(recall, gap, atoms_in=3, atoms_out=4, key=None):
  """A discrete reference with mass ``recall`` spread over ``atoms_in`` target outputs."""
  key = jax.random.PRNGKey(0) if key is None else key
  k1, k2 = jax.random.split(key)
  split_in = jax.nn.log_softmax(jax.random.normal(k1, (atoms_in,)))
  split_out = jax.nn.log_softmax(jax.random.normal(k2, (atoms_out,)))
  log_ref = jnp.concatenate([jnp.log(recall) + split_in, jnp.log1p(-recall) + split_out])
  reward = jnp.concatenate([jnp.full(atoms_in, gap), jnp.zeros(atoms_out)])
  in_set = jnp.arange(atoms_in + atoms_out) < atoms_in
  return log_ref, reward, in_set


def _two_level_batch(recalls, gaps):
  """``_two_level_instance`` for each (recall, gap), instance i drawn with PRNGKey(i), stacked:
  ``log_ref [n, 7]``, ``reward [n, 7]``, ``in_set [n, 7]``."""
  keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(jnp.size(recalls)))
  return jax.vmap(lambda p, g, k: _two_level_instance(p, g, key=k))(recalls, gaps, keys)


def _log_mass_on(in_set, log_pi):
  """``log pi(A)`` for a boolean mask of A over the last axis."""
  return logsumexp(jnp.where(in_set, log_pi, -jnp.inf), axis=-1)


def _extreme_recalls(key, n):
  """Log-uniform recalls on [1e-300, 0.5] plus the exact edges and near-one values."""
  body = _log_uniform(key, (n,), 1e-300, 0.5)
  return jnp.concatenate([body, jnp.array([1e-300, 1e-150, 1e-12, 0.5, 0.9, 1.0 - 1e-12])])


def _rel(a, b):
  return jnp.abs(a - b) / (1.0 + jnp.abs(b))


def _small_problems(key, n, k, beta_range, reward_scale=1.0):
  """n random (log_ref [k], reward [k], beta) triples with full support, for the optimiser checks."""
  keys = jax.random.split(key, 3)
  log_ref = _random_log_probs(keys[0], (n, k), spread=1.0)
  reward = reward_scale * jax.random.normal(keys[1], (n, k))
  return log_ref, reward, _log_uniform(keys[2], (n,), *beta_range)


def _minimise_each(loss_of, log_ref, reward, beta, steps=300, init=None):
  """softmax of argmin_theta loss_of(log_softmax(theta), log_ref, reward, beta), per instance,
  by L-BFGS started at ``init`` (default: the reference), vmapped over the leading axis."""
  def solve(log_ref, reward, beta, init):
    loss = lambda theta: loss_of(jax.nn.log_softmax(theta), log_ref, reward, beta)
    return jax.nn.softmax(_minimise(loss, init, steps))
  init = log_ref if init is None else init
  return jax.jit(jax.vmap(solve))(log_ref, reward, beta, init)


def _minimise(loss_fn, init, steps=300):
  """Minimise a smooth function of a flat vector with optax L-BFGS (zoom line search).

  Returns the iterate with the lowest finite loss: once converged, L-BFGS on a softmax
  whose optimum sends some logits to -inf can step into non-finite values."""
  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(loss_fn)

  def step(carry, _):
    params, state, best, best_value = carry
    value, grad = value_and_grad(params, state=state)
    better = jnp.isfinite(value) & (value < best_value) & jnp.all(jnp.isfinite(params))
    best = jnp.where(better, params, best)
    best_value = jnp.where(better, value, best_value)
    updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=loss_fn)
    return (optax.apply_updates(params, updates), state, best, best_value), None

  carry = (init, opt.init(init), init, jnp.asarray(jnp.inf, init.dtype))
  (_, _, best, _), _ = jax.lax.scan(step, carry, None, length=steps)
  return best


# ---------------------------------------------------------------------- item 1
@_check("gibbs_variational_identity", "1", 1e-9,
        "J(pi) + beta KL(pi||pi*) = beta log Z for random pi (brute-force sums)")
def _gibbs_identity(key):
  n, k = 200, 12
  keys = jax.random.split(key, 4)
  log_ref = _random_log_probs(keys[0], (n, k), zero_fraction=0.2)
  reward = 2.0 * jax.random.normal(keys[1], (n, k))
  beta = _log_uniform(keys[2], (n,), 1e-3, 1e3)
  # random policies inside the reference's support (else KL(pi||pi_ref) is infinite)
  log_pi = _random_log_probs(keys[3], (n, k))
  log_pi = jnp.where(jnp.isfinite(log_ref), log_pi, -jnp.inf)
  log_pi = log_pi - logsumexp(log_pi, axis=-1, keepdims=True)
  log_star, log_z = th.gibbs(log_ref, reward, beta)
  lhs = th.objective(log_pi, log_ref, reward, beta) + beta * divergences.reverse_kl(log_star, log_pi)
  rhs = beta * log_z
  return n, jnp.max(_rel(lhs, rhs))


@_check("gibbs_vs_optimisation", "1", 1e-6,
        "Gibbs tilt equals direct maximisation of E[r] - beta KL by optax L-BFGS")
def _gibbs_vs_optax(key):
  log_ref, reward, beta = _small_problems(key, 16, 8, (0.1, 10.0))
  direct = _minimise_each(lambda lp, lr, r, b: -th.objective(lp, lr, r, b), log_ref, reward, beta, steps=500)
  closed = jnp.exp(th.gibbs(log_ref, reward, beta)[0])
  return int(beta.size), jnp.max(jnp.abs(direct - closed))


# ---------------------------------------------------------------------- item 2
@_check("set_mass_law_general", "2", 1e-10,
        "logit pi*(A) = logit p + (L_A - L_Ac)/beta vs summing the Gibbs tilt over A")
def _set_mass_general(key):
  n, k = 300, 10
  keys = jax.random.split(key, 4)
  log_ref = _random_log_probs(keys[0], (n, k), zero_fraction=0.1, spread=8.0)
  reward = 3.0 * jax.random.normal(keys[1], (n, k))
  beta = _log_uniform(keys[2], (n,), 1e-3, 1e3)
  in_set = jax.random.bernoulli(keys[3], 0.3, (n, k)).at[:, 0].set(True).at[:, 1].set(False)
  law = th.set_mass(log_ref, reward, beta, in_set)
  log_pi = th.gibbs(log_ref, reward, beta)[0]
  brute = jnp.exp(_log_mass_on(in_set, log_pi))
  err = jnp.where(brute > 0, jnp.abs(law - brute) / jnp.maximum(brute, 1e-300), jnp.abs(law))
  return n, jnp.max(err)


@_check("set_mass_law_two_level", "2", 1e-10,
        "aligned_mass(p, gap, beta) vs the Gibbs tilt of a discrete two-level instance (p to 1e-300)")
def _set_mass_two_level(key):
  keys = jax.random.split(key, 3)
  recalls = _extreme_recalls(keys[0], 60)
  betas = _log_uniform(keys[1], recalls.shape, 1e-3, 1e3)
  ratios = jax.random.uniform(keys[2], recalls.shape, minval=-5.0, maxval=5.0)
  gaps = betas * ratios * jnp.maximum(1.0, -jnp.log(recalls)) / 5.0  # reach past the trap
  log_ref, reward, in_set = _two_level_batch(recalls, gaps)
  brute = _log_mass_on(in_set, th.gibbs(log_ref, reward, betas)[0])
  errs = jnp.abs(th.aligned_log_mass(recalls, gaps, betas) - brute)  # relative error, in log space
  # the trap edge: recall exactly 0 gives mass exactly 0, recall 1 gives exactly 1
  edge = jnp.abs(th.aligned_mass(jnp.zeros(5), jnp.array([-100., -1., 0., 1., 700.]), 1e-3))
  edge1 = jnp.abs(1.0 - th.aligned_mass(jnp.ones(5), jnp.array([-700., -1., 0., 1., 100.]), 1e-3))
  return int(errs.size) + 10, _worst(jnp.max(errs), jnp.max(edge), jnp.max(edge1))


@_check("required_gap", "2", 1e-10,
        "the Gibbs tilt with gap = required_gap(p, t, beta) puts mass t on A")
def _required_gap(key):
  keys = jax.random.split(key, 3)
  recalls = _extreme_recalls(keys[0], 40)[:-1]
  targets = jax.random.uniform(keys[1], recalls.shape, minval=1e-6, maxval=1 - 1e-6)
  betas = _log_uniform(keys[2], recalls.shape, 1e-3, 1e3)
  log_ref, reward, in_set = _two_level_batch(recalls, th.required_gap(recalls, targets, betas))
  mass = jnp.exp(_log_mass_on(in_set, th.gibbs(log_ref, reward, betas)[0]))
  return int(recalls.size), jnp.max(jnp.abs(mass - targets) / targets)


# ---------------------------------------------------------------------- item 3
@_check("kl_cost", "3", 1e-9,
        "KL(pi*||pi_ref): E[r]/beta - log Z vs direct sum; two-level: kl(pi*(A)||p)")
def _kl_cost(key):
  n, k = 200, 12
  keys = jax.random.split(key, 6)
  log_ref = _random_log_probs(keys[0], (n, k), zero_fraction=0.2)
  reward = jax.random.normal(keys[1], (n, k))
  beta = _log_uniform(keys[2], (n,), 1e-2, 1e3)
  formula = th.kl_cost(log_ref, reward, beta)
  direct = divergences.reverse_kl(log_ref, th.gibbs(log_ref, reward, beta)[0])
  err_general = jnp.max(_rel(formula, direct))
  recalls = _extreme_recalls(keys[3], 40)
  betas = _log_uniform(keys[4], recalls.shape, 1e-3, 1e3)
  gaps = betas * jax.random.uniform(keys[5], recalls.shape, minval=-3.0, maxval=30.0)
  log_ref2, reward2, _ = _two_level_batch(recalls, gaps)
  brute = divergences.reverse_kl(log_ref2, th.gibbs(log_ref2, reward2, betas)[0])
  errs = _rel(th.aligned_kl(recalls, gaps, betas), brute)
  return n + int(errs.size), _worst(err_general, jnp.max(errs))


@_check("kl_exchange_rate", "3", 1e-8,
        "along the beta path dE[r]/dKL = beta (autodiff of both sides)")
def _kl_exchange_rate(key):
  n, k = 100, 10
  keys = jax.random.split(key, 3)
  log_ref = _random_log_probs(keys[0], (n, k), spread=1.0)
  reward = jax.random.normal(keys[1], (n, k))
  beta = _log_uniform(keys[2], (n,), 1e-1, 1e1)

  def rate(log_ref, reward, beta):
    mean_reward = lambda b: th.expected_reward(th.gibbs(log_ref, reward, b)[0], reward)
    cost = lambda b: th.kl_cost(log_ref, reward, b)
    return jax.grad(mean_reward)(beta) / jax.grad(cost)(beta)

  rates = jax.vmap(rate)(log_ref, reward, beta)
  return n, jnp.max(jnp.abs(rates - beta) / beta)


# ---------------------------------------------------------------------- item 4
@_check("kl_ceiling_inverse", "4", 1e-9,
        "kl(kl_ceiling(p, K) || p) = K wherever the ceiling is below 1 (p to 1e-300, K 1e-4..1e3)")
def _kl_ceiling_inverse(key):
  keys = jax.random.split(key, 2)
  recalls = _extreme_recalls(keys[0], 500)[:-1]
  budgets = _log_uniform(keys[1], recalls.shape, 1e-4, 1e3)
  t = th.kl_ceiling(recalls, budgets)
  below_one = t < 1.0
  err = jnp.where(below_one, _rel(th.bernoulli_kl(t, recalls), budgets), 0.0)
  reached = jnp.where(~below_one, budgets >= -jnp.log(recalls) - 1e-12, True)  # t = 1 only if allowed
  return int(recalls.size), jnp.max(err) + jnp.sum(~reached)


@_check("kl_ceiling_bounds_every_policy", "4", 1e-12,
        "random policies never exceed the ceiling at their own KL; Gibbs attains it; loose >= exact")
def _kl_ceiling_bounds(key):
  n, k = 2000, 9
  keys = jax.random.split(key, 5)
  log_ref = _random_log_probs(keys[0], (n, k), spread=6.0)
  log_pi = _random_log_probs(keys[1], (n, k), spread=6.0)
  in_set = jnp.arange(k) < 3
  recall = jnp.exp(logsumexp(jnp.where(in_set, log_ref, -jnp.inf), axis=-1))
  mass = jnp.exp(logsumexp(jnp.where(in_set, log_pi, -jnp.inf), axis=-1))
  budget = divergences.reverse_kl(log_ref, log_pi)
  excess = jnp.maximum(0.0, mass - th.kl_ceiling(recall, budget) - 1e-13)
  # the Gibbs optimum of a two-level reward lies on the curve
  p = _extreme_recalls(keys[2], 200)[:-1]
  beta = _log_uniform(keys[3], p.shape, 1e-3, 1e3)
  gap = beta * jax.random.uniform(keys[4], p.shape, minval=0.0, maxval=40.0)
  attained = _rel(th.kl_ceiling(p, th.aligned_kl(p, gap, beta)), th.aligned_mass(p, gap, beta))
  attained = jnp.where(th.aligned_mass(p, gap, beta) < 1 - 1e-9, attained, 0.0)
  loose_gap = jnp.maximum(0.0, th.kl_ceiling(p, gap) - th.kl_ceiling_loose(p, gap))
  # Random policies and the loose bound are exact comparisons (tolerance 1e-12); attaining the
  # curve passes through kl(.||p) round-off, so it is held to 1e-9 relative: report its excess.
  attained_excess = jnp.maximum(0.0, jnp.max(attained) - 1e-9)
  return n + 2 * int(p.size), _worst(jnp.max(excess), attained_excess, jnp.max(loose_gap))


# ---------------------------------------------------------------------- item 5
@_check("dpo_population_optimum", "5", 1e-6,
        "exact-expectation DPO loss minimised by optax L-BFGS equals the Gibbs optimum")
def _dpo_optimum(key):
  log_ref, reward, beta = _small_problems(key, 12, 6, (0.1, 10.0))
  direct = _minimise_each(th.dpo_loss_exact, log_ref, reward, beta)
  closed = jnp.exp(th.gibbs(log_ref, reward, beta)[0])
  # the loss at the minimiser is the label entropy (an independent value of the minimum)
  def gap_to_minimum(pi, log_ref, reward, beta):
    ref = jnp.exp(log_ref)
    return (th.dpo_loss_exact(jnp.log(pi), log_ref, reward, beta)
            - th.dpo_loss_minimum(reward, ref[:, None] * ref[None, :]))
  gaps = jax.vmap(gap_to_minimum)(direct, log_ref, reward, beta)
  return int(beta.size), _worst(jnp.max(jnp.abs(direct - closed)), jnp.max(jnp.abs(gaps)))


@_check("dpo_unseen_odds_frozen", "5", 1e-12,
        "tabular DPO on pairs that never touch A leaves the odds among A unchanged; pair coverage 1-(1-p)^2")
def _dpo_unseen(key):
  k, seen = 8, 5
  keys = jax.random.split(key, 3)
  log_ref = _random_log_probs(keys[0], (k,), spread=1.0)
  reward = 2.0 * jax.random.normal(keys[1], (k,))
  ref = jnp.exp(log_ref)
  touched = jnp.arange(k) < seen
  weights = jnp.where(touched[:, None] & touched[None, :], ref[:, None] * ref[None, :], 0.0)
  loss = lambda theta: th.dpo_loss_exact(jax.nn.log_softmax(theta), log_ref, reward, 0.5, weights)
  # plain gradient descent: an adaptive optimiser would amplify round-off in zero gradients
  opt = optax.sgd(2.0)
  grad = jax.jit(jax.grad(loss))

  def step(carry, _):
    theta, state = carry
    updates, state = opt.update(grad(theta), state)
    return (optax.apply_updates(theta, updates), state), None

  (theta, _), _ = jax.lax.scan(step, (log_ref, opt.init(log_ref)), None, length=300)
  unseen_before = log_ref[seen:] - log_ref[seen]
  unseen_after = theta[seen:] - theta[seen]
  moved = jnp.max(jnp.abs(theta[:seen] - theta[0] - (log_ref[:seen] - log_ref[0])))
  frozen_err = jnp.max(jnp.abs(unseen_after - unseen_before))
  # coverage: brute-force double sum vs the closed form, p down to 1e-300
  recalls = _extreme_recalls(keys[2], 50)
  cover_err = []
  for p in recalls:
    lr, _, in_set = _two_level_instance(p, 0.0)
    pr = jnp.exp(lr)
    touches = in_set[:, None] | in_set[None, :]
    brute = jnp.sum(jnp.where(touches, pr[:, None] * pr[None, :], 0.0))
    cover_err.append(jnp.abs(brute - th.pair_coverage(p)) / jnp.maximum(brute, 1e-300))
  # the seen block must actually have moved, else the check is vacuous
  vacuous = jnp.where(moved > 1e-2, 0.0, 1.0)
  return 1 + len(cover_err), _worst(frozen_err, jnp.stack(cover_err), vacuous)


# ---------------------------------------------------------------------- item 8
def _regulariser_vs_optax(key, closed_fn, penalty_fn, beta_range=(0.2, 5.0)):
  log_ref, reward, beta = _small_problems(key, 12, 6, beta_range)

  def negative_objective(log_pi, log_ref, reward, beta):
    return -(th.expected_reward(log_pi, reward) - beta * penalty_fn(log_ref, log_pi))

  direct = _minimise_each(negative_objective, log_ref, reward, beta)
  closed = jnp.exp(closed_fn(log_ref, reward, beta))
  return int(beta.size), jnp.max(jnp.abs(direct - closed))


def _two_level_vs_general(general_fn, two_level_fn, key, gap_scale=10.0):
  keys = jax.random.split(key, 3)
  recalls = _extreme_recalls(keys[0], 30)[:-1]
  betas = _log_uniform(keys[1], recalls.shape, 1e-2, 1e2)
  gaps = betas * jax.random.uniform(keys[2], recalls.shape, minval=0.0, maxval=gap_scale)
  log_ref, reward, in_set = _two_level_batch(recalls, gaps)
  general = jnp.exp(_log_mass_on(in_set, general_fn(log_ref, reward, betas)))
  closed = two_level_fn(recalls, gaps, betas)
  return int(recalls.size), jnp.max(jnp.abs(general - closed) / jnp.maximum(closed, 1e-300))


@_check("forward_kl_optimum", "8", 1e-6,
        "beta pi_ref/(lambda - r) vs optax maximisation of E[r] - beta KL(pi_ref||pi); two-level quadratic vs bisection")
def _forward_kl(key):
  k1, k2 = jax.random.split(key)
  n1, e1 = _regulariser_vs_optax(k1, th.forward_kl_optimum,
                                 lambda lr, lp: divergences.forward_kl(lr, lp))
  n2, e2 = _two_level_vs_general(th.forward_kl_optimum, th.forward_kl_aligned_mass, k2)
  return n1 + n2, _worst(e1, e2)


@_check("forward_kl_outside_support", "8", 1e-5,
        "forward KL with pi_ref = 0 on some outputs: lambda = max(lambda_0, r_u) vs optax; two-level p = 0 gives max(0, 1 - 1/s)")
def _forward_kl_outside(key):
  keys = jax.random.split(key, 4)
  n, k = 12, 6
  log_ref = _random_log_probs(keys[0], (n, k), zero_fraction=0.4, spread=1.0)
  # every other instance lifts its unsupported outputs' rewards, so both regimes occur
  lifted = (jnp.arange(n) % 2 == 0)[:, None] & ~jnp.isfinite(log_ref)
  reward = 2.0 * jax.random.normal(keys[1], (n, k)) + jnp.where(lifted, 3.0, 0.0)
  beta = _log_uniform(keys[2], (n,), 0.2, 5.0)

  def negative_objective(log_pi, log_ref, reward, beta):
    return -(th.expected_reward(log_pi, reward) - beta * divergences.forward_kl(log_ref, log_pi))

  # started halfway between the reference and uniform: the reference's -inf logits would
  # freeze those outputs
  start = jnp.logaddexp(log_ref, -jnp.log(k)) - jnp.log(2.0)
  direct = _minimise_each(negative_objective, log_ref, reward, beta, steps=300, init=start)
  closed = jnp.exp(th.forward_kl_optimum(log_ref, reward, beta))
  err = jnp.max(jnp.abs(direct - closed))
  # the check must exercise left-over mass: some instances move mass outside the support
  outside = jnp.sum(jnp.where(jnp.isfinite(log_ref), 0.0, closed), axis=-1)
  vacuous = jnp.where(jnp.sum(outside > 1e-3) >= 2, 0.0, jnp.inf)
  s = _log_uniform(keys[3], (20,), 1e-2, 1e3)
  log_ref2, reward2, in_set = _two_level_batch(jnp.zeros_like(s), s)
  general = jnp.exp(_log_mass_on(in_set, th.forward_kl_optimum(log_ref2, reward2, 1.0)))
  err2 = jnp.max(jnp.abs(general - jnp.maximum(0.0, 1.0 - 1.0 / s)))
  err3 = jnp.max(jnp.abs(th.forward_kl_aligned_mass(0.0, s, 1.0) - jnp.maximum(0.0, 1.0 - 1.0 / s)))
  return n + 2 * int(s.size), _worst(err, err2, err3, vacuous)


def forward_kl_escape_rule(s, p):
  """Theory item 8: the two-level forward-KL optimum reaches ``pi(A) >= 1/2`` iff
  ``s + 4p >= 2`` (``s = gap/beta``), for every ``s > 0``: ``f(t) = s t^2 - (s-1) t - p`` is
  convex with ``f(0) = -p <= 0``, so its non-negative root is >= 1/2 iff
  ``f(1/2) = (2 - s - 4p)/4 <= 0``."""
  return s + 4.0 * p >= 2.0


# s = 0.5, p = 0.45 and s = 1, p = 0.3 escape although s <= 1 (a rule once stated in the docs,
# "only for s >= 2, or 1 < s < 2 with p >= (2-s)/4", called them trapped). Their roots by hand:
# s = 0.5: t^2 + t - 2p = 0, t = (sqrt(1 + 8p) - 1)/2; s = 1: t^2 = p.
_FORWARD_KL_COUNTEREXAMPLES = ((0.5, 0.45, (math.sqrt(4.6) - 1.0) / 2.0), (1.0, 0.3, math.sqrt(0.3)))


def forward_kl_escape_errors(rule=forward_kl_escape_rule, margin: float = 1e-12,
                             general_margin: float = 1e-9):
  """``(instances, error)`` of an escape rule ``rule(s, p) -> bool`` against the optimum itself.

  Grid: s = 0.01, 0.02, ..., 4 (400 values) x p = 1/400, ..., 399/400, plus for each s < 2
  the two cells ``p = (2 - s)/4 (1 -+ 1e-9)`` straddling the boundary. The mass ``t*`` comes
  from the closed-form root (:func:`th.forward_kl_aligned_mass`) on the whole grid and from the
  general optimum (bisection for lambda, :func:`th.forward_kl_optimum` on a 7-atom two-level
  reference) on every 8th s and p. Cells with ``|s + 4p - 2| <= margin`` (``general_margin``
  for the bisection) are left out: there ``t* - 1/2 ~ (2 - s - 4p)/4`` is within rounding.
  The error is the number of cells where ``t* >= 1/2`` and ``rule`` disagree, plus the
  absolute error of both routes at the two counterexamples; infinite if the grid holds no
  cell with ``s <= 1`` that escapes (the check would be vacuous for the corrected part).
  """
  s_axis = np.arange(1, 401) / 100.0   # numpy: the grid stays concrete under jit
  p_axis = np.arange(1, 400) / 400.0
  s_grid, p_grid = (a.ravel() for a in np.meshgrid(s_axis, p_axis, indexing="ij"))
  below = s_axis[s_axis < 2.0]
  edge = (2.0 - below) / 4.0
  s_all = jnp.asarray(np.concatenate([s_grid, below, below]))
  p_all = jnp.asarray(np.concatenate([p_grid, edge * (1.0 - 1e-9), edge * (1.0 + 1e-9)]))
  closed = th.forward_kl_aligned_mass(p_all, s_all, 1.0)
  away = jnp.abs(s_all + 4.0 * p_all - 2.0) > margin
  wrong = jnp.sum(away & ((closed >= 0.5) != rule(s_all, p_all)))
  # independent route: the general optimum on a coarser grid
  s_coarse, p_coarse = (a.ravel() for a in np.meshgrid(s_axis[::8], p_axis[::8], indexing="ij"))
  cex_np = np.array(_FORWARD_KL_COUNTEREXAMPLES)
  cex = jnp.asarray(cex_np)
  s_gen = jnp.asarray(np.concatenate([s_coarse, cex_np[:, 0]]))
  p_gen = jnp.asarray(np.concatenate([p_coarse, cex_np[:, 1]]))
  log_ref, reward, in_set = _two_level_batch(p_gen, s_gen)
  general = jnp.exp(_log_mass_on(in_set, th.forward_kl_optimum(log_ref, reward, 1.0)))
  away_gen = jnp.abs(s_gen + 4.0 * p_gen - 2.0) > general_margin
  wrong_gen = jnp.sum(away_gen & ((general >= 0.5) != rule(s_gen, p_gen)))
  # the counterexamples: both routes against the hand-solved roots, and the rule on them
  n_cex = cex.shape[0]
  cex_err = jnp.concatenate([
      jnp.abs(th.forward_kl_aligned_mass(cex[:, 1], cex[:, 0], 1.0) - cex[:, 2]),
      jnp.abs(general[-n_cex:] - cex[:, 2]),
      jnp.where(rule(cex[:, 0], cex[:, 1]), 0.0, 1.0)])
  vacuous = jnp.where(jnp.any(away & (s_all <= 1.0) & (closed >= 0.5)), 0.0, jnp.inf)
  instances = int(s_all.size + s_gen.size + n_cex)
  return instances, _worst(wrong.astype(float), wrong_gen.astype(float), cex_err, vacuous)


@_check("forward_kl_escape_rule", "8", 1e-12,
        "two-level forward KL: t* >= 1/2 (closed-form root on a 400 x 399 grid of s in (0, 4], p in (0, 1); "
        "bisection on a coarser one) iff s + 4p >= 2; s = 0.5, p = 0.45 and s = 1, p = 0.3 escape")
def _forward_kl_escape(key):
  del key  # a fixed grid
  return forward_kl_escape_errors()


@_check("chi2_kl_optimum", "8", 1e-6,
        "Lambert-W solution vs optax maximisation of E[r] - beta (KL + chi^2/2); two-level vs general")
def _chi2(key):
  k1, k2 = jax.random.split(key)

  def penalty(log_ref, log_pi):
    ratio = jnp.exp(log_pi - log_ref)
    return divergences.reverse_kl(log_ref, log_pi) + 0.5 * jnp.sum(jnp.exp(log_ref) * (ratio - 1.0) ** 2)

  n1, e1 = _regulariser_vs_optax(k1, th.chi2_kl_optimum, penalty)
  n2, e2 = _two_level_vs_general(th.chi2_kl_optimum, th.chi2_kl_aligned_mass, k2)
  return n1 + n2, _worst(e1, e2)


@_check("ipo_optimum", "8", 1e-6,
        "exact IPO loss minimised by optax equals the Gibbs tilt of P(y > pi_ref); odds gain <= e^(1/(2 tau))")
def _ipo(key):
  keys = jax.random.split(key, 2)
  log_ref, reward, tau = _small_problems(keys[0], 12, 6, (0.1, 10.0), reward_scale=2.0)
  direct = _minimise_each(th.ipo_loss_exact, log_ref, reward, tau)
  closed = jnp.exp(th.ipo_optimum(log_ref, reward, tau))
  err = jnp.max(jnp.abs(direct - closed))
  n = int(tau.size)
  n2, e2 = _two_level_vs_general(lambda lr, r, b: th.ipo_optimum(lr, r, b), th.ipo_aligned_mass, keys[1])
  p = _extreme_recalls(keys[1], 100)[:-1]
  gain = th.log_odds(th.ipo_aligned_mass(p, 1e6, 0.25)) - th.log_odds(p)  # however large the gap
  bound_excess = jnp.max(jnp.maximum(0.0, gain - 0.5 / 0.25 - 1e-9))
  return n + n2 + int(p.size), _worst(err, e2, bound_excess)


# ---------------------------------------------------------------------- item 9
@_check("best_of_n_enumeration", "9", 1e-12,
        "F(y)^N - F(y-)^N vs enumerating all N-tuples (uniform tie-breaking); top set 1-(1-p)^N", jit=False)
def _bon_enumeration(key):
  k = 5
  errs, count = [], 0
  for trial, n in itertools.product(range(3), (1, 2, 3, 4)):
    keys = jax.random.split(jax.random.fold_in(key, 10 * trial + n), 2)
    ref = np.asarray(jnp.exp(_random_log_probs(keys[0], (k,), spread=1.0)))
    reward = np.asarray(jax.random.randint(keys[1], (k,), 0, 3), dtype=np.float64)  # with ties
    brute = np.zeros(k)
    for draws in itertools.product(range(k), repeat=n):
      prob = np.prod(ref[list(draws)])
      best = max(reward[d] for d in draws)
      winners = [d for d in draws if reward[d] == best]
      for d in winners:
        brute[d] += prob / len(winners)
    closed = np.exp(np.asarray(th.best_of_n(jnp.log(ref), reward, float(n))))
    errs.append(np.max(np.abs(closed - brute)))
    top = reward == reward.max()
    errs.append(abs(closed[top].sum() - float(th.best_of_n_aligned_mass(min(ref[top].sum(), 1.0), float(n)))))
    kl = float(divergences.reverse_kl(jnp.log(ref), jnp.log(closed)))
    errs.append(max(0.0, kl - float(th.best_of_n_kl_bound(float(n)))))
    count += 1
  return count, float(max(errs))


@_check("best_of_n_kl_convergence", "9", 5e-4,
        "KL(pi_BoN||pi_ref) -> log N - (N-1)/N as M distinct outputs refine (error at M=4096, monotone in M)",
        jit=False)
def _bon_convergence(key):
  del key
  worst = 0.0
  for n in (2.0, 4.0, 16.0):
    errors_by_m = []
    for m in (64, 256, 1024, 4096):
      log_ref = jnp.full(m, -jnp.log(m))
      reward = jnp.arange(m, dtype=log_ref.dtype)
      kl = divergences.reverse_kl(log_ref, th.best_of_n(log_ref, reward, n))
      errors_by_m.append(float(th.best_of_n_kl_bound(n) - kl))
    if not all(a > b >= 0 for a, b in zip(errors_by_m, errors_by_m[1:])):
      return 3, float("inf")  # must approach the bound from below, monotonically
    worst = max(worst, errors_by_m[-1])
  return 3, worst


# ---------------------------------------------------------------------- item 10
@_check("prd_identities", "10", 1e-10,
        "PRD: alpha(1) = 1 - TV; recall(lambda->0) = p(supp q); precision(lambda->inf) = q(supp p); alpha/lambda = sum min(p, q/lambda)")
def _prd(key):
  n, k = 200, 15
  keys = jax.random.split(key, 2)
  log_p = _random_log_probs(keys[0], (n, k), zero_fraction=0.3)
  log_q = _random_log_probs(keys[1], (n, k), zero_fraction=0.3)
  lambdas = jnp.array([1e-14, 0.3, 1.0, 3.0, 1e14])
  precision = th.prd_precision(log_p, log_q, lambdas)
  recall = th.prd_recall(log_p, log_q, lambdas)
  errs = [
      jnp.abs(precision[:, 2] - (1.0 - divergences.tv(log_p, log_q))),
      jnp.abs(recall[:, 0] - th.max_recall(log_p, log_q)) - 1e-13,
      jnp.abs(precision[:, -1] - th.max_precision(log_p, log_q)) - 1e-13,
      jnp.abs(precision / lambdas - recall)[:, 1:4],
  ]
  return n, _worst(*(jnp.maximum(e, 0.0) for e in errs))


# ---------------------------------------------------------------------- item 11
@_check("kl_estimator_gradients", "11", 1e-10,
        "E[grad k1] = 0, E[grad k2] = grad KL(pi||pi_ref), E[grad k3] = grad KL(pi_ref||pi) (autodiff, exact sums)")
def _estimators(key):
  n, k = 100, 7
  keys = jax.random.split(key, 2)
  logits = 2.0 * jax.random.normal(keys[0], (n, k))
  log_ref = _random_log_probs(keys[1], (n, k))

  def errors_one(theta, log_ref):
    g1 = th.expected_estimator_gradient(th.k1, theta, log_ref)
    g2 = th.expected_estimator_gradient(th.k2, theta, log_ref)
    g3 = th.expected_estimator_gradient(th.k3, theta, log_ref)
    rev = jax.grad(lambda t: divergences.reverse_kl(log_ref, jax.nn.log_softmax(t)))(theta)
    fwd = jax.grad(lambda t: divergences.forward_kl(log_ref, jax.nn.log_softmax(t)))(theta)
    return jnp.max(jnp.abs(jnp.stack([g1, g2 - rev, g3 - fwd])))

  return n, jnp.max(jax.vmap(errors_one)(logits, log_ref))


# ---------------------------------------------------------------------- driver
def run_checks(names: list[str] | None = None, seed: int = 0) -> list[CheckResult]:
  """Run the named checks (all by default) in float64 and return their results."""
  selected = list(CHECKS) if names is None else names
  unknown = [n for n in selected if n not in CHECKS]
  if unknown:
    from recall_theory.errors import InputError
    raise InputError(f"--check: unknown check(s) {unknown}; choose from {sorted(CHECKS)}")
  results = []
  positions = {name: i for i, name in enumerate(CHECKS)}
  # one stage counting checks ("1/1" per check said nothing); its fields name the last one
  with jax.enable_x64(True), progress.stage("verify", total=len(selected), unit="checks") as bar:
    for name in selected:
      check = CHECKS[name]
      # keyed by the check's fixed position, so a check run alone sees the same instances
      run = jax.jit(check.run) if check.jit else check.run
      instances, max_error = run(jax.random.PRNGKey(1000 * seed + positions[name]))
      result = CheckResult(name, check.item, check.description, int(instances), float(max_error),
                           check.tolerance)
      results.append(result)
      bar.update(1, last=name, failed=sum(not r.passed for r in results))
  return results
