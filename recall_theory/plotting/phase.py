"""Phase maps of the recall sweep: aligned target mass over recall x (gap/beta or beta).

One panel per regularizer, log axes with explicit cell edges (``pcolormesh``), a
perceptually uniform map of log10 mass with one shared colour bar, iso-mass contours,
and the trap region -- where even the reverse-KL optimum keeps less than half its mass
on the target, ``gap/beta < log((1-p)/p)`` -- hatched.
"""

from __future__ import annotations

import numpy as np
import matplotlib.pyplot as plt
from matplotlib import colors, ticker

from recall_theory.plotting.style import TEXT_WIDTH, COLUMN_WIDTH, paper_style, figure_size

TITLES = {
    "reverse_kl": "reverse KL (RLHF, DPO)",
    "forward_kl": "forward KL",
    "chi2_kl": r"KL + $\chi^2$/2 ($\chi$PO)",
    "ipo": r"IPO ($\tau=\beta$)",
    "best_of_n": r"best-of-$N$, $N=e^{\Delta/\beta}$",
}
ISO_MASSES = (1e-9, 1e-6, 1e-3, 0.5)
LOG_MASS_FLOOR = -12.0


def _edges(centres: np.ndarray) -> np.ndarray:
  """Cell edges of a log-spaced axis (geometric midpoints, extrapolated at the ends)."""
  logs = np.log(centres)
  mids = 0.5 * (logs[1:] + logs[:-1])
  return np.exp(np.concatenate([[2 * logs[0] - mids[0]], mids, [2 * logs[-1] - mids[-1]]]))


def _log_mass(mass: np.ndarray) -> np.ndarray:
  with np.errstate(divide="ignore"):
    return np.maximum(np.log10(np.maximum(mass, 0.0)), LOG_MASS_FLOOR)


def draw_phase_maps(result: dict) -> "plt.Figure":
  """Figure with rows (gap/beta map, beta map) x columns (regularizers)."""
  regs = [str(r) for r in result["regularizers"]]
  recall = result["recall"]
  rows = (("gap_over_beta", result["ratio"], r"gap / $\beta$", f"$\\beta$ = {float(result['fixed_beta']):g}"),
          ("beta", result["beta_axis"], r"$\beta$", f"gap = {float(result['fixed_gap']):g}"))
  norm = colors.Normalize(vmin=LOG_MASS_FLOOR, vmax=0.0)
  width = TEXT_WIDTH
  fig, axes = plt.subplots(2, len(regs), figsize=(width, 0.48 * width), sharex=True, sharey="row",
                           squeeze=False)
  half = result["half_mass_ratio"]  # gap/beta needed for mass 1/2 (reverse KL)
  mesh = None
  for row, (map_name, y, ylabel, fixed) in enumerate(rows):
    x_edges, y_edges = _edges(recall), _edges(y)
    for col, name in enumerate(regs):
      ax = axes[row, col]
      log_mass = _log_mass(result[f"mass_{map_name}"][col])
      mesh = ax.pcolormesh(x_edges, y_edges, log_mass, norm=norm, cmap="viridis", rasterized=True,
                           shading="flat")
      cs = ax.contour(recall, y, log_mass, levels=np.log10(ISO_MASSES), colors="white",
                      linewidths=0.5, alpha=0.9, linestyles="solid")
      ax.clabel(cs, fmt={np.log10(m): f"{m:g}" for m in ISO_MASSES}, fontsize=5, inline_spacing=1)
      # Trap: below the reverse-KL half-mass boundary.
      with np.errstate(divide="ignore"):
        boundary = half if map_name == "gap_over_beta" else np.where(
            half > 0, float(result["fixed_gap"]) / np.maximum(half, 1e-300), np.inf)
      inside = (y[:, None] < boundary[None, :]) if map_name == "gap_over_beta" else (
          y[:, None] > boundary[None, :])
      with plt.rc_context({"hatch.color": (1, 1, 1, 0.35), "hatch.linewidth": 0.4}):
        ax.contourf(recall, y, inside.astype(float), levels=[0.5, 1.5], colors="none", hatches=["////"])
      ax.plot(recall, np.where(np.isfinite(boundary), boundary, np.nan), color="#D55E00", lw=0.9, ls="--")
      if row == 0 and col == 0:
        ax.text(2 * recall[0], 2 * y[0], "trap", color="white", fontsize=6, fontweight="bold")
      ax.set_xscale("log")
      ax.set_yscale("log")
      ax.set_xlim(x_edges[0], x_edges[-1])
      ax.set_ylim(y_edges[0], y_edges[-1])
      ax.xaxis.set_major_locator(ticker.LogLocator(numticks=4))
      if row == 0:
        ax.set_title(TITLES.get(name, name), fontsize=7)
      if col == 0:
        ax.set_ylabel(f"{ylabel}\n({fixed})")
  cbar = fig.colorbar(mesh, ax=axes, shrink=0.9, pad=0.01, aspect=30)
  cbar.set_label(r"$\log_{10}$ aligned target mass $\pi(A)$")
  fig.supxlabel(r"reference recall $p=\pi_{\rm ref}(A)$   "
                r"(hatched below the dashed line: the trap $\pi^*_{\rm rev\,KL}(A)<1/2$, "
                r"gap/$\beta<\log\frac{1-p}{p}$; white: iso-mass contours)", fontsize=7)
  return fig


def draw_ceiling(result: dict) -> "plt.Figure":
  """KL-budget ceiling t*(p, K) (solid) and its loose bound (dashed) against recall."""
  fig, ax = plt.subplots(figsize=figure_size(COLUMN_WIDTH, 0.75))
  recall = result["recall"]
  palette = plt.get_cmap("viridis")(np.linspace(0.1, 0.85, len(result["budgets"])))
  for k, (budget, colour) in enumerate(zip(result["budgets"], palette)):
    ax.plot(recall, result["ceiling"][k], color=colour, label=f"K = {float(budget):g}")
    ax.plot(recall, result["ceiling_loose"][k], color=colour, ls="--", lw=0.8)
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_ylim(max(1e-6, float(np.min(result["ceiling"][result["ceiling"] > 0]))), 1.5)
  ax.set_xlabel(r"reference recall $p=\pi_{\rm ref}(A)$")
  ax.set_ylabel(r"max $\pi(A)$ with KL$(\pi\|\pi_{\rm ref})\leq K$")
  ax.legend(title="exact (solid), loose (dashed)", title_fontsize=6, loc="lower right")
  return fig


def phase_figures(result: dict) -> dict[str, "plt.Figure"]:
  """Both figures of the sweep, drawn in the package style."""
  with paper_style():
    return {"recall_phase": draw_phase_maps(result), "recall_ceiling": draw_ceiling(result)}
