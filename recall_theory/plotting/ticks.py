"""Axes for probabilities: log-odds (logit) axes with readable ticks and whole end markers.

A probability drawn on a logit axis spans decades on both sides of 1/2. The package's
figures draw values below a floor (a share of 0 of n samples) at the floor and values
above ``1 - floor`` at ``1 - floor``; :func:`padded_logit_limits` then sets the axis a few
percent of its log-odds span beyond both, so markers drawn there are whole, not chevrons
cut by the frame. :func:`probability_ticks` chooses ticks no closer than a share of the
span and labels them ``10^-k``, ``0.1``, ``0.5``, ``0.9``, ``1-10^-k`` itself (matplotlib's
logit formatter writes ``1-10.10^-13`` near 1).
"""

from __future__ import annotations

import math

import numpy as np


def log_odds(m: float) -> float:
  return math.log(m) - math.log1p(-m)


def from_log_odds(z: float) -> float:
  return 1.0 / (1.0 + math.exp(-z))


def probability_ticks(low: float, high: float, max_ticks: int = 7) -> tuple[list[float], list[str]]:
  """Readable ticks of a logit axis from ``low`` to ``high``: 10^-k, 0.1, 0.5, 0.9, 1 - 10^-k.

  Ticks are chosen outward from 1/2, each at least ``span / max_ticks`` log-odds from the
  previous one (``span`` = the axis' extent in log-odds), so labels never crowd however
  many decades the axis covers. Labels are mathtext: ``10^{-4}``, ``0.1``, ``0.5``,
  ``0.9``, ``0.99``, ``1-10^{-4}``.

  Example:
    >>> probability_ticks(1e-3, 0.999)[1]
    ['$10^{-3}$', '$10^{-2}$', '0.1', '0.5', '0.9', '0.99', '$1-10^{-3}$']
  """
  min_gap = (log_odds(high) - log_odds(low)) / max_ticks
  below = [(10.0 ** -k, "0.1" if k == 1 else f"$10^{{-{k}}}$") for k in range(1, 31)]
  above = [(1.0 - 10.0 ** -k, {1: "0.9", 2: "0.99"}.get(k, f"$1-10^{{-{k}}}$")) for k in range(1, 31)]
  chosen = [(0.5, "0.5")] if low <= 0.5 <= high else []
  for side in (below, above):
    last = 0.0
    for value, label in side:
      if not low <= value <= high:
        continue
      if abs(log_odds(value) - last) >= min_gap * (1 - 1e-9):
        chosen.append((value, label))
        last = log_odds(value)
  chosen.sort()
  return [v for v, _ in chosen], [label for _, label in chosen]


def padded_logit_limits(low: float, high: float, fraction: float = 0.04) -> tuple[float, float]:
  """``[low, high]`` widened by ``fraction`` of its log-odds span at each end (and by at
  least 0.3 log-odds): room for a marker drawn at either end."""
  a, b = log_odds(low), log_odds(high)
  pad = max(fraction * (b - a), 0.3)
  return from_log_odds(a - pad), from_log_odds(b + pad)


def padded_log_limits(low: float, high: float, fraction: float = 0.04) -> tuple[float, float]:
  """``[low, high]`` (> 0) widened by ``fraction`` of its span in decades at each end."""
  a, b = math.log10(low), math.log10(high)
  pad = max(fraction * (b - a), 0.05)
  return 10.0 ** (a - pad), 10.0 ** (b + pad)


def set_probability_axis(axis, low: float, high: float, max_ticks: int = 7) -> tuple[float, float]:
  """Make ``axis`` (``ax.xaxis`` or ``ax.yaxis``) a logit axis showing ``[low, high]`` whole
  (padded, :func:`padded_logit_limits`) with :func:`probability_ticks`; returns the limits."""
  from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

  ax = axis.axes
  lo, hi = padded_logit_limits(low, high)
  if axis is ax.xaxis:
    ax.set_xscale("logit")
    ax.set_xlim(lo, hi)
  else:
    ax.set_yscale("logit")
    ax.set_ylim(lo, hi)
  ticks, labels = probability_ticks(low, high, max_ticks)
  axis.set_major_locator(FixedLocator(ticks))
  axis.set_major_formatter(FixedFormatter(labels))
  axis.set_minor_locator(NullLocator())
  return lo, hi


def clip_probability(values, floor: float) -> np.ndarray:
  """Values clipped to ``[floor, 1 - floor]``: where they are drawn on a logit axis."""
  return np.clip(np.asarray(values, float), floor, 1.0 - floor)
