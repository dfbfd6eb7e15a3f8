"""The gap decomposition as stacked bars, one panel per (setting, algorithm).

In each panel every pipeline gets one bar: its terms (:mod:`recall_theory.decomposition`) as
stacked segments in logit units, those that cost mass above zero and those that add mass
below it (so a bar's top is not its total), in the order learning trap, representation,
optimisation, sampling; a black diamond with a whisker, drawn over the bar, marks the total
and its 95% interval over seeds (K-A: its shortfall against A's law, so that the learning
trap is part of it; the others: against their own law).

A segment's look says how far to trust it: filled, a resolved term; hollow (outlined in its
colour), a tie (interval containing 0 or mean below the resolution); hatched ``////``, a
term next to a level short of its plateau in some seed; hatched ``xxxx``, a term next to a
level whose evaluation draws were all or none in the target in some seed (its mass clipped
to half a sample: the term measures that failure, not a cause). Segments too thin to read
carry their value beside the bar.
"""

from __future__ import annotations

import numpy as np

from recall_theory.decomposition import TERM_LABELS, TERMS
from recall_theory.plotting.style import TEXT_WIDTH, darker, paper_style

PIPELINE_ORDER = ("K-A", "A", "K-A(teacher-ref)")
TERM_COLORS = {"learning_trap": "#CC79A7", "representation": "#999999",
               "optimisation": "#E69F00", "sampling": "#0072B2"}
ALGORITHM_NAMES = {"dpo": "DPO", "rloo": "RLOO", "pg": "policy gradient", "ipo": "IPO"}
# The levels each term is a difference of (the learning trap: the two laws, exact).
TERM_LEVELS = {"learning_trap": (), "representation": ("law", "best_in_class"),
               "optimisation": ("best_in_class", "covering_sampler"), "sampling": ("covering_sampler", "as_is")}
SHORT_HATCH, FAILED_HATCH = "////", "xxxx"
HATCH_COLOUR = "0.25"
THIN_PT = 8.0  # segments thinner than this carry their value beside the bar
LABEL_PT = 6.5  # the values' line height


def _short_of_plateau(entry: dict, level: str) -> bool:
  reached = str(entry.get(f"plateau_{level}", ""))
  if "/" not in reached:
    return False
  k, n = reached.split("/")
  return int(k) < int(n)


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
  tie = np.zeros((n_p, n_q, n_t), bool)
  short = np.zeros((n_p, n_q, n_t), bool)
  failed = np.zeros((n_p, n_q, n_t), bool)
  for e in entries:
    if e["pipeline"] not in PIPELINE_ORDER:
      continue
    i = panels.index((e["setting"], e["algorithm"]))
    j = PIPELINE_ORDER.index(e["pipeline"])
    for k, term in enumerate(TERMS):
      s = e[term]
      if s["n"]:
        mean[i, j, k], low[i, j, k], high[i, j, k] = s["mean"], s["ci_low"], s["ci_high"]
        tie[i, j, k] = s["verdict"] == "tie"
        short[i, j, k] = any(_short_of_plateau(e, lv) for lv in TERM_LEVELS[term])
        failed[i, j, k] = any(lv in e.get("clipped", ()) for lv in TERM_LEVELS[term])
    t = _total(e)
    total[i, j] = (t["mean"], t["ci_low"], t["ci_high"])
    seeds[i, j] = e["n_seeds"]
  return {"panel_setting": np.asarray([p[0] for p in panels]),
          "panel_algorithm": np.asarray([p[1] for p in panels]),
          "pipelines": np.asarray(PIPELINE_ORDER), "terms": np.asarray(TERMS),
          "term_mean": mean, "term_ci_low": low, "term_ci_high": high,
          "total_mean_low_high": total, "n_seeds": seeds,
          "term_tie": tie, "term_short_of_plateau": short, "term_next_to_failed_level": failed}


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


def _segment_style(colour, tie: bool, short: bool, failed: bool) -> dict:
  """bar() keywords of one segment: filled or hollow (tie), hatched where its levels fell short."""
  style = dict(color=colour, edgecolor="white", linewidth=0.4) if not tie else \
      dict(facecolor="white", edgecolor=colour, linewidth=0.9)
  hatch = FAILED_HATCH if failed else SHORT_HATCH if short else None
  return style, hatch


def _label_thin_segments(ax, labels) -> None:
  """Write each thin segment's value right of its bar, at the segment's height where it fits:
  labels of one bar are pushed apart (upward above zero, downward below it) and kept clear of
  the zero line. ``labels``: (x right of the bar, y middle, text, colour)."""
  fig = ax.figure
  fig.canvas.draw()
  px = fig.dpi / 72.0
  height = LABEL_PT * px
  to_display, to_data = ax.transData.transform, ax.transData.inverted().transform
  zero = to_display((0.0, 0.0))[1]
  by_bar: dict[float, list] = {}
  for x, y, text, colour in labels:
    by_bar.setdefault(x, []).append((to_display((x, y))[1], text, colour))
  for x, items in by_bar.items():
    above = sorted((i for i in items if i[0] >= zero), key=lambda i: i[0])
    below = sorted((i for i in items if i[0] < zero), key=lambda i: -i[0])
    placed = []
    last = zero + height / 2
    for y, text, colour in above:
      y = max(y, last + height if placed else zero + height * 0.75)
      placed.append((y, text, colour))
      last = y
    first_below = True
    for y, text, colour in below:
      y = min(y, last - height if not first_below else zero - height * 0.75)
      placed.append((y, text, colour))
      last, first_below = y, False
    for y, text, colour in placed:
      ax.annotate(text, (x, to_data((0.0, y))[1]), textcoords="offset points", xytext=(2, 0), ha="left",
                  va="center", fontsize=5.5, color=colour)


