"""Tables and the figure of a comparison run (rows from :func:`pipeline.run_comparison`).

* :func:`summarize`: mean and sample sd (ddof = 1) over seeds per (pipeline, algorithm),
  with the law's prediction beside the measured mass;
* :func:`markdown_table` / :func:`law_table`: those summaries as Markdown tables;
* :func:`operating_point` / :func:`summary_markdown`: why the preset's operating point
  puts K-A inside the trap, generated from the run's numbers;
* :func:`plot_comparison`: target share (measured against the law's optimum), target
  precision, precision and recall per pipeline and algorithm, one dot per seed with
  mean ± sample sd, teacher and student as reference lines; saved with its data through
  :func:`recall_theory.plotting.save_figure`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from recall_theory import operating_point as op
from recall_theory import stats
from recall_theory.lm.metrics import METRIC_NAMES

ROW_ORDER = ("teacher", "student", "K-A", "K-A(teacher-ref)", "A", "A-K")
PLOT_PIPELINES = ("K-A", "K-A(teacher-ref)", "A-K")
ALGORITHM_NAMES = {"dpo": "DPO", "ipo": "IPO", "simpo": "SimPO", "rloo": "RLOO", "none": "none"}
LABELS = {
    "reward": "reward $E_q[R]$",
    "target_share": "target share (log-odds axis)",
    "target_precision": "target precision ($p^*_{\\rm tgt}$: $p^*$'s target style)",
    "precision": "precision",
    "recall": "recall",
    "kl_ref": "KL(q || ref) (nats)",
}
YLABELS = {"target_precision": "$E_q[\\log p^*_{\\rm tgt}(x)]/T$ (nats/token)",
           "precision": "$E_q[\\log p^*(x)]/T$ (nats/token)",
           "recall": "$E_{p^*}[\\log q(y)]/T$ (nats/token)",
           "target_share": "share of samples in A",
           "reward": "$E_q[R]$ (mean reward)"}
# p* of SmolLM2 has no closed-form target conditional: no target-precision panel
SMOLLM2_METRICS = ("reward", "target_share", "precision", "recall")
LAW_SUMMARY = ("reference_recall", "delta_over_beta", "predicted_mass", "predicted_mass_low",
               "predicted_mass_high", "aligned_mass", "expected_target_samples",
               "target_samples_drawn", "kl", "kl_ceiling")


def algorithm_name(alg: str) -> str:
  return ALGORITHM_NAMES.get(alg, alg.upper())


def _within(row: dict) -> bool:
  """The measured interval overlaps the prediction's interval."""
  return bool(row["predicted_mass_low"] <= row["aligned_mass_high"]
              and row["aligned_mass_low"] <= row["predicted_mass_high"])


def summarize(rows: list[dict]) -> list[dict]:
  """One dict per (pipeline, algorithm): n seeds, METRIC_mean / METRIC_sd (sample sd),
  the law's columns averaged over seeds, and ``n_within`` (seeds inside the prediction)."""
  groups: dict[tuple, list[dict]] = {}
  for row in rows:
    groups.setdefault((row["pipeline"], row["algorithm"]), []).append(row)
  order = {p: i for i, p in enumerate(ROW_ORDER)}
  out = []
  for (pipe, alg), rs in sorted(groups.items(), key=lambda kv: (kv[0][1] != "none", kv[0][1],
                                                                order.get(kv[0][0], 99))):
    entry = {"pipeline": pipe, "algorithm": alg, "n_seeds": len(rs)}
    for m in METRIC_NAMES + tuple(k for k in LAW_SUMMARY if k in rs[0]):
      mean, sd, _ = stats.mean_sd([float(r[m]) for r in rs])
      entry[f"{m}_mean"], entry[f"{m}_sd"] = mean, sd
    finite = [r for r in rs if math.isfinite(float(r.get("predicted_mass", math.nan)))]
    entry["n_within"] = sum(_within(r) for r in finite) if finite else None
    entry["n_above_ceiling"] = sum(bool(r.get("above_ceiling")) for r in rs)
    out.append(entry)
  return out


