"""Phase maps of the recall sweep: aligned target mass over recall x (gap/beta or beta).

One panel per regularizer, log axes with explicit cell edges (``pcolormesh``), a
perceptually uniform map of ``log10 pi*(A)`` with one shared colour bar, iso-mass
contours at the colour bar's own ticks (marked on it, so lines and colours read on one
scale; white with a dark halo, as in the legend), each regularizer's own trap -- where
*its* optimum keeps less than half its mass on the target, ``pi*(A) < 1/2`` -- hatched
(a dark and a light pass of one pattern: visible on dark and light cells), and the law's boundary
``gap/beta = log((1-p)/p)`` (where the reverse-KL optimum reaches 1/2) dashed on every
panel for comparison. :func:`phase_caption` and :func:`ceiling_caption` write the
captions from the same arrays, so text and picture cannot disagree.

Both figures accept the full result of :func:`recall_theory.sweep.compute_sweep` or a
coarse view of it (:func:`recall_theory.sweep.subsample`): a phase map needs no more
than a few hundred points per axis. Axes are ticked at the computed range's ends (their
labels turned inward, so neighbouring panels' labels do not meet) and at inner decades.
"""

from __future__ import annotations

import math

import numpy as np
import matplotlib.pyplot as plt
from matplotlib import colors, patches, patheffects, ticker
from matplotlib.legend_handler import HandlerTuple
from matplotlib.lines import Line2D

from recall_theory.plotting.style import TEXT_WIDTH, COLUMN_WIDTH, darker, paper_style, figure_size

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
ISO_COLOUR = "white"
# a dark halo: white iso-mass lines (and their legend swatch) read on light cells and paper too
ISO_OUTLINE = [patheffects.withStroke(linewidth=1.3, foreground=(0, 0, 0, 0.35))]
HATCH = "////"
# (colour, line width) of the two hatch passes: a dark wide one under a white narrow one, so
# the hatching shows on dark (purple) and light (yellow) cells alike
HATCH_DARK = ((0.0, 0.0, 0.0, 0.55), 1.1)
HATCH_LIGHT = ((1.0, 1.0, 1.0, 0.9), 0.45)


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


def _tick_label(value: float) -> str:
  """A decade as $10^{k}$, anything else (a range end such as 0.5) as its shortest decimal."""
  exponent = math.log10(value)
  if abs(exponent - round(exponent)) < 1e-9:
    return f"$\\mathdefault{{10^{{{int(round(exponent))}}}}}$"
  return f"$\\mathdefault{{{value:.2g}}}$"


def ticks_with_ends(lo: float, hi: float, max_inner: int = 3, min_gap_decades: float = 1.5) -> list[float]:
  """The range's ends plus inner decades (at most ``max_inner``) at least ``min_gap_decades``
  from either end: a reader sees where the computed range starts and stops."""
  gap = min_gap_decades
  inner = [t for t in _decade_ticks(lo, hi, max_ticks=max_inner, margin=0.0)
           if math.log10(t) - math.log10(lo) >= gap and math.log10(hi) - math.log10(t) >= gap]
  return [lo, *inner, hi]


def _label_end_ticks_inward(axis, letter: str) -> None:
  """Align the first and last tick labels inward (left/right, or bottom/top): labels at a
  panel's edge then stay inside their panel instead of running into the next one."""
  ticks = axis.get_major_ticks()
  if len(ticks) < 2:
    return
  first, last = ("left", "right") if letter == "x" else ("bottom", "top")
  setter = "set_horizontalalignment" if letter == "x" else "set_verticalalignment"
  getattr(ticks[0].label1, setter)(first)
  getattr(ticks[-1].label1, setter)(last)


def _set_end_ticks(axis, letter: str, values: list[float]) -> None:
  axis.set_major_locator(ticker.FixedLocator(values))
  axis.set_major_formatter(ticker.FixedFormatter([_tick_label(v) for v in values]))
  axis.set_minor_locator(ticker.NullLocator())
  _label_end_ticks_inward(axis, letter)


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


def _hatch(ax, recall: np.ndarray, y: np.ndarray, trapped: np.ndarray) -> None:
  """Hatch the trapped cells twice, dark then light: the same pattern (hatches tile in
  device space, so the passes align) with contrast on every colour of the map."""
  for colour, width in (HATCH_DARK, HATCH_LIGHT):
    with plt.rc_context({"hatch.color": colour, "hatch.linewidth": width}):
      ax.contourf(recall, y, trapped.astype(float), levels=[0.5, 1.5], colors="none", hatches=[HATCH])


EDGE_CELLS = 3  # a trap boundary this close to the map's right edge is hard to see: the title names it


def edge_boundaries(result: dict) -> list[tuple[str, str, float]]:
  """(map, regularizer, p) of the maps whose optimum reaches 1/2 only within the last
  ``EDGE_CELLS`` recall cells (the trap boundary runs along the right edge): p is the
  smallest recall with an untrapped cell."""
  recall = np.asarray(result["recall"], np.float64)
  found = []
  for map_name in MAP_ROWS:
    for g, name in enumerate(str(r) for r in result["regularizers"]):
      untrapped = (np.asarray(result[f"mass_{map_name}"][g], np.float64) >= TRAP_MASS).any(axis=0)
      if untrapped.any() and np.argmax(untrapped) >= len(recall) - EDGE_CELLS:
        found.append((map_name, name, float(recall[np.argmax(untrapped)])))
  return found


