"""Phase maps of the recall sweep: aligned target mass over recall x (gap/beta or beta).

One panel per regularizer, log axes with explicit cell edges (``pcolormesh``), a
perceptually uniform map of ``log10 pi*(A)`` with one shared colour bar, iso-mass
contours at the colour bar's own ticks (marked on it, so lines and colours read on one
scale), each regularizer's own trap -- where *its* optimum keeps less than half its mass
on the target, ``pi*(A) < 1/2`` -- hatched, and the law's boundary
``gap/beta = log((1-p)/p)`` (where the reverse-KL optimum reaches 1/2) dashed on every
panel for comparison. :func:`phase_caption` and :func:`ceiling_caption` write the
captions from the same arrays, so text and picture cannot disagree.

Both figures accept the full result of :func:`recall_theory.sweep.compute_sweep` or a
coarse view of it (:func:`recall_theory.sweep.subsample`): a phase map needs no more
than a few hundred points per axis.
"""

from __future__ import annotations

import math

import numpy as np
import matplotlib.pyplot as plt
from matplotlib import colors, patches, ticker
from matplotlib.lines import Line2D

from recall_theory.plotting.style import TEXT_WIDTH, COLUMN_WIDTH, paper_style, figure_size

TITLES = {
    "reverse_kl": "reverse KL (RLHF, DPO)",
    "forward_kl": "forward KL",
    "chi2_kl": r"KL + $\chi^2$/2 ($\chi$PO)",
    "ipo": r"IPO ($\tau=\beta$)",
    "best_of_n": r"best-of-$N$, $N=e^{\Delta/\beta}$",
}
PLAIN_TITLES = {
    "reverse_kl": "reverse KL (RLHF, DPO)", "forward_kl": "forward KL", "chi2_kl": "KL + chi^2/2 (chiPO)",
    "ipo": "IPO (tau = beta)", "best_of_n": "best-of-N with N = exp(gap/beta)",
}
LOG_MASS_FLOOR = -12.0
ISO_LOG_MASSES = (-9.0, -6.0, -3.0)  # contour levels = colour-bar ticks (log10 pi(A))
TRAP_MASS = 0.5
MAP_ROWS = ("gap_over_beta", "beta")
TRAP_COLOUR = "#D55E00"


def _edges(centres: np.ndarray) -> np.ndarray:
  """Cell edges of a log-spaced axis (geometric midpoints, extrapolated at the ends)."""
  logs = np.log(centres)
  mids = 0.5 * (logs[1:] + logs[:-1])
  return np.exp(np.concatenate([[2 * logs[0] - mids[0]], mids, [2 * logs[-1] - mids[-1]]]))


def _log_mass(mass: np.ndarray) -> np.ndarray:
  with np.errstate(divide="ignore"):
    return np.maximum(np.log10(np.maximum(np.asarray(mass, np.float64), 0.0)), LOG_MASS_FLOOR)


def _decade_ticks(lo: float, hi: float, max_ticks: int = 3, margin: float = 0.15) -> list[float]:
  """Powers of ten inside ``[lo, hi]``, away from the ends by ``margin`` of the log range
  (labels at a panel's edge run into the next panel), at most ``max_ticks``, evenly stepped."""
  a, b = math.log10(lo), math.log10(hi)
  pad = margin * (b - a)
  decades = list(range(math.ceil(a + pad), math.floor(b - pad) + 1))
  if not decades:
    return []
  step = max(1, math.ceil(len(decades) / max_ticks))
  while len(range(0, len(decades), step)) > max_ticks:
    step += 1
  # multiples of the step, so the ticks read 10^-10, 10^-6, 10^-2 rather than odd offsets
  for offset in range(step):
    chosen = [d for d in decades if (d - decades[0] - offset) % step == 0]
    if len(chosen) <= max_ticks and all(d % step == 0 for d in chosen):
      return [10.0 ** d for d in chosen]
  return [10.0 ** d for d in decades[::step]]


def _rows(result: dict):
  return (("gap_over_beta", np.asarray(result["ratio"]), r"gap / $\beta$", f"$\\beta$ = {float(result['fixed_beta']):g}"),
          ("beta", np.asarray(result["beta_axis"]), r"$\beta$", f"gap = {float(result['fixed_gap']):g}"))


def law_boundary(result: dict, map_name: str) -> np.ndarray:
  """y of the law's trap boundary per recall: gap/beta = log((1-p)/p), or beta = gap / that.

  NaN where the boundary leaves the map's meaning (p >= 1/2: no gap is needed)."""
  half = np.asarray(result["half_mass_ratio"], np.float64)
  if map_name == "gap_over_beta":
    return np.where(half > 0, half, np.nan)
  with np.errstate(divide="ignore"):
    return np.where(half > 0, float(result["fixed_gap"]) / np.maximum(half, 1e-300), np.nan)