def _fmt(mean: float, sd: float, fmt: str = ".3f") -> str:
  if math.isnan(mean):
    return "n/a"
  return f"{mean:{fmt}}" if math.isnan(sd) else f"{mean:{fmt}} ± {sd:{fmt}}"


def markdown_table(summary: list[dict], metrics=METRIC_NAMES) -> str:
  """Markdown table of means ± sample sd over seeds (metrics)."""
  head = "| pipeline | algorithm | seeds | " + " | ".join(metrics) + " |"
  rule = "|" + "---|" * (3 + len(metrics))
  lines = [head, rule]
  for e in summary:
    cells = [_fmt(e[f"{m}_mean"], e[f"{m}_sd"]) for m in metrics]
    lines.append(f"| {e['pipeline']} | {algorithm_name(e['algorithm'])} | {e['n_seeds']} | "
                 + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def law_table(summary: list[dict]) -> str:
  """Markdown table: the law's prediction beside the measured mass, per aligned pipeline."""
  lines = ["| pipeline | algorithm | seeds | p_ref | Delta/beta | predicted mass [interval] | "
           "measured mass | within | E[#target samples] | drawn | KL paid | KL ceiling |",
           "|" + "---|" * 12]
  for e in summary:
    if e["algorithm"] == "none" or "predicted_mass_mean" not in e:
      continue
    pred = e["predicted_mass_mean"]
    pred_txt = ("n/a (reference-free)" if math.isnan(pred) else
                f"{pred:.3g} [{e['predicted_mass_low_mean']:.3g}, {e['predicted_mass_high_mean']:.3g}]")
    within = "n/a" if e["n_within"] is None else f"{e['n_within']}/{e['n_seeds']}"
    lines.append(
        f"| {e['pipeline']} | {algorithm_name(e['algorithm'])} | {e['n_seeds']} | "
        f"{e['reference_recall_mean']:.3g} | {_fmt(e['delta_over_beta_mean'], math.nan, '.2f')} | "
        f"{pred_txt} | {_fmt(e['aligned_mass_mean'], e['aligned_mass_sd'], '.3g')} | {within} | "
        f"{e['expected_target_samples_mean']:.3g} | {_fmt(e['target_samples_drawn_mean'], math.nan, '.3g')} | "
        f"{_fmt(e['kl_mean'], e['kl_sd'], '.3g')} | {e['kl_ceiling_mean']:.3g} |")
  return "\n".join(lines) + "\n"


OBJECTIVES = {"rloo": "J/beta = E[R]/beta - KL (nats/seq), optimum log Z",
              "dpo": "held-out DPO loss, labels averaged (nats/pair), optimum: the tilt's",
              "ipo": "held-out IPO loss (nats/pair), optimum: IPO's minimiser",
              "simpo": "held-out SimPO loss (nats/pair), no optimum"}


def training_table(rows: list[dict]) -> str:
  """Markdown table: how every alignment stage ended (plateau rule of recall_theory.plateau)."""
  groups: dict[tuple, list[dict]] = {}
  for r in rows:
    if r.get("plateau") in ("reached", "budget"):
      groups.setdefault((r["pipeline"], r["algorithm"]), []).append(r)
  if not groups:
    return ""
  order = {p: i for i, p in enumerate(ROW_ORDER)}
  lines = ["| pipeline | algorithm | plateau reached | steps (min-max) | budget | held-out objective | "
           "sub-optimality | KL(pi || pi*) (nats) |", "|" + "---|" * 8]
  for (pipe, alg), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], order.get(kv[0][0], 99))):
    steps = [int(r["steps"]) for r in rs]
    sub = stats.mean_sd([float(r["suboptimality"]) for r in rs])
    kl = stats.mean_sd([float(r["kl_to_optimum"]) for r in rs])
    lines.append(f"| {pipe} | {algorithm_name(alg)} | {sum(r['plateau'] == 'reached' for r in rs)}/{len(rs)} | "
                 f"{min(steps)}-{max(steps)} | {int(rs[0]['max_steps'])} | {OBJECTIVES.get(alg, alg)} | "
                 f"{_fmt(sub[0], sub[1], '.3g')} | {_fmt(kl[0], kl[1], '.3g')} |")
  return "\n".join(lines) + "\n"


