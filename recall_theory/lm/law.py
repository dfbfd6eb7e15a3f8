"""The law beside every aligned transformer: reference recall, reward gap, prediction.

theory.md item 12 applied to the transformer track. For an aligned model ``pi`` with
reference ``pi_ref`` and the target set ``A = {x : R(x) > 1/2}`` (``R`` the exact
posterior of the target style under the synthetic p*, so membership is exact per
sequence), the learning trap predicts

    predicted_mass = sigmoid(logit p_ref + Delta / beta),
    p_ref = pi_ref(A),   Delta / beta = (L_A - L_{A^c}) / beta,
    L_S / beta = log E_{pi_ref}[exp(r / beta) | S],

where ``r`` and ``beta`` are the reward and coefficient the algorithm's population
optimum tilts by (:func:`effective_reward`):

=========  ==========================================  =====================
algorithm  effective reward r(x)                       coefficient
=========  ==========================================  =====================
rloo       R(x) (the shaped reward's reward)           rloo_beta
dpo        c R(x) (Bradley-Terry labels at scale c)    beta
ipo        P(x > y), y ~ pi_ref: E_y[sigmoid(c(R(x) -  ipo_beta (IPO's tau)
           R(y))]
simpo      none: reference-free, no Gibbs optimum      --
=========  ==========================================  =====================

The expectations over ``pi_ref`` are Monte Carlo over ``n`` reference samples (the
densities of the transformers are exact, their target mass is not enumerable):

* ``p_ref`` = k / n with a Wilson 95% interval (:func:`target_rate`);
* ``Delta / beta`` = the plug-in soft-max gap, with a bootstrap 95% percentile interval
  over the same samples (:func:`soft_max_gap`). On A the reward lies in
  ``(g(1/2), g(1)]`` (``g`` the reward as a function of R, increasing), so when no
  reference sample lands in A, ``L_A`` is bracketed by that range and its midpoint
  is the point value (the estimator string says so).

Example::

  stats = reference_statistics(reward_R_N, in_target_N, algorithm="rloo", beta=1.3,
                               rloo_beta=0.13, ipo_beta=0.075, bt_scale=10.0,
                               rng=np.random.default_rng(0))
  stats["reference_recall"], stats["delta_over_beta"], stats["delta_over_beta_interval"]
"""

from __future__ import annotations

import math

import numpy as np

from recall_theory import stats

LAW_ALGORITHMS = ("dpo", "ipo", "rloo")  # algorithms whose optimum is a Gibbs tilt
BOOTSTRAP_RESAMPLES = 200


def target_rate(in_target_N) -> dict:
  """Share of samples in A with its Wilson 95% interval.

  Returns ``{"rate", "low", "high", "k", "n"}`` (floats / ints).
  """
  in_target_N = np.asarray(in_target_N, bool).ravel()
  n, k = int(in_target_N.size), int(in_target_N.sum())
  low, high = stats.wilson_interval(k, n)
  return {"rate": k / n, "low": float(low), "high": float(high), "k": k, "n": n}


def effective_reward(algorithm: str, reward_R_N: np.ndarray, *, beta: float, rloo_beta: float,
                     ipo_beta: float, bt_scale: float):
  """The reward function g(R) and coefficient the algorithm's optimum tilts by.

  Args:
    algorithm: one of ``dpo``, ``ipo``, ``rloo`` (SimPO has no Gibbs optimum).
    reward_R_N: oracle rewards R of the reference samples (IPO's reward is the
      probability of beating a reference sample, estimated on these).
    beta, rloo_beta, ipo_beta, bt_scale: the run's coefficients (DPO's beta, RLOO's
      KL coefficient, IPO's tau, the Bradley-Terry scale c of the labels).

  Returns:
    ``(g, coefficient)`` with ``g`` a vectorised increasing map R -> r.
  """
  if algorithm == "rloo":
    return (lambda r: np.asarray(r, float)), float(rloo_beta)
  if algorithm == "dpo":
    return (lambda r: float(bt_scale) * np.asarray(r, float)), float(beta)
  if algorithm == "ipo":
    others = np.asarray(reward_R_N, float).ravel()

    def win_probability(r):
      r = np.asarray(r, float)
      flat = r.ravel()
      out = np.empty(flat.shape)
      for i in range(0, flat.size, 1024):  # [chunk, n] logistic matrix, bounded memory
        diff = float(bt_scale) * (flat[i:i + 1024, None] - others[None, :])
        out[i:i + 1024] = np.mean(0.5 * (1.0 + np.tanh(0.5 * diff)), axis=1)
      return out.reshape(r.shape)

    return win_probability, float(ipo_beta)
  raise ValueError(f"no Gibbs optimum for algorithm {algorithm!r} (one of {LAW_ALGORITHMS})")


def _log_mean_exp(z_N: np.ndarray, weights_BxN: np.ndarray) -> np.ndarray:
  """log(sum_i w_i e^{z_i} / sum_i w_i) per row of weights (nan where sum w = 0): [B]."""
  if z_N.size == 0:
    return np.full(weights_BxN.shape[0], np.nan)
  top = np.max(z_N)
  total = weights_BxN @ np.exp(z_N - top)
  count = weights_BxN.sum(axis=1)
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(count > 0, top + np.log(total) - np.log(count), np.nan)