def draw_phase_maps(result: dict) -> "plt.Figure":
  """Figure with rows (gap/beta map, beta map) x columns (regularizers)."""
  regs = [str(r) for r in result["regularizers"]]
  recall = np.asarray(result["recall"], np.float64)
  norm = colors.Normalize(vmin=LOG_MASS_FLOOR, vmax=0.0)
  width = TEXT_WIDTH
  fig, axes = plt.subplots(2, len(regs), figsize=(width, 0.52 * width), sharex=True, sharey="row",
                           squeeze=False)
  xticks = _decade_ticks(recall[0], recall[-1])
  mesh = contours = None
  for row, (map_name, y, ylabel, fixed) in enumerate(_rows(result)):
    y = y.astype(np.float64)
    x_edges, y_edges = _edges(recall), _edges(y)
    boundary = law_boundary(result, map_name)
    for col, name in enumerate(regs):
      ax = axes[row, col]
      mass = np.asarray(result[f"mass_{map_name}"][col], np.float64)
      log_mass = _log_mass(mass)
      mesh = ax.pcolormesh(x_edges, y_edges, log_mass, norm=norm, cmap="viridis", rasterized=True,
                           shading="flat")
      levels = [lv for lv in ISO_LOG_MASSES if log_mass.min() < lv < log_mass.max()]
      if levels:
        contours = ax.contour(recall, y, log_mass, levels=levels, colors="white", linewidths=0.5,
                              alpha=0.9, linestyles="solid")
      trapped = mass < TRAP_MASS
      if trapped.any() and not trapped.all():
        ax.contour(recall, y, mass, levels=[TRAP_MASS], colors="black", linewidths=0.6)
      if trapped.any():
        with plt.rc_context({"hatch.color": (1, 1, 1, 0.45), "hatch.linewidth": 0.4}):
          ax.contourf(recall, y, trapped.astype(float), levels=[0.5, 1.5], colors="none", hatches=["////"])
      ax.plot(recall, boundary, color=TRAP_COLOUR, lw=0.9, ls="--")
      ax.set_xscale("log")
      ax.set_yscale("log")
      ax.set_xlim(x_edges[0], x_edges[-1])
      ax.set_ylim(y_edges[0], y_edges[-1])
      ax.xaxis.set_major_locator(ticker.FixedLocator(xticks))
      ax.xaxis.set_minor_locator(ticker.NullLocator())
      ax.tick_params(axis="x", labelsize=6)
      ax.yaxis.set_major_locator(ticker.FixedLocator(_decade_ticks(y[0], y[-1], max_ticks=4, margin=0.0)))
      if row == 0:
        ax.set_title(TITLES.get(name, name), fontsize=7)
      if col == 0:
        ax.set_ylabel(f"{ylabel}\n({fixed})")
  cbar = fig.colorbar(mesh, ax=axes, shrink=0.9, pad=0.01, aspect=30,
                      ticks=[LOG_MASS_FLOOR, *ISO_LOG_MASSES, 0.0])
  if contours is not None:
    for level in ISO_LOG_MASSES:
      cbar.ax.axhline(level, color="white", lw=0.8)
  cbar.set_label(r"$\log_{10}$ aligned target mass $\pi^*(A)$")
  fig.supxlabel(r"reference recall $p=\pi_{\rm ref}(A)$", fontsize=8)
  handles = [patches.Patch(facecolor="#3b528b", edgecolor="white", hatch="////", lw=0.0,
                           label=r"trapped: own $\pi^*(A)<1/2$ (black line: 1/2)"),
             Line2D([], [], color=TRAP_COLOUR, ls="--", lw=0.9,
                    label=r"law: gap/$\beta=\log\frac{1-p}{p}$ (reverse KL at 1/2)"),
             Line2D([], [], color="#21918c", lw=0.8, label="white: iso-mass at colour-bar ticks")]
  fig.legend(handles=handles, loc="outside upper center", ncol=3, fontsize=6, handlelength=2.0,
             columnspacing=1.2)
  return fig


def draw_ceiling(result: dict) -> "plt.Figure":
  """KL-budget ceiling t*(p, K) (solid) and its loose bound (dashed) against recall."""
  fig, ax = plt.subplots(figsize=figure_size(COLUMN_WIDTH, 0.75))
  recall = np.asarray(result["recall"], np.float64)
  ceiling = np.asarray(result["ceiling"], np.float64)
  palette = plt.get_cmap("viridis")(np.linspace(0.1, 0.85, len(result["budgets"])))
  for k, (budget, colour) in enumerate(zip(result["budgets"], palette)):
    ax.plot(recall, ceiling[k], color=colour, label=f"K = {float(budget):g}")
    ax.plot(recall, np.asarray(result["ceiling_loose"][k]), color=colour, ls="--", lw=0.8)
  ax.set_xscale("log")
  ax.set_yscale("log")
  lowest = float(np.min(ceiling[ceiling > 0]))
  # room below the lowest curve: no curve runs along the axis, and the legend sits under them
  ax.set_ylim(10 ** (math.log10(lowest) - 1.6), 1.5)
  ax.set_xlim(recall[0], recall[-1])
  ax.set_xlabel(r"reference recall $p=\pi_{\rm ref}(A)$")
  ax.set_ylabel(r"max $\pi(A)$ with KL$(\pi\|\pi_{\rm ref})\leq K$")
  ax.legend(title="exact (solid), loose (dashed)", title_fontsize=6, loc="lower center", ncol=len(ceiling),
            fontsize=6, handlelength=1.5, columnspacing=1.0)
  return fig