def kept_fraction_lines(rows: list[dict]) -> str:
  """Per algorithm: what the A-K student keeps of its aligned teacher's mass, seed by seed."""
  lines = []
  for alg in sorted({r["algorithm"] for r in rows if r["pipeline"] == "A-K"}):
    a = {r["seed"]: float(r["target_share"]) for r in rows if r["pipeline"] == "A" and r["algorithm"] == alg}
    ratios = [float(r["target_share"]) / a[r["seed"]] for r in rows
              if r["pipeline"] == "A-K" and r["algorithm"] == alg and a.get(r["seed"], 0) > 0]
    if ratios:
      mean, sd, n = stats.mean_sd(ratios)
      lines.append(f"- {algorithm_name(alg)}: A-K keeps {_fmt(mean, sd, '.3g')} of A's target share "
                   f"(mass(A-K)/mass(A) per seed, {n} seeds).")
  return "\n".join(lines) + ("\n" if lines else "")


COST_COLUMNS = ("pipeline_samples_drawn", "pipeline_steps", "pipeline_train_flops",
                "pipeline_sampling_flops", "pipeline_reference_flops", "pipeline_flops",
                "pipeline_seconds")


def cost_table(rows: list[dict]) -> str:
  """Markdown table: what each pipeline cost in total (mean over seeds) beside its outcome."""
  if not rows or "pipeline_flops" not in rows[0]:
    return ""
  lines = ["| pipeline | algorithm | target share | samples drawn | steps | train GFLOPs | "
           "sampling GFLOPs | reference GFLOPs | total GFLOPs | wall s |", "|" + "---|" * 10]
  for e in summarize(rows):
    rs = [r for r in rows if r["pipeline"] == e["pipeline"] and r["algorithm"] == e["algorithm"]]
    mean = {k: float(np.mean([float(r[k]) for r in rs])) for k in COST_COLUMNS}
    lines.append(
        f"| {e['pipeline']} | {algorithm_name(e['algorithm'])} | "
        f"{_fmt(e['target_share_mean'], e['target_share_sd'], '.3g')} | "
        f"{mean['pipeline_samples_drawn']:.0f} | {mean['pipeline_steps']:.0f} | "
        + " | ".join(f"{mean[k] / 1e9:.3g}" for k in COST_COLUMNS[2:6])
        + f" | {mean['pipeline_seconds']:.0f} |")
  return "\n".join(lines) + "\n"


def _operating_rows(rows: list[dict], config):
  """(algorithm, K-A's first row, A's first row) for every algorithm with both."""
  for alg in config.algorithms:
    def first(pipe):
      return next((r for r in rows if r["pipeline"] == pipe and r["algorithm"] == alg), None)
    ka, a = first("K-A"), first("A")
    if ka is not None and a is not None:
      yield alg, ka, a


def _placement(ka: dict, a: dict):
  """Where K-A's measured Delta/beta sits against the window of the measured recalls."""
  return op.placement(float(ka["delta_over_beta"]), p_teacher=float(a["reference_recall"]),
                      p_student=float(ka["reference_recall"]))


