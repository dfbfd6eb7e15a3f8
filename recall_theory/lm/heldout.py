"""Held-out objectives of the alignment stages, their optima, and the distance to the optimum.

Every stage trained to a plateau (:mod:`recall_theory.plateau`) is judged on draws it never
trained on, fixed for the whole stage (the same evaluation key at every checkpoint, so the
changes between checkpoints are paired). Each evaluator returns a
:class:`~recall_theory.plateau.Checkpoint` with the held-out objective, its optimal value, the
sub-optimality (>= 0 in the population; the RLOO one takes its ``log Z`` from a plug-in
estimate, biased low, so it can dip slightly below 0 near the optimum) and the aligned mass of fresh policy samples.

Objectives, with ``z(y) = r(y)/beta`` the effective reward the algorithm's optimum tilts by
(:func:`recall_theory.lm.law.effective_reward`) and ``pi* = pi_ref e^z / Z`` that tilt
(theory.md items 1, 5, 13):

=================  ==================================================  =====================
evaluator          objective (held-out)                                optimum / sub-opt.
=================  ==================================================  =====================
kl_regularised     ``J/beta = E_pi[z] - KL(pi || pi_ref)``, nats per     ``log Z``;
                   sequence, over policy samples                       ``log Z - J/beta = KL(pi || pi*)``
pairs (dpo)        expected DPO loss over held-out pairs, the label     the tilt's loss, ``h* = c (R1 - R2)``;
                   averaged out: ``q l(h) + (1-q) l(-h)``,              sub-opt. = mean
                   ``q = sigmoid(c (R1 - R2))``, nats per pair          ``KL(Bern(q) || Bern(sigmoid h))``
pairs (ipo)        ``q (h - 1/2tau)^2 + (1-q)(h + 1/2tau)^2``          ``h* = (g(y1) - g(y2))/tau``,
                                                                       ``g(y) = P(y beats pi_ref)``
pairs (simpo)      the SimPO loss, label averaged                      none (reference-free)
likelihood         ``-E_{pi*}[log pi(y)]`` over held-out tilt samples,  ``-E[log pi*(y)]``;
                   nats per sequence                                   sub-opt. = ``KL(pi* || pi)``
=================  ==================================================  =====================

Averaging the Bradley-Terry label out (its conditional expectation given the pair) is the
same population loss with less variance; with it every DPO sub-optimality term is a KL
between Bernoullis, non-negative pair by pair. ``log Z`` is the plug-in
``log mean_i e^{z(y_i)}`` over the reference samples of the law (the same samples that give
its ``Delta/beta``), so a row's sub-optimality and its predicted mass share one estimate.

Example::

  ev = kl_regularised_evaluator(groundtruth, reference, jax.random.key(0), n=2048,
                                 reward_fn=lambda R: R, coefficient=0.18, log_z=1.98)
  point = ev(policy)       # Checkpoint(objective=J/beta, optimum=log Z, suboptimality=KL(pi||pi*), mass)
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import numpy as np
from scipy.special import log_expit

from recall_theory.lm import metrics
from recall_theory.plateau import Checkpoint

Evaluator = Callable[..., Checkpoint]


def log_partition(effective_N, coefficient: float) -> float:
  """``log Z = log mean_i exp(r_i / beta)`` over reference samples (stable logsumexp)."""
  z = np.asarray(effective_N, np.float64).ravel() / float(coefficient)
  top = float(np.max(z))
  return top + math.log(float(np.mean(np.exp(z - top))))


def _prompt_len(groundtruth) -> int:
  return int(np.shape(groundtruth.prompt)[0])


def policy_draws(model, groundtruth, key, n: int) -> tuple[jax.Array, np.ndarray, np.ndarray]:
  """(tokens [n, L], log pi [n] float64, in A [n] bool) of n samples of ``model`` drawn with ``key``."""
  x = metrics.sample_model(model, groundtruth, key, n)
  log_q = np.asarray(metrics.model_log_prob(model, x, _prompt_len(groundtruth)), np.float64)
  return x, log_q, np.asarray(groundtruth.shows_target(x), bool)


def kl_to_optimum(log_policy_N, log_reference_N, effective_N, coefficient: float,
                  log_z: float) -> np.ndarray:
  """Per-sample terms of ``KL(pi || pi*) = E_pi[log pi - log pi_ref - r/beta] + log Z`` ([n])."""
  return (np.asarray(log_policy_N, np.float64) - np.asarray(log_reference_N, np.float64)
          - np.asarray(effective_N, np.float64) / coefficient + log_z)


def kl_regularised_evaluator(groundtruth, reference, key, *, n: int, reward_fn: Callable,
                             coefficient: float, log_z: float) -> Evaluator:
  """Held-out ``J/beta = E_pi[r/beta] - KL(pi || pi_ref)`` on n policy samples per checkpoint.

  ``reward_fn`` maps the oracle reward R to the effective reward r; ``log_z`` is the
  reference's ``log E_ref[e^{r/beta}]``, the objective's optimum.
  """
  p = _prompt_len(groundtruth)

  def evaluate(model) -> Checkpoint:
    x, log_q, in_a = policy_draws(model, groundtruth, key, n)
    log_ref = np.asarray(metrics.model_log_prob(reference, x, p), np.float64)
    r = np.asarray(reward_fn(np.asarray(groundtruth.reward(x), np.float64)), np.float64)
    per_draw = r / coefficient - (log_q - log_ref)
    objective = float(np.mean(per_draw))
    return Checkpoint(step=0, objective=objective, mass=float(np.mean(in_a)), optimum=log_z,
                      suboptimality=log_z - objective, objective_N=per_draw, in_target_N=in_a)

  return evaluate


def _dpo_pair_loss(h, q):
  """Label-averaged DPO loss ``-q log sigmoid(h) - (1-q) log sigmoid(-h)`` (float64)."""
  return -(q * log_expit(h) + (1.0 - q) * log_expit(-h))


def _ipo_pair_loss(h, q, tau):
  c = 1.0 / (2.0 * tau)
  return q * (h - c) ** 2 + (1.0 - q) * (h + c) ** 2


class HeldOutPairs(dict):
  """Held-out pairs: ``y1``, ``y2`` [n, L], label probability ``q`` = P(y1 preferred) [n],
  oracle rewards ``r1``, ``r2`` and reference log-probs ``ref1``, ``ref2`` [n] (float64)."""


def held_out_pairs(first, second, groundtruth, reference, bt_scale: float) -> HeldOutPairs:
  """Pairs (first[i], second[i]) with their label probabilities and reference log-probs."""
  p = _prompt_len(groundtruth)
  r1 = np.asarray(groundtruth.reward(first), np.float64)
  r2 = np.asarray(groundtruth.reward(second), np.float64)
  q = 1.0 / (1.0 + np.exp(-bt_scale * (r1 - r2)))
  return HeldOutPairs(y1=first, y2=second, q=q, r1=r1, r2=r2,
                      ref1=np.asarray(metrics.model_log_prob(reference, first, p), np.float64),
                      ref2=np.asarray(metrics.model_log_prob(reference, second, p), np.float64))


def pair_evaluator(groundtruth, pairs: HeldOutPairs, key, *, n: int, algorithm: str, beta: float,
                   bt_scale: float, simpo_gamma: float = 0.5,
                   ipo_win_probability: Callable | None = None) -> Evaluator:
  """Held-out preference loss (label averaged) of ``algorithm`` in (dpo, ipo, simpo).

  The optimum is the loss of the algorithm's population minimiser on the same pairs:
  DPO's tilt ``h* = c (R1 - R2)``; IPO's ``h* = (g(y1) - g(y2))/tau`` with ``g`` the
  probability of beating a reference sample (``ipo_win_probability``); SimPO has none
  (nan). The aligned mass comes from n fresh policy samples drawn with ``key``.
  """
  p = _prompt_len(groundtruth)
  q = pairs["q"]
  if algorithm == "dpo":
    optimum_N = _dpo_pair_loss(bt_scale * (pairs["r1"] - pairs["r2"]), q)
  elif algorithm == "ipo":
    if ipo_win_probability is None:
      raise ValueError("the IPO evaluator needs ipo_win_probability")
    h_star = (ipo_win_probability(pairs["r1"]) - ipo_win_probability(pairs["r2"])) / beta
    optimum_N = _ipo_pair_loss(h_star, q, beta)
  elif algorithm == "simpo":
    optimum_N = np.full(q.shape, np.nan)
  else:
    raise ValueError(f"no pair objective for {algorithm!r}")
  optimum = float(np.mean(optimum_N))
  t = int(np.shape(pairs["y1"])[1]) - p

  def evaluate(model) -> Checkpoint:
    lp1 = np.asarray(metrics.model_log_prob(model, pairs["y1"], p), np.float64)
    lp2 = np.asarray(metrics.model_log_prob(model, pairs["y2"], p), np.float64)
    if algorithm == "simpo":
      h = beta * (lp1 - lp2) / t
      per_pair = q * -log_expit(h - simpo_gamma) + (1.0 - q) * -log_expit(-h - simpo_gamma)
    elif algorithm == "dpo":
      h = beta * ((lp1 - pairs["ref1"]) - (lp2 - pairs["ref2"]))
      per_pair = _dpo_pair_loss(h, q)
    else:  # IPO's margin is the unscaled log-ratio difference (losses.ipo_loss)
      h = (lp1 - pairs["ref1"]) - (lp2 - pairs["ref2"])
      per_pair = _ipo_pair_loss(h, q, beta)
    _, _, in_a = policy_draws(model, groundtruth, key, n)
    objective = float(np.mean(per_pair))
    return Checkpoint(step=0, objective=objective, mass=float(np.mean(in_a)), optimum=optimum,
                      suboptimality=objective - optimum, objective_N=per_pair, in_target_N=in_a)

  return evaluate


def likelihood_evaluator(groundtruth, tilt_samples, log_optimum_N, key, *, n: int) -> Evaluator:
  """Held-out ``-E_{pi*}[log pi]`` over samples of the tilt ``pi*`` (nats per sequence).

  ``log_optimum_N`` is ``log pi*(y)`` of each held-out sample (``log pi_ref(y) + r/beta -
  log Z``); the sub-optimality is ``mean(log pi* - log pi) = KL(pi* || pi)``.
  """
  p = _prompt_len(groundtruth)
  optimum_N = -np.asarray(log_optimum_N, np.float64)
  optimum = float(np.mean(optimum_N))

  def evaluate(model) -> Checkpoint:
    per_draw = -np.asarray(metrics.model_log_prob(model, tilt_samples, p), np.float64)
    _, _, in_a = policy_draws(model, groundtruth, key, n)
    objective = float(np.mean(per_draw))
    return Checkpoint(step=0, objective=objective, mass=float(np.mean(in_a)), optimum=optimum,
                      suboptimality=objective - optimum, objective_N=per_draw, in_target_N=in_a)

  return evaluate
