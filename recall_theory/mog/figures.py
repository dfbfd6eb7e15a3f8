"""The Mixture-of-Gaussians figure set (every figure saved with the arrays that drew it).

* ``mog_densities``: contours of p*, the teacher, both students and the exact aligned model of
  each pipeline at one beta (4-mode student); the target mode is starred.
* ``mog_metrics_<student>``: each metric against beta, mean over seeds with a +-1 sample sd band,
  one column per algorithm (exact, pg, dpo), one colour per pipeline.
* ``mog_phase``: the exact A-K - K-A gap in target mass over beta and the K-A reference's
  recall of the target; the zero contour is the phase boundary.
* ``mog_tradeoff``: overall recall against target mass along the beta path (exact), colour = beta.
* ``mog_taus``: aligned mass against the student's recall over the KD temperature, with the law.
* ``mog_recall_sweep``: target mass after each pipeline against the teacher's weight on the target.
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


def _log_like_axis(ax, values: np.ndarray, include_zero: bool = False) -> None:
  """Symlog (linthresh 1) when the data span more than a decade in magnitude, else linear; short labels."""
  from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator
  finite = values[np.isfinite(values)]
  mags = np.abs(finite[finite != 0])
  if mags.size and mags.max() > 10 and mags.max() / max(mags.min(), 1.0) > 10:
    ax.set_yscale("symlog", linthresh=10.0, linscale=0.4)
    top = int(np.ceil(np.log10(mags.max())))
    decades = np.arange(1, top + 1)
    if decades.size > 4:  # at most four labelled decades per sign
      decades = decades[::2]
    ticks = []
    if (finite < -10).any():
      ticks += list(-(10.0 ** decades))
    if (finite > 10).any():
      ticks += list(10.0 ** decades)
    if not ticks or ((finite > -10) & (finite < 10)).any() and (include_zero or len(ticks) < 3):
      ticks.append(0.0)
    ax.yaxis.set_major_locator(FixedLocator(sorted(ticks)))
  else:
    ax.yaxis.set_major_locator(MaxNLocator(3))
  ax.yaxis.set_major_formatter(FuncFormatter(_tick_label))
  ax.yaxis.set_minor_formatter(FuncFormatter(lambda *_: ""))


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
      key = title.split(",")[0].split(" (")[0]
      ax.set_title(title, color=PIPELINE_COLORS.get(key, "black"), fontsize=7)
      ax.set_aspect("equal")
      ax.set_xlim(axis[0], axis[-1])
      ax.set_ylim(axis[0], axis[-1])
    bar = fig.colorbar(shading, ax=axes, shrink=0.8, pad=0.02, ticks=[-8, -6, -4, -2, 0])
    bar.set_label(r"$\log q - \max \log q$ (lines: $-4$, $-1$)", fontsize=6.5)
    bar.ax.tick_params(labelsize=6)
    fig.suptitle(rf"log-density relative to its maximum; aligned at $\beta$={beta:.2g} "
                 f"with the {student_names[0]} student; star = target", fontsize=7)
    data = {"axis": axis, "log_truth": log_truth, "beta": np.asarray(beta), "target_means": target_means,
            **{k.replace(":", "_").replace("(", "_").replace(")", "").replace("-", "_"): v
               for k, v in log_dens.items()}}
    return save_figure(fig, out_dir, "mog_densities", data=data)


METRIC_LABELS_TWO_LINES = {
    "reward": "reward\n" + r"$E_q[R]$",
    "target_mass": "target mass\n" + r"$q(A)$",
    "target_precision": "target prec.\n" + r"$E_q[\log p^*_A]$",
    "precision": "precision\n" + r"$E_q[\log p^*]$",
    "recall": "recall\n" + r"$E_{p^*}[\log q]$",
    "support_precision": "support\nprecision",
    "support_recall": "support\nrecall",
    "kl_to_reference": "KL to\n" + r"$\pi_{ref}$",
}


def plot_metrics(out_dir, betas, metrics_SxBxPxAxM, student: str) -> list[Path]:
  """Metric-vs-beta panels for one student: mean over seeds (markers at the data) +- 1 sample sd band."""
  import matplotlib.pyplot as plt
  from recall_theory import stats
  n_seeds = metrics_SxBxPxAxM.shape[0]
  mean = metrics_SxBxPxAxM.mean(axis=0)
  sd = (metrics_SxBxPxAxM.std(axis=0, ddof=1) if n_seeds > 1 else np.zeros_like(mean))
  with paper_style():
    fig, axes = plt.subplots(len(METRICS), len(ALGORITHMS), figsize=(TEXT_WIDTH, 1.0 * len(METRICS) + 0.7),
                             sharex=True, sharey="row")
    for m, metric in enumerate(METRICS):
      row_values = np.concatenate([(mean - sd)[..., m].ravel(), (mean + sd)[..., m].ravel()])
      for a, algo in enumerate(ALGORITHMS):
        ax = axes[m, a]
        for p, pipe in enumerate(PIPELINES):
          y, s = mean[:, p, a, m], sd[:, p, a, m]
          c = PIPELINE_COLORS[pipe]
          ax.plot(betas, y, LINESTYLES[pipe], color=c, label=pipe, lw=1.0, marker="o", ms=2.2)
          ax.fill_between(betas, y - s, y + s, color=c, alpha=0.16, lw=0)
        ax.set_xscale("log")
        if metric in ("target_precision", "precision", "recall"):
          if a == 0:
            _log_like_axis(ax, row_values)
        else:
          from matplotlib.ticker import FuncFormatter, MaxNLocator
          ax.yaxis.set_major_locator(MaxNLocator(3))
          ax.yaxis.set_major_formatter(FuncFormatter(_tick_label))
        ax.tick_params(labelsize=6)
        if m == 0:
          ax.set_title(algo, fontsize=7)
        if a == 0:
          ax.set_ylabel(METRIC_LABELS_TWO_LINES[metric], fontsize=6)
        if m == len(METRICS) - 1:
          ax.set_xlabel(r"$\beta$")
    fig.align_ylabels(axes[:, 0])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=6.5, frameon=False)
    band = f"band = $\\pm$1 sample sd over {n_seeds} seeds (ddof = 1)" if n_seeds > 1 else "one seed: no band"
    fig.suptitle(f"{student} student: mean over {n_seeds} seeds (markers: the betas run); {band}", fontsize=7)
    return save_figure(fig, out_dir, f"mog_metrics_{student}", data={
        "betas": betas, "metrics": metrics_SxBxPxAxM, "pipelines": np.asarray(PIPELINES),
        "algorithms": np.asarray(ALGORITHMS), "metric_names": np.asarray(METRICS),
        "sd_caption": np.asarray(stats.SD_CAPTION)})


def plot_phase(out_dir, betas, recalls, phase: dict, student: str = "3-mode") -> list[Path]:
  """pcolormesh of the A-K - K-A target-mass gap on log axes; contours at +-0.5 labelled on their lines."""
  import matplotlib.pyplot as plt
  gap = phase["gap"]
  ref = phase["reference_recall"]
  with paper_style():
    fig, ax = plt.subplots(figsize=figure_size(COLUMN_WIDTH, 0.85))
    ax.set_xscale("log")
    ax.set_yscale("log")
    bx = _edges(betas)
    by = _edges(ref)
    ax.set_xlim(bx[0], bx[-1])
    ax.set_ylim(by[0], by[-1])
    mesh = ax.pcolormesh(bx, by, gap.T, cmap="RdBu_r", vmin=-1, vmax=1, shading="flat")
    # +-0.5 rather than 0: the gap is flat at ~0 where both pipelines succeed or both fail.
    # No in-line labels (they sit on, and are crossed by, the nearby contour): the line style says
    # which level a line is, in the title.
    ax.contour(betas, ref, gap.T, levels=[-0.5, 0.5], colors="k", linewidths=0.8, linestyles=["dashed", "solid"])
    ax.set_xlabel(r"$\beta$")
    ax.set_ylabel(r"K-A reference's recall $\pi_{ref}(A)$")
    fig.colorbar(mesh, ax=ax, label="A-K $-$ K-A target mass")
    ax.set_title(f"exact; K-A reference = {student} student + target mode of weight p;\n"
                 "black lines: gap = +0.5 (solid), $-$0.5 (dashed)", fontsize=6.5)
    return save_figure(fig, out_dir, "mog_phase", data={"betas": betas, "recalls": recalls,
                                                          "reference_recall": ref, **phase})


def plot_tradeoff(out_dir, betas, metrics_SxBxPxAxM, student: str) -> list[Path]:
  """Overall recall against target mass along beta (exact alignment, mean over seeds); colour = beta."""
  import matplotlib.pyplot as plt
  from matplotlib.colors import LogNorm
  a = ALGORITHMS.index("exact")
  mean = metrics_SxBxPxAxM.mean(axis=0)
  tm = mean[:, :, a, METRICS.index("target_mass")]
  rc = mean[:, :, a, METRICS.index("recall")]
  markers = {"K-A": "o", "A-K": "s", "K-A(teacher-ref)": "^", "A-K(tau)": "D"}
  with paper_style():
    fig, ax = plt.subplots(figsize=figure_size(COLUMN_WIDTH, 0.8))
    norm = LogNorm(vmin=betas.min(), vmax=max(betas.max(), betas.min() * 1.0001))
    points = None
    for p, pipe in enumerate(PIPELINES):
      ax.plot(tm[:, p], rc[:, p], LINESTYLES[pipe], color=PIPELINE_COLORS[pipe], lw=0.9, label=pipe, zorder=1)
      points = ax.scatter(tm[:, p], rc[:, p], c=betas, cmap="viridis", norm=norm, marker=markers[pipe], s=14,
                          edgecolors=PIPELINE_COLORS[pipe], linewidths=0.6, zorder=2)
    _log_like_axis(ax, rc.ravel(), include_zero=True)
    lo = rc.min()
    ax.set_ylim(lo * 1.6 if lo < 0 else lo - 1, max(rc.max(), 0) + 0.5)
    bar = fig.colorbar(points, ax=ax, label=r"$\beta$")
    bar.ax.tick_params(labelsize=6)
    ax.set_xlabel(r"target mass $q(A)$")
    ax.set_ylabel(r"recall $E_{p^*}[\log q]$")
    ax.set_title(f"exact alignment, {student} student; points: the $\\beta$ grid", fontsize=7)
    handles = [plt.Line2D([], [], color=PIPELINE_COLORS[p], ls=LINESTYLES[p], marker=markers[p], ms=3.5,
                          mfc="white") for p in PIPELINES]
    fig.legend(handles, PIPELINES, loc="outside lower center", ncol=2, fontsize=6, frameon=False)
    return save_figure(fig, out_dir, "mog_tradeoff", data={"betas": betas, "target_mass": tm, "recall": rc,
                                                             "pipelines": np.asarray(PIPELINES)})


def plot_recall_sweep(out_dir, weights, betas, res: dict) -> list[Path]:
  """Target mass after A-K (solid, squares) and K-A (dashed, circles) against the teacher's target weight;
  one colour per beta."""
  import matplotlib.pyplot as plt
  with paper_style():
    fig, ax = plt.subplots(figsize=figure_size(COLUMN_WIDTH, 0.9))
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, len(betas)))
    every = max(1, len(weights) // 8)
    for j, beta in enumerate(betas):
      ax.plot(weights, res["ak_target_mass"][:, j], "-", color=colors[j], marker="s", ms=2.5, markevery=every, lw=1.1)
      ax.plot(weights, res["ka_target_mass"][:, j], "--", color=colors[j], marker="o", ms=2.5, markevery=every,
              lw=1.1)
    ax.plot(weights, res["student_target_mass"][:, 0], ":", color="0.3", lw=1.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    floor = min(np.min(res["ka_target_mass"]), np.min(res["ak_target_mass"]), np.min(res["student_target_mass"]))
    ax.set_ylim(max(floor / 5, 1e-30), 2)
    ax.set_xlabel("teacher's weight on the target mode")
    ax.set_ylabel("aligned target mass")
    handles = [plt.Line2D([], [], color="0.2", ls="-", marker="s", ms=3), plt.Line2D([], [], color="0.2", ls="--",
                                                                                   marker="o", ms=3),
               plt.Line2D([], [], color="0.3", ls=":")]
    labels = ["A-K", "K-A", "student's recall (K-A reference)"]
    handles += [plt.Line2D([], [], color=c, lw=2) for c in colors]
    labels += [rf"$\beta$ = {b:g}" for b in betas]
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=5.5, frameon=False)
    ax.set_title("exact: target mass after each pipeline", fontsize=7)
    return save_figure(fig, out_dir, "mog_recall_sweep", data={"weights": weights, "betas": betas, **res})


def _edges(centres: np.ndarray) -> np.ndarray:
  """Cell edges for centres on a log axis (geometric midpoints)."""
  c = np.asarray(centres, dtype=np.float64)
  mid = np.sqrt(c[1:] * c[:-1])
  return np.concatenate([[c[0] ** 2 / mid[0]], mid, [c[-1] ** 2 / mid[-1]]])


def plot_taus(out_dir, taus, betas, results: dict) -> list[Path]:
  """Aligned mass against the student's recall over tau: rows = students, columns = betas, with the law.

  ``results``: {student: tau_sweep output (arrays (T, B))}. The grey curve is the law's K-A optimum
  sigmoid(logit p + Delta/beta) at the median Delta/beta of that panel; the dotted line its trap
  boundary p = sigmoid(-Delta/beta). Masses below ``floor`` are drawn at the floor.
  """
  import matplotlib.pyplot as plt
  from scipy.special import expit
  students = list(results)
  nrows, ncols = len(students), len(betas)
  masses = np.concatenate([np.ravel(r[k]) for r in results.values() for k in ("ka_target_mass", "ak_target_mass")])
  floor = 10.0 ** np.floor(np.log10(max(masses[masses > 0].min(), 1e-300))) if (masses > 0).any() else 1e-30
  with paper_style():
    fig, axes = plt.subplots(nrows, ncols, figsize=(TEXT_WIDTH, 1.6 * nrows + 1.0), sharex=True, sharey=True,
                             squeeze=False)
    all_recall = np.concatenate([r["student_target_mass"][:, 0] for r in results.values()])
    p_lo = max(min(all_recall.min() / 10, 1e-3), 1e-30)
    p_grid = np.geomspace(p_lo, 0.9, 300)
    for i, student in enumerate(students):
      res = results[student]
      recall = res["student_target_mass"][:, 0]
      for j, beta in enumerate(betas):
        ax = axes[i, j]
        delta = float(np.median(res["ka_delta_over_beta"][:, j]))
        law = expit(np.log(p_grid) - np.log1p(-p_grid) + delta)
        ax.plot(p_grid, np.maximum(law, floor), "-", color="0.6", lw=1.0,
                label=r"law (K-A): $\sigma(\mathrm{logit}\,p + \Delta/\beta)$")
        ax.axvline(expit(-delta), color="0.6", ls=":", lw=0.9, label=r"trap boundary $p=\sigma(-\Delta/\beta)$")
        ax.axhline(res["aligned_teacher_target_mass"][0, j], color=PIPELINE_COLORS["teacher"], ls="--", lw=0.8,
                   label="aligned teacher")
        ax.plot(recall, np.maximum(res["ka_target_mass"][:, j], floor), "o", color=PIPELINE_COLORS["K-A"], ms=3.5,
                label="K-A (exact)")
        ax.plot(recall, np.maximum(res["ak_target_mass"][:, j], floor), "s", color=PIPELINE_COLORS["A-K"], ms=3.2,
                mfc="none", mew=0.9, label="A-K (exact)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(floor / 5, 5)
        ax.set_xlim(p_lo, 1.0)
        if i == 0:
          ax.set_title(rf"$\beta$ = {beta:g}", fontsize=7)
        if j == 0:
          ax.set_ylabel(f"{student}:\n" + r"target mass $\pi(A)$", fontsize=6.5)
        if i == nrows - 1:
          ax.set_xlabel(r"student's recall $p$", fontsize=6.5)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=6, frameon=False)
    fig.suptitle(rf"student's recall set by the KD temperature $\tau$ = {', '.join(f'{t:g}' for t in taus)} "
                 "(exact alignment, teacher p*)", fontsize=7)
    return save_figure(fig, out_dir, "mog_taus", data={
        "taus": taus, "betas": betas, "students": np.asarray(students),
        **{f"{k}__{s}": v for s, r in results.items() for k, v in r.items()}})


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
        if i == len(pipelines) - 1 and j == len(algorithms) // 2:
          ax.set_xlabel(r"student's recall $p$ (K-A's reference), log scale")
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