def operating_point(rows: list[dict], config) -> str:
  """Why K-A sits inside the trap at this operating point, in numbers from ``rows``."""
  lines = []
  for alg, ka, a in _operating_rows(rows, config):
    p_s, p_t = ka["reference_recall"], a["reference_recall"]
    if not (math.isfinite(ka["delta_over_beta"]) and 0 <= p_s <= 1 and 0 <= p_t <= 1):
      lines.append(f"- {algorithm_name(alg)} is reference-free: the law gives no optimum, so the "
                   f"operating point is not chosen by it.")
      continue
    b_s = op.trap_boundary(p_s)
    b_t = op.trap_boundary(p_t)
    inside = ka["predicted_mass"] < 0.5
    coef = {"dpo": f"beta = {config.beta:g}, Bradley-Terry scale c = {config.bt_scale:g}",
            "ipo": f"tau = ipo_beta = {config.ipo_beta:g}, c = {config.bt_scale:g}",
            "rloo": f"beta = rloo_beta = {config.rloo_beta:g}"}.get(alg, "")
    lines.append(
        f"- {algorithm_name(alg)} ({coef}): the student keeps p = {p_s:.3g} "
        f"[{ka['reference_recall_low']:.3g}, {ka['reference_recall_high']:.3g}] of the target, so "
        f"its optimum needs Delta/beta >= log((1-p)/p) = {b_s:.2f} to reach 1/2; under the student "
        f"Delta/beta = {ka['delta_over_beta']:.2f} [{ka['delta_over_beta_low']:.2f}, "
        f"{ka['delta_over_beta_high']:.2f}], so K-A's optimum is {ka['predicted_mass']:.3g} "
        f"[{ka['predicted_mass_low']:.3g}, {ka['predicted_mass_high']:.3g}]: "
        + ("inside the trap" if inside else "NOT inside the trap")
        + f". The teacher keeps p = {p_t:.3g} (boundary {b_t:.2f}) and Delta/beta = "
        f"{a['delta_over_beta']:.2f} under it, so A's optimum is {a['predicted_mass']:.3g}"
        + (" (it escapes)." if a["predicted_mass"] >= 0.5 else " (also trapped).")
        + f" Measured window: {_placement(ka, a).describe()}.")
  return "\n".join(lines) + "\n"


def operating_point_warnings(rows: list[dict], config) -> list[str]:
  """One line per algorithm whose measured recalls put its point outside the window."""
  out = []
  for alg, ka, a in _operating_rows(rows, config):
    if not (math.isfinite(ka["delta_over_beta"]) and 0 <= ka["reference_recall"] <= 1
            and 0 <= a["reference_recall"] <= 1):
      continue
    where = _placement(ka, a)
    if not where.inside:
      out.append(f"warning: {algorithm_name(alg)}'s operating point is outside the window its "
                 f"run measured ({where.describe()}); the preset's coefficient needs re-deriving "
                 "(recall_theory.operating_point)")
  return out