def decomposition_figure(entries, *, title: str | None = None):
  """(figure, data) of the stacked-bar decomposition (see the module docstring for the marks)."""
  import matplotlib.pyplot as plt
  from matplotlib.patches import Patch
  from matplotlib.lines import Line2D

  data = figure_data(entries)
  n_panels = len(data["panel_algorithm"])
  n_cols = min(n_panels, 2)
  n_rows = -(-n_panels // n_cols)
  width = 0.6
  with paper_style():
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(TEXT_WIDTH, 2.3 * n_rows + 0.7),
                             squeeze=False, sharey=False)
    x = np.arange(len(PIPELINE_ORDER))
    thin = []
    for i in range(n_rows * n_cols):
      ax = axes.flat[i]
      if i >= n_panels:
        ax.set_visible(False)
        continue
      up = np.zeros(len(x))
      down = np.zeros(len(x))
      segments = []
      for k, term in enumerate(TERMS):
        values = np.nan_to_num(data["term_mean"][i, :, k])
        for j in range(len(x)):
          v = float(values[j])
          if v == 0.0:
            continue
          bottom = up[j] if v > 0 else down[j]
          style, hatch = _segment_style(TERM_COLORS[term], bool(data["term_tie"][i, j, k]),
                                        bool(data["term_short_of_plateau"][i, j, k]),
                                        bool(data["term_next_to_failed_level"][i, j, k]))
          ax.bar(x[j], v, width, bottom=bottom, **style)
          if hatch:  # the hatch over the segment, in one dark colour whatever the term's
            ax.bar(x[j], v, width, bottom=bottom, facecolor="none", edgecolor=HATCH_COLOUR, hatch=hatch,
                   linewidth=0.0)
          segments.append((x[j] + width / 2, bottom + v / 2, v, TERM_COLORS[term]))
          if v > 0:
            up[j] += v
          else:
            down[j] += v
      t = data["total_mean_low_high"][i]
      ok = np.isfinite(t[:, 0])
      # the total over the bar (white-edged, on top): negative terms stack below 0, so the
      # bar's top is not the total
      ax.errorbar(x[ok], t[ok, 0], yerr=[t[ok, 0] - t[ok, 1], t[ok, 2] - t[ok, 0]], fmt="D",
                  color="black", markersize=4.0, markeredgecolor="white", markeredgewidth=0.6,
                  capsize=2.5, linewidth=0.9, zorder=6)
      ax.axhline(0.0, color="black", linewidth=0.6)
      ax.set_xticks(x, ["K-A", "A", "K-A\n(teacher-ref)"])
      ax.set_xlim(-0.6, len(x) - 0.4)
      ax.set_title(_panel_title(str(data["panel_setting"][i]), str(data["panel_algorithm"][i])))
      ax.set_ylabel("shortfall (logit units)")  # every panel: each has its own range
      lo = min(np.nanmin(np.concatenate([down, t[ok, 1]])) if ok.any() else 0.0, 0.0)
      hi = max(np.nanmax(np.concatenate([up, t[ok, 2]])) if ok.any() else 0.0, 0.0)
      pad = 0.08 * max(hi - lo, 1.0)
      ax.set_ylim(lo - pad, hi + pad)
      thin.append((ax, segments))
    handles = [Patch(facecolor=TERM_COLORS[t], label=TERM_LABELS[t]) for t in TERMS]
    handles.append(Line2D([], [], color="black", marker="D", markeredgecolor="white", linestyle="-",
                          markersize=4.0, label="total, 95% interval (not the bar's top)"))
    handles.append(Patch(facecolor="white", edgecolor="0.3", linewidth=0.9, label="hollow: a tie"))
    if data["term_short_of_plateau"].any():
      handles.append(Patch(facecolor="white", edgecolor=HATCH_COLOUR, hatch=SHORT_HATCH, linewidth=0.0,
                           label="a level short of its plateau (some seed)"))
    if data["term_next_to_failed_level"].any():
      handles.append(Patch(facecolor="white", edgecolor=HATCH_COLOUR, hatch=FAILED_HATCH, linewidth=0.0,
                           label="a level all/none in A: measures that failure"))
    fig.legend(handles=handles, loc="outside upper center", ncol=3 if len(handles) > 6 else 4, frameon=False)
    if title:
      fig.suptitle(title, y=1.02)
    for ax, segments in thin:  # last: where the layout is final
      height_pt = ax.get_window_extent().height / (fig.dpi / 72.0)
      span = np.diff(ax.get_ylim())[0]
      labels = [(xr, ym, f"{v:+.2f}".replace("-", "\u2212"), darker(colour, 0.35)) for xr, ym, v, colour in segments
                if abs(v) / span * height_pt < THIN_PT and abs(v) >= 0.005]
      if labels:
        _label_thin_segments(ax, labels)
  return fig, data
