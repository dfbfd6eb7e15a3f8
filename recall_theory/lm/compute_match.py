"""Compute-matched K-A vs A-K: the measured price of low recall (issue 11, items 2-3).

``recall-theory lm --match-compute --ladder 1,4,16,64`` trains the teacher and the KD
student once, then per seed and algorithm aligns

* **K-A** at every budget scale ``s`` of the ladder: the alignment budget of the preset
  multiplied by ``s`` (:func:`scaled_config`): preference pairs ``n_pairs -> round(s n_pairs)``
  *and* optimiser steps ``steps -> round(s steps)`` at the same batch size and learning rate
  (so every pair is seen as often as at 1x); RLOO steps ``-> round(s steps)``, i.e.
  ``s`` times the on-policy samples. All scales of one seed share the 1x stage's random
  stream (the 1x point is the comparison's K-A).
* **A-K** (align the teacher, distill it) and the **control** K-A(teacher-ref) at 1x.

Every model's row is made by :class:`recall_theory.lm.pipeline.Recorder`: the law's columns
and the total cost of the whole pipeline that made it (teacher + student + alignment +
re-distillation + reference log-probs + sampling, FLOPs from :mod:`recall_theory.lm.cost`;
evaluation kept apart). :func:`crossings` then finds where K-A's share, as a function of its
cost, reaches A-K's share: that budget, relative to A-K's, is the *measured price of low
recall*. The theory's prediction (theory.md item 2, the sampling trap): a reference of recall
``p`` shows the target once per ``1/p`` draws, so equal expected target samples need

    n_K-A / n_A-K = p_teacher / p_student.

Both are written side by side into ``compute_notes.md``; a K-A curve that never reaches A-K's
level gives only a lower bound (``not reached within ...``), never an extrapolated crossing.

The ladder analysis (parsing, crossings, the price's sentence) lives below both tracks in
:mod:`recall_theory.ladder`; :func:`plot_ladder` is still drawn here and used by the MoG track.
"""

from __future__ import annotations

from pathlib import Path

import dataclasses
import math
import re
from typing import Sequence

import numpy as np

from recall_theory import stats
from recall_theory.errors import InputError
from recall_theory.ladder import (crossings, describe_crossing, first_crossing,  # noqa: F401
                                   parse_ladder, scale_count)

DEFAULT_LADDER = (1.0, 4.0, 16.0, 64.0)
DEFAULT_TIME_LIMIT_S = 1200.0  # 20 minutes on 2 idle CPU cores (issue 11)


# -- the ladder ---------------------------------------------------------------------------

# The compute-matched experiment compares fixed budgets, not plateaus: its 1x alignment stage
# runs exactly BASE_STEPS steps (no plateau rule; its rows say ``fixed``) on BASE_PAIRS pairs.
BASE_STEPS = 48
BASE_PAIRS = 1024


def fixed_budget(config):
  """The experiment with fixed 1x alignment budgets (``BASE_STEPS``, ``BASE_PAIRS``, no plateau
  rule): a ladder of budgets is meaningful only when each run spends its budget."""
  return dataclasses.replace(
      config, n_pairs=BASE_PAIRS,
      preference_train=dataclasses.replace(config.preference_train, steps=BASE_STEPS, plateau=None),
      rloo_train=dataclasses.replace(config.rloo_train, steps=BASE_STEPS, plateau=None))


def scaled_config(config, scale: float):
  """The experiment with its alignment budget scaled by ``scale`` (see module docstring).

  Scales ``n_pairs``, ``preference_train.steps`` and ``rloo_train.steps`` (the budgets of
  stages trained to a plateau: such a stage still stops once its rule holds, and its row's
  ``steps`` says where); batch sizes, learning rates, beta and everything else unchanged.
  """
  return dataclasses.replace(
      config, n_pairs=scale_count(config.n_pairs, scale),
      preference_train=dataclasses.replace(
          config.preference_train, steps=scale_count(config.preference_train.steps, scale)),
      rloo_train=dataclasses.replace(
          config.rloo_train, steps=scale_count(config.rloo_train.steps, scale)))


# -- run-time estimate ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class StepTimes:
  """Seconds per optimiser step of each stage kind, plus fixed costs (2 idle CPU cores).

  Stated from the stage times of the cpu-tiny comparison in ``figures/lm/lm_results.csv``
  (``stage_seconds / stage_steps``, compilation included, rounded up); ``sample_s`` per
  1000 sampled sequences (preference pairs) and ``eval_s`` per evaluated model.
  """
  teacher_train: float
  student_train: float
  student_pref: float
  student_rloo: float
  teacher_pref: float
  teacher_rloo: float
  compile_s: float
  eval_s: float
  sample_s: float


STEP_TIMES = {
    "cpu-tiny": StepTimes(teacher_train=0.03, student_train=0.012, student_pref=0.012,
                          student_rloo=0.03, teacher_pref=0.05, teacher_rloo=0.08,
                          compile_s=3.0, eval_s=0.6, sample_s=0.5),
    "test": StepTimes(teacher_train=0.01, student_train=0.01, student_pref=0.01,
                      student_rloo=0.02, teacher_pref=0.01, teacher_rloo=0.02,
                      compile_s=1.5, eval_s=0.3, sample_s=0.5),
    # one GPU; about 10 minutes for the default comparison (the preset's stated size)
    "gpu": StepTimes(teacher_train=0.08, student_train=0.03, student_pref=0.03,
                     student_rloo=0.08, teacher_pref=0.08, teacher_rloo=0.2,
                     compile_s=10.0, eval_s=2.0, sample_s=0.2),
}


