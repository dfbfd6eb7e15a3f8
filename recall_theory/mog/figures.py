"""The Mixture-of-Gaussians figure set (every figure saved with the arrays that drew it).

* ``mog_densities``: contours of p*, the teacher, both students and the exact aligned model of
  each pipeline at one beta (4-mode student); the target mode is starred; titles of aligned
  models in their pipeline's colour.
* ``mog_metrics_<student>``: target mass, reward, precision, recall and KL against beta, median
  over seeds with a percentile band (inside each metric's range), one column per algorithm
  (exact, pg, dpo), one colour per pipeline.
* ``mog_phase``: the exact A-K minus K-A target mass over beta and the K-A reference's
  recall, its +-0.5 contours, and the law's boundary Delta/beta = log((1-p)/p).
* ``mog_tradeoff``: overall recall against target mass along the beta path (exact), colour = beta.
* ``mog_taus``: aligned mass against the student's recall over the KD temperature, each K-A
  point with its own law prediction.
* ``mog_recall_sweep``: target mass after A-K and after K-A against the teacher's weight on the
  target, over the student's recall.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recall_theory.mog.metrics import METRICS
from recall_theory.mog.setup import ALGORITHMS, PIPELINES
from recall_theory.plotting import PIPELINE_COLORS, TEXT_WIDTH, COLUMN_WIDTH, figure_size, paper_style, save_figure

METRIC_LABELS = {
    "reward": r"reward $E_q[R]$",
    "target_mass": r"target mass $q(A)$",
    "target_precision": r"target precision $E_q[\log p^*_A]$",
    "precision": r"precision $E_q[\log p^*]$",
    "recall": r"recall $E_{p^*}[\log q]$",
    "support_precision": r"support precision",
    "support_recall": r"support recall",
    "kl_to_reference": r"KL$(q\,\|\,\pi_{ref})$",
}
LINESTYLES = {"K-A": "-", "A-K": "-", "K-A(teacher-ref)": "--", "A-K(tau)": ":"}
# One marker per pipeline, larger ones drawn first: where pipelines coincide (K-A and its
# control both at 0) the markers nest, each visible (the tradeoff's areas, as marker sizes).
METRIC_MARKERS = {"K-A": "o", "A-K": "s", "K-A(teacher-ref)": "^", "A-K(tau)": "D"}
METRIC_MARKER_SIZES = {"A-K(tau)": 5.2, "A-K": 4.0, "K-A(teacher-ref)": 3.6, "K-A": 2.2}
KL_LINEAR_BELOW = 1.0  # the KL row: linear up to 1 nat, logarithmic above (one exact K-A point reaches 85)


def _tick_label(value: float, _pos=None) -> str:
  """Short tick labels: at most 3 significant digits, powers of ten as 10^k (no garbled sci-notation)."""
  if value == 0:
    return "0"
  mag = abs(value)
  exponent = np.log10(mag)
  sign = "$-$" if value < 0 else ""
  if abs(exponent - round(exponent)) < 1e-9 and (mag >= 1e3 or mag < 1e-2):
    return f"{sign}$10^{{{int(round(exponent))}}}$"
  if 1e-2 <= mag < 1e4:
    return f"{value:.3g}".replace("-", "$-$")
  return f"{sign}{mag:.1e}"


def _title_colour(title: str) -> str:
  """A panel's title colour: its pipeline's for an aligned model ("K-A, exact"), black for
  the references (p*, teacher, students), which are no pipeline's."""
  pipeline = title.split(", ")[0]
  return PIPELINE_COLORS[pipeline] if title.endswith(", exact") and pipeline in PIPELINE_COLORS else "black"


def plot_densities(out_dir, axis, log_dens, log_truth, target_means, beta, student_names) -> list[Path]:
  """Contours; ``log_dens`` (2 + P*A + ..., n, n) for student 0 and (n, n) student densities per variant."""
  import matplotlib.pyplot as plt
  with paper_style():
    fig, axes = plt.subplots(2, 4, figsize=(TEXT_WIDTH, TEXT_WIDTH * 0.56), sharex=True, sharey=True)
    panels = [("p*", log_truth), ("teacher", log_dens["teacher"])]
    panels += [(f"student ({s})", log_dens[f"student:{s}"]) for s in student_names[:2]]
    panels += [(f"{p}, exact", log_dens[f"aligned:{p}"]) for p in PIPELINES]
    levels = np.linspace(-8, 0, 9)
    shading = None
    for ax, (title, ld) in zip(axes.ravel(), panels):
      rel = ld - ld.max()
      shading = ax.contourf(axis, axis, np.maximum(rel, -8.5), levels=levels, cmap="Greys")
      ax.contour(axis, axis, rel, levels=[-4, -1], colors="k", linewidths=0.4, linestyles="solid")
      for m in target_means:
        ax.plot(m[0], m[1], marker="*", color="#D55E00", ms=7, mec="white", mew=0.4)
      ax.set_title(title, color=_title_colour(title), fontsize=7)
      ax.set_aspect("equal")
      ax.set_xlim(axis[0], axis[-1])
      ax.set_ylim(axis[0], axis[-1])
    for ax in axes[-1]:
      ax.set_xlabel("$x_1$")
    for ax in axes[:, 0]:
      ax.set_ylabel("$x_2$")
    bar = fig.colorbar(shading, ax=axes, shrink=0.8, pad=0.02, ticks=[-8, -6, -4, -2, 0])
    bar.set_label(r"$\log q - \max \log q$ (lines: $-4$, $-1$)", fontsize=6.5)
    bar.ax.tick_params(labelsize=6)
    fig.suptitle(rf"log-density relative to its maximum; aligned at $\beta$={beta:.2g} "
                 f"with the {student_names[0]} student; star = target", fontsize=7)
    data = {"axis": axis, "log_truth": log_truth, "beta": np.asarray(beta), "target_means": target_means,
            **{k.replace(":", "_").replace("(", "_").replace(")", "").replace("-", "_"): v
               for k, v in log_dens.items()}}
    return save_figure(fig, out_dir, "mog_densities", data=data)


