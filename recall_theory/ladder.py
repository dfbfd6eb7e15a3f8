"""Budget ladders: parsing, where a rising budget reaches a level, and the price it measures.

Shared by both tracks' compute-matched experiments (:mod:`recall_theory.lm.compute_match`,
:mod:`recall_theory.mog.compute_match`): K-A is aligned at budget scales ``s`` of a ladder; the
*measured price of low recall* is the budget at which K-A's share reaches A-K's, relative to
A-K's. Crossings interpolate linearly in log cost between the last point below the level and
the first at or above it; a ladder that never reaches the level gives only a lower bound
(``not_reached``), never an extrapolated crossing.
"""

from __future__ import annotations

import math

import numpy as np

from recall_theory import stats
from recall_theory.errors import InputError


def parse_ladder(text: str, flag: str = "--ladder") -> tuple[float, ...]:
  """``"1,4,16,64"`` -> (1.0, 4.0, 16.0, 64.0): finite, positive, strictly increasing.

  Raises InputError naming ``flag`` and the offending value.

  >>> parse_ladder("1,4,16")
  (1.0, 4.0, 16.0)
  """
  parts = [p.strip() for p in str(text).split(",")]
  if not parts or any(not p for p in parts):
    raise InputError(f"{flag} must be a comma list of increasing positive budget scales "
                     f"(e.g. 1,4,16,64), got {text!r}")
  values = []
  for p in parts:
    try:
      v = float(p)
    except ValueError as err:
      raise InputError(f"{flag} value {p!r} is not a number (scales must be finite and > 0)") \
          from err
    if not math.isfinite(v):
      raise InputError(f"{flag} value {p} is not finite (scales must be finite and > 0)")
    if v <= 0:
      raise InputError(f"{flag} value {p} is not positive (scales must be finite and > 0)")
    if values and v <= values[-1]:
      raise InputError(f"{flag} value {p} does not increase on {values[-1]:g} (the ladder must "
                       f"be strictly increasing)")
    values.append(v)
  return tuple(values)


def scale_count(count: int, scale: float) -> int:
  """``max(1, round(scale * count))``: a budget count at ladder scale ``scale``."""
  return max(1, int(round(scale * count)))


def first_crossing(cost_L: np.ndarray, share_L: np.ndarray, level: float,
                   resolution: float = 0.0) -> dict:
  """Where a rising budget first brings ``share`` to ``level`` (linear in log cost).

  Args:
    cost_L: cost of each ladder point, increasing, > 0.
    share_L: the measured share at each point.
    level: the share to reach; a point reaches it when ``share >= level - resolution``
      (differences below ``resolution`` are ties).
    resolution: see ``level`` (default 0: exact comparison).

  Returns ``{"status": "below"|"crossed"|"not_reached", "cost": c}``: ``below`` when the
  first point already reaches the level (the crossing lies at or below its cost ``c``);
  ``crossed`` with ``c`` interpolated in ``log cost`` between the last point below and the
  first at or above; ``not_reached`` with ``c`` = the largest cost tried (a lower bound).

  >>> first_crossing(np.array([1., 4.]), np.array([0.1, 0.3]), 0.2)["cost"]
  2.0
  """
  cost_L, share_L = np.asarray(cost_L, float), np.asarray(share_L, float)
  target = level - resolution
  above = np.nonzero(share_L >= target)[0]
  if not above.size:
    return {"status": "not_reached", "cost": float(cost_L[-1])}
  i = int(above[0])
  if i == 0:
    return {"status": "below", "cost": float(cost_L[0])}
  s0, s1 = share_L[i - 1], share_L[i]
  frac = (target - s0) / (s1 - s0)
  log_c = math.log(cost_L[i - 1]) + frac * (math.log(cost_L[i]) - math.log(cost_L[i - 1]))
  return {"status": "crossed", "cost": float(math.exp(log_c))}