def estimate_seconds(config, ladder: Sequence[float], n_seeds: int, preset: str) -> float:
  """Estimated wall seconds of :func:`run_match_compute` on 2 idle cores (:data:`STEP_TIMES`).

  Sum over stages of steps x seconds-per-step, one compilation per distinct stage shape,
  sampling of preference pairs, and one evaluation per recorded model.
  """
  t = STEP_TIMES[preset]
  total = (config.teacher_train.steps * t.teacher_train
           + config.student_train.steps * t.student_train + 2 * t.compile_s + 3 * t.eval_s)
  per_seed = 2 * t.eval_s
  for alg in config.algorithms:
    rloo = alg == "rloo"
    base = config.rloo_train.steps if rloo else config.preference_train.steps
    for s in ladder:
      steps = scale_count(base, s)
      total += t.compile_s  # new step count -> new optimiser schedule -> new compilation
      per_seed += steps * (t.student_rloo if rloo else t.student_pref) + t.eval_s
      if not rloo:
        per_seed += 2 * scale_count(config.n_pairs, s) / 1000 * t.sample_s
    # A (teacher, 1x), A-K (re-distillation), control (1x)
    per_seed += base * (t.teacher_rloo if rloo else t.teacher_pref)
    per_seed += config.student_train.steps * t.student_train
    per_seed += base * (t.student_rloo if rloo else t.student_pref) + 3 * t.eval_s
    total += 3 * t.compile_s
  return total + n_seeds * per_seed


def check_time_limit(config, ladder, n_seeds: int, preset: str, limit_s: float,
                     flag: str = "--ladder") -> float:
  """The estimate, or InputError naming the ladder when it exceeds ``limit_s``."""
  est = estimate_seconds(config, ladder, n_seeds, preset)
  if est > limit_s:
    raise InputError(f"{flag} {','.join(f'{s:g}' for s in ladder)} needs an estimated "
                     f"{est:.0f} s for {n_seeds} seed(s) on preset {preset}, above --time-limit "
                     f"{limit_s:g} s: give --time-limit {math.ceil(est)} or more, a shorter {flag} or fewer --seeds")
  return est


# -- the run ------------------------------------------------------------------------------
def run_match_compute(config, ladder: Sequence[float], seeds: Sequence[int], *,
                      progress: bool = True, setting: str = "", groundtruth=None) -> list[dict]:
  """Teacher and student once; per seed and algorithm K-A over ``ladder``, A-K and control.

  Returns the :class:`~recall_theory.lm.pipeline.Recorder` rows (ID columns, metrics, law
  columns, stage and pipeline cost) with ``ladder_scale``, ``alignment_pairs``,
  ``alignment_steps`` and ``pipeline_pflops`` added; teacher and student reference rows too.
  """
  from recall_theory import schema
  from recall_theory.lm import law as law_lib
  from recall_theory.lm import pipeline as pl

  groundtruth, runner, seeds = pl.prepare_run(config, seeds, groundtruth=groundtruth,
                                              progress=progress)
  teacher = pl.train_teacher(runner, config, groundtruth)
  student = pl.distill(runner, config, groundtruth, teacher, "student", config.seed + 1,
                       config.seed)
  book = pl.LawBook(config, groundtruth)
  book.add_reference("teacher", teacher)
  book.add_reference("student", student)
  record = pl.Recorder(config, groundtruth, runner, seeds, book, setting)

  def budget(cfg, alg, scale):
    rloo = alg == "rloo"
    return {"ladder_scale": scale,
            "alignment_pairs": 0 if rloo else cfg.n_pairs,
            "alignment_steps": cfg.rloo_train.steps if rloo else cfg.preference_train.steps}

  for seed in seeds:
    record("teacher", "none", seed, teacher, None, stages=("teacher",),
           extra=budget(config, "none", math.nan) | {"alignment_steps": 0})
    record("student", "none", seed, student, teacher, stages=("teacher", "student"),
           extra=budget(config, "none", math.nan) | {"alignment_steps": 0})
    for alg in config.algorithms:
      base_stage = f"K-A/{alg}/seed{seed}"
      for scale in ladder:
        cfg = scaled_config(config, scale)
        draws: dict = {}
        stage = f"K-A/{alg}/x{scale:g}/seed{seed}"
        ka = pl.align(runner, cfg, groundtruth, student, student, alg, stage, seed, draws,
                      data_stage=base_stage, law_samples=book.samples["student"])
        record("K-A", alg, seed, ka, student, stages=("teacher", "student", stage), aligned=True,
               law=dict(algorithm=alg, reference="student", sampler="student", draws=draws),
               extra=budget(cfg, alg, scale))
      a_draws: dict = {}
      a_stage = f"A/{alg}/seed{seed}"
      a = pl.align(runner, config, groundtruth, teacher, teacher, alg, a_stage, seed, a_draws,
                   law_samples=book.samples["teacher"])
      stage = f"A-K/{alg}/seed{seed}"
      ak = pl.distill(runner, config, groundtruth, a, stage,
                      init_seed=config.seed + 1 + 7919 * (seed + 1), data_seed=seed)
      record("A-K", alg, seed, ak, teacher, stages=("teacher", a_stage, stage),
             law=dict(algorithm=alg, reference="teacher", sampler="teacher", draws=a_draws,
                      note=pl.A_K_NOTE), extra=budget(config, alg, 1.0))
      if alg in law_lib.LAW_ALGORITHMS:
        draws = {}
        stage = f"K-A(teacher-ref)/{alg}/seed{seed}"
        ctrl = pl.align(runner, config, groundtruth, student, teacher, alg, stage, seed, draws,
                        law_samples=book.samples["teacher"])
        record("K-A(teacher-ref)", alg, seed, ctrl, teacher,
               stages=("teacher", "student", stage), aligned=True,
               law=dict(algorithm=alg, reference="teacher",
                        sampler=pl.sampler_of(alg, "teacher", "student"), draws=draws),
               extra=budget(config, alg, 1.0))
  for row in record.rows:
    row["pipeline_pflops"] = row["pipeline_flops"] / 1e15
  schema.report_ceiling_violations(record.rows, where="lm --match-compute")
  return record.rows


# -- the crossing -------------------------------------------------------------------------

# -- figure -------------------------------------------------------------------------------
AK_LABEL = "A-K, 1x (dashed: its mean)"
CONTROL_LABEL = "K-A(teacher-ref), 1x"
LADDER_LABEL = "K-A, budget ladder"