def soft_max_gap(effective_N: np.ndarray, in_target_N: np.ndarray, coefficient: float, *,
                 target_bounds: tuple[float, float], rng: np.random.Generator,
                 resamples: int = BOOTSTRAP_RESAMPLES) -> dict:
  """``(L_A - L_{A^c}) / beta`` from reference samples, with a bootstrap interval.

  ``L_S / beta = log mean_{x in S} exp(r(x) / beta)`` over the samples in S (plug-in
  estimate of ``log E_ref[e^{r/beta} | S]``). Resampling the n samples with
  replacement ``resamples`` times gives the 2.5% / 97.5% percentiles. A (re)sample
  with no point in A uses the bracket ``target_bounds = (g(1/2), g(1))`` of the
  reward on A: its midpoint for the value, its ends for the interval.

  Returns ``{"value", "low", "high", "n_target", "bracketed"}``.
  """
  z = np.asarray(effective_N, float).ravel() / coefficient
  in_a = np.asarray(in_target_N, bool).ravel()
  lo_a, hi_a = (b / coefficient for b in target_bounds)
  n = z.size
  # Resamples drawn in chunks (the same draws, in the same order, as one call): memory grows
  # with the chunk, not with resamples x n (a pool of 2^19 samples would need 0.8 GB at once).
  chunk = max(1, min(resamples, (1 << 23) // max(n, 1)))
  l_a_parts, l_c_parts = [_log_mean_exp(z[in_a], np.ones((1, int(in_a.sum()))))], \
      [_log_mean_exp(z[~in_a], np.ones((1, int((~in_a).sum()))))]
  for start in range(0, resamples, chunk):
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=min(chunk, resamples - start))
    l_a_parts.append(_log_mean_exp(z[in_a], weights[:, in_a]))
    l_c_parts.append(_log_mean_exp(z[~in_a], weights[:, ~in_a]))
  l_a, l_c = np.concatenate(l_a_parts), np.concatenate(l_c_parts)
  gap_point = l_a - l_c
  empty = np.isnan(l_a)
  # No sample in A: the gap is bracketed by the reward's range on A.
  gap_low = np.where(empty, lo_a - l_c, gap_point)
  gap_high = np.where(empty, hi_a - l_c, gap_point)
  gap_mid = np.where(empty, 0.5 * (lo_a + hi_a) - l_c, gap_point)
  value = float(gap_mid[0])
  low = float(min(np.nanpercentile(gap_low[1:], 2.5), value))
  high = float(max(np.nanpercentile(gap_high[1:], 97.5), value))
  return {"value": value, "low": low, "high": high, "n_target": int(in_a.sum()),
          "bracketed": bool(empty[0])}


def reference_statistics(reward_R_N, in_target_N, *, algorithm: str, beta: float,
                         rloo_beta: float, ipo_beta: float, bt_scale: float,
                         rng: np.random.Generator) -> dict:
  """``p_ref`` and ``Delta/beta`` with intervals, from n samples of one reference.

  Args:
    reward_R_N: oracle posterior R(x) of each reference sample, [n].
    in_target_N: whether each sample lies in A (``R > 1/2``), [n] bool.
    algorithm: ``dpo``, ``ipo``, ``rloo`` or ``simpo`` (SimPO: Delta/beta is nan).
    beta, rloo_beta, ipo_beta, bt_scale: the run's coefficients.
    rng: numpy generator of the bootstrap.

  Returns:
    ``reference_recall`` and its ``_interval``, ``delta_over_beta`` and its
    ``_interval``, ``estimator`` (a short description), ``n_reference``, ``k_reference``.
  """
  reward_R_N = np.asarray(reward_R_N, float).ravel()
  in_target_N = np.asarray(in_target_N, bool).ravel()
  rate = target_rate(in_target_N)
  out = {"reference_recall": rate["rate"],
         "reference_recall_interval": (rate["low"], rate["high"]),
         "n_reference": rate["n"], "k_reference": rate["k"]}
  p_part = f"p_ref: monte-carlo n={rate['n']} reference samples (k={rate['k']}), wilson 95%"
  if algorithm not in LAW_ALGORITHMS:
    out.update(delta_over_beta=math.nan, delta_over_beta_interval=(math.nan, math.nan),
               estimator=f"{p_part}; {algorithm}: reference-free, no Gibbs optimum "
                         "(delta_over_beta, predicted_mass n/a; p_ref, kl and ceiling against "
                         "the policy it started from)")
    return out
  g, coefficient = effective_reward(algorithm, reward_R_N, beta=beta, rloo_beta=rloo_beta,
                                    ipo_beta=ipo_beta, bt_scale=bt_scale)
  bounds = (float(g(np.array(0.5))), float(g(np.array(1.0))))
  gap = soft_max_gap(g(reward_R_N), in_target_N, coefficient, target_bounds=bounds, rng=rng)
  d_part = (f"delta/beta: plug-in soft-max gap, bootstrap 95% (B={BOOTSTRAP_RESAMPLES})"
            + ("; no reference sample in A: L_A bracketed by the reward's range on A"
               if gap["bracketed"] else ""))
  out.update(delta_over_beta=gap["value"], delta_over_beta_interval=(gap["low"], gap["high"]),
             estimator=f"{p_part}; {d_part}")
  return out


def trap_boundary(reference_recall) -> np.ndarray:
  """``log((1 - p) / p)``: the Delta/beta at which the optimum's mass reaches 1/2."""
  p = np.asarray(reference_recall, float)
  with np.errstate(divide="ignore"):
    return np.log1p(-p) - np.log(p)