def draw_phase_maps(result: dict) -> "plt.Figure":
  """Figure with rows (gap/beta map, beta map) x columns (regularizers)."""
  regs = [str(r) for r in result["regularizers"]]
  recall = np.asarray(result["recall"], np.float64)
  norm = colors.Normalize(vmin=LOG_MASS_FLOOR, vmax=0.0)
  width = TEXT_WIDTH
  fig, axes = plt.subplots(2, len(regs), figsize=(width, 0.52 * width), sharex=True, sharey="row",
                           squeeze=False)
  xticks = ticks_with_ends(float(recall[0]), float(recall[-1]), max_inner=1)
  mesh = contours = None
  at_edge = {(m, r): p for m, r, p in edge_boundaries(result)}
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
        contours = ax.contour(recall, y, log_mass, levels=levels, colors=ISO_COLOUR, linewidths=0.5,
                              alpha=0.9, linestyles="solid")
        contours.set_path_effects(ISO_OUTLINE)
      trapped = mass < TRAP_MASS
      if trapped.any() and not trapped.all():
        ax.contour(recall, y, mass, levels=[TRAP_MASS], colors="black", linewidths=0.6)
      if trapped.any():
        _hatch(ax, recall, y, trapped)
      ax.plot(recall, boundary, color=TRAP_COLOUR, lw=0.9, ls="--")
      ax.set_xscale("log")
      ax.set_yscale("log")
      ax.set_xlim(x_edges[0], x_edges[-1])
      ax.set_ylim(y_edges[0], y_edges[-1])
      ax.tick_params(axis="x", labelsize=6)
      _set_end_ticks(ax.xaxis, "x", xticks)
      _set_end_ticks(ax.yaxis, "y", ticks_with_ends(float(y[0]), float(y[-1]), max_inner=1))
      if row == 0:
        ax.set_title(TITLES.get(name, name) + "".join(
            f"\n{'' if m == MAP_ROWS[0] else 'bottom: '}$\\pi^*\\geq 1/2$ only at $p\\geq${p:.2g}"
            for m in MAP_ROWS if (m, name) in at_edge for p in [at_edge[(m, name)]]), fontsize=7)
      if col == 0:
        ax.set_ylabel(f"{ylabel}\n({fixed})")
  # the scale's end is a floor (_log_mass): masses below it take its colour, as the bar's
  # triangle and its tick say (the caption gives the smallest mass drawn)
  cbar = fig.colorbar(mesh, ax=axes, shrink=0.9, pad=0.01, aspect=30, extend="min",
                      ticks=[LOG_MASS_FLOOR, *ISO_LOG_MASSES, 0.0])
  cbar.ax.set_yticklabels([r"$\leq$" + f"{LOG_MASS_FLOOR:g}".replace("-", "\u2212")]
                          + [f"{v:g}".replace("-", "\u2212") for v in (*ISO_LOG_MASSES, 0.0)])
  from recall_theory.plotting.figure_check import declare_valid_range
  declare_valid_range(cbar.ax, -np.inf, 0.0, "log10 mass")  # 0 = a mass of 1: a bound, not a clip
  if contours is not None:
    for level in ISO_LOG_MASSES:
      cbar.ax.axhline(level, color="white", lw=0.8)
  cbar.set_label(r"$\log_{10}$ aligned target mass $\pi^*(A)$")
  fig.supxlabel(r"reference recall $p=\pi_{\rm ref}(A)$", fontsize=8)
  with plt.rc_context({"hatch.color": HATCH_LIGHT[0], "hatch.linewidth": HATCH_LIGHT[1]}):
    trapped_swatch = patches.Patch(facecolor=plt.get_cmap("viridis")(0.25), hatch=HATCH, lw=0.0)
  handles = [(trapped_swatch, Line2D([], [], color="black", lw=0.6)),
             Line2D([], [], color=TRAP_COLOUR, ls="--", lw=0.9),
             Line2D([], [], color=ISO_COLOUR, lw=0.8, path_effects=ISO_OUTLINE)]
  labels = [r"trapped: own $\pi^*(A)<1/2$ (black line: 1/2)",
            r"law: gap/$\beta=\log\frac{1-p}{p}$ (reverse KL at 1/2)", "iso-mass at colour-bar ticks"]
  fig.legend(handles, labels, handler_map={tuple: HandlerTuple(ndivide=None)}, loc="outside upper center",
             ncol=3, fontsize=6, handlelength=2.0, columnspacing=1.2)
  return fig


BOUND_APART_DECADES = 0.03  # the loose bound within this of the ceiling (7%, ~1 px) is not drawn


def bound_apart(result: dict) -> np.ndarray:
  """(K, p) mask: the loose bound lies more than ``BOUND_APART_DECADES`` above the ceiling."""
  ceiling = np.asarray(result["ceiling"], np.float64)
  loose = np.asarray(result["ceiling_loose"], np.float64)
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.abs(np.log10(loose) - np.log10(ceiling)) > BOUND_APART_DECADES