def flops_unit(values) -> tuple[float, str]:
  """(divisor, name) of the FLOP unit that puts the largest of ``values`` in [1, 1000).

  >>> flops_unit([2.8e11, 6.5e11])
  (1000000000.0, 'GFLOPs')
  """
  largest = float(np.nanmax(np.abs(np.asarray(values, float))))
  for exponent, name in ((18, "EFLOPs"), (15, "PFLOPs"), (12, "TFLOPs"), (9, "GFLOPs"), (6, "MFLOPs"),
                         (3, "kFLOPs")):
    if largest >= 10.0 ** exponent:
      return 10.0 ** exponent, name
  return 1.0, "FLOPs"


def _share_limits(ax, values: np.ndarray, yscale: str, floor: float) -> None:
  """y limits holding every drawn share with its marker whole (log-odds padded on a logit axis)."""
  from recall_theory.plotting import ticks

  finite = values[np.isfinite(values)]
  if yscale == "logit":
    ticks.set_probability_axis(ax.yaxis, float(finite.min()), float(finite.max()), max_ticks=6)
  else:
    ax.set_yscale("log")
    ax.set_ylim(*ticks.padded_log_limits(max(float(finite.min()), floor), float(finite.max()), 0.08))


CLIP_COLOUR = "0.9"  # the strip beyond a clip line, where clipped values are drawn at its edge
PIPELINE_MARKERS = {"K-A": "o", "A-K": "s", "K-A(teacher-ref)": "D"}  # 'v'/'^' are kept for clipped values
DODGE_PT = {"A-K": 5.0, "K-A(teacher-ref)": -5.0}  # drawn this far right/left of their cost (points)


def _clip_shapes(values, floor: float, ceiling: float, marker: str) -> np.ndarray:
  """Per value: its pipeline's marker inside [floor, ceiling], 'v' below, '^' above (clipped)."""
  v = np.asarray(values, float)
  return np.where(v < floor, "v", np.where(v > ceiling, "^", marker))


def _scatter_by_shape(ax, x, y, shapes, **style) -> None:
  """One scatter per marker shape (matplotlib's scatter takes one marker)."""
  x, y, shapes = np.ravel(x), np.ravel(y), np.ravel(shapes)
  for shape in dict.fromkeys(shapes.tolist()):
    m = shapes == shape
    ax.scatter(x[m], y[m], marker=shape, **style)


def _widen_for_dodge(ax, points: float) -> None:
  """Widen the x limits by ``points`` at each end (in the axis' own scale): markers drawn
  beside their cost stay inside the frame."""
  fig = ax.figure
  width_pt = ax.get_position().width * fig.get_figwidth() * 72.0
  share = points / max(width_pt, 1.0)
  lo, hi = ax.get_xlim()
  if ax.get_xscale() == "log":
    a, b = np.log10(lo), np.log10(hi)
    ax.set_xlim(10 ** (a - share * (b - a)), 10 ** (b + share * (b - a)))
  else:
    ax.set_xlim(lo - share * (hi - lo), hi + share * (hi - lo))


def clip_counts(panel: dict, ceiling: float) -> dict[str, tuple[int, int, int]]:
  """Per pipeline of a ladder panel: (below the floor, above the ceiling, all) of its per-seed values."""
  floor = panel.get("floor", 1e-4)
  out = {}
  for pipe, key in (("K-A", "ka_share_SxL"), ("A-K", "ak_share_S"), ("K-A(teacher-ref)", "ctrl_share_S")):
    if panel.get(key) is None:
      continue
    v = np.ravel(np.asarray(panel[key], float))
    out[pipe] = (int(np.sum(v < floor)), int(np.sum(v > ceiling)), int(v.size))
  return out