def phase_figures(result: dict) -> dict[str, "plt.Figure"]:
  """Both figures of the sweep, drawn in the package style."""
  with paper_style():
    return {"recall_phase": draw_phase_maps(result), "recall_ceiling": draw_ceiling(result)}


# ----------------------------------------------------------------------------- captions
def trapped_share(result: dict) -> dict[tuple[str, str], float]:
  """Share of each map's cells where each regularizer's optimum keeps pi*(A) < 1/2."""
  regs = [str(r) for r in result["regularizers"]]
  return {(map_name, name): float(np.mean(np.asarray(result[f"mass_{map_name}"][g]) < TRAP_MASS))
          for map_name in MAP_ROWS for g, name in enumerate(regs)}


def phase_caption(result: dict, n_recall: int | None = None, n_y: int | None = None) -> str:
  """Caption of ``recall_phase`` written from the sweep's arrays (ranges, grid, trapped shares).

  ``result`` may be the figure's saved data (``recall_phase_data.npz``): a subsampled view
  carries ``recall_index``/``y_index``, from which the computed grid's size is read
  (``n_recall``/``n_y`` override it).

  Example::

    with np.load("figures/recall_phase_data.npz") as data:
      text = phase_caption(data)
  """
  recall, ratio, beta_axis = (np.asarray(result[k]) for k in ("recall", "ratio", "beta_axis"))
  files = getattr(result, "files", result)
  if n_recall is None:
    n_recall = int(np.asarray(result["recall_index"])[-1]) + 1 if "recall_index" in files else recall.size
  if n_y is None:
    n_y = int(np.asarray(result["y_index"])[-1]) + 1 if "y_index" in files else ratio.size
  shares = trapped_share(result)
  regs = [str(r) for r in result["regularizers"]]

  def share_list(map_name):
    return "; ".join(f"{PLAIN_TITLES.get(r, r)} {100 * shares[(map_name, r)]:.0f}%" for r in regs)

  drawn = f"drawn from {recall.size} x {ratio.size} of the points" if recall.size < n_recall else "every point drawn"
  return (
      f"Exact aligned target mass pi*(A) of each regularizer's optimum for a two-level reward "
      f"(colour: log10 pi*(A), floored at {LOG_MASS_FLOOR:g}), over reference recall p from {recall[0]:.3g} "
      f"to {recall[-1]:.3g} ({n_recall} log-spaced points) and, top row, gap/beta from {ratio[0]:.3g} to "
      f"{ratio[-1]:.3g} at beta = {float(result['fixed_beta']):g}, bottom row, beta from {beta_axis[0]:.3g} to "
      f"{beta_axis[-1]:.3g} at gap = {float(result['fixed_gap']):g} ({n_y} points each; {drawn}). "
      f"Hatched: cells where that regularizer's own optimum keeps pi*(A) < 1/2 (the trap; black line: "
      f"pi*(A) = 1/2) -- top row: {share_list('gap_over_beta')}; bottom row: {share_list('beta')} of the cells. "
      f"Dashed: the law's boundary gap/beta = log((1-p)/p), where the reverse-KL optimum "
      f"sigmoid(logit p + gap/beta) reaches 1/2 (trapped below it in the top row, above it in the bottom row). "
      f"White lines: iso-mass contours at log10 pi*(A) = "
      f"{', '.join(f'{v:g}' for v in ISO_LOG_MASSES)}, the colour bar's marked ticks.")


def ceiling_caption(result: dict) -> str:
  """Caption of ``recall_ceiling`` written from the sweep's arrays."""
  recall = np.asarray(result["recall"])
  budgets = [float(b) for b in result["budgets"]]
  ceiling = np.asarray(result["ceiling"])
  at_min = "; ".join(f"K = {b:g}: {ceiling[k, 0]:.3g}" for k, b in enumerate(budgets))
  return (f"KL-budget ceiling: the most target mass any policy with KL(pi || pi_ref) <= K can have, "
          f"t*(p, K) = max{{t >= p : kl(t || p) <= K}} (solid), and its loose bound (K + log 2)/log(1/p) "
          f"(dashed), for K in {', '.join(f'{b:g}' for b in budgets)}, over reference recall p from "
          f"{recall[0]:.3g} to {recall[-1]:.3g}. At the smallest recall the ceiling is {at_min}.")
