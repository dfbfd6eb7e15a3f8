"""Tables and the figure of a comparison run (rows from :func:`pipeline.run_comparison`).

* :func:`summarize`: mean and standard deviation over seeds per (pipeline, algorithm);
* :func:`markdown_table`: that summary as a Markdown table ("mean ± sd");
* :func:`plot_comparison`: reward, target share, precision and recall per pipeline and
  algorithm, one dot per seed with mean ± sd, teacher and student as reference lines;
  saved with its data through :func:`recall_theory.plotting.save_figure`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from recall_theory.lm.metrics import METRIC_NAMES

ROW_ORDER = ("teacher", "student", "K-A", "K-A(teacher-ref)", "A", "A-K")
PLOT_PIPELINES = ("K-A", "K-A(teacher-ref)", "A-K")
LABELS = {
    "reward": "reward $E_q[R]$",
    "target_share": "target share",
    "target_precision": "target precision",
    "precision": "precision",
    "recall": "recall",
    "kl_ref": "KL(q || ref) (nats)",
}
YLABELS = {"target_precision": "$E_q[\\log p^*(x|t)]/T$", "precision": "$E_q[\\log p^*]/T$",
           "recall": "$E_{p^*}[\\log q]/T$", "target_share": "share of samples"}


def summarize(rows: list[dict]) -> list[dict]:
  """One dict per (pipeline, algorithm): n seeds, and METRIC_mean / METRIC_sd (ddof=1)."""
  groups: dict[tuple, list[dict]] = {}
  for row in rows:
    groups.setdefault((row["pipeline"], row["algorithm"]), []).append(row)
  order = {p: i for i, p in enumerate(ROW_ORDER)}
  out = []
  for (pipe, alg), rs in sorted(groups.items(), key=lambda kv: (kv[0][1] != "none", kv[0][1],
                                                                order.get(kv[0][0], 99))):
    entry = {"pipeline": pipe, "algorithm": alg, "n_seeds": len(rs)}
    for m in METRIC_NAMES:
      vals = np.array([r[m] for r in rs], float)
      entry[f"{m}_mean"] = float(np.mean(vals))
      entry[f"{m}_sd"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan")
    out.append(entry)
  return out


def _fmt(mean: float, sd: float) -> str:
  if math.isnan(mean):
    return "n/a"
  return f"{mean:.3f}" if math.isnan(sd) else f"{mean:.3f} ± {sd:.3f}"


def markdown_table(summary: list[dict], metrics=METRIC_NAMES) -> str:
  """Markdown table of means ± standard deviations over seeds."""
  head = "| pipeline | algorithm | seeds | " + " | ".join(metrics) + " |"
  rule = "|" + "---|" * (3 + len(metrics))
  lines = [head, rule]
  for e in summary:
    cells = [_fmt(e[f"{m}_mean"], e[f"{m}_sd"]) for m in metrics]
    lines.append(f"| {e['pipeline']} | {e['algorithm']} | {e['n_seeds']} | " + " | ".join(cells)
                 + " |")
  return "\n".join(lines) + "\n"


def plot_comparison(rows: list[dict], out_dir: str | Path, name: str = "lm_comparison",
                    metrics=("reward", "target_share", "target_precision", "precision",
                             "recall")) -> list[Path]:
  """Per-seed dots and mean ± sd for each pipeline, one panel per metric."""
  from recall_theory.plotting import (PIPELINE_COLORS, TEXT_WIDTH, figure_size, paper_style,
                                      save_figure)
  import matplotlib.pyplot as plt

  algorithms = sorted({r["algorithm"] for r in rows if r["algorithm"] != "none"})
  data: dict[str, np.ndarray] = {"algorithms": np.array(algorithms),
                                 "pipelines": np.array(PLOT_PIPELINES)}
  with paper_style():
    # One row of panels for up to two algorithms; a 3-column grid beyond, so labels fit.
    ncols = len(metrics) if len(algorithms) <= 2 else 3
    nrows = -(-len(metrics) // ncols)
    fig, axes = plt.subplots(nrows, ncols, squeeze=False,
                             figsize=figure_size(TEXT_WIDTH, 0.27 if nrows == 1 else 0.3 * nrows))
    for ax in axes.ravel()[len(metrics):]:
      ax.set_axis_off()
    axes = axes.ravel()[:len(metrics)]
    width = 0.22
    for ax, m in zip(axes, metrics):
      for j, pipe in enumerate(PLOT_PIPELINES):
        means, sds = [], []
        for i, alg in enumerate(algorithms):
          vals = np.array([r[m] for r in rows if r["pipeline"] == pipe and r["algorithm"] == alg])
          x = i + (j - 1) * width
          ax.scatter(np.full(len(vals), x), vals, s=6, color=PIPELINE_COLORS[pipe], alpha=0.45,
                     linewidths=0, zorder=2)
          mean = vals.mean() if len(vals) else np.nan
          sd = vals.std(ddof=1) if len(vals) > 1 else 0.0
          ax.errorbar(x, mean, yerr=sd, fmt="o", ms=3.2, color=PIPELINE_COLORS[pipe], capsize=2,
                      lw=0.9, zorder=3, label=pipe if (i == 0 and m == metrics[0]) else None)
          means.append(mean)
          sds.append(sd)
          data[f"{m}__{pipe}__{alg}"] = vals
        data[f"{m}__{pipe}__mean"] = np.array(means)
        data[f"{m}__{pipe}__sd"] = np.array(sds)
      for ref, style in (("teacher", "--"), ("student", ":")):
        vals = np.array([r[m] for r in rows if r["pipeline"] == ref])
        if len(vals):
          ax.axhline(vals.mean(), color=PIPELINE_COLORS[ref], ls=style, lw=0.8,
                     label=ref if m == metrics[0] else None, zorder=1)
          data[f"{m}__{ref}"] = vals
      ax.set_xticks(range(len(algorithms)), [a.upper() for a in algorithms])
      ax.set_xlim(-0.5, len(algorithms) - 0.5)
      ax.set_title(LABELS.get(m, m))
      if m in YLABELS:
        ax.set_ylabel(YLABELS[m], labelpad=1)
    fig.legend(loc="outside lower center", ncol=5)
    return save_figure(fig, out_dir, name, data=data)


def load_rows(csv_path: str | Path) -> list[dict]:
  """Rows of an ``lm_results.csv`` with numbers parsed (to redraw without rerunning)."""
  import csv
  rows = []
  with open(csv_path, newline="") as fh:
    for r in csv.DictReader(fh):
      row = {"pipeline": r.pop("pipeline"), "algorithm": r.pop("algorithm"),
             "seed": int(r.pop("seed"))}
      row.update({k: float(v) for k, v in r.items()})
      rows.append(row)
  return rows