def plot_ladder(panels: list[dict], out_dir, name: str, *, xlabel: str, ylabel: str,
                caption_note: str = "", figure_note: str = "") -> list:
  """Share against cost: K-A's ladder (seeds as small markers, mean and a band), A-K and the control.

  ``panels``: one dict per algorithm with ``title``, ``ka_cost_SxL``, ``ka_share_SxL``,
  ``scales_L``, ``ak_cost_S``, ``ak_share_S`` and optionally ``ctrl_cost_S``,
  ``ctrl_share_S``, ``floor`` (shares below it are clipped to it), ``ka_limit`` (K-A's
  infinite-budget limit, dotted; ``ka_limit_short`` names it where it is clipped and not
  drawn), ``xscale``, ``yscale`` ("log" or "logit": then shares above ``1 - floor`` are
  clipped too) and ``band`` ("range": min..max over seeds instead of mean ± sd). Seeds are
  small markers of their pipeline's shape (K-A circles, A-K squares, control diamonds), A-K
  and the control drawn :data:`DODGE_PT` points beside their cost (at 1x it is K-A's);
  clipped values are drawn at the clip as triangles pointing past it, in a light strip
  beyond the clip line, and counted in the caption. Budget labels ("16x") are placed beside
  their points where they cover nothing (:func:`recall_theory.plotting.labels.label_points`).
  ``figure_note`` (lines generated from the data) is printed above the panels. Saved with
  its data through :func:`recall_theory.plotting.save_figure`; with a ``caption_note`` the
  generated caption ``NAME_caption.md`` (the note and the clipping counts) is written beside it.
  """
  import matplotlib.pyplot as plt
  from matplotlib.legend_handler import HandlerTuple
  from matplotlib.ticker import MaxNLocator, NullFormatter
  from matplotlib.transforms import ScaledTranslation
  from recall_theory import io
  from recall_theory.plotting import (PIPELINE_COLORS, TEXT_WIDTH, figure_size, paper_style,
                                      save_figure)
  from recall_theory.plotting.figure_check import declare_valid_range
  from recall_theory.plotting.labels import label_points
  from recall_theory.plotting.style import darker

  data: dict = {}
  ka_colour = PIPELINE_COLORS["K-A"]
  clipped_lines = []
  any_clipped = False
  with paper_style():
    ncols = min(2, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, squeeze=False,
                             figsize=figure_size(TEXT_WIDTH, 0.42 * nrows))
    for ax in axes.ravel()[len(panels):]:
      ax.set_axis_off()
    ladder_points = []
    for ax, pan in zip(axes.ravel(), panels):
      key = pan["key"]
      floor = pan.get("floor", 1e-4)
      yscale = pan.get("yscale", "log")
      # logit axis: masses near 1 (and near 0) both resolved; clip away from 0 and 1
      ceiling = 1.0 - floor if yscale == "logit" else 1.0
      clip = lambda v: np.clip(np.asarray(v, float), floor, ceiling)
      drawn = []
      title = pan["title"]
      c_SxL, s_SxL = np.asarray(pan["ka_cost_SxL"], float), np.asarray(pan["ka_share_SxL"], float)
      by_range = pan.get("band") == "range"  # min..max over seeds (mean ± sd leaves (0, 1))
      seed_style = dict(s=7, alpha=0.45, lw=0)
      # per-seed points, not lines: a line per seed would run through the budget labels
      _scatter_by_shape(ax, c_SxL, clip(s_SxL), _clip_shapes(s_SxL, floor, ceiling, PIPELINE_MARKERS["K-A"]),
                        color=ka_colour, zorder=2, **seed_style)
      mean_L = s_SxL.mean(0)
      sd_L = s_SxL.std(0, ddof=1) if len(s_SxL) > 1 else np.zeros_like(mean_L)
      cost_L = c_SxL.mean(0)
      band_lo, band_hi = ((s_SxL.min(0), s_SxL.max(0)) if by_range
                          else (mean_L - sd_L, mean_L + sd_L))
      ax.fill_between(cost_L, clip(band_lo), clip(band_hi), color=ka_colour, alpha=0.15, lw=0)
      ax.plot(cost_L, clip(mean_L), "-", color=ka_colour, lw=1.2, label=LADDER_LABEL, zorder=3)
      _scatter_by_shape(ax, cost_L, clip(mean_L), _clip_shapes(mean_L, floor, ceiling, PIPELINE_MARKERS["K-A"]),
                        color=ka_colour, s=14, lw=0, zorder=3.5)
      drawn += [clip(s_SxL.ravel()), clip(mean_L), clip(band_lo), clip(band_hi)]
      ladder_points.append((ax, list(zip(cost_L, clip(mean_L))), [f"{s:g}x" for s in pan["scales_L"]]))
      if pan.get("ka_limit") is not None:  # K-A's infinite-budget limit (the law's optimum):
        limit = float(pan["ka_limit"])
        data[f"{key}__K-A__limit"] = np.asarray(limit, float)
        if floor <= limit <= ceiling:  # darker and on top, so it shows where the ladder lies on it
          ax.axhline(limit, color=darker(ka_colour), ls=":", lw=0.9, zorder=3,
                     label=pan.get("ka_limit_label", "K-A, law's optimum"))
          drawn.append([limit])
        else:  # clipped: not drawn (it would lie on the clip line), named in the title
          title += (f"\n{pan.get('ka_limit_short', 'K-A, law optimum')} {limit:.2g}: "
                    f"{'below' if limit < floor else 'above'} the clip, not drawn")
          clipped_lines.append(f"{pan['title']}: {pan.get('ka_limit_short', 'K-A, law optimum')} {limit:.3g}, "
                               f"beyond the clip, not drawn")
      for pipe, ck, sk in (("A-K", "ak_cost_S", "ak_share_S"),
                           ("K-A(teacher-ref)", "ctrl_cost_S", "ctrl_share_S")):
        if pan.get(sk) is None or not len(pan[sk]):
          continue
        cs, ss = np.asarray(pan[ck], float), np.asarray(pan[sk], float)
        m, sd, n = stats.mean_sd(ss)
        sd = 0.0 if math.isnan(sd) else sd
        lo, hi = (ss.min(), ss.max()) if by_range else (m - sd, m + sd)
        label = AK_LABEL if pipe == "A-K" else CONTROL_LABEL
        # beside their cost, not on it: at 1x they share K-A's cost and would hide its points
        beside = ax.transData + ScaledTranslation(DODGE_PT[pipe] / 72.0, 0.0, fig.dpi_scale_trans)
        _scatter_by_shape(ax, cs, clip(ss), _clip_shapes(ss, floor, ceiling, PIPELINE_MARKERS[pipe]),
                          color=PIPELINE_COLORS[pipe], zorder=2, transform=beside, **seed_style)
        shape = str(_clip_shapes([m], floor, ceiling, PIPELINE_MARKERS[pipe])[0])
        ax.errorbar(cs.mean(), clip(m), yerr=[[clip(m) - clip(lo)], [clip(hi) - clip(m)]],
                    fmt=shape, ms=4, color=PIPELINE_COLORS[pipe], capsize=2, lw=0.9, label=label, zorder=4,
                    transform=beside)
        if pipe == "A-K":
          ax.axhline(clip(m), color=PIPELINE_COLORS[pipe], ls="--", lw=0.8, label=label)
        drawn += [clip(ss), clip([lo, hi])]
        data[f"{key}__{pipe}__cost_S"], data[f"{key}__{pipe}__share_S"] = cs, ss
      counts = clip_counts(pan, ceiling)
      data[f"{key}__clipped_below_above_all"] = np.asarray([counts[p] for p in counts])
      data[f"{key}__clipped_pipelines"] = np.asarray(list(counts))
      low_clip = any(c[0] for c in counts.values())
      high_clip = any(c[1] for c in counts.values())
      if low_clip or high_clip:
        any_clipped = True
        clipped_lines.append(f"{pan['title']}: " + "; ".join(
            f"{pipe} {below + above} of {total} seed values clipped"
            + (f" ({below} below {floor:g}, {above} above 1 - {floor:g})" if below and above else
               f" (below {floor:g})" if below else f" (above 1 - {floor:g})")
            for pipe, (below, above, total) in counts.items() if below + above))
      # linear cost axis: the fixed cost (teacher, student) and the ladder's increments
      # stay readable; shares span decades, so log there
      ax.set_xscale(pan.get("xscale", "linear"))
      if pan.get("xscale", "linear") == "linear":
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.margins(x=0.06)
      else:  # decades only: minor labels of a short log range collide
        ax.xaxis.set_minor_formatter(NullFormatter())
      _widen_for_dodge(ax, max(abs(d) for d in DODGE_PT.values()) + 4.0)
      _share_limits(ax, np.concatenate([np.ravel(d) for d in drawn]), yscale, floor)
      bottom, top = ax.get_ylim()
      if low_clip:  # the strip below the clip line: values there are clipped to its edge
        ax.axhspan(bottom, floor, color=CLIP_COLOUR, lw=0, zorder=0)
      if high_clip:
        ax.axhspan(ceiling, top, color=CLIP_COLOUR, lw=0, zorder=0)
      ax.set_ylim(bottom, top)
      declare_valid_range(ax, 0.0, 1.0, "target share")
      ax.set_title(title)
      if ax in axes[-1] or nrows == 1:
        ax.set_xlabel(xlabel)
      ax.set_ylabel(ylabel)  # every panel: each has its own share range
      ax.grid(True, which="major", lw=0.3, alpha=0.5)
      data[f"{key}__K-A__cost_SxL"], data[f"{key}__K-A__share_SxL"] = c_SxL, s_SxL
      data[f"{key}__scales_L"] = np.asarray(pan["scales_L"], float)
      data[f"{key}__floor"] = np.asarray(floor)
    by_range = all(pan.get("band") == "range" for pan in panels)
    handles, labels = _ladder_legend(axes[0][0], any_clipped=any_clipped, by_range=by_range,
                                     floor=panels[0].get("floor", 1e-4),
                                     logit=panels[0].get("yscale", "log") == "logit")
    fig.legend(handles, labels, handler_map={tuple: HandlerTuple(ndivide=None)},
               loc="outside lower center", ncol=min(len(labels), 3), frameon=False)
    if figure_note:  # a title line: the layout makes room for it
      fig.suptitle(figure_note, fontsize=6.5)
      data["figure_note"] = np.asarray(figure_note)
    for ax, points, texts in ladder_points:  # last: placed around everything drawn
      label_points(ax, points, texts, color=ka_colour)
    caption = ""
    if caption_note:
      caption = caption_note + (". Clipped: " + "; ".join(clipped_lines) if clipped_lines
                                else ". No value is clipped") + "."
      data["caption"] = np.asarray(caption)
    paths = save_figure(fig, out_dir, name, data)
  if caption:
    paths.append(io.write_text(Path(out_dir) / f"{name}_caption.md", caption + "\n"))
  return paths