def summary_markdown(rows: list[dict], config, *, preset: str, seeds, elapsed: float,
                     options: str = "") -> str:
  """The run's lm_summary.md: operating point, law table, metrics table, captions."""
  summary = summarize(rows)
  # Scored against the law: aligned models (not A-K, a distillation after alignment) whose
  # stage reached its plateau.
  aligned = [r for r in rows if r["algorithm"] != "none" and r["pipeline"] != "A-K"
             and math.isfinite(float(r.get("predicted_mass", math.nan)))]
  converged = [r for r in aligned if r.get("plateau") == "reached"]
  within = sum(_within(r) for r in converged)
  below = sum(r["aligned_mass_high"] < r["predicted_mass_low"] for r in converged)
  above = sum(bool(r.get("above_ceiling")) for r in rows)
  return (
      f"# Transformer track, preset `{preset}`, seeds {list(seeds)}, tau = {config.tau:g}\n\n"
      f"Wall clock {elapsed:.0f} s. {options}\n\n"
      "## Operating point (chosen from the law: K-A inside the trap)\n\n"
      + operating_point(rows, config) +
      "\n## The law beside every aligned model\n\n"
      "p_ref = the reference's target share (Monte Carlo over its samples, Wilson 95%); "
      "Delta/beta = soft-max reward gap of the reward the objective tilts by (bootstrap 95%); "
      "predicted = sigmoid(logit p_ref + Delta/beta), its interval from the intervals of both "
      "(mean over seeds); measured = aligned target share, mean ± sd; "
      f"{stats.SD_CAPTION}; within = seeds whose Wilson 95% interval overlaps the prediction's; "
      "E[#target samples] = training draws x the sampler's target share, drawn = counted; "
      "KL paid = Monte Carlo KL(pi || pi_ref) (nats per sequence), ceiling = the most target "
      "mass any policy within that KL can have. A-K's row repeats its aligned teacher A's "
      "optimum for reference; the distillation after alignment is not in the law, so A-K is "
      "not scored against it.\n\n"
      + law_table(summary) +
      f"\nOf the {len(aligned)} aligned models (K-A, A, K-A(teacher-ref)), {len(converged)} reached "
      f"their plateau; of those, {within} sit within their interval of the prediction and {below} "
      f"below it. {above} lie above their KL ceiling.\n\n"
      + kept_fraction_lines(rows) +
      "\n## Training to the plateau\n\n"
      "Every alignment stage trains until its held-out objective and its aligned mass change "
      "by less than the preset's tolerances over a doubling of the steps (recall_theory.plateau), "
      "or until its budget; the held-out objective is measured on draws the stage never trained "
      "on. Sub-optimality = distance of that objective to its optimum (>= 0 in the population; a plug-in log Z can put RLOO's slightly below 0); "
      "KL(pi || pi*) = the distance of the aligned model to the law's optimum, from its evaluation "
      f"samples. Means ± sd over seeds; {stats.SD_CAPTION}.\n\n"
      + training_table(rows) + "\n"
      "## Cost of each pipeline\n\n"
      "Totals over every training stage of the pipeline (K-A: teacher, student, K-A; A-K: "
      "teacher, A, distillation), mean over seeds: training draws (p*, teacher or policy "
      "samples), optimiser steps, FLOPs counted from the configurations "
      "(recall_theory.lm.cost: training forward+backward, KV-cache sampling, reference "
      "log-probs), and wall time of the stages in this process (shared stages counted once "
      "per pipeline; evaluation excluded).\n\n"
      + cost_table(rows) + "\n"
      "## Metrics\n\n"
      f"Means ± sd over seeds; {stats.SD_CAPTION}. precision, recall and target_precision in "
      "nats per token; kl_ref in nats per sequence.\n\n"
      + markdown_table(summary))


SHARE_FLOOR = 1e-4  # target shares below are drawn at it (a 0 of n measurement), above 1 - it at 1 - it
PIPELINE_MARKER = "o"


def beyond_axis_marker(value: float, floor: float, marker: str) -> str:
  """The marker of a share drawn at an end of the axis: a triangle pointing past that end."""
  if value < floor:
    return "v"
  if value > 1.0 - floor:
    return "^"
  return marker


def _draw_share(ax, x, value, floor, *, marker, colour, hollow=False, size=3.2, zorder=3) -> str:
  """One share at ``x``, clipped into the axis and marked as beyond it where it is; returns the marker."""
  shape = beyond_axis_marker(value, floor, marker)
  ax.plot([x], [np.clip(value, floor, 1 - floor)], shape, ms=size, color=colour,
          mfc="none" if hollow else colour, mew=0.8, zorder=zorder)
  return shape