def crossings(ka_cost_SxL: np.ndarray, ka_share_SxL: np.ndarray, ak_share_S: np.ndarray,
              ak_cost_S: np.ndarray, resolution: float = 0.0) -> dict:
  """Per-seed and mean-curve crossings of K-A's ladder with A-K's level, as cost ratios.

  Args:
    ka_cost_SxL / ka_share_SxL: K-A's cost (samples or FLOPs) and share per seed and scale.
    ak_share_S / ak_cost_S: A-K's share and cost per seed (same seed order).
    resolution: shares within it of A-K's count as reaching it (:func:`first_crossing`).

  Returns ``ratio_S`` (crossing cost / A-K's cost per seed), ``status_S``, the mean curve's
  ``mean_ratio`` / ``mean_status``, and when every seed crossed (``crossed``), a 95%
  Student-t interval of the geometric mean ratio (``ratio_low``, ``ratio_high``, ``ratio_gm``)
  over the per-seed log ratios; otherwise those are nan and ``n_not_reached`` says how
  many seeds give only a lower bound.
  """
  ka_cost_SxL = np.asarray(ka_cost_SxL, float)
  ka_share_SxL = np.asarray(ka_share_SxL, float)
  ak_share_S, ak_cost_S = np.asarray(ak_share_S, float), np.asarray(ak_cost_S, float)
  per = [first_crossing(c, s, lv, resolution)
         for c, s, lv in zip(ka_cost_SxL, ka_share_SxL, ak_share_S)]
  ratio_S = np.array([p["cost"] for p in per]) / ak_cost_S
  status_S = np.array([p["status"] for p in per])
  mean = first_crossing(ka_cost_SxL.mean(0), ka_share_SxL.mean(0), float(ak_share_S.mean()),
                        resolution)
  out = {"ratio_S": ratio_S, "status_S": status_S,
         "mean_ratio": mean["cost"] / float(ak_cost_S.mean()), "mean_status": mean["status"],
         "n_not_reached": int(np.sum(status_S == "not_reached")),
         "n_below": int(np.sum(status_S == "below")),
         "ratio_gm": math.nan, "ratio_low": math.nan, "ratio_high": math.nan}
  if np.all(status_S == "crossed"):
    logs = np.log(ratio_S)
    out["ratio_gm"] = float(np.exp(logs.mean()))
    if len(logs) > 1:
      lo, hi = stats.mean_interval(logs)
      out["ratio_low"], out["ratio_high"] = float(np.exp(lo)), float(np.exp(hi))
  return out


def describe_crossing(cross: dict, *, unit: str, max_label: str) -> str:
  """One sentence on the measured price (generated, never hand-typed)."""
  n = len(cross["status_S"])
  ratios = ", ".join(f"{r:.3g}" for r in cross["ratio_S"])
  if cross["n_not_reached"] == n:
    return (f"not reached within {max_label}: in none of {n} seeds does K-A's share reach "
            f"A-K's, so the price in {unit} is above {min(cross['ratio_S']):.3g}x A-K's "
            f"(a lower bound)")
  if cross["n_not_reached"]:
    return (f"reached in {n - cross['n_not_reached']} of {n} seeds only (not reached within "
            f"{max_label} in the others); per-seed ratios of {unit} to A-K's: {ratios} "
            f"(those not reached are lower bounds); no interval")
  if cross["n_below"]:
    return (f"K-A reaches A-K's share already at the smallest budget in {cross['n_below']} of "
            f"{n} seeds (the crossing lies at or below it); per-seed ratios of {unit} to "
            f"A-K's: {ratios} (upper bounds where below)")
  interval = ("" if math.isnan(cross["ratio_low"]) else
              f" [{cross['ratio_low']:.3g}, {cross['ratio_high']:.3g}] (95% t-interval of the "
              f"geometric mean over {n} seeds)")
  return (f"K-A reaches A-K's share at {cross['ratio_gm']:.3g}x A-K's {unit}{interval}; "
          f"per seed: {ratios}")