def _ladder_legend(ax, *, any_clipped: bool = False, by_range: bool = False, floor: float = 1e-4,
                   logit: bool = False) -> tuple[list, list[str]]:
  """One entry per label of ``ax`` (an errorbar and its dashed mean line share one: A-K), then
  the seeds' small markers, the band, and where anything is clipped, the clip strip."""
  from matplotlib.lines import Line2D
  from matplotlib.patches import Patch
  from recall_theory.plotting import PIPELINE_COLORS

  def clipped_marker(handle) -> bool:  # an errorbar drawn with a clip triangle
    lines = getattr(handle, "lines", None)
    return bool(lines) and lines[0] is not None and lines[0].get_marker() in ("v", "^")

  grouped: dict[str, list] = {}
  for one in ax.figure.axes:  # each label's handles from the first panel where it is not clipped
    handles, labels = one.get_legend_handles_labels()
    mine: dict[str, list] = {}
    for handle, label in zip(handles, labels):
      mine.setdefault(label, []).append(handle)
    for label, hs in mine.items():
      if label not in grouped or (any(map(clipped_marker, grouped[label])) and not any(map(clipped_marker, hs))):
        grouped[label] = hs
  order = [label for label in ax.get_legend_handles_labels()[1]]
  order += [label for label in grouped if label not in order]
  labels = list(dict.fromkeys(order))
  handles = [tuple(grouped[label]) if len(grouped[label]) > 1 else grouped[label][0] for label in labels]
  handles.append(tuple(Line2D([], [], ls="none", marker=PIPELINE_MARKERS[p], ms=2.6, color=PIPELINE_COLORS[p],
                              alpha=0.45, mew=0) for p in PIPELINE_MARKERS))
  labels.append("seeds (small markers)")
  handles.append(Patch(facecolor=PIPELINE_COLORS["K-A"], alpha=0.15, lw=0))
  labels.append("K-A band: " + ("range over seeds" if by_range else "mean ± sample sd"))
  if any_clipped:
    handles.append((Patch(facecolor=CLIP_COLOUR, lw=0),
                    *(Line2D([], [], ls="none", marker=shape, ms=3.5, color="0.3")
                      for shape in (("v", "^") if logit else ("v",)))))
    labels.append(f"clipped to [{floor:g}, 1 - {floor:g}]" if logit else f"clipped below {floor:g}")
  return handles, labels


# -- notes --------------------------------------------------------------------------------
def _by(rows, pipeline, alg):
  sel = [r for r in rows if r["pipeline"] == pipeline and r["algorithm"] == alg]
  return sorted(sel, key=lambda r: (r["seed"], r.get("ladder_scale", 0)))