# The metrics drawn (one row each); the others are in mog_summary.csv. Per metric: its label,
# its valid range (declared to the figure check) and its axis: "linear", or "neg-log" for a
# log-likelihood (always < 0, spanning decades): -value on a log axis, flipped so up = higher.
FIGURE_METRICS = {
    "target_mass": (r"target mass $q(A)$", (0.0, 1.0), "linear"),
    "reward": (r"reward $E_q[R]$", (0.0, 1.0), "linear"),
    "precision": (r"precision $E_q[\log p^*]$", (-np.inf, np.inf), "neg-log"),
    "recall": (r"recall $E_{p^*}[\log q]$", (-np.inf, np.inf), "neg-log"),
    "kl_to_reference": (r"KL$(q\,\|\,\pi_{ref})$", (0.0, np.inf), "linear"),
}
BAND_PERCENTILES = (10.0, 90.0)


def _negative_decade_label(value: float, _pos=None) -> str:
  """Tick label of a flipped log axis of -y: the value y itself, as a plain number from
  ``-0.01`` to ``-10000`` (``-0.3``, ``-1``, ``-30``), else ``-10^{k}``."""
  exponent = np.log10(value)
  if 1e-2 <= value <= 1e4:  # plain numbers where they are short: -0.3, -1, -3, -10, -1000
    return f"$-{value:g}$"
  if abs(exponent - round(exponent)) < 1e-9:
    return f"$-10^{{{int(round(exponent))}}}$"
  k = int(np.floor(exponent))
  return f"$-{value / 10.0 ** k:g}\\times10^{{{k}}}$"


def _neg_log_axis(ax, decades: float | None = None) -> None:
  """Decades of -y, flipped (higher y up), labelled with y's own values; where the axis spans
  fewer than three decades (``decades``), 3 x 10^k between them too, so it shows three labels
  or more."""
  from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
  ax.set_yscale("log")
  ax.invert_yaxis()
  subs = (1.0, 3.0) if decades is not None and decades < 3.0 else (1.0,)
  ax.yaxis.set_major_locator(LogLocator(base=10.0, subs=subs, numticks=8))
  ax.yaxis.set_major_formatter(FuncFormatter(_negative_decade_label))
  ax.yaxis.set_minor_formatter(NullFormatter())


