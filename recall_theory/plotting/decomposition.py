"""The gap decomposition as stacked bars, one panel per (setting, algorithm).

In each panel every pipeline gets one bar: its terms (:mod:`recall_theory.decomposition`) as
stacked segments in logit units, those that cost mass above zero and those that add mass
below it, in the order learning trap, representation, optimisation, sampling; a black dot
with a whisker marks the total and its 95% interval over seeds (K-A: its shortfall against
A's law, so that the learning trap is part of it; the others: against their own law).
"""

from __future__ import annotations

import numpy as np

from recall_theory.decomposition import TERM_LABELS, TERMS
from recall_theory.plotting.style import TEXT_WIDTH, paper_style

PIPELINE_ORDER = ("K-A", "A", "K-A(teacher-ref)")
TERM_COLORS = {"learning_trap": "#CC79A7", "representation": "#999999",
               "optimisation": "#E69F00", "sampling": "#0072B2"}
ALGORITHM_NAMES = {"dpo": "DPO", "rloo": "RLOO", "pg": "policy gradient", "ipo": "IPO"}


def _total(entry: dict) -> dict:
  return entry["total_vs_A"] if entry["pipeline"] == "K-A" and entry["total_vs_A"]["n"] else entry["total"]


def figure_data(entries) -> dict:
  """The arrays the figure draws, (panel, pipeline, term) with nan where a bar is absent."""
  panels = sorted({(e["setting"], e["algorithm"]) for e in entries},
                  key=lambda k: (k[0], ("dpo", "rloo", "pg", "ipo").index(k[1])
                                 if k[1] in ("dpo", "rloo", "pg", "ipo") else 9))
  n_p, n_q, n_t = len(panels), len(PIPELINE_ORDER), len(TERMS)
  mean = np.full((n_p, n_q, n_t), np.nan)
  low = np.full((n_p, n_q, n_t), np.nan)
  high = np.full((n_p, n_q, n_t), np.nan)
  total = np.full((n_p, n_q, 3), np.nan)
  seeds = np.zeros((n_p, n_q), int)
  for e in entries:
    if e["pipeline"] not in PIPELINE_ORDER:
      continue
    i = panels.index((e["setting"], e["algorithm"]))
    j = PIPELINE_ORDER.index(e["pipeline"])
    for k, term in enumerate(TERMS):
      s = e[term]
      if s["n"]:
        mean[i, j, k], low[i, j, k], high[i, j, k] = s["mean"], s["ci_low"], s["ci_high"]
    t = _total(e)
    total[i, j] = (t["mean"], t["ci_low"], t["ci_high"])
    seeds[i, j] = e["n_seeds"]
  return {"panel_setting": np.asarray([p[0] for p in panels]),
          "panel_algorithm": np.asarray([p[1] for p in panels]),
          "pipelines": np.asarray(PIPELINE_ORDER), "terms": np.asarray(TERMS),
          "term_mean": mean, "term_ci_low": low, "term_ci_high": high,
          "total_mean_low_high": total, "n_seeds": seeds}


def _panel_title(setting: str, algorithm: str) -> str:
  """``DPO, 3-mode student, beta = 0.3`` from a setting string ``student=3-mode;beta=0.3;...``."""
  name = ALGORITHM_NAMES.get(algorithm, algorithm)
  parts = []
  for part in setting.split(";"):
    key, _, value = part.partition("=")
    if key == "student":
      parts.append(f"{value} student")
    elif key == "beta":
      parts.append(f"$\\beta$ = {value}")
  return ", ".join([name] + parts)


def decomposition_figure(entries, *, title: str | None = None):
  """(figure, data) of the stacked-bar decomposition."""
  import matplotlib.pyplot as plt
  from matplotlib.patches import Patch
  from matplotlib.lines import Line2D

  data = figure_data(entries)
  n_panels = len(data["panel_algorithm"])
  n_cols = min(n_panels, 2)
  n_rows = -(-n_panels // n_cols)
  with paper_style():
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(TEXT_WIDTH, 2.3 * n_rows + 0.5),
                             squeeze=False, sharey=False)
    x = np.arange(len(PIPELINE_ORDER))
    for i in range(n_rows * n_cols):
      ax = axes.flat[i]
      if i >= n_panels:
        ax.set_visible(False)
        continue
      up = np.zeros(len(x))
      down = np.zeros(len(x))
      for k, term in enumerate(TERMS):
        values = np.nan_to_num(data["term_mean"][i, :, k])
        pos, neg = np.maximum(values, 0.0), np.minimum(values, 0.0)
        ax.bar(x, pos, 0.6, bottom=up, color=TERM_COLORS[term], edgecolor="white", linewidth=0.4)
        ax.bar(x, neg, 0.6, bottom=down, color=TERM_COLORS[term], edgecolor="white", linewidth=0.4)
        up += pos
        down += neg
      t = data["total_mean_low_high"][i]
      ok = np.isfinite(t[:, 0])
      ax.errorbar(x[ok], t[ok, 0], yerr=[t[ok, 0] - t[ok, 1], t[ok, 2] - t[ok, 0]], fmt="o",
                  color="black", markersize=3.5, capsize=2.5, linewidth=0.9, zorder=5)
      ax.axhline(0.0, color="black", linewidth=0.6)
      ax.set_xticks(x, ["K-A", "A", "K-A\n(teacher-ref)"])
      ax.set_xlim(-0.6, len(x) - 0.4)
      ax.set_title(_panel_title(str(data["panel_setting"][i]), str(data["panel_algorithm"][i])))
      if i % n_cols == 0:
        ax.set_ylabel("shortfall (logit units)")
      lo = min(np.nanmin(np.concatenate([down, t[ok, 1]])) if ok.any() else 0.0, 0.0)
      hi = max(np.nanmax(np.concatenate([up, t[ok, 2]])) if ok.any() else 0.0, 0.0)
      pad = 0.08 * max(hi - lo, 1.0)
      ax.set_ylim(lo - pad, hi + pad)
    handles = [Patch(facecolor=TERM_COLORS[t], label=TERM_LABELS[t]) for t in TERMS]
    handles.append(Line2D([], [], color="black", marker="o", linestyle="-", markersize=3.5,
                          label="total, 95% interval over seeds"))
    fig.legend(handles=handles, loc="outside upper center", ncol=5, frameon=False)
    if title:
      fig.suptitle(title, y=1.02)
  return fig, data