def analyse(rows: list[dict], ladder: Sequence[float], algorithms: Sequence[str]) -> dict:
  """Per algorithm: the arrays of the figure and the crossings in samples and in PFLOPs."""
  seeds = sorted({r["seed"] for r in rows})
  out = {}
  for alg in algorithms:
    ka = _by(rows, "K-A", alg)
    ak = {r["seed"]: r for r in _by(rows, "A-K", alg)}
    ctrl = {r["seed"]: r for r in _by(rows, "K-A(teacher-ref)", alg)}
    grid = {(r["seed"], float(r["ladder_scale"])): r for r in ka}
    get = lambda f: np.array([[float(grid[(s, float(x))][f]) for x in ladder] for s in seeds])
    res = {"seeds": seeds,
           "ka_share_SxL": get("target_share"), "ka_pflops_SxL": get("pipeline_pflops"),
           "ka_samples_SxL": get("n_samples"),
           "ka_pred_SxL": get("predicted_mass"),
           "ak_share_S": np.array([ak[s]["target_share"] for s in seeds], float),
           "ak_pflops_S": np.array([ak[s]["pipeline_pflops"] for s in seeds], float),
           "ak_samples_S": np.array([ak[s]["n_samples"] for s in seeds], float),
           "ak_pred_S": np.array([ak[s]["predicted_mass"] for s in seeds], float),
           "ctrl_share_S": np.array([ctrl[s]["target_share"] for s in seeds if s in ctrl], float),
           "ctrl_pflops_S": np.array([ctrl[s]["pipeline_pflops"] for s in seeds if s in ctrl],
                                     float),
           "p_student": float(ka[0]["reference_recall"]),
           "p_student_ci": (float(ka[0]["reference_recall_low"]),
                            float(ka[0]["reference_recall_high"])),
           "p_teacher": float(ak[seeds[0]]["reference_recall"]),
           "p_teacher_ci": (float(ak[seeds[0]]["reference_recall_low"]),
                            float(ak[seeds[0]]["reference_recall_high"])),
           "student_counts": reference_counts(ka[0]),
           "teacher_counts": reference_counts(ak[seeds[0]])}
    res["cross_samples"] = crossings(res["ka_samples_SxL"], res["ka_share_SxL"],
                                     res["ak_share_S"], res["ak_samples_S"])
    res["cross_pflops"] = crossings(res["ka_pflops_SxL"], res["ka_share_SxL"],
                                    res["ak_share_S"], res["ak_pflops_S"])
    out[alg] = res
  return out


# recall_theory.lm.law.reference_statistics writes the counts behind p_ref into the estimator.
_REFERENCE_COUNTS = re.compile(r"p_ref: monte-carlo n=(\d+) reference samples \(k=(\d+)\)")


def reference_counts(row: dict) -> tuple[int, int]:
  """``(k, n)``: the reference samples in the target and drawn behind a row's
  ``reference_recall = k/n``, read from its ``estimator`` text (the rows carry no count
  columns). Raises InputError if the text names no counts or they disagree with the recall."""
  found = _REFERENCE_COUNTS.search(str(row.get("estimator", "")))
  if found is None:
    raise InputError(f"row {row.get('pipeline')}/{row.get('algorithm')}: its estimator names no "
                     f"reference counts (expected 'p_ref: monte-carlo n=N reference samples (k=K)')")
  n, k = int(found.group(1)), int(found.group(2))
  if not (0 <= k <= n and n > 0 and math.isclose(k / n, float(row["reference_recall"]),
                                                  rel_tol=1e-9, abs_tol=1e-15)):
    raise InputError(f"row {row.get('pipeline')}/{row.get('algorithm')}: counts k={k}, n={n} do not "
                     f"give its reference_recall {row['reference_recall']!r}")
  return k, n


def predicted_price(k_teacher: int, n_teacher: int, k_student: int, n_student: int,
                    confidence: float = 0.95) -> tuple[float, float, float]:
  """``p_teacher / p_student`` from binomial counts, with its log-ratio (Katz) interval.

  With ``p1 = k1/n1`` (teacher) and ``p2 = k2/n2`` (student), the delta method on
  ``log(p1/p2) = log p1 - log p2`` (independent samples, Var log p ~ (1 - p)/(n p)) gives

      log(p1/p2) -+ z sqrt((1 - p1)/k1 + (1 - p2)/k2),   (1 - p)/k = 1/k - 1/n,

  ``z = Phi^{-1}(1/2 + confidence/2)`` (1.96 at 95%): Katz et al. (1978), Biometrics 34:469.
  Unlike the ratio of opposite ends of the two recalls' intervals (which covers more than
  ``confidence``), this is an approximate ``confidence`` interval for the ratio itself.

  A zero count (``k1 = 0`` or ``k2 = 0``) makes the log-ratio and its variance infinite;
  then 0.5 is added to every cell of both 2 x 2 rows (Haldane-Anscombe: ``k -> k + 1/2``,
  ``n - k -> n - k + 1/2``, so ``n -> n + 1``) and the ratio *and* its interval come from
  the corrected counts. ``k = n`` needs no correction.

  Recalls known exactly (no sampling, as in the MoG track) have a degenerate interval: there
  the ratio itself is the price and no interval is needed.

  Args:
    k_teacher, n_teacher: target samples and samples drawn of the teacher (0 <= k <= n, n > 0).
    k_student, n_student: the same for the student.
    confidence: two-sided level in (0, 1).

  Returns:
    ``(ratio, low, high)``.

  Example:
    >>> # 0.03 / 0.002 = 15, times exp(-+1.96 sqrt(1/30 - 1/1000 + 1/4 - 1/2000))
    >>> ratio, low, high = predicted_price(30, 1000, 4, 2000)
  """
  counts = (k_teacher, n_teacher, k_student, n_student)
  if any(int(c) != c for c in counts) or not (0 <= k_teacher <= n_teacher and n_teacher > 0
                                              and 0 <= k_student <= n_student and n_student > 0):
    raise InputError(f"predicted_price needs integer counts 0 <= k <= n, n > 0; got k_teacher="
                     f"{k_teacher}, n_teacher={n_teacher}, k_student={k_student}, n_student={n_student}")
  if not 0.0 < confidence < 1.0:
    raise InputError(f"confidence must lie in (0, 1), got {confidence!r}")
  k1, n1, k2, n2 = (float(c) for c in counts)
  if k1 == 0 or k2 == 0:  # Haldane-Anscombe
    k1, n1, k2, n2 = k1 + 0.5, n1 + 1.0, k2 + 0.5, n2 + 1.0
  ratio = (k1 / n1) / (k2 / n2)
  half = stats._normal_quantile(confidence) * math.sqrt(1.0 / k1 - 1.0 / n1 + 1.0 / k2 - 1.0 / n2)
  return ratio, ratio * math.exp(-half), ratio * math.exp(half)