def seed_band(values_S: np.ndarray, percentiles=BAND_PERCENTILES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Median and a percentile band over seeds (axis 0): inside the values' own range, so a
  mass stays in [0, 1] and a KL >= 0 (a mean +- sd band does not)."""
  low, median, high = np.percentile(values_S, [percentiles[0], 50.0, percentiles[1]], axis=0)
  return median, low, high


def plot_metrics(out_dir, betas, metrics_SxBxPxAxM, student: str) -> list[Path]:
  """Metric-vs-beta panels for one student: median over seeds (markers at the betas run) and
  a percentile band over seeds; one row per metric of :data:`FIGURE_METRICS`, one column per
  algorithm. The saved data keep every metric."""
  import matplotlib.pyplot as plt
  from matplotlib.ticker import MaxNLocator
  from recall_theory.plotting.figure_check import declare_valid_range
  n_seeds = metrics_SxBxPxAxM.shape[0]
  median, low, high = seed_band(metrics_SxBxPxAxM)
  order = sorted(range(len(PIPELINES)), key=lambda p: -METRIC_MARKER_SIZES[PIPELINES[p]])  # large first
  with paper_style():
    fig, axes = plt.subplots(len(FIGURE_METRICS), len(ALGORITHMS),
                             figsize=(TEXT_WIDTH, 1.45 * len(FIGURE_METRICS) + 0.8), sharex=True, sharey="row")
    for row, (metric, (label, valid, axis)) in enumerate(FIGURE_METRICS.items()):
      m = METRICS.index(metric)
      sign = -1.0 if axis == "neg-log" else 1.0
      for a, algo in enumerate(ALGORITHMS):
        ax = axes[row, a]
        for z, p in enumerate(order):
          pipe = PIPELINES[p]
          c = PIPELINE_COLORS[pipe]
          ax.plot(betas, sign * median[:, p, a, m], LINESTYLES[pipe], color=c, label=pipe, lw=1.0,
                  marker=METRIC_MARKERS[pipe], ms=METRIC_MARKER_SIZES[pipe], zorder=2 + z)
          if n_seeds > 1:
            ax.fill_between(betas, sign * low[:, p, a, m], sign * high[:, p, a, m], color=c, alpha=0.16, lw=0)
        ax.set_xscale("log")
        if axis == "neg-log":
          if a == 0:
            values = -metrics_SxBxPxAxM[..., m]
            values = values[np.isfinite(values) & (values > 0)]
            _neg_log_axis(ax, float(np.log10(values.max() / values.min())) if values.size else None)
        elif metric == "kl_to_reference":
          if a == 0:
            from matplotlib.ticker import FixedLocator
            ax.set_yscale("symlog", linthresh=KL_LINEAR_BELOW, linscale=0.6)
            top = float(np.nanmax(high[..., m])) if n_seeds > 1 else float(np.nanmax(median[..., m]))
            decades = [10.0 ** k for k in range(0, int(np.ceil(np.log10(max(top, 1.0)))) + 1)]
            ax.yaxis.set_major_locator(FixedLocator([0.0, *decades]))
            ax.set_ylim(-0.2 * KL_LINEAR_BELOW, max(top, 1.0) * 1.3)
          declare_valid_range(ax, *valid, metric)
        else:
          ax.yaxis.set_major_locator(MaxNLocator(3))
          declare_valid_range(ax, *valid, metric)
        ax.tick_params(labelsize=6.5)
        if row == 0:
          ax.set_title(algo, fontsize=7.5)
        if a == 0:
          ax.set_ylabel(label, fontsize=7)
        if row == len(FIGURE_METRICS) - 1:
          ax.set_xlabel(r"$\beta$")
    fig.align_ylabels(axes[:, 0])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    by_label = dict(zip(labels, handles))
    fig.legend([by_label[p] for p in PIPELINES], list(PIPELINES), loc="outside lower center", ncol=4, fontsize=7,
               frameon=False)
    band = (f"band: {BAND_PERCENTILES[0]:g}th to {BAND_PERCENTILES[1]:g}th percentile over the seeds"
            if n_seeds > 1 else "one seed: no band")
    others = [name for name in METRICS if name not in FIGURE_METRICS]
    fig.suptitle(f"{student} student: median over {n_seeds} seeds; {band}\n"
                 "markers: the betas run, nested where pipelines coincide (smallest on top); precision "
                 "and recall axes: log scale of the negated value\n"
                 f"KL axis: linear below {KL_LINEAR_BELOW:g}, logarithmic above; {', '.join(others)}: "
                 "mog_summary.csv", fontsize=7)
    return save_figure(fig, out_dir, f"mog_metrics_{student}", data={
        "betas": betas, "metrics": metrics_SxBxPxAxM, "pipelines": np.asarray(PIPELINES),
        "algorithms": np.asarray(ALGORITHMS), "metric_names": np.asarray(METRICS),
        "band_percentiles": np.asarray(BAND_PERCENTILES)})


DIFFERENCE_NAME = "A-K minus K-A target mass"


def plot_phase(out_dir, betas, recalls, phase: dict, student: str = "3-mode") -> list[Path]:
  """pcolormesh of the A-K minus K-A target mass on log axes, its +-0.5 contours, and the
  law's boundary.

  The law puts K-A's optimum at sigmoid(logit p + Delta/beta): it leaves the trap where
  Delta/beta = log((1-p)/p), i.e. where that optimum is 1/2. K-A here *is* that optimum (the
  exact Gibbs tilt of its reference, for which the law is an identity), so the boundary in
  these axes is the 1/2 contour of K-A's exact mass (``ka_target_mass``). It is drawn wide and
  light underneath the thin black contours: where a contour follows it, both show. Writes the
  generated caption ``mog_phase_caption.md`` (:func:`phase_caption`) beside the figure.
  """
  import matplotlib.pyplot as plt
  from matplotlib.lines import Line2D
  from recall_theory import io
  difference = phase["gap"]  # A-K minus K-A, (B, P)
  ref = phase["reference_recall"]
  with paper_style():
    fig, ax = plt.subplots(figsize=figure_size(COLUMN_WIDTH, 1.0))
    ax.set_xscale("log")
    ax.set_yscale("log")
    bx = _edges(betas)
    by = _edges(ref)
    ax.set_xlim(bx[0], bx[-1])
    ax.set_ylim(by[0], by[-1])
    mesh = ax.pcolormesh(bx, by, difference.T, cmap="RdBu_r", vmin=-1, vmax=1, shading="flat")
    ka = np.asarray(phase["ka_target_mass"], float)
    if ka.min() < 0.5 < ka.max():
      ax.contour(betas, ref, ka.T, levels=[0.5], colors=LAW_COLOUR, linewidths=LAW_WIDTH, alpha=0.6,
                 linestyles="solid", zorder=2)
    # +-0.5 rather than 0: the difference is flat at ~0 where both pipelines succeed or both fail.
    ax.contour(betas, ref, difference.T, levels=[-0.5, 0.5], colors="k", linewidths=0.8,
               linestyles=["dashed", "solid"], zorder=3)
    ax.set_xlabel(r"$\beta$")
    ax.set_ylabel(r"K-A reference's recall $\pi_{ref}(A)$")
    fig.colorbar(mesh, ax=ax, label=DIFFERENCE_NAME.replace(" minus ", " $-$ "))
    ax.set_title(f"exact; K-A reference: {student} student\n+ target mode of weight p", fontsize=7, pad=8)
    handles = [Line2D([], [], color="k", lw=0.8), Line2D([], [], color="k", lw=0.8, ls="--"),
               Line2D([], [], color=LAW_COLOUR, lw=LAW_WIDTH, alpha=0.6)]
    labels = ["difference = +0.5", "difference = $-$0.5",
              r"law: $\Delta/\beta=\log\frac{1-p}{p}$ (K-A's optimum = 1/2)"]
    fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=6, frameon=False)
    paths = save_figure(fig, out_dir, "mog_phase", data={"betas": betas, "recalls": recalls,
                                                           "reference_recall": ref, "student": np.asarray(student),
                                                           **phase})
  return paths + [io.write_text(Path(out_dir) / "mog_phase_caption.md",
                                phase_caption(betas, ref, phase, student))]


LAW_WIDTH = 3.0  # the law's line: wide and light, under the difference's thin contours


def phase_caption(betas, reference_recall, phase: dict, student: str) -> str:
  """The caption of ``mog_phase``, every number from the figure's arrays."""
  difference = np.asarray(phase["gap"], float)
  ka = np.asarray(phase["ka_target_mass"], float)
  cells = difference.size
  ahead, behind = int(np.sum(difference > 0.5)), int(np.sum(difference < -0.5))
  trapped = int(np.sum(ka < 0.5))
  return (
      f"**A-K minus K-A target mass, exact, over beta and the K-A reference's recall ({student} student "
      f"plus a target mode of weight p).** Colour: the difference of the exact aligned target masses, "
      f"A-K minus K-A, on {len(betas)} betas from {betas[0]:.3g} to {betas[-1]:.3g} and {len(reference_recall)} "
      f"reference recalls pi_ref(A) from {reference_recall[0]:.3g} to {reference_recall[-1]:.3g} (log-spaced). "
      f"Black lines: the difference at +0.5 (solid; A-K ahead by more than half the mass beyond it: "
      f"{ahead} of {cells} cells) and at -0.5 (dashed; K-A ahead: {behind} of {cells} cells); where both "
      f"pipelines succeed or both fail the difference is flat near 0. Wide light green line: the law's "
      f"boundary Delta/beta = log((1 - p)/p), where K-A's optimum sigmoid(logit p + Delta/beta) is 1/2 -- "
      f"here K-A is that optimum (its reference's exact Gibbs tilt), so the line is the 1/2 contour of "
      f"K-A's exact mass (below 1/2 in {trapped} of {cells} cells). Where a black contour follows the law, "
      f"it runs on top of the wide line.\n")


LAW_COLOUR = "#009E73"
TRADEOFF_MARKERS = {"K-A": "o", "A-K": "s", "K-A(teacher-ref)": "^", "A-K(tau)": "D"}
# Marker areas, largest drawn first: points of several pipelines at one place nest as rings
# (K-A, smallest, on top), none hides another.
TRADEOFF_SIZES = {"A-K(tau)": 58.0, "A-K": 36.0, "K-A(teacher-ref)": 24.0, "K-A": 12.0}
MASS_FLOOR = 1e-12  # target masses within this of 0 or 1 are drawn at it on the log-odds axis
TRADEOFF_CMAP = "cividis"


def plot_tradeoff(out_dir, betas, metrics_SxBxPxAxM, student: str) -> list[Path]:
  """Overall recall against target mass along beta (exact alignment, mean over seeds); colour = beta.

  Target mass on a log-odds axis (masses near 1 spread out; those within ``MASS_FLOOR`` of 1
  drawn at 1 - MASS_FLOOR); recall on a flipped log axis of its negation. Markers of the
  pipelines differ in size, largest drawn first, so coinciding points nest.
  """
  import matplotlib.pyplot as plt
  from matplotlib.colors import LogNorm
  from recall_theory.plotting import ticks
  a = ALGORITHMS.index("exact")
  mean = metrics_SxBxPxAxM.mean(axis=0)
  tm = mean[:, :, a, METRICS.index("target_mass")]
  rc = mean[:, :, a, METRICS.index("recall")]
  x = ticks.clip_probability(tm, MASS_FLOOR)
  at_one = int(np.sum(tm > 1.0 - MASS_FLOOR))  # masses of 1 (in float64) drawn at 1 - MASS_FLOOR
  at_zero = int(np.sum(tm < MASS_FLOOR))
  with paper_style():
    fig, ax = plt.subplots(figsize=figure_size(COLUMN_WIDTH, 0.85))
    norm = LogNorm(vmin=betas.min(), vmax=max(betas.max(), betas.min() * 1.0001))
    points = None
    order = sorted(range(len(PIPELINES)), key=lambda p: -TRADEOFF_SIZES[PIPELINES[p]])
    for z, p in enumerate(order):
      pipe = PIPELINES[p]
      ax.plot(x[:, p], -rc[:, p], LINESTYLES[pipe], color=PIPELINE_COLORS[pipe], lw=0.9, label=pipe, zorder=1)
      # cividis: no colour of the beta scale is a pipeline's (viridis' teal is K-A(teacher-ref)'s)
      points = ax.scatter(x[:, p], -rc[:, p], c=betas, cmap=TRADEOFF_CMAP, norm=norm, marker=TRADEOFF_MARKERS[pipe],
                          s=TRADEOFF_SIZES[pipe], edgecolors=PIPELINE_COLORS[pipe], linewidths=0.9,
                          zorder=2 + z, label=pipe)
    # the wide 1 - 10^-k labels far apart, and the low masses (K-A's) with a label of their own
    from matplotlib.ticker import FixedFormatter, FixedLocator
    ticks.set_probability_axis(ax.xaxis, float(x.min()), float(x.max()), max_ticks=3)
    dense, sparse = (ticks.probability_ticks(float(x.min()), float(x.max()), n) for n in (6, 3))
    chosen = sorted({v: label for v, label in [*zip(*dense)] if v < 0.5}.items()
                    | {v: label for v, label in [*zip(*sparse)] if v >= 0.5}.items())
    ax.xaxis.set_major_locator(FixedLocator([v for v, _ in chosen]))
    ax.xaxis.set_major_formatter(FixedFormatter([label for _, label in chosen]))
    _neg_log_axis(ax)
    lo, hi = float((-rc).min()), float((-rc).max())
    ax.set_ylim(*reversed(ticks.padded_log_limits(lo, hi, 0.08)))
    bar = fig.colorbar(points, ax=ax, label=r"$\beta$")
    bar.ax.tick_params(labelsize=6)
    clipped = "; ".join(part for part in (
        f"{at_one} of {tm.size} points at 1 in float64, drawn at $1-10^{{{int(np.log10(MASS_FLOOR))}}}$" if at_one else "",
        f"{at_zero} at 0, drawn at $10^{{{int(np.log10(MASS_FLOOR))}}}$" if at_zero else "") if part)
    ax.set_xlabel(r"target mass $q(A)$ (log-odds axis)" + (f"\n({clipped})" if clipped else ""))
    ax.set_ylabel(r"recall $E_{p^*}[\log q]$ (log scale)")
    ax.set_title(f"exact alignment, {student} student; points: the $\\beta$ grid", fontsize=7)
    handles = [(plt.Line2D([], [], color=PIPELINE_COLORS[p], ls=LINESTYLES[p], lw=0.9),
                plt.Line2D([], [], color=PIPELINE_COLORS[p], marker=TRADEOFF_MARKERS[p], ls="none",
                           ms=np.sqrt(TRADEOFF_SIZES[p]), mfc="white", mew=0.9)) for p in PIPELINES]
    from matplotlib.legend_handler import HandlerTuple
    fig.legend(handles, PIPELINES, handler_map={tuple: HandlerTuple(ndivide=None)}, loc="outside lower center",
               ncol=2, fontsize=6, frameon=False)
    return save_figure(fig, out_dir, "mog_tradeoff", data={"betas": betas, "target_mass": tm, "recall": rc,
                                                             "pipelines": np.asarray(PIPELINES),
                                                             "mass_floor": np.asarray(MASS_FLOOR)})


STUDENT_RECALL_COLOUR = "0.8"


def plot_recall_sweep(out_dir, weights, betas, res: dict, student: str = "4-mode") -> list[Path]:
  """Target mass after A-K (left) and K-A (right) against the teacher's weight on the target
  mode, one colour per beta, over the student's own recall (a wide light line underneath:
  K-A's reference, which K-A approaches at large beta, stays visible around the curves).

  The legend gives the colour of each beta and, in grey, each panel's style (A-K solid with
  squares, K-A dashed with circles); the betas' markers are staggered along the curves so
  that curves on one another still show each beta. Writes the generated caption
  ``mog_recall_sweep_caption.md`` (:func:`recall_sweep_caption`) beside the figure.
  """
  import matplotlib.pyplot as plt
  from matplotlib.lines import Line2D
  from recall_theory import io
  with paper_style():
    fig, axes = plt.subplots(1, 2, figsize=figure_size(TEXT_WIDTH, 0.4), sharex=True, sharey=True)
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, len(betas)))
    every = max(1, len(weights) // 8, len(betas))  # one marker every `every` weights, each beta at its own offset
    for ax, (title, key, style, marker) in zip(axes, RECALL_SWEEP_PANELS):
      ax.plot(weights, res["student_target_mass"][:, 0], "-", color=STUDENT_RECALL_COLOUR, lw=5.0,
              solid_capstyle="butt", zorder=0)
      for j, beta in enumerate(betas):
        ax.plot(weights, res[key][:, j], style, color=colors[j], marker=marker, ms=2.5, lw=1.1,
                markevery=(j * every // len(betas), every))
      ax.set_title(title, fontsize=7)
      ax.set_xlabel("teacher's weight on the target mode")
    axes[0].set_xscale("log")
    axes[0].set_yscale("log")
    floor = min(np.min(res["ka_target_mass"]), np.min(res["ak_target_mass"]), np.min(res["student_target_mass"]))
    axes[0].set_ylim(max(floor / 5, 1e-30), 2)
    axes[0].set_ylabel("aligned target mass")
    handles = [Line2D([], [], color=STUDENT_RECALL_COLOUR, lw=5.0, solid_capstyle="butt")]
    labels = [f"student's recall ({student} student)"]
    handles += [Line2D([], [], color=colors[j], lw=1.1) for j in range(len(betas))]
    labels += [rf"$\beta$ = {beta:g}" for beta in betas]
    handles += [Line2D([], [], color="0.3", ls=style, marker=marker, ms=2.5, lw=1.1)
                for _, _, style, marker in RECALL_SWEEP_PANELS]
    labels += ["A-K (left)", "K-A (right)"]
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=6, frameon=False,
               handlelength=2.2, columnspacing=1.0)
    fig.suptitle(f"exact; {student} student: target mass after each pipeline (caption: "
                 "mog_recall_sweep_caption.md)", fontsize=7)
    paths = save_figure(fig, out_dir, "mog_recall_sweep", data={"weights": weights, "betas": betas,
                                                                  "student": np.asarray(student), **res})
  text = recall_sweep_caption(weights, betas, res, student)
  return paths + [io.write_text(Path(out_dir) / "mog_recall_sweep_caption.md", text)]


RECALL_SWEEP_PANELS = (("A-K: align the teacher, then distil", "ak_target_mass", "-", "s"),
                       ("K-A: distil, then align the student", "ka_target_mass", "--", "o"))
COINCIDE = 0.01  # curves within 1% of one another (relative) are said to coincide


def _first_weight_above(weights, mass_W, level: float = 0.5) -> str:
  above = np.nonzero(np.asarray(mass_W) >= level)[0]
  return f"{weights[above[0]]:.3g}" if above.size else f"none up to {weights[-1]:.3g}"


def recall_sweep_caption(weights, betas, res: dict, student: str) -> str:
  """The caption of ``mog_recall_sweep``, every number from the figure's arrays: the grid, where
  each pipeline's mass first reaches 1/2 per beta, and where the K-A curves coincide."""
  weights = np.asarray(weights, float)
  ka, ak = np.asarray(res["ka_target_mass"], float), np.asarray(res["ak_target_mass"], float)
  recall = np.asarray(res["student_target_mass"], float)[:, 0]
  spread = ka.max(axis=1) / np.maximum(ka.min(axis=1), 1e-300) - 1.0  # per weight, across betas
  together = np.nonzero(spread <= COINCIDE)[0]
  tail = together[together >= (together.max() if together.size else 0)]
  while together.size and tail[0] - 1 in together:
    tail = np.concatenate([[tail[0] - 1], tail])
  lines = [
      f"**Target mass after each pipeline against the teacher's weight on the target ({student} student, "
      f"exact).** The teacher is p* with weight w on the target mode, w from {weights[0]:.3g} to "
      f"{weights[-1]:.3g} ({len(weights)} log-spaced values); the student is distilled from it with the KD "
      f"recipe; every mass is exact. Left: A-K (align the teacher at beta, then distil; solid, squares); "
      f"right: K-A (distil, then align the student at beta; dashed, circles); one colour per beta = "
      f"{', '.join(f'{b:g}' for b in betas)}; markers staggered along each curve. Wide grey line: the "
      f"student's own recall of the target, K-A's reference.",
      "",
      "| beta | A-K first reaches 1/2 at w | K-A first reaches 1/2 at w |",
      "|---|---|---|"]
  lines += [f"| {b:g} | {_first_weight_above(weights, ak[:, j])} | {_first_weight_above(weights, ka[:, j])} |"
            for j, b in enumerate(betas)]
  lines.append("")
  if tail.size:
    lines.append(
        f"K-A's curves of every beta lie within {100 * COINCIDE:g}% of one another for w >= "
        f"{weights[tail[0]]:.3g} (largest spread there {100 * spread[tail].max():.2g}%), where the student's "
        f"recall is {recall[tail[0]]:.3g} or more: past the student's step (w from "
        f"{weights[max(tail[0] - 1, 0)]:.3g} to {weights[tail[0]]:.3g}, recall from "
        f"{recall[max(tail[0] - 1, 0)]:.3g} to {recall[tail[0]]:.3g}) the reference's recall, not beta, sets "
        f"K-A's mass, so the betas there cannot be told apart.")
  else:
    lines.append(f"K-A's curves of the betas differ by more than {100 * COINCIDE:g}% at every weight.")
  return "\n".join(lines) + "\n"


def _edges(centres: np.ndarray) -> np.ndarray:
  """Cell edges for centres on a log axis (geometric midpoints)."""
  c = np.asarray(centres, dtype=np.float64)
  mid = np.sqrt(c[1:] * c[:-1])
  return np.concatenate([[c[0] ** 2 / mid[0]], mid, [c[-1] ** 2 / mid[-1]]])


def law_prediction(recall: np.ndarray, delta_over_beta: np.ndarray) -> np.ndarray:
  """The law's K-A optimum sigmoid(logit p + Delta/beta), each point with its own p and Delta/beta."""
  from scipy.special import expit
  recall = np.asarray(recall, float)
  return expit(np.log(recall) - np.log1p(-recall) + np.asarray(delta_over_beta, float))


TAU_LABEL_SHARE = (0.1, 0.15)  # K-A points closer than these shares of a panel (x, y) share one tau label


def label_column(ka_mass_TxB: np.ndarray, floor: float) -> int:
  """The beta column whose K-A masses spread over the most decades (their tau labels fit there)."""
  logs = np.log10(np.maximum(np.asarray(ka_mass_TxB, float), floor))
  return int(np.argmax(logs.max(axis=0) - logs.min(axis=0)))


def tau_point_labels(recall_T, mass_T, taus, decades: tuple[float, float]) -> tuple[list[tuple[float, float]],
                                                                                     list[str]]:
  """One label per group of K-A points lying within :data:`TAU_LABEL_SHARE` of the panel's
  ``decades`` (x, y) of the group's first (by recall): ``tau=0.2, 0.5`` at the group's
  geometric centre."""
  order = np.argsort(recall_T)
  lx, ly = np.log10(np.asarray(recall_T, float)), np.log10(np.asarray(mass_T, float))
  near_x, near_y = TAU_LABEL_SHARE[0] * decades[0], TAU_LABEL_SHARE[1] * decades[1]
  groups: list[list[int]] = []
  for k in order:
    if groups and (abs(lx[k] - lx[groups[-1][0]]) < near_x and abs(ly[k] - ly[groups[-1][0]]) < near_y):
      groups[-1].append(int(k))
    else:
      groups.append([int(k)])
  points = [(float(10 ** np.mean(lx[g])), float(10 ** np.max(ly[g]))) for g in groups]
  texts = ["$\\tau$=" + ", ".join(f"{taus[k]:g}" for k in sorted(g, key=lambda k: taus[k])) for g in groups]
  return points, texts


def plot_taus(out_dir, taus, betas, results: dict) -> list[Path]:
  """Aligned mass against the student's recall over tau: rows = students, columns = betas, with the law.

  ``results``: {student: tau_sweep output (arrays (T, B))}. Each K-A point is ringed by its
  own prediction sigmoid(logit p + Delta/beta), with its own recall p and its own Delta/beta
  (Delta/beta changes with tau: one curve at a typical Delta/beta would put points that
  match their predictions decades away from it). The shaded strip spans the trap
  boundaries p = sigmoid(-Delta/beta) of the panel's taus. Masses below ``floor`` are drawn
  at the floor.
  """
  import matplotlib.pyplot as plt
  from matplotlib.patches import Patch
  from matplotlib.ticker import FixedLocator, LogFormatterMathtext, NullLocator
  from scipy.special import expit
  from recall_theory.plotting import ticks
  from recall_theory.plotting.figure_check import declare_valid_range
  from recall_theory.plotting.labels import label_points
  students = list(results)
  nrows, ncols = len(students), len(betas)

  def row_floor(res) -> float:  # each student's row spans its own decades (a shared range squeezes one)
    masses = np.concatenate([np.ravel(res[k]) for k in ("ka_target_mass", "ak_target_mass")])
    masses = np.concatenate([masses, np.ravel(law_prediction(res["student_target_mass"][:, :1],
                                                             res["ka_delta_over_beta"]))])
    return 10.0 ** np.floor(np.log10(max(masses[masses > 0].min(), 1e-300))) if (masses > 0).any() else 1e-30

  tau_labels = []
  with paper_style():
    fig, axes = plt.subplots(nrows, ncols, figsize=(TEXT_WIDTH, 1.6 * nrows + 1.0), sharex=True, sharey="row",
                             squeeze=False)
    all_recall = np.concatenate([r["student_target_mass"][:, 0] for r in results.values()])
    p_lo = max(min(all_recall.min() / 10, 1e-3), 1e-30)
    for i, student in enumerate(students):
      res = results[student]
      recall = res["student_target_mass"][:, 0]
      floor = row_floor(res)
      for j, beta in enumerate(betas):
        ax = axes[i, j]
        delta = res["ka_delta_over_beta"][:, j]
        predicted = law_prediction(recall, delta)
        boundary = expit(-delta)
        ax.axvspan(boundary.min(), boundary.max(), color=TRAP_STRIP_COLOUR, lw=0, zorder=0)
        ax.axhline(res["aligned_teacher_target_mass"][0, j], color=PIPELINE_COLORS["teacher"], ls="--", lw=0.8,
                   label="aligned teacher")
        ax.plot(recall, np.maximum(predicted, floor), "o", ms=6.5, mfc="none", mec=LAW_RING_COLOUR, mew=0.8,
                label=r"law (K-A): $\sigma(\mathrm{logit}\,p + \Delta/\beta)$ of each point")
        ax.plot(recall, np.maximum(res["ka_target_mass"][:, j], floor), "o", color=PIPELINE_COLORS["K-A"], ms=3.5,
                label="K-A (exact)")
        ax.plot(recall, np.maximum(res["ak_target_mass"][:, j], floor), "s", color=PIPELINE_COLORS["A-K"], ms=3.2,
                mfc="none", mew=0.9, label="A-K (exact)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        # whole rings and markers at the ends; labelled ticks stop at 1 (a mass)
        ax.set_ylim(*ticks.padded_log_limits(floor, 1.0, 0.05))
        exponents = np.arange(int(np.log10(floor)), 1)
        step = max(1, int(np.ceil(len(exponents) / 5)))
        ax.yaxis.set_major_locator(FixedLocator(10.0 ** exponents[::-1][::step]))
        ax.yaxis.set_major_formatter(LogFormatterMathtext())
        ax.yaxis.set_minor_locator(NullLocator())
        declare_valid_range(ax, 0.0, 1.0, "target mass")
        ax.set_xlim(*ticks.padded_log_limits(p_lo, float(all_recall.max()), 0.05))
        if j == label_column(res["ka_target_mass"], floor):  # a row's recalls are the same in every
          # column: their taus named once, where K-A's points spread most (points close together share a label)
          points, texts = tau_point_labels(recall, np.maximum(res["ka_target_mass"][:, j], floor), taus,
                                           (float(np.log10(all_recall.max() / p_lo)), float(-np.log10(floor))))
          tau_labels.append((ax, points, texts))
        if i == 0:
          ax.set_title(rf"$\beta$ = {beta:g}", fontsize=7)
        if j == 0:
          ax.set_ylabel(f"{student}:\n" + r"target mass $\pi(A)$", fontsize=6.5)
        if i == nrows - 1:
          ax.set_xlabel(r"student's recall $p$", fontsize=6.5)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    handles.append(Patch(color=TRAP_STRIP_COLOUR, lw=0))
    labels.append(r"trap boundaries $p=\sigma(-\Delta/\beta)$ of the $\tau$s")
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=6, frameon=False)
    fig.suptitle(rf"student's recall set by the KD temperature $\tau$ = {', '.join(f'{t:g}' for t in taus)} "
                 "(exact alignment, teacher p*);\n"
                 r"$\tau$ labels on the K-A points of one panel per row (a row's recalls are the same in every column)",
                 fontsize=7)
    for ax, points, texts in tau_labels:  # last: placed around everything drawn
      label_points(ax, points, texts, color="0.3", fontsize=5.5)
    return save_figure(fig, out_dir, "mog_taus", data={
        "taus": taus, "betas": betas, "students": np.asarray(students),
        **{f"{k}__{s}": v for s, r in results.items() for k, v in r.items()}})


TRAP_STRIP_COLOUR = "0.88"
LAW_RING_COLOUR = "0.35"


# Colour range of the trained phase map, in log-odds (masses from ~5e-5 to 1 - 5e-5); beyond it the
# colour bar's arrows: the sign, not the size, of a log-odds far from 0 is what the map shows.
PHASE_LOG_ODDS_RANGE = 10.0


def plot_trained_phase(out_dir, data: dict, name: str = "mog_phase_trained") -> list[Path]:
  """Heatmaps of the trained log-odds over (student recall, Delta/beta): rows = pipelines, columns = algorithms.

  ``data`` (:func:`recall_theory.mog.trained_phase.figure_data`): per panel ``<what>__<P>__<A>``, the
  cell means ``cell_log_odds`` (T, B) on quadrilateral cells with corners ``corner_recall`` /
  ``corner_delta_over_beta`` (T+1, B+1), and per seed ``seed_recall``, ``seed_delta_over_beta``,
  ``seed_log_odds``, ``seed_budget`` (S, T, B); the law's boundary ``boundary_recall`` /
  ``boundary_delta_over_beta``. Seeds are triangles (up: at or above 1/2; down: below), hollow
  where the alignment ran out of its budget before its plateau.
  """
  import matplotlib.pyplot as plt
  from matplotlib.colors import Normalize
  from matplotlib.ticker import FixedLocator, FuncFormatter
  pipelines = [str(p) for p in data["pipelines"]]
  algorithms = [str(a) for a in data["algorithms"]]
  labels = {"pg": "PG", "dpo": "DPO", "exact": "exact"}
  every_recall = np.concatenate([np.ravel(data[f"{k}__{p}__{a}"]) for k in ("seed_recall", "corner_recall")
                                 for p in data["pipelines"] for a in data["algorithms"]])
  x_range = (every_recall.min() / 1.4, every_recall.max() * 1.4)
  norm = Normalize(-PHASE_LOG_ODDS_RANGE, PHASE_LOG_ODDS_RANGE)
  with paper_style():
    fig, axes = plt.subplots(len(pipelines), len(algorithms), figsize=(TEXT_WIDTH, 2.1 * len(pipelines) + 0.8),
                             sharex=True, sharey=True, squeeze=False)
    mesh = None
    for i, pipeline in enumerate(pipelines):
      for j, algorithm in enumerate(algorithms):
        ax = axes[i, j]
        ax.set_facecolor("0.8")   # outside the grid's cells: grey, not the white of log-odds 0
        key = f"__{pipeline}__{algorithm}"
        mesh = ax.pcolormesh(data["corner_recall" + key], data["corner_delta_over_beta" + key],
                             data["cell_log_odds" + key], cmap="RdBu_r", norm=norm, shading="flat")
        ax.plot(data["boundary_recall"], data["boundary_delta_over_beta"], "--", color="k", lw=1.1)
        recall, y = data["seed_recall" + key], data["seed_delta_over_beta" + key]
        above, budget = data["seed_log_odds" + key] >= 0, data["seed_budget" + key]
        for escaped, marker in ((True, "^"), (False, "v")):
          done = (above == escaped) & ~budget
          short = (above == escaped) & budget
          ax.scatter(recall[done], y[done], marker=marker, s=8, c="k", linewidths=0, zorder=3)
          ax.scatter(recall[short], y[short], marker=marker, s=8, facecolors="white", edgecolors="k",
                     linewidths=0.6, zorder=3)
        ax.set_xscale("log")
        ax.set_yscale("log")   # betas are log-spaced and Delta/beta ~ 1/beta: rows evenly spaced
        corners_y = data["corner_delta_over_beta" + key]
        ax.set_xlim(*x_range)
        ax.set_ylim(corners_y.min(), corners_y.max())
        ax.yaxis.set_major_locator(FixedLocator([0.5, 1, 2, 5, 10, 20, 50]))
        ax.yaxis.set_major_formatter(FuncFormatter(_tick_label))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda *_: ""))
        ax.set_title(f"{pipeline}, {labels.get(algorithm, algorithm)}", fontsize=7)
        if i == len(pipelines) - 1:   # every bottom panel: each one's ticks need their label
          ax.set_xlabel(r"student's recall $p$ (log)")
        if j == 0:
          ax.set_ylabel(r"$\Delta/\beta$ under the student, log scale")
    bar = fig.colorbar(mesh, ax=axes, extend="both", shrink=0.85, pad=0.02)
    bar.set_label("log-odds of aligned mass")
    handles = [plt.Line2D([], [], color="k", ls="--", lw=1.1),
               plt.Line2D([], [], color="k", marker="^", ls="none", ms=3.5),
               plt.Line2D([], [], color="k", marker="v", ls="none", ms=3.5),
               plt.Line2D([], [], color="k", marker="^", ls="none", ms=3.5, mfc="white", mew=0.6)]
    legend_labels = [r"law's boundary $\Delta/\beta = \log((1-p)/p)$", r"seed at or above 1/2",
                     r"seed below 1/2", "hollow: budget ran out before the plateau"]
    fig.legend(handles, legend_labels, loc="outside lower center", ncol=4, fontsize=6, frameon=False)
    return save_figure(fig, out_dir, name, data=data)
