"""The recall sweep of the transformer track: K-A and A-K against the student's recall.

Lowering the distillation temperature tau lowers the student's recall of the target
``p_student = pi_student(A)``. K-A aligns the student with itself as reference, so the
law (theory.md item 12) predicts its optimum

    predicted_mass(tau) = sigmoid(logit p_student(tau) + Delta/beta),

trapped below 1/2 while ``log((1 - p_student)/p_student) > Delta/beta`` and escaping
above. A-K aligns the teacher (tau does not enter its alignment) and distils at tau.

:func:`run_tau_sweep` trains the teacher and the aligned teachers ``A`` once, then per
tau the student, K-A and A-K for every seed and algorithm (no teacher-reference
control: it does not depend on the student's recall through its reference). Every
stage draws the random stream of its namesake in :func:`pipeline.run_comparison`
(common random numbers across taus), so the column at the comparison's tau repeats
the comparison's models. Rows
carry ``tau``, ``student_recall`` (with its Wilson interval) and the law's columns.
:func:`trap_exit` finds where a share crosses 1/2 along tau; :func:`plot_tau_sweep`
draws the measured shares against the student's recall with the law's curve.

Example::

  rows = run_tau_sweep(presets.TEST, [0.3, 1.0], [0], progress=False)
  trap_exit([0.3, 1.0], [0.1, 0.8])    # {'status': 'crosses', 'tau': ...}
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from recall_theory import schema
from recall_theory import stats as stats_lib
from recall_theory.errors import InputError

SWEEP_PIPELINES = ("K-A", "A-K")


def parse_taus(text: str) -> list[float]:
  """``"0.3,0.45,1"`` -> ``[0.3, 0.45, 1.0]`` (sorted, distinct, each finite and > 0)."""
  parts = [t.strip() for t in str(text).split(",")]
  try:
    taus = [float(t) for t in parts if t]
  except ValueError:
    taus = None
  if not taus or any(not math.isfinite(t) or t <= 0 for t in taus):
    raise InputError(f"--taus must be a comma list of positive finite temperatures "
                     f"(e.g. 0.3,0.45,0.6,0.8,1.0), got {text!r}")
  if len(set(taus)) != len(taus):
    raise InputError(f"--taus must not repeat a temperature, got {text!r}")
  return sorted(taus)


def run_tau_sweep(config, taus: Sequence[float], seeds: Sequence[int], *, groundtruth=None,
                  progress: bool = True, n_devices: int | None = None,
                  setting_prefix: str = "") -> list[dict]:
  """Teacher and A once; per tau the student, K-A and A-K (rows, see the module docstring)."""
  from recall_theory.lm import law as law_lib
  from recall_theory.lm import pipeline as pl

  taus = [float(t) for t in taus]
  if not taus or any(not math.isfinite(t) or t <= 0 for t in taus):
    raise InputError(f"taus must be positive finite temperatures, got {taus}")
  for t in taus:
    dataclasses.replace(config, tau=t).validate()
  groundtruth, runner, seeds = pl.prepare_run(config, seeds, groundtruth=groundtruth,
                                              progress=progress, n_devices=n_devices,
                                              fingerprint={"taus": taus})
  teacher = pl.train_teacher(runner, config, groundtruth)
  book = pl.LawBook(config, groundtruth)
  book.add_reference("teacher", teacher)
  record = pl.Recorder(config, groundtruth, runner, seeds, book, f"{setting_prefix}tau=any")
  no_tau = {"tau": math.nan, "student_recall": math.nan, "student_recall_low": math.nan,
            "student_recall_high": math.nan}
  aligned, a_draws = {}, {}
  for seed in seeds:
    record("teacher", "none", seed, teacher, None, stages=("teacher",), extra=no_tau)
    for alg in config.algorithms:
      a_draws[seed, alg] = {}
      stage = f"A/{alg}/seed{seed}"
      aligned[seed, alg] = pl.align(runner, config, groundtruth, teacher, teacher, alg, stage,
                                    seed, a_draws[seed, alg], law_samples=book.samples["teacher"])
      record("A", alg, seed, aligned[seed, alg], teacher, stages=("teacher", stage), extra=no_tau,
             aligned=True, law=dict(algorithm=alg, reference="teacher", sampler="teacher",
                      draws=a_draws[seed, alg]))
  for tau in taus:
    cfg = dataclasses.replace(config, tau=tau)
    record.setting = f"{setting_prefix}tau={tau:g}"
    student_stage = f"student/tau={tau:g}"
    student = pl.distill(runner, cfg, groundtruth, teacher, student_stage, config.seed + 1,
                         config.seed, data_stage="student")
    name = f"student@tau={tau:g}"
    book.add_reference(name, student, stream="student")
    rate = law_lib.target_rate(book.samples[name]["in_target"])
    extra = {"tau": tau, "student_recall": rate["rate"], "student_recall_low": rate["low"],
             "student_recall_high": rate["high"]}
    for seed in seeds:
      record("student", "none", seed, student, teacher, stages=("teacher", student_stage),
             extra=extra)
      for alg in config.algorithms:
        draws: dict = {}
        stage = f"K-A/{alg}/seed{seed}/tau={tau:g}"
        ka = pl.align(runner, cfg, groundtruth, student, student, alg, stage, seed, draws,
                      data_stage=f"K-A/{alg}/seed{seed}", law_samples=book.samples[name])
        record("K-A", alg, seed, ka, student, stages=("teacher", student_stage, stage), extra=extra,
               aligned=True, law=dict(algorithm=alg, reference=name, sampler=name, draws=draws))
        stage = f"A-K/{alg}/seed{seed}/tau={tau:g}"
        ak = pl.distill(runner, cfg, groundtruth, aligned[seed, alg], stage,
                        init_seed=config.seed + 1 + 7919 * (seed + 1), data_seed=seed,
                        data_stage=f"A-K/{alg}/seed{seed}")
        record("A-K", alg, seed, ak, teacher, stages=("teacher", f"A/{alg}/seed{seed}", stage),
               extra=extra,
               law=dict(algorithm=alg, reference="teacher", sampler="teacher",
                        draws=a_draws[seed, alg], note=pl.A_K_NOTE))
  schema.report_ceiling_violations(record.rows, where="lm tau sweep")
  return record.rows


# -- where the trap ends -------------------------------------------------------------------
def _logit(x: np.ndarray) -> np.ndarray:
  x = np.clip(np.asarray(x, float), 1e-12, 1 - 1e-12)
  return np.log(x) - np.log1p(-x)


def trap_exit(taus: Sequence[float], shares: Sequence[float]) -> dict:
  """The smallest tau at which ``shares`` (one per tau, increasing taus) reaches 1/2.

  Linear interpolation of logit(share) in tau between the last grid point below 1/2
  and the first at or above it. Returns ``{"status", "tau"}`` with status ``crosses``
  (tau interpolated), ``never`` (below 1/2 on the whole grid; tau nan) or ``always``
  (at or above 1/2 already at the smallest tau; tau = that tau).

  Example:
    >>> trap_exit([0.5, 1.0], [0.25, 0.75])["tau"]    # logits -1.1, +1.1 -> midpoint
    0.75
  """
  taus = np.asarray(taus, float)
  z = _logit(shares)
  above = z >= 0
  if not above.any():
    return {"status": "never", "tau": math.nan}
  first = int(np.argmax(above))
  if first == 0:
    return {"status": "always", "tau": float(taus[0])}
  t0, t1, z0, z1 = taus[first - 1], taus[first], z[first - 1], z[first]
  return {"status": "crosses", "tau": float(t0 + (t1 - t0) * (0 - z0) / (z1 - z0))}


def describe_exit(result: dict, grid: Sequence[float]) -> str:
  if result["status"] == "never":
    return f"trapped on the whole grid (tau <= {max(grid):g})"
  if result["status"] == "always":
    return f"above 1/2 already at tau = {min(grid):g}"
  return f"tau = {result['tau']:.2f}"


def sweep_summary(rows: list[dict]) -> list[dict]:
  """Per (algorithm, pipeline, tau): student recall, measured mean/sd, prediction, counts."""
  out = []
  algorithms = sorted({r["algorithm"] for r in rows if r["pipeline"] in SWEEP_PIPELINES})
  taus = sorted({r["tau"] for r in rows if r["pipeline"] == "K-A"})
  for alg in algorithms:
    for pipe in SWEEP_PIPELINES:
      for tau in taus:
        rs = [r for r in rows if r["pipeline"] == pipe and r["algorithm"] == alg and r["tau"] == tau]
        if not rs:
          continue
        mean, sd, n = stats_lib.mean_sd([r["aligned_mass"] for r in rs])
        within = sum(r["predicted_mass_low"] <= r["aligned_mass_high"]
                     and r["aligned_mass_low"] <= r["predicted_mass_high"] for r in rs)
        out.append({
            "algorithm": alg, "pipeline": pipe, "tau": tau, "n_seeds": n,
            "student_recall": rs[0]["student_recall"],
            "student_recall_low": rs[0]["student_recall_low"],
            "student_recall_high": rs[0]["student_recall_high"],
            "measured_mean": mean, "measured_sd": sd,
            "predicted": float(np.mean([r["predicted_mass"] for r in rs])),
            "predicted_low": float(np.mean([r["predicted_mass_low"] for r in rs])),
            "predicted_high": float(np.mean([r["predicted_mass_high"] for r in rs])),
            "delta_over_beta": float(np.mean([r["delta_over_beta"] for r in rs])),
            "reference_recall": float(np.mean([r["reference_recall"] for r in rs])),
            "boundary": float(np.mean([math.log((1 - r["reference_recall"]) / r["reference_recall"])
                                       if 0 < r["reference_recall"] < 1 else math.inf
                                       for r in rs])),
            "expected_target_samples": float(np.mean([r["expected_target_samples"] for r in rs])),
            "target_samples_drawn": float(np.mean([r["target_samples_drawn"] for r in rs])),
            "within_interval": int(within),
        })
  return out


def exits(summary: list[dict]) -> dict:
  """Per algorithm: the K-A trap exit along tau, measured (seed mean) and predicted."""
  out = {}
  for alg in sorted({e["algorithm"] for e in summary}):
    ka = sorted((e for e in summary if e["algorithm"] == alg and e["pipeline"] == "K-A"),
                key=lambda e: e["tau"])
    taus = [e["tau"] for e in ka]
    out[alg] = {"taus": taus,
                "measured": trap_exit(taus, [e["measured_mean"] for e in ka]),
                "predicted": trap_exit(taus, [e["predicted"] for e in ka]),
                # the prediction's interval: its upper end exits first, its lower end last
                "predicted_earliest": trap_exit(taus, [e["predicted_high"] for e in ka]),
                "predicted_latest": trap_exit(taus, [e["predicted_low"] for e in ka])}
  return out


def _fmt_interval(v, lo, hi, fmt=".3g") -> str:
  return f"{v:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def markdown_report(rows: list[dict], *, preset: str, seeds, elapsed: float,
                    options: str = "") -> str:
  """The sweep's summary: one table per algorithm, trap exits, interval agreement."""
  summary = sweep_summary(rows)
  ex = exits(summary)
  lines = [f"# Transformer track: recall sweep over tau, preset `{preset}`, seeds {list(seeds)}",
           "", f"Wall clock {elapsed:.0f} s. {options}".rstrip(), "",
           "Student recall p = the student's target share over its reference samples (Wilson "
           "95%). K-A is predicted at sigmoid(logit p + Delta/beta) (Delta/beta of the "
           "algorithm's reward under the student); A-K at its aligned teacher's optimum. "
           "Measured = mean ± sd of the aligned target share over seeds; "
           f"{stats_lib.SD_CAPTION}. 'within' counts the seeds whose measured interval "
           "(Wilson 95%) overlaps the prediction's interval. E[#target] = expected target "
           "samples among the draws the algorithm trained on; drawn = counted.", ""]
  for alg in sorted(ex):
    lines += [f"## {alg.upper() if alg != 'simpo' else 'SimPO'}", "",
              "| pipeline | tau | student recall | p_ref | log((1-p_ref)/p_ref) | Delta/beta | "
              "predicted | measured | within | E[#target] | drawn |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in summary:
      if e["algorithm"] != alg:
        continue
      lines.append(
          f"| {e['pipeline']} | {e['tau']:g} | "
          f"{_fmt_interval(e['student_recall'], e['student_recall_low'], e['student_recall_high'])} | "
          f"{e['reference_recall']:.3g} | {e['boundary']:.2f} | {e['delta_over_beta']:.2f} | "
          f"{_fmt_interval(e['predicted'], e['predicted_low'], e['predicted_high'])} | "
          f"{e['measured_mean']:.3g} ± {e['measured_sd']:.2g} | {e['within_interval']}/{e['n_seeds']} | "
          f"{e['expected_target_samples']:.3g} | {e['target_samples_drawn']:.3g} |")
    x = ex[alg]
    lines += ["", f"K-A leaves the trap (share 1/2): predicted {describe_exit(x['predicted'], x['taus'])}"
              f" (interval: earliest {describe_exit(x['predicted_earliest'], x['taus'])}, latest "
              f"{describe_exit(x['predicted_latest'], x['taus'])}); measured "
              f"{describe_exit(x['measured'], x['taus'])}.", ""]
  reversal = describe_reversals(recall_reversals(summary))
  if reversal:
    lines += [reversal[0].upper() + reversal[1:] + " (the figure places points by recall).", ""]
  aligned = [r for r in rows if r["pipeline"] in SWEEP_PIPELINES + ("A",)
             and np.isfinite(r["predicted_mass"])]
  within = sum(r["predicted_mass_low"] <= r["aligned_mass_high"]
               and r["aligned_mass_low"] <= r["predicted_mass_high"] for r in aligned)
  below = sum(r["aligned_mass_high"] < r["predicted_mass_low"] for r in aligned)
  above = sum(r["above_ceiling"] for r in aligned)
  lines += [f"Agreement: {within} of {len(aligned)} aligned models (K-A, A, A-K, every seed and "
            f"tau) sit within their interval of the prediction, {below} below it; {above} above "
            "their KL ceiling.", ""]
  return "\n".join(lines) + "\n"


# -- the figure -----------------------------------------------------------------------------
SHARE_FLOOR = 1e-4  # shares are drawn inside [SHARE_FLOOR, 1 - SHARE_FLOOR]; a measured 0 at the floor
ZERO_MARKER = "v"   # a measured 0 (0 of n samples in A): a triangle pointing below the floor
HALF_COLOUR = "0.5"
LAW_COLOUR = "0.25"


CLOSE_DECADES = 0.12  # points closer than this in log10 recall share one tau label


def close_groups(positions: np.ndarray, within: float) -> list[list[int]]:
  """Indices of sorted ``positions`` grouped where neighbours are closer than ``within``.

  >>> close_groups(np.array([0.0, 0.05, 1.0]), 0.1)
  [[0, 1], [2]]
  """
  groups: list[list[int]] = []
  for i, x in enumerate(positions):
    if groups and x - positions[groups[-1][-1]] < within:
      groups[-1].append(i)
    else:
      groups.append([i])
  return groups


def recall_reversals(summary: list[dict]) -> list[tuple[float, float, float, float]]:
  """``(tau_low, p_low, tau_high, p_high)`` for consecutive taus where the student's recall
  falls as tau rises (the points then sit out of tau order along the recall axis)."""
  by_tau = {}
  for e in summary:
    by_tau.setdefault(e["tau"], e["student_recall"])
  taus = sorted(by_tau)
  return [(a, by_tau[a], b, by_tau[b]) for a, b in zip(taus[:-1], taus[1:]) if by_tau[b] < by_tau[a]]


def describe_reversals(reversals) -> str:
  """One line for the figure: where the student's recall is not monotone in tau."""
  if not reversals:
    return ""
  pairs = "; ".join(f"p(tau={b:g}) = {pb:.2g} < p(tau={a:g}) = {pa:.2g}" for a, pa, b, pb in reversals)
  return f"the student's recall is not monotone in tau: {pairs}"


def law_exit(entries: list[dict]) -> dict:
  """Where the law's K-A optimum reaches 1/2 along the student's recall: the per-point
  predictions of :func:`sweep_summary` (each tau's own p and Delta/beta), ordered by recall,
  interpolated linearly in (log p, logit prediction) by :func:`trap_exit`.

  Returns ``{"status", "recall", "between"}``: ``crosses`` with the interpolated recall and the
  two grid points ``((p, predicted), (p, predicted))`` around it; ``never`` / ``always`` with
  recall nan.
  """
  ordered = sorted(entries, key=lambda e: (e["student_recall"], e["tau"]))
  recall = np.array([e["student_recall"] for e in ordered], float)
  predicted = [e["predicted"] for e in ordered]
  if not len(ordered) or (recall <= 0).any():
    return {"status": "never", "recall": math.nan, "between": ()}
  found = trap_exit(np.log(recall), predicted)
  if found["status"] != "crosses":
    return {"status": found["status"], "recall": math.nan, "between": ()}
  k = int(np.argmax(_logit(predicted) >= 0))
  return {"status": "crosses", "recall": float(math.exp(found["tau"])),
          "between": ((float(recall[k - 1]), float(predicted[k - 1])), (float(recall[k]), float(predicted[k])))}


def plot_tau_sweep(rows: list[dict], out_dir: str | Path, name: str = "lm_tau_sweep") -> list[Path]:
  """Per algorithm: K-A / A-K share against the student's recall, with the law's curve.

  Each K-A mean is labelled with its tau beside the point (points closer than
  ``CLOSE_DECADES`` in recall share one label, taus left to right). A measured share of exactly 0 is
  drawn at the floor as a downward triangle (a measurement of none, not a value at the
  floor). Where the student's recall falls as tau rises, the title says so.
  """
  import matplotlib.pyplot as plt
  from matplotlib.lines import Line2D
  from recall_theory.plotting import PIPELINE_COLORS, TEXT_WIDTH, figure_size, paper_style, save_figure, ticks
  from recall_theory.plotting.figure_check import declare_valid_range
  from recall_theory.plotting.labels import label_points

  summary = sweep_summary(rows)
  algorithms = sorted({e["algorithm"] for e in summary})
  floor = SHARE_FLOOR
  clip = lambda v: ticks.clip_probability(v, floor)  # noqa: E731
  recalls = np.array([e["student_recall"] for e in summary])
  x_floor = 0.3 * float(recalls[recalls > 0].min()) if (recalls > 0).any() else 1e-5
  data: dict[str, np.ndarray] = {"algorithms": np.array(algorithms), "floor": np.array(floor),
                                 "x_floor": np.array(x_floor)}
  zero_drawn = exit_drawn = False
  tau_labels = []
  x_ceiling = max(float(recalls.max()) * 10 if recalls.size else 0.05, 0.05)  # room right of the points
  with paper_style():
    fig, axes = plt.subplots(1, len(algorithms), squeeze=False, sharey=True,
                             figsize=figure_size(TEXT_WIDTH, 0.46))
    for ax, alg in zip(axes[0], algorithms):
      for pipe in SWEEP_PIPELINES:
        # drawn in order of the student's recall (which need not rise monotonically with tau)
        es = sorted((e for e in summary if e["algorithm"] == alg and e["pipeline"] == pipe),
                    key=lambda e: (e["student_recall"], e["tau"]))
        p = np.maximum(np.array([e["student_recall"] for e in es]), x_floor)
        color = PIPELINE_COLORS[pipe]
        per_seed = [(r["student_recall"], r["aligned_mass"]) for r in rows
                    if r["pipeline"] == pipe and r["algorithm"] == alg]
        if per_seed:
          xs, ys = np.array(per_seed).T
          xs, zero = np.maximum(xs, x_floor), ys <= 0
          ax.scatter(xs[~zero], clip(ys[~zero]), s=7, color=color, alpha=0.4, linewidths=0, zorder=3)
          if zero.any():
            ax.plot(xs[zero], np.full(int(zero.sum()), floor), ZERO_MARKER, ms=3.0, color=color, alpha=0.5,
                    zorder=3)
            zero_drawn = True
        mean = np.array([e["measured_mean"] for e in es])
        measured = mean > 0
        ax.plot(p[measured], clip(mean[measured]), "o-", color=color, ms=3.5, lw=1.0, zorder=4,
                label=f"{pipe} measured (mean)")
        if (~measured).any():
          ax.plot(p[~measured], np.full(int((~measured).sum()), floor), ZERO_MARKER, color=color, ms=4.5,
                  zorder=4)
          zero_drawn = True
        pred = np.array([e["predicted"] for e in es])
        lo = np.array([e["predicted_low"] for e in es])
        hi = np.array([e["predicted_high"] for e in es])
        ax.plot(p, clip(pred), "--", color=color, lw=1.0, zorder=2,
                label=f"{pipe} law" + (" (its aligned teacher)" if pipe == "A-K" else ""))
        ax.fill_between(p, clip(lo), clip(hi), color=color, alpha=0.13, lw=0, zorder=1)
        for key, arr in (("student_recall", p), ("measured_mean", mean), ("predicted", pred),
                         ("predicted_low", lo), ("predicted_high", hi),
                         ("tau", np.array([e["tau"] for e in es]))):
          data[f"{alg}__{pipe}__{key}"] = arr
        if pipe == "K-A":
          # where the law lets K-A out, from the per-point predictions the summary reports
          # (each tau's own p and Delta/beta; the dashed K-A law above): one quantity in both
          exit_ = law_exit(es)
          data[f"{alg}__law_exit_recall"] = np.array(exit_["recall"])
          if exit_["status"] == "crosses":
            ax.axvline(exit_["recall"], ymax=0.5, color=LAW_COLOUR, lw=0.6, ls=(0, (1, 2)), zorder=1)
            exit_drawn = True
            ax.annotate(f"law: K-A out\nfor p > {exit_['recall']:.2g}", (exit_["recall"], 0.5),
                        textcoords="offset points", xytext=(3, -4), ha="left", va="top",
                        fontsize=5.5, color=LAW_COLOUR)
          shown = np.where(measured, clip(mean), floor)
          groups = close_groups(np.log10(p), CLOSE_DECADES)
          tau_labels.append((ax, [(float(np.exp(np.mean(np.log(p[g])))), float(np.max(shown[g]))) for g in groups],
                             ["$\\tau$=" + ", ".join(f"{es[i]['tau']:g}" for i in g) for g in groups]))
      ax.axhline(0.5, color=HALF_COLOUR, lw=0.6, ls=":", zorder=0)
      ax.axhspan(floor, 0.5, color="0.92", zorder=-1, lw=0)
      ax.text(0.98, 0.03, "trap: share < 1/2", transform=ax.transAxes, fontsize=6, color="0.4",
              ha="right")
      ax.set_xscale("log")
      ax.set_xlim(x_floor / 1.6, x_ceiling)
      ticks.set_probability_axis(ax.yaxis, floor, 1 - floor, max_ticks=8)
      declare_valid_range(ax, 0.0, 1.0, "target share")
      ax.set_xlabel("student recall $\\pi_{student}(A)$"
                    + (f" (0 drawn at {x_floor:.1g})" if (recalls <= 0).any() else ""))
      ax.set_title(alg.upper() if alg != "simpo" else "SimPO")
    axes[0][0].set_ylabel("aligned target share $\\pi(A)$")
    handles, labels = axes[0][0].get_legend_handles_labels()
    handles.append(Line2D([], [], color=HALF_COLOUR, lw=0.6, ls=":"))
    labels.append("share 1/2 (trap boundary)")
    if exit_drawn:
      handles.append(Line2D([], [], color=LAW_COLOUR, lw=0.6, ls=(0, (1, 2))))
      labels.append("recall where the K-A law reaches 1/2 (interpolated)")
    if zero_drawn:
      handles.append(Line2D([], [], color="0.3", marker=ZERO_MARKER, ls="none", ms=4.5))
      labels.append(f"0 measured (none of n in A), at {floor:g}")
    fig.legend(handles, labels, loc="outside lower center", ncol=3)
    n_seeds = len({r["seed"] for r in rows})
    reversal = describe_reversals(recall_reversals(summary))
    data["note"] = np.asarray(reversal)
    fig.suptitle(f"small dots: seeds; large markers: mean over {n_seeds} seeds; dashed: the law at each tau's "
                 "own p and $\\Delta/\\beta$, bands: its 95% interval"
                 + (f"\n{reversal}: points are placed by recall" if reversal else ""), fontsize=6.5)
    for ax, points, texts in tau_labels:  # last: placed around everything drawn
      label_points(ax, points, texts, color="0.35", fontsize=5.5)
    return save_figure(fig, out_dir, name, data=data)