def notes_markdown(rows, analysis: dict, *, ladder, preset: str, seeds, elapsed: float,
                   estimate: float, time_limit: float, options: str) -> str:
  """``compute_notes.md``: what scales, the cost table, the measured price beside the theory."""
  from recall_theory.lm.report import algorithm_name

  lad = ",".join(f"{s:g}" for s in ladder)
  lines = [f"# Compute-matched K-A vs A-K (preset {preset}, {len(seeds)} seeds, ladder {lad})",
           "",
           options,
           "",
           f"Wall time {elapsed:.0f} s (estimate before the run {estimate:.0f} s on 2 idle cores; "
           f"time limit {time_limit:g} s).",
           "",
           "What scales with the ladder: K-A's preference pairs and DPO steps (same batch and "
           "learning rate, so each pair is seen as often as at 1x) and RLOO's steps (on-policy "
           "samples = steps x batch). A-K and the control run at 1x. Cost is the whole "
           "pipeline's: teacher + student + alignment + re-distillation (A-K) + reference "
           "log-probs + sampling, FLOPs counted by recall_theory.lm.cost from the configuration; "
           "evaluation is kept apart. Shares: target share of eval samples (Wilson 95% in the "
           "CSV's aligned_mass_low/high). " + stats.SD_CAPTION + ".",
           ""]
  for alg, res in analysis.items():
    name = algorithm_name(alg)
    pred, p_lo, p_hi = predicted_price(*res["teacher_counts"], *res["student_counts"])
    lines += [f"## {name}", "",
              "| pipeline | scale | alignment samples | total PFLOPs | target share (mean ± sd) "
              "| law's optimum (mean) |",
              "|---|---|---|---|---|---|"]
    for j, s in enumerate(ladder):
      m, sd, _ = stats.mean_sd(res["ka_share_SxL"][:, j])
      pred_S = res["ka_pred_SxL"][:, j]
      pred_mean = float(np.mean(pred_S)) if np.isfinite(pred_S).all() else math.nan
      lines.append(f"| K-A | {s:g}x | {res['ka_samples_SxL'][:, j].mean():.0f} | "
                   f"{res['ka_pflops_SxL'][:, j].mean():.4g} | {m:.4f} ± {sd:.4f} | "
                   f"{pred_mean:.4f} |")
    m, sd, _ = stats.mean_sd(res["ak_share_S"])
    lines.append(f"| A-K | 1x | {res['ak_samples_S'].mean():.0f} | {res['ak_pflops_S'].mean():.4g}"
                 f" | {m:.4f} ± {sd:.4f} | {np.mean(res['ak_pred_S']):.4f} (its aligned teacher) |")
    if len(res["ctrl_share_S"]):
      m, sd, _ = stats.mean_sd(res["ctrl_share_S"])
      lines.append(f"| K-A(teacher-ref) | 1x | {res['ak_samples_S'].mean():.0f} | "
                   f"{res['ctrl_pflops_S'].mean():.4g} | {m:.4f} ± {sd:.4f} | |")
    max_s = ladder[-1]
    max_samples = res["ka_samples_SxL"][:, -1].mean()
    max_pflops = res["ka_pflops_SxL"][:, -1].mean()
    cmp = stats.paired_comparison(res["ka_share_SxL"][:, -1], res["ak_share_S"])
    lines += ["",
              f"- Recalls: p_teacher = {res['p_teacher']:.4g} [{res['p_teacher_ci'][0]:.4g}, "
              f"{res['p_teacher_ci'][1]:.4g}], p_student = {res['p_student']:.4g} "
              f"[{res['p_student_ci'][0]:.4g}, {res['p_student_ci'][1]:.4g}] (Wilson 95%).",
              f"- Predicted price of low recall (equal expected target samples): K-A needs "
              f"p_teacher/p_student = {pred:.3g} [{p_lo:.3g}, {p_hi:.3g}] (95% log-ratio (Katz) "
              f"interval from the counts k = {res['teacher_counts'][0]} of "
              f"{res['teacher_counts'][1]} and {res['student_counts'][0]} of "
              f"{res['student_counts'][1]}"
              + ("; a zero count: 0.5 added to each cell, Haldane-Anscombe"
                 if 0 in (res["teacher_counts"][0], res["student_counts"][0]) else "")
              + f") times A-K's alignment samples; the ladder reaches {max_s:g}x"
              + (" (short of the prediction)." if max_s < pred else "."),
              "- Measured price in alignment samples: "
              + describe_crossing(res["cross_samples"], unit="alignment samples",
                                  max_label=f"{max_s:g}x ({max_samples:.0f} samples)") + ".",
              "- Measured price in total PFLOPs: "
              + describe_crossing(res["cross_pflops"], unit="total PFLOPs",
                                  max_label=f"{max_s:g}x ({max_pflops:.4g} PFLOPs)") + ".",
              f"- At {max_s:g}x: " + stats.describe_comparison(cmp, f"K-A {max_s:g}x", "A-K",
                                                               fmt=".4f") + ".",
              f"- Mean curve: {res['cross_pflops']['mean_status'].replace('_', ' ')} "
              f"(ratio {res['cross_pflops']['mean_ratio']:.3g} of A-K's PFLOPs"
              + (", a lower bound)." if res["cross_pflops"]["mean_status"] == "not_reached"
                 else ")."), ""]
    ka_pred = res["ka_pred_SxL"][:, -1]
    if np.isfinite(ka_pred).all():
      below = bool(np.mean(ka_pred) < np.mean(res["ak_share_S"]))
      lines += [f"- The law's optimum of K-A (any budget) is {np.mean(ka_pred):.4f}, "
                + ("below A-K's measured share: the learning trap says no alignment budget "
                   "closes the gap at this beta; more samples only remove the sampling trap."
                   if below else "at or above A-K's measured share: the law does not rule out "
                   "a crossing at a budget beyond the ladder."), ""]
  return "\n".join(lines) + "\n"


