"""Spreads, intervals and paired comparisons: one rule for every table and note.

* Spreads are the **sample** standard deviation over seeds (``ddof = 1``); every table
  caption says so with :data:`SD_CAPTION`.
* A rate ``k / n`` gets a Wilson score interval (Wilson 1927), which stays inside [0, 1]
  and is honest at ``k = 0``.
* "A beats B" is a paired statement over seeds: the mean per-seed difference with a
  Student-t interval, the count of seeds on each side, and a verdict that calls a
  difference below the estimate's resolution a **tie**.

Example::

  >>> cmp = paired_comparison([0.9, 0.8, 0.85], [0.1, 0.2, 0.15])
  >>> cmp["verdict"], cmp["n_positive"]
  ('ahead', 3)
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

SD_CAPTION = "sd = sample standard deviation over seeds (ddof = 1)"


def _student_t_quantile(confidence: float, dof: int) -> float:
  from scipy import stats as sps
  return float(sps.t.ppf(0.5 + confidence / 2.0, dof))


def _normal_quantile(confidence: float) -> float:
  from scipy import stats as sps
  return float(sps.norm.ppf(0.5 + confidence / 2.0))


def mean_sd(values: Sequence[float]) -> tuple[float, float, int]:
  """``(mean, sample sd (ddof=1), n)``; sd is nan for fewer than two values."""
  arr = np.asarray(values, dtype=float).ravel()
  n = int(arr.size)
  if n == 0:
    return float("nan"), float("nan"), 0
  mean = float(np.mean(arr))
  sd = float(np.std(arr, ddof=1)) if n > 1 else float("nan")
  return mean, sd, n


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
  """Student-t interval of the mean: ``mean -+ t_{n-1} sd / sqrt(n)`` (nan for n < 2)."""
  mean, sd, n = mean_sd(values)
  if n < 2:
    return float("nan"), float("nan")
  half = _student_t_quantile(confidence, n - 1) * sd / math.sqrt(n)
  return mean - half, mean + half


def wilson_interval(k, n, confidence: float = 0.95):
  """Wilson score interval of a proportion ``k / n`` (arrays broadcast).

  ``(p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)`` with ``p = k/n``.
  Reference: Wilson (1927), JASA 22:209.
  """
  k = np.asarray(k, dtype=float)
  n = np.asarray(n, dtype=float)
  if np.any(n <= 0) or np.any(k < 0) or np.any(k > n):
    raise ValueError("wilson_interval needs 0 <= k <= n and n > 0")
  z = _normal_quantile(confidence)
  p = k / n
  denom = 1.0 + z * z / n
  centre = (p + z * z / (2 * n)) / denom
  half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
  low, high = np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)
  low = np.where(k == 0, 0.0, low)
  high = np.where(k == n, 1.0, high)
  if low.ndim == 0:
    return float(low), float(high)
  return low, high


def sign_test_p(n_positive: int, n_negative: int) -> float:
  """Exact two-sided sign test: P(a split at least as uneven | fair coin), ties dropped.

  Example: 5 seeds all on one side give 2/32 = 0.0625 (five seeds cannot reach p < 0.05).
  """
  n = int(n_positive) + int(n_negative)
  if n == 0:
    return 1.0
  k = min(int(n_positive), int(n_negative))
  return min(1.0, 2.0 * sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n)


SIGN_TEST_LEVEL = 0.05


def min_seeds_for_sign_test(level: float = SIGN_TEST_LEVEL) -> int:
  """Fewest untied seeds whose most uneven split reaches ``level`` in the two-sided sign test.

  All n on one side gives ``p = 2 / 2^n``, so n = ceil(log2(2 / level)): 6 at 5%.
  """
  return max(1, math.ceil(math.log2(2.0 / level) - 1e-12))


def sign_test_note(n_positive: int, n_negative: int, level: float = SIGN_TEST_LEVEL) -> str:
  """``"sign test p = 0.031"``, or with fewer untied seeds than a ``level`` sign test can
  resolve, ``"sign test p = 0.062: too few seeds to call (a 5% sign test needs 6)"``."""
  p = sign_test_p(n_positive, n_negative)
  text = f"sign test p = {p:.2g}"
  need = min_seeds_for_sign_test(level)
  if int(n_positive) + int(n_negative) < need:
    text += f": too few seeds to call (a {100 * level:g}% sign test needs {need})"
  return text


def paired_comparison(a: Sequence[float], b: Sequence[float], resolution: float = 0.0,
                      confidence: float = 0.95) -> dict:
  """Paired comparison of per-seed values ``a`` and ``b`` (same seed order).

  Returns ``n, mean_diff, sd_diff, ci_low, ci_high`` (Student-t interval of the mean
  difference ``a - b``), ``n_positive``, ``n_negative``, ``n_tied`` (seeds with
  ``|a - b| <= resolution``), ``sign_p`` (exact two-sided sign test over the untied seeds) and ``verdict``: ``"ahead"`` iff the interval lies above 0
  and the mean difference exceeds ``resolution``; ``"behind"`` mirrored; else ``"tie"``.
  With one seed there is no interval and the verdict is decided by the sign alone only
  when ``|diff| > resolution``.
  """
  a_arr = np.asarray(a, dtype=float).ravel()
  b_arr = np.asarray(b, dtype=float).ravel()
  if a_arr.shape != b_arr.shape or a_arr.size == 0:
    raise ValueError(f"paired_comparison needs equal non-empty lengths, got {a_arr.size} and {b_arr.size}")
  diff = a_arr - b_arr
  mean, sd, n = mean_sd(diff)
  low, high = mean_interval(diff, confidence)
  if n < 2 or not np.isfinite(sd) or sd == 0.0:
    low = high = mean  # no spread: the interval is the point
  tied = np.abs(diff) <= resolution
  verdict = "tie"
  if abs(mean) > resolution:
    if low > 0:
      verdict = "ahead"
    elif high < 0:
      verdict = "behind"
  n_pos, n_neg = int(np.sum((diff > 0) & ~tied)), int(np.sum((diff < 0) & ~tied))
  return {"n": n, "mean_diff": mean, "sd_diff": sd, "ci_low": float(low), "ci_high": float(high),
          "sign_p": sign_test_p(n_pos, n_neg),
          "n_positive": n_pos, "n_negative": n_neg,
          "n_tied": int(np.sum(tied)), "resolution": float(resolution), "confidence": confidence,
          "verdict": verdict}


def describe_comparison(cmp: dict, name_a: str, name_b: str, fmt: str = ".3f") -> str:
  """One sentence for a :func:`paired_comparison` result, numbers included."""
  pct = f"{100 * cmp['confidence']:g}%"
  interval = f"[{cmp['ci_low']:{fmt}}, {cmp['ci_high']:{fmt}}]"
  counts = (f"{cmp['n_positive']} of {cmp['n']} seeds higher, {cmp['n_negative']} lower"
            + (f", {cmp['n_tied']} tied" if cmp["n_tied"] else ""))
  sign = sign_test_note(cmp["n_positive"], cmp["n_negative"])
  if cmp["verdict"] == "ahead":
    return (f"{name_a} ahead of {name_b} by {cmp['mean_diff']:{fmt}} {interval} "
            f"({counts}; paired t {pct}; {sign})")
  if cmp["verdict"] == "behind":
    return (f"{name_a} behind {name_b} by {-cmp['mean_diff']:{fmt}} {interval} "
            f"({counts}; paired t {pct}; {sign})")
  return (f"{name_a} and {name_b} tie (difference {cmp['mean_diff']:{fmt}} {interval}, {counts}; "
          f"resolution {cmp['resolution']:g}; {sign})")