def plot_comparison(rows: list[dict], out_dir: str | Path, name: str = "lm_comparison",
                    metrics=("target_share", "target_precision", "precision",
                             "recall")) -> list[Path]:
  """Per-seed dots and mean ± sample sd for each pipeline, one panel per metric.

  The target-share panel (log-odds axis) also marks the law's optimum of the models scored
  against it (:data:`LAW_PIPELINES`: K-A, and the control, whose optimum on the teacher is
  A's; not A-K, a distillation after alignment) at the same place as the measurement (open
  diamond, its interval a wide light bar seen through it), and the trap boundary 1/2. Shares
  beyond ``[SHARE_FLOOR, 1 - SHARE_FLOOR]`` are clipped: drawn at that end of the axis as
  triangles pointing past it (hollow: the law's optimum; filled: a measurement), each kind
  named in the legend. Teacher and student lines close together are named beside them.
  """
  from recall_theory.plotting import (PIPELINE_COLORS, TEXT_WIDTH, figure_size, paper_style,
                                      save_figure, ticks)
  from recall_theory.plotting.figure_check import declare_valid_range
  import matplotlib.pyplot as plt
  from matplotlib.legend_handler import HandlerTuple

  algorithms = sorted({r["algorithm"] for r in rows if r["algorithm"] != "none"})
  n_seeds = len({r["seed"] for r in rows})
  data: dict[str, np.ndarray] = {"algorithms": np.array(algorithms),
                                 "pipelines": np.array(PLOT_PIPELINES)}
  floor = SHARE_FLOOR
  beyond: set[tuple[str, bool]] = set()  # (triangle, hollow) drawn for shares beyond the axis
  with paper_style():
    ncols = 2
    nrows = -(-len(metrics) // ncols)
    fig, axes = plt.subplots(nrows, ncols, squeeze=False,
                             figsize=figure_size(TEXT_WIDTH, 0.36 * nrows))
    for ax in axes.ravel()[len(metrics):]:
      ax.set_axis_off()
    axes = axes.ravel()[:len(metrics)]
    width = 0.24
    for ax, m in zip(axes, metrics):
      share = m == "target_share"
      clip = (lambda v: np.clip(v, floor, 1 - floor)) if share else (lambda v: v)
      for j, pipe in enumerate(PLOT_PIPELINES):
        colour = PIPELINE_COLORS[pipe]
        means, sds = [], []
        for i, alg in enumerate(algorithms):
          sel = [r for r in rows if r["pipeline"] == pipe and r["algorithm"] == alg]
          vals = np.array([r[m] for r in sel], float)
          mean, sd, _ = stats.mean_sd(vals)
          means.append(mean)
          sds.append(sd)
          data[f"{m}__{pipe}__{alg}"] = vals
          if not len(vals):
            continue
          x = i + (j - 1) * width
          if share and pipe in LAW_PIPELINES and "predicted_mass" in sel[0]:
            law = _law_interval(sel)
            if law is not None:
              p_mid, p_lo, p_hi = law
              # at the measurement's place: the law's interval a wide light bar, seen through
              # the open diamond of its optimum (A-K is a distillation after alignment: no law)
              ax.plot([x, x], clip([p_lo, p_hi]), color=colour, lw=4.0, alpha=0.25,
                      solid_capstyle="butt", zorder=1)
              shape = _draw_share(ax, x, p_mid, floor, marker="D", colour=colour, hollow=True, size=5.0,
                                  zorder=2)
              if shape != "D":
                beyond.add((shape, True))
              data[f"predicted_mass__{pipe}__{alg}"] = np.array(law)
          inside = (clip(vals) == vals) if share else np.ones(len(vals), bool)
          ax.scatter(np.full(int(inside.sum()), x), vals[inside], s=6, color=colour, alpha=0.45,
                     linewidths=0, zorder=2)
          for v in vals[~inside]:
            beyond.add((_draw_share(ax, x, v, floor, marker=PIPELINE_MARKER, colour=colour, size=2.6,
                                    zorder=2), False))
          err = 0.0 if math.isnan(sd) else sd
          lo, hi = clip(mean - err), clip(mean + err)
          ax.plot([x, x], [lo, hi], color=colour, lw=0.9, zorder=3)
          if share and clip(mean) != mean:
            beyond.add((_draw_share(ax, x, mean, floor, marker=PIPELINE_MARKER, colour=colour), False))
          else:
            ax.plot([x], [mean], PIPELINE_MARKER, ms=3.2, color=colour, zorder=3)
        data[f"{m}__{pipe}__mean"] = np.array(means)
        data[f"{m}__{pipe}__sd"] = np.array(sds)
      references = {}
      for ref in REFERENCE_STYLES:
        vals = np.array([r[m] for r in rows if r["pipeline"] == ref], float)
        if len(vals):
          references[ref] = float(clip(vals.mean()))
          data[f"{m}__{ref}"] = vals
      if share:
        ticks.set_probability_axis(ax.yaxis, floor, 1 - floor, max_ticks=8)
        ax.axhline(0.5, color=HALF_COLOUR, lw=0.5, ls="-.", zorder=0)
      else:
        _pad_limits(ax, [v for line in ax.lines for v in np.ravel(line.get_ydata())]
                    + [v for c in ax.collections for v in np.ravel(np.asarray(c.get_offsets())[:, 1])]
                    + list(references.values()), VALID_RANGES.get(m))
      _reference_lines(ax, references, PIPELINE_COLORS)
      if m in VALID_RANGES:
        declare_valid_range(ax, *VALID_RANGES[m], m)
      ax.set_xticks(range(len(algorithms)), [algorithm_name(a) for a in algorithms])
      ax.set_xlim(-0.5, len(algorithms) - 0.5)
      ax.set_title(LABELS.get(m, m))
      if m in YLABELS:
        ax.set_ylabel(YLABELS[m], labelpad=1)
    handles, labels = _comparison_legend(PIPELINE_COLORS, beyond, floor, "target_share" in metrics)
    fig.legend(handles, labels, handler_map={tuple: HandlerTuple(ndivide=None)},
               loc="outside lower center", ncol=min(len(labels), 3))
    fig.suptitle(f"dots: seeds; filled markers and bars: mean ± sample sd over {n_seeds} "
                 "seeds (ddof = 1)", fontsize=6.5)
    return save_figure(fig, out_dir, name, data=data)


HALF_COLOUR = "0.6"
VALID_RANGES = {"target_share": (0.0, 1.0), "reward": (0.0, 1.0)}
# The pipelines scored against the law: K-A and its control (whose law, on the teacher, is A's).
LAW_PIPELINES = ("K-A", "K-A(teacher-ref)")
REFERENCE_STYLES = {"teacher": "--", "student": ":"}
LIMIT_PAD = 0.08  # share of the data's span left above and below it on a metric panel
CLOSE_REFERENCES = 0.06  # teacher and student lines closer than this share of the axis are named beside them


def _pad_limits(ax, values, valid=None) -> None:
  """y limits holding every drawn value and reference line with ``LIMIT_PAD`` of the span around
  them (a reference at the data's edge does not sit on the spine), inside ``valid``'s ticks."""
  from matplotlib.ticker import MaxNLocator
  v = np.asarray([x for x in values if np.isfinite(x)], float)
  if not v.size:
    return
  lo, hi = float(v.min()), float(v.max())
  span = hi - lo if hi > lo else max(abs(hi), 1.0) * 0.1
  ax.set_ylim(lo - LIMIT_PAD * span, hi + LIMIT_PAD * span)
  if valid is not None:  # ticks only where the quantity lives (a reward of -0.02 does not exist)
    locator = MaxNLocator(5)
    inside = [t for t in locator.tick_values(lo - LIMIT_PAD * span, hi + LIMIT_PAD * span)
              if valid[0] - 1e-12 <= t <= valid[1] + 1e-12]
    from matplotlib.ticker import FixedLocator
    ax.yaxis.set_major_locator(FixedLocator(inside))


def _reference_lines(ax, references: dict[str, float], colours) -> None:
  """Teacher (dashed) and student (dotted) as horizontal lines. Where they coincide (within a
  1000th of the axis) one line is drawn, named "teacher = student"; where they lie close
  (``CLOSE_REFERENCES`` of the axis) each is named at the right end, the upper above its line."""
  if not references:
    return
  low, high = ax.get_ylim()
  to_axis = (lambda y: (np.log10(y) - np.log10(low)) / (np.log10(high) - np.log10(low))) \
      if ax.get_yscale() == "log" else (lambda y: (y - low) / (high - low))
  if ax.get_yscale() == "logit":
    from recall_theory.plotting.ticks import log_odds
    to_axis = lambda y: (log_odds(y) - log_odds(low)) / (log_odds(high) - log_odds(low))  # noqa: E731
  names = {}
  if set(references) == {"teacher", "student"}:
    gap = abs(to_axis(references["teacher"]) - to_axis(references["student"]))
    if gap < 1e-3:
      names = {"teacher": ("teacher = student", "bottom")}
      references = {"teacher": references["teacher"]}
    elif gap < CLOSE_REFERENCES:
      upper = max(references, key=lambda r: references[r])
      names = {r: (r, "bottom" if r == upper else "top") for r in references}
  for ref, y in references.items():
    ax.axhline(y, color=colours[ref], ls=REFERENCE_STYLES[ref], lw=0.8, zorder=1)
    if ref in names:
      text, va = names[ref]
      ax.annotate(text, (1.0, y), xycoords=("axes fraction", "data"), textcoords="offset points",
                  xytext=(-2, 1.5 if va == "bottom" else -1.5), ha="right", va=va, fontsize=5.5,
                  color=colours[ref])


def _law_interval(sel: list[dict]) -> tuple[float, float, float] | None:
  """(optimum, low, high) of the law, averaged over seeds; None where any seed has none."""
  pred = np.array([r["predicted_mass"] for r in sel], float)
  if not np.isfinite(pred).all():
    return None
  return (float(np.mean(pred)), float(np.mean([r["predicted_mass_low"] for r in sel])),
          float(np.mean([r["predicted_mass_high"] for r in sel])))


def _comparison_legend(colours, beyond: set[tuple[str, bool]], floor: float,
                       has_share: bool) -> tuple[list, list[str]]:
  from matplotlib.lines import Line2D

  handles = [Line2D([], [], color=colours[p], marker=PIPELINE_MARKER, ms=3.2, lw=0.9) for p in PLOT_PIPELINES]
  labels = list(PLOT_PIPELINES)
  if has_share:
    handles.append((Line2D([], [], color="0.3", lw=4.0, alpha=0.25, solid_capstyle="butt"),
                    Line2D([], [], color="0.3", marker="D", mfc="none", ms=5.0, mew=0.8, lw=0)))
    labels.append("law's optimum [interval] (K-A; control = A's)")
  handles += [Line2D([], [], color=colours["teacher"], ls="--", lw=0.8),
              Line2D([], [], color=colours["student"], ls=":", lw=0.8)]
  labels += ["teacher", "student"]
  if has_share:
    handles.append(Line2D([], [], color=HALF_COLOUR, ls="-.", lw=0.5))
    labels.append("share 1/2 (trap boundary)")
  for hollow, what in ((False, "measured"), (True, "law")):  # clipped: a triangle at the end
    shapes = sorted(shape for shape, h in beyond if h == hollow)
    if shapes:
      handles.append(tuple(Line2D([], [], color="0.3", marker=shape, mfc="none" if hollow else "0.3", ms=3.2,
                                  mew=0.8, lw=0) for shape in shapes))
      ends = " or ".join(({"v": f"below {floor:g}", "^": f"above 1 - {floor:g}"}[shape] for shape in shapes))
      labels.append(f"{what} {ends}: clipped to the end")
  return handles, labels


def load_rows(csv_path: str | Path) -> list[dict]:
  """Rows of an ``lm_results.csv`` with numbers parsed (to redraw without rerunning)."""
  import csv
  rows = []
  with open(csv_path, newline="") as fh:
    for r in csv.DictReader(fh):
      row = {k: r.pop(k) for k in _TEXT_COLUMNS if k in r}
      row["seed"] = int(r.pop("seed"))
      row["above_ceiling"] = str(row.get("above_ceiling", "False")).strip().lower() == "true"
      row.update({k: float(v) for k, v in r.items()})
      rows.append(row)
  return rows


_TEXT_COLUMNS = ("track", "pipeline", "algorithm", "setting", "estimator", "above_ceiling",
                 "law_reference", "sampler", "plateau")