def plot_compute(rows, out, *, ladder, algorithms) -> list:
  """The ``lm_compute`` figure from the run's rows: share against the pipeline's FLOPs, in
  the unit that puts the largest cost in [1, 1000) (:func:`flops_unit`)."""
  from recall_theory.lm.report import algorithm_name

  analysis = analyse(rows, ladder, algorithms)
  costs = np.concatenate([np.ravel(res[k]) for res in analysis.values()
                          for k in ("ka_pflops_SxL", "ak_pflops_S", "ctrl_pflops_S")]) * 1e15
  divisor, unit = flops_unit(costs)
  to_unit = lambda pflops: np.asarray(pflops, float) * 1e15 / divisor  # noqa: E731
  panels = []
  for alg, res in analysis.items():
    panels.append({"key": alg, "title": algorithm_name(alg), "scales_L": list(ladder),
                   "ka_cost_SxL": to_unit(res["ka_pflops_SxL"]), "ka_share_SxL": res["ka_share_SxL"],
                   "ak_cost_S": to_unit(res["ak_pflops_S"]), "ak_share_S": res["ak_share_S"],
                   "ctrl_cost_S": to_unit(res["ctrl_pflops_S"]), "ctrl_share_S": res["ctrl_share_S"],
                   "ka_limit": (float(np.mean(res["ka_pred_SxL"][:, -1]))
                                if np.isfinite(res["ka_pred_SxL"][:, -1]).all() else None),
                   "ka_limit_label": "K-A, law's optimum (any budget)", "ka_limit_short": "K-A's law optimum",
                   "floor": 1e-4, "band": "range"})
  return plot_ladder(panels, out, "lm_compute", xlabel=f"total {unit} of the pipeline",
                     ylabel="aligned target share",
                     caption_note=(f"K-A's alignment budget scaled by the ladder; cost in {unit}; small "
                                   "markers: seeds (K-A circles, A-K squares, K-A(teacher-ref) diamonds; the "
                                   "last two drawn 5 pt right and left of their cost); line "
                                   "and large markers: mean; band and error bars: range over seeds (a mean "
                                   "± sd band leaves (0, 1) on a log axis); dotted: the law's optimum of K-A, "
                                   "sigmoid(logit p_student + Delta/beta), mean over seeds; shares below 1e-4 "
                                   "are clipped to it (triangles in the grey strip)"))


def write_outputs(rows, out, *, ladder, preset, seeds, elapsed, estimate, time_limit,
                  options, algorithms) -> str:
  """CSV, figure (+ data) and notes into ``out``; returns the notes' text."""
  from recall_theory import io

  io.write_csv(out / "lm_compute.csv", rows)
  plot_compute(rows, out, ladder=ladder, algorithms=algorithms)
  text = notes_markdown(rows, analyse(rows, ladder, algorithms), ladder=ladder, preset=preset,
                        seeds=seeds, elapsed=elapsed, estimate=estimate, time_limit=time_limit,
                        options=options)
  io.write_text(out / "compute_notes.md", text)
  return text


# -- command line -------------------------------------------------------------------------
def run_cli(args, config, seeds) -> int:
  """``recall-theory lm --match-compute``: validate everything, then run and write ``--out``."""
  import time

  from recall_theory import io, progress
  from recall_theory.options import describe_options

  if not args.match_compute:
    given = [f for f, v in (("--ladder", args.ladder), ("--time-limit", args.time_limit))
             if v is not None]
    raise InputError(f"{', '.join(given)} only applies with --match-compute (e.g. "
                     f"--match-compute --ladder 1,4,16 --time-limit 1200)")
  clash = [f for f, v in (("--taus", args.taus), ("--checkpoint-dir", args.checkpoint_dir),
                          ("--resume", args.resume or None)) if v is not None]
  if clash:
    raise InputError(f"--match-compute runs without {', '.join(clash)}: drop it")
  from recall_theory import plateau as plateau_lib
  plateau_lib.refuse_with_fixed_budget(
      [f for f in plateau_lib.PLATEAU_FLAGS if getattr(args, f[2:].replace("-", "_"), None) is not None],
      BASE_STEPS, "")
  config = fixed_budget(config)
  ladder = parse_ladder(args.ladder) if args.ladder is not None else DEFAULT_LADDER
  limit = DEFAULT_TIME_LIMIT_S if args.time_limit is None else args.time_limit
  if not (math.isfinite(limit) and limit > 0):
    raise InputError(f"--time-limit must be a finite number of seconds > 0, got {limit:g}")
  for s in ladder:
    scaled_config(config, s).validate()
  estimate = check_time_limit(config, ladder, len(seeds), args.preset, limit)
  out = io.prepare_output_dir(args.out)
  if args.quiet:
    progress.set_enabled(False)
  options = ("Non-default options: "
             + describe_options(getattr(args, "non_default_options", {})) + ".")
  print(f"lm --match-compute: preset {args.preset}, ladder {','.join(f'{s:g}' for s in ladder)}, "
        f"{len(seeds)} seed(s); estimated {estimate:.0f} s on 2 idle cores, time limit {limit:g} s")
  start = time.perf_counter()
  rows = run_match_compute(config, ladder, seeds, progress=not args.quiet,
                           setting=f"preset={args.preset};tau={config.tau:g}")
  elapsed = time.perf_counter() - start
  for row in rows:
    scale = row["ladder_scale"]
    row["setting"] += "" if math.isnan(scale) else f";budget={scale:g}x"
  text = write_outputs(rows, out, ladder=ladder, preset=args.preset, seeds=seeds,
                       elapsed=elapsed, estimate=estimate, time_limit=limit, options=options,
                       algorithms=config.algorithms)
  io.write_json(out / "lm_config.json", {"preset": args.preset, "seeds": seeds,
                                         "ladder": list(ladder), "time_limit_s": limit,
                                         "estimated_seconds": estimate, "wall_seconds": elapsed,
                                         "config": config.to_dict()})
  if not args.quiet:
    print(text, end="")
  return 0