def draw_ceiling(result: dict) -> "plt.Figure":
  """KL-budget ceiling t*(p, K) (solid) and its loose bound (dashed, darker, on top) against recall.

  The loose bound (K + log 2)/log(1/p) meets the exact ceiling where both reach 1 (large K):
  drawn above it in a darker shade of the same colour, its dashes show where they coincide.
  The y range ends a fifth of a decade below the lowest curve.
  """
  fig, ax = plt.subplots(figsize=figure_size(COLUMN_WIDTH, 0.75))
  recall = np.asarray(result["recall"], np.float64)
  ceiling = np.asarray(result["ceiling"], np.float64)
  loose = np.asarray(result["ceiling_loose"], np.float64)
  palette = plt.get_cmap("viridis")(np.linspace(0.1, 0.85, len(result["budgets"])))
  handles = []
  apart = bound_apart(result)
  for k, (budget, colour) in enumerate(zip(result["budgets"], palette)):
    label = f"K = {float(budget):g}"
    exact_line, = ax.plot(recall, ceiling[k], color=colour, lw=1.4, label=label, zorder=2)
    # where the bound lies on the ceiling it would hide it (or be hidden): not drawn there
    loose_line, = ax.plot(recall, np.where(apart[k], loose[k], np.nan), color=darker(colour), ls="--", lw=0.8,
                          label=label, zorder=3)
    handles.append((exact_line, loose_line))
  ax.set_xscale("log")
  ax.set_yscale("log")
  lowest = float(np.min(np.concatenate([ceiling[ceiling > 0], loose[loose > 0]])))
  ax.set_ylim(10 ** (math.log10(lowest) - 0.2), 1.5)
  ax.set_xlim(recall[0], recall[-1])
  ax.set_xlabel(r"reference recall $p=\pi_{\rm ref}(A)$")
  ax.set_ylabel(r"max $\pi(A)$ with KL$(\pi\|\pi_{\rm ref})\leq K$")
  fig.legend(handles, [h[0].get_label() for h in handles], handler_map={tuple: HandlerTuple(ndivide=None)},
             title=(f"solid: exact ceiling; dashed (darker): loose bound,\ndrawn where it is more than "
                    f"{100 * (10 ** BOUND_APART_DECADES - 1):.0f}% above the ceiling"), title_fontsize=6,
             loc="outside lower center", ncol=len(handles), fontsize=6, handlelength=2.2, columnspacing=1.2)
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
  masses = np.concatenate([np.ravel(np.asarray(result[f"mass_{m}"], np.float64)) for m in MAP_ROWS])
  smallest, cells = float(masses.min()), masses.size
  below = int(np.sum(masses < 10.0 ** LOG_MASS_FLOOR))
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
      f"{', '.join(f'{v:g}' for v in ISO_LOG_MASSES)}, the colour bar's marked ticks. The colour scale "
      f"ends at log10 pi*(A) = {LOG_MASS_FLOOR:g} (the bar's triangle): a smaller mass would take that colour; "
      f"the smallest mass on these maps is {smallest:.3g}, "
      + ("none below it." if smallest >= 10.0 ** LOG_MASS_FLOOR else
         f"{below} of the {cells} cells lie below it.")
      + "".join(f" {PLAIN_TITLES.get(r, r)}, {'top' if m == MAP_ROWS[0] else 'bottom'} row: the optimum "
                f"reaches 1/2 only at p >= {p:.2g}, so its trap boundary runs along the right edge "
                f"(the panel's title says so)." for m, r, p in edge_boundaries(result)))


def ceiling_caption(result: dict) -> str:
  """Caption of ``recall_ceiling`` written from the sweep's arrays."""
  recall = np.asarray(result["recall"])
  budgets = [float(b) for b in result["budgets"]]
  ceiling = np.asarray(result["ceiling"])
  at_min = "; ".join(f"K = {b:g}: {ceiling[k, 0]:.3g}" for k, b in enumerate(budgets))
  apart = bound_apart(result)
  hidden = [f"K = {b:g}" + (" (everywhere)" if not apart[k].any() else f" ({100 * (1 - apart[k].mean()):.0f}% of "
                                                                     "the recalls)")
            for k, b in enumerate(budgets) if not apart[k].all()]
  return (f"KL-budget ceiling: the most target mass any policy with KL(pi || pi_ref) <= K can have, "
          f"t*(p, K) = max{{t >= p : kl(t || p) <= K}} (solid), and its loose bound (K + log 2)/log(1/p) "
          f"(dashed), for K in {', '.join(f'{b:g}' for b in budgets)}, over reference recall p from "
          f"{recall[0]:.3g} to {recall[-1]:.3g}. At the smallest recall the ceiling is {at_min}. "
          f"The bound is drawn only where it lies more than {100 * (10 ** BOUND_APART_DECADES - 1):.0f}% above "
          f"the ceiling" + (f"; it lies within that of the ceiling for {', '.join(hidden)}, where the solid "
                            f"curve is both." if hidden else "."))
