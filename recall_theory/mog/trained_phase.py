"""``recall-theory mog --phase-map``: trained K-A and A-K on both sides of the law's trap boundary.

The law puts K-A's aligned mass at ``sigmoid(logit p + Delta/beta)``, with ``p = pi_ref(A)`` the
student's recall of the target and ``Delta/beta = (L_A - L_{A^c})/beta`` of the reward under the
student: K-A escapes the trap (mass >= 1/2) iff ``Delta/beta >= log((1 - p)/p)``. The phase map
trains both pipelines over a grid of KD temperatures tau (tau sets the student's recall p, see
:func:`recall_theory.mog.sweep.tau_sweep`) x betas x seeds, with
:func:`recall_theory.mog.grid_run.run_grid` once per tau (tau is a traced argument of the compiled
grid, so every tau shares one compilation), and places every aligned model at its cell's
coordinates ``(p, Delta/beta)`` of the student. K-A aligns the student; A-K aligns the teacher and
distils it at the same tau. Algorithms: PG and DPO, each trained to its plateau
(:mod:`recall_theory.plateau`) or its budget, and the exact Gibbs tilt.

:func:`run_phase_map` writes into ``out_dir``:

* ``mog_phase_trained.csv``: one row per seed x (tau, beta) cell x algorithm x pipeline, with the
  shared ids, the map's coordinates (``student_recall``, ``student_delta_over_beta``,
  ``law_boundary = log((1-p)/p)``, ``student_law_mass``: K-A's law at the cell), the aligned
  mass and its log-odds, the law's columns of :data:`recall_theory.schema.LAW_COLUMNS` for the
  pipeline's own reference (K-A: the student; A-K: the teacher, so ``predicted_mass`` is the
  aligned teacher's optimum, as in ``mog_results.csv``), and how the alignment stage ended:
  ``steps``, ``max_steps``, ``plateau`` (reached / budget / exact) and ``plateau_reached``
  (yes / no / exact). For A-K these describe the teacher's alignment, the stage trained to a
  plateau (the distillation after it runs a fixed number of EM iterations);
* ``mog_phase_trained_boundary.csv``: per pipeline, algorithm, seed and tau column, where the
  trained log-odds cross 0 (see below) and the offset from the law's boundary;
* ``mog_phase_trained.{pdf,png}`` + ``_data.npz``: the map (:func:`recall_theory.mog.figures.plot_trained_phase`);
* ``mog_phase_trained_caption.md``: generated from the CSV as written (read back).

Definitions behind the caption's numbers:

* log-odds of a mass ``m``: ``log m - log(1 - m)``, clipped to ``+-LOG_ODDS_LIMIT`` (masses
  within ~1e-13 of 0 or 1, e.g. a distilled A-K student whose tilted target component is far
  narrower than its Voronoi cell, would otherwise be +-inf);
* a cell's value: the mean over seeds of the log-odds; a cell lies on the law's side when that
  mean and the mean of the law's log-odds ``logit p_ref + Delta/beta`` have the same sign (0
  counts as >= 1/2); seed-cells are counted the same way, seed by seed;
* the crossing of one (seed, tau) column: its cells sorted by the student's Delta/beta,
  ``y_1 < ... < y_B``, with trained log-odds ``l_b``; ``i`` the largest ``b`` with ``l_b < 0``.
  No such ``b``: the column is *above* 1/2 in every cell; ``i = B``: *below* in every cell (no
  crossing, no extrapolation); else the crossing is the linear interpolation
  ``y* = y_i - l_i (y_{i+1} - y_i)/(l_{i+1} - l_i)`` and its offset ``y* - log((1-p)/p)``
  (positive: the trained model needs a larger Delta/beta than the law to reach 1/2). For the
  exact K-A tilt ``l = logit p + y`` is linear in ``y``, so its offset is 0 to rounding;
* a panel's boundary offset: per seed, the mean offset over the tau columns that every seed
  crosses; over seeds, :func:`recall_theory.stats.paired_comparison` of the per-seed crossings
  against the per-seed law boundaries (Student-t 95% interval; sign test over the seeds whose
  offset exceeds ``OFFSET_RESOLUTION``). A-K is placed at K-A's coordinates, so its offset is
  from K-A's law boundary (the line the figure draws).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np

from recall_theory import io, schema, stats
from recall_theory.errors import InputError, check_int_range
from recall_theory.mog.setup import ALGORITHMS, RESULT_PIPELINES, STUDENT_KEEPS, MogConfig

PHASE_PIPELINES = ("K-A", "A-K")
PHASE_ALGORITHMS = ("pg", "dpo", "exact")
ALGORITHM_LABELS = {"pg": "PG", "dpo": "DPO", "exact": "exact"}
# The trained run (GridResult.trained_* index, pipelines.TRAINERS order) that aligned each
# pipeline's model: K-A's student; A-K's teacher, before its fixed-iteration distillation.
ALIGNMENT_RUN = {("K-A", "pg"): 0, ("A-K", "pg"): 1, ("K-A", "dpo"): 3, ("A-K", "dpo"): 4}
LOG_ODDS_LIMIT = 30.0
# Offsets of a boundary smaller than this (Delta/beta units, i.e. nats of log-odds) are not counted
# by the sign test: the resolution of an interpolated crossing on a grid of a few betas.
OFFSET_RESOLUTION = 0.1
FILE_STEM = "mog_phase_trained"
MIN_POINTS = 2   # per axis: a crossing needs two cells in a column, the map's cells two neighbours

# The quick run's sizes (seconds, for the test suite): tiny samples, EM, grid and budgets.
QUICK_SIZES = dict(n_teacher_samples=300, n_student_samples=300, em_iters=15, pg_steps=40, pg_batch=32,
                   dpo_steps=40, dpo_pairs=64, control_steps=10, grid_n=41)
QUICK_FIRST_CHECK = 10


def quick_config(config: MogConfig) -> MogConfig:
  """``config`` at the quick run's sizes (:data:`QUICK_SIZES`, plateau first checked at 10 steps)."""
  plateau = config.plateau and dataclasses.replace(config.plateau, first_check=QUICK_FIRST_CHECK)
  return dataclasses.replace(config, plateau=plateau, **QUICK_SIZES)


class PhaseGrid(NamedTuple):
  """Host arrays of a phase map; axes (S, T, B) = seeds, taus, betas, then (P, A) =
  :data:`PHASE_PIPELINES`, :data:`PHASE_ALGORITHMS`.

  ``student_recall`` / ``student_delta_over_beta`` (S, T, B): the map's coordinates, p and
  Delta/beta of the reward under the student (K-A's reference). ``reference_recall``,
  ``delta_over_beta``, ``aligned_mass``, ``kl``, ``n_samples``, ``sampler_recall`` (S, T, B, P, A):
  the law's inputs per aligned model, each for its pipeline's own reference
  (:func:`recall_theory.mog.report.law_arrays`). ``steps``, ``max_steps`` (S, T, B, P, A) and
  ``plateau`` (text, reached / budget / exact) of the alignment stage.
  ``tilt_quadrature_error`` (T,): the resolution of the exact tilts' masses per tau.
  """
  seeds: np.ndarray
  taus: np.ndarray
  betas: np.ndarray
  student: str
  student_recall: np.ndarray
  student_delta_over_beta: np.ndarray
  reference_recall: np.ndarray
  delta_over_beta: np.ndarray
  aligned_mass: np.ndarray
  kl: np.ndarray
  n_samples: np.ndarray
  sampler_recall: np.ndarray
  steps: np.ndarray
  max_steps: np.ndarray
  plateau: np.ndarray
  tilt_quadrature_error: np.ndarray


def check_axis(name: str, values: Sequence[float]) -> np.ndarray:
  """Sorted distinct values, each finite and > 0, at least :data:`MIN_POINTS` of them."""
  arr = np.unique(np.asarray(values, dtype=np.float64).ravel())
  if arr.size < MIN_POINTS or not np.all(np.isfinite(arr)) or not np.all(arr > 0):
    raise InputError(f"{name} must hold at least {MIN_POINTS} distinct values, each finite and > 0, "
                     f"got {list(np.asarray(values).ravel())}")
  return arr


def run_phase_grid(config: MogConfig, taus: Sequence[float], betas: Sequence[float], seeds: Sequence[int], *,
                   student: str = "4-mode", dtype=None, chunk_size: int | None = None,
                   on_tau: Callable[[float], None] | None = None) -> PhaseGrid:
  """Train every (seed, tau, beta) cell: one :func:`~recall_theory.mog.grid_run.run_grid` per tau.

  ``config``'s ``kd_temperature`` and ``students`` are replaced by each tau and ``(student,)``;
  its plateau rule and budgets are every trained run's. ``on_tau(tau)`` is called after each
  tau's grid (progress). Raises InputError for fewer than 2 taus or betas, a non-positive or
  non-finite one, or an unknown student.
  """
  from recall_theory.mog.grid_run import run_grid
  from recall_theory.mog.report import law_arrays

  taus_np, betas_np = check_axis("taus", taus), check_axis("betas", betas)
  if student not in STUDENT_KEEPS:
    raise InputError(f"student must be one of {sorted(STUDENT_KEEPS)}, got {student!r}")
  seeds_np = np.asarray([check_int_range("seed", s, 0, 2 ** 31 - 1) for s in seeds])
  if seeds_np.size == 0:
    raise InputError("seeds must contain at least one seed")
  p_idx = [RESULT_PIPELINES.index(p) for p in PHASE_PIPELINES]
  a_idx = [ALGORITHMS.index(a) for a in PHASE_ALGORITHMS]
  law_keys = ("reference_recall", "delta_over_beta", "aligned_mass", "kl", "n_samples", "sampler_recall")
  per_tau = {k: [] for k in law_keys + ("student_recall", "student_delta_over_beta", "steps", "max_steps",
                                        "plateau", "quadrature_error")}
  for tau in taus_np:
    cfg = dataclasses.replace(config, kd_temperature=float(tau), students=(student,)).validate()
    res = run_grid(cfg, seeds_np, betas_np, dtype=dtype, chunk_size=chunk_size)
    law = law_arrays(res, cfg)                        # (S, B, V=1, P, A)
    for k in law_keys:
      per_tau[k].append(np.asarray(law[k], dtype=np.float64)[:, :, 0][:, :, p_idx][..., a_idx])
    per_tau["student_recall"].append(np.asarray(res.student_target_mass, np.float64)[:, :, 0])
    per_tau["student_delta_over_beta"].append(np.asarray(res.student_delta_over_beta, np.float64)[:, :, 0])
    steps, budget, state = _alignment_stages(res, cfg)
    per_tau["steps"].append(steps)
    per_tau["max_steps"].append(budget)
    per_tau["plateau"].append(state)
    per_tau["quadrature_error"].append(res.tilt_quadrature_error)
    if on_tau is not None:
      on_tau(float(tau))
  stack = lambda k: np.stack(per_tau[k], axis=1)     # the tau axis after the seeds
  return PhaseGrid(seeds_np, taus_np, betas_np, student, stack("student_recall"), stack("student_delta_over_beta"),
                   *(stack(k) for k in law_keys), stack("steps"), stack("max_steps"), stack("plateau"),
                   np.asarray(per_tau["quadrature_error"], np.float64))


def _alignment_stages(res, config: MogConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(steps, budget, plateau state) of each pipeline's alignment stage, each (S, B, P, A)."""
  shape = res.metrics.shape[:2] + (len(PHASE_PIPELINES), len(PHASE_ALGORITHMS))
  steps = np.zeros(shape, np.int64)
  budget = np.zeros(shape, np.int64)
  state = np.full(shape, schema.PLATEAU_EXACT, dtype=object)
  for p, pipeline in enumerate(PHASE_PIPELINES):
    for a, algorithm in enumerate(PHASE_ALGORITHMS):
      if algorithm == "exact":
        continue
      run = ALIGNMENT_RUN[(pipeline, algorithm)]
      steps[..., p, a] = res.trained_steps[:, :, 0, run]
      budget[..., p, a] = config.pg_steps if algorithm == "pg" else config.dpo_steps
      if config.plateau is None:
        state[..., p, a] = schema.PLATEAU_FIXED
      else:
        state[..., p, a] = np.where(res.trained_reached[:, :, 0, run], schema.PLATEAU_REACHED, schema.PLATEAU_BUDGET)
  return steps, budget, state


def log_odds(mass) -> np.ndarray:
  """``log m - log(1 - m)`` clipped to +-:data:`LOG_ODDS_LIMIT` (+-inf at m = 1, 0 included)."""
  m = np.asarray(mass, dtype=np.float64)
  with np.errstate(divide="ignore", invalid="ignore"):
    out = np.log(m) - np.log1p(-m)
  return np.clip(out, -LOG_ODDS_LIMIT, LOG_ODDS_LIMIT)


def law_boundary(recall) -> np.ndarray:
  """The law's trap boundary ``log((1 - p)/p)``: the Delta/beta at which the optimum reaches 1/2."""
  p = np.asarray(recall, dtype=np.float64)
  with np.errstate(divide="ignore"):
    return np.log1p(-p) - np.log(p)


def phase_columns(grid: PhaseGrid, config: MogConfig, estimator: str | None = None) -> dict[str, np.ndarray]:
  """Tidy columns, one row per (seed, tau, beta, pipeline, algorithm) in that order."""
  from recall_theory.mog.report import ESTIMATOR
  from scipy.special import expit

  shape = grid.aligned_mass.shape
  s, t, b, p, a = (ix.ravel() for ix in np.indices(shape))
  cell = lambda x: np.asarray(x)[s, t, b]
  model = lambda x: np.asarray(x)[s, t, b, p, a]
  taus, betas = grid.taus[t], grid.betas[b]
  recall, y = cell(grid.student_recall), cell(grid.student_delta_over_beta)
  law = schema.law_columns(reference_recall=model(grid.reference_recall), delta_over_beta=model(grid.delta_over_beta),
                           aligned_mass=model(grid.aligned_mass), kl=model(grid.kl), n_samples=model(grid.n_samples),
                           sampler_recall=model(grid.sampler_recall), estimator=estimator or ESTIMATOR)
  state = model(grid.plateau)
  reached = np.where(state == schema.PLATEAU_REACHED, "yes",
                     np.where(state == schema.PLATEAU_EXACT, "exact", "no")).astype(object)
  return {
      "track": np.full(s.size, "mog", dtype=object),
      "pipeline": np.asarray(PHASE_PIPELINES, dtype=object)[p],
      "algorithm": np.asarray(PHASE_ALGORITHMS, dtype=object)[a],
      "seed": grid.seeds[s],
      "setting": np.asarray([f"student={grid.student};tau={ta:g};beta={be:g};target={config.target}"
                             for ta, be in zip(taus, betas)], dtype=object),
      "student": np.full(s.size, grid.student, dtype=object),
      "tau": taus,
      "beta": betas,
      "student_recall": recall,
      "student_delta_over_beta": y,
      "law_boundary": law_boundary(recall),
      "student_law_mass": expit(np.log(recall) - np.log1p(-recall) + y),
      "aligned_log_odds": log_odds(law["aligned_mass"]),
      "law_log_odds": np.clip(np.log(law["reference_recall"]) - np.log1p(-law["reference_recall"])
                              + law["delta_over_beta"], -LOG_ODDS_LIMIT, LOG_ODDS_LIMIT),
      **law,
      "steps": model(grid.steps),
      "max_steps": model(grid.max_steps),
      "plateau": state,
      "plateau_reached": reached,
      "tilt_quadrature_error": grid.tilt_quadrature_error[t],
  }


# ------------------------------------------------------------------------------ the summary
class Panel(NamedTuple):
  """One pipeline x algorithm of the map as arrays (S, T, B), betas sorted by index.

  ``y``: the student's Delta/beta; ``log_odds`` trained, ``law`` the pipeline's own law,
  ``ka_law`` K-A's law at the cell (the map's); ``state`` the plateau state (text).
  """
  seeds: np.ndarray
  taus: np.ndarray
  betas: np.ndarray
  recall: np.ndarray
  y: np.ndarray
  log_odds: np.ndarray
  law: np.ndarray
  ka_law: np.ndarray
  state: np.ndarray
  max_steps: np.ndarray


def panel(rows: Sequence[dict], pipeline: str, algorithm: str) -> Panel:
  """The rows of one pipeline x algorithm (as :func:`recall_theory.schema.read_results` gives
  them) as arrays over (seed, tau, beta); raises InputError when a cell is missing."""
  sel = [r for r in rows if r["pipeline"] == pipeline and r["algorithm"] == algorithm]
  if not sel:
    raise InputError(f"no rows for pipeline {pipeline!r}, algorithm {algorithm!r}")
  seeds = np.asarray(sorted({int(r["seed"]) for r in sel}))
  taus = np.asarray(sorted({float(r["tau"]) for r in sel}))
  betas = np.asarray(sorted({float(r["beta"]) for r in sel}))
  shape = (seeds.size, taus.size, betas.size)
  if len(sel) != math.prod(shape):
    raise InputError(f"{pipeline} {algorithm}: {len(sel)} rows for a grid of {shape} seeds x taus x betas")
  index = {(int(r["seed"]), float(r["tau"]), float(r["beta"])): r for r in sel}
  arrays = {k: np.empty(shape) for k in ("recall", "y", "log_odds", "law", "ka_law", "max_steps")}
  state = np.empty(shape, dtype=object)
  for i, s in enumerate(seeds):
    for j, t in enumerate(taus):
      for k, b in enumerate(betas):
        r = index[(int(s), float(t), float(b))]
        recall, y = float(r["student_recall"]), float(r["student_delta_over_beta"])
        arrays["recall"][i, j, k] = recall
        arrays["y"][i, j, k] = y
        arrays["log_odds"][i, j, k] = float(r["aligned_log_odds"])
        arrays["law"][i, j, k] = float(r["law_log_odds"])
        arrays["ka_law"][i, j, k] = np.clip(math.log(recall) - math.log1p(-recall) + y, -LOG_ODDS_LIMIT,
                                            LOG_ODDS_LIMIT)
        arrays["max_steps"][i, j, k] = float(r["max_steps"])
        state[i, j, k] = str(r["plateau"])
  return Panel(seeds, taus, betas, state=state, **arrays)


def column_crossing(y_B: np.ndarray, log_odds_B: np.ndarray) -> tuple[str, float]:
  """Where one column's trained log-odds cross 0 along Delta/beta: ``("crossed", y*)``,
  ``("above", nan)`` (>= 0 in every cell) or ``("below", nan)`` (< 0 in every cell).

  Cells are sorted by ``y``; ``y*`` interpolates linearly between the last cell below 0 and
  the next (module docstring); nothing is extrapolated.
  """
  order = np.argsort(y_B)
  y, l = np.asarray(y_B, float)[order], np.asarray(log_odds_B, float)[order]
  below = np.flatnonzero(l < 0)
  if below.size == 0:
    return "above", math.nan
  i = int(below[-1])
  if i == y.size - 1:
    return "below", math.nan
  return "crossed", float(y[i] - l[i] * (y[i + 1] - y[i]) / (l[i + 1] - l[i]))


def crossings(pan: Panel) -> dict[str, np.ndarray]:
  """Per (seed, tau): ``status`` (crossed / above / below), ``crossing`` y*, ``boundary``
  log((1-p)/p) of that seed's student and ``offset`` = crossing - boundary (nan where not crossed)."""
  n_s, n_t, _ = pan.y.shape
  status = np.empty((n_s, n_t), dtype=object)
  crossing = np.full((n_s, n_t), np.nan)
  for i in range(n_s):
    for j in range(n_t):
      status[i, j], crossing[i, j] = column_crossing(pan.y[i, j], pan.log_odds[i, j])
  boundary = law_boundary(pan.recall.mean(axis=2))   # the student does not depend on beta
  return {"status": status, "crossing": crossing, "boundary": boundary, "offset": crossing - boundary}


def summarize_panel(pan: Panel) -> dict:
  """The caption's numbers for one pipeline x algorithm (definitions: module docstring)."""
  n_s, n_t, n_b = pan.y.shape
  cell_trained, cell_law = pan.log_odds.mean(axis=0), pan.law.mean(axis=0)
  out = {
      "n_seeds": n_s, "n_cells": n_t * n_b, "n_seed_cells": n_s * n_t * n_b,
      "cells_on_law_side": int(np.sum((cell_trained >= 0) == (cell_law >= 0))),
      "seed_cells_on_law_side": int(np.sum((pan.log_odds >= 0) == (pan.law >= 0))),
      "cells_ka_trapped": int(np.sum(pan.ka_law.mean(axis=0) < 0)),
      "cells_escaped_where_ka_trapped": int(np.sum((pan.ka_law.mean(axis=0) < 0) & (cell_trained >= 0))),
      "cells_above": int(np.sum(cell_trained >= 0)),
      "trained": bool(np.any(pan.state != schema.PLATEAU_EXACT)),
      "runs_reached": int(np.sum(pan.state == schema.PLATEAU_REACHED)),
      "runs_budget": int(np.sum(pan.state == schema.PLATEAU_BUDGET)),
      "cells_all_reached": int(np.sum(np.all(pan.state == schema.PLATEAU_REACHED, axis=0))),
      "budget": int(np.max(pan.max_steps)),
  }
  cross = crossings(pan)
  out["columns"] = cross
  every = np.all(cross["status"] == "crossed", axis=0)            # (T,)
  out["common_columns"] = np.flatnonzero(every)
  if every.any():
    per_seed_crossing = cross["crossing"][:, every].mean(axis=1)
    per_seed_boundary = cross["boundary"][:, every].mean(axis=1)
    out["offset"] = stats.paired_comparison(per_seed_crossing, per_seed_boundary, resolution=OFFSET_RESOLUTION)
  else:
    out["offset"] = None
  return out


def summarize(rows: Sequence[dict]) -> dict[tuple[str, str], dict]:
  """:func:`summarize_panel` for every pipeline x algorithm of the rows."""
  return {(p, a): summarize_panel(panel(rows, p, a)) for p in PHASE_PIPELINES for a in PHASE_ALGORITHMS}


def boundary_columns(rows: Sequence[dict], summary: dict | None = None) -> dict[str, np.ndarray]:
  """Per pipeline, algorithm, seed and tau: the column's crossing status, crossing and offset."""
  summary = summary or summarize(rows)
  parts = {k: [] for k in ("pipeline", "algorithm", "seed", "tau", "student_recall", "law_boundary", "status",
                           "crossing", "offset", "crossed_by_every_seed")}
  for (pipeline, algorithm), summ in summary.items():
    pan = panel(rows, pipeline, algorithm)
    cross = summ["columns"]
    every = np.all(cross["status"] == "crossed", axis=0)
    for i, seed in enumerate(pan.seeds):
      for j, tau in enumerate(pan.taus):
        for key, value in (("pipeline", pipeline), ("algorithm", algorithm), ("seed", int(seed)), ("tau", tau),
                           ("student_recall", pan.recall[i, j].mean()), ("law_boundary", cross["boundary"][i, j]),
                           ("status", cross["status"][i, j]), ("crossing", cross["crossing"][i, j]),
                           ("offset", cross["offset"][i, j]), ("crossed_by_every_seed", "yes" if every[j] else "no")):
          parts[key].append(value)
  return {k: np.asarray(v, dtype=object if k in ("pipeline", "algorithm", "status", "crossed_by_every_seed")
                        else None) for k, v in parts.items()}


# ------------------------------------------------------------------------------ the caption
def _fmt(x: float) -> str:
  """Signed, two decimals; a value that rounds to zero is +0.00 (no -0.00)."""
  return f"{0.0 if round(x, 2) == 0 else x:+.2f}"


def _columns_not_crossed(pan: Panel, summ: dict) -> str:
  """'tau 0.07, 0.09 (p 2.7e-04, 9.3e-04): 5 below 1/2 in every cell; tau 0.11 (p 4.2e-03): 3 below 1/2
  in every cell, 2 cross' for the columns not crossed by every seed (columns with the same counts
  share a phrase); '' when every column is. p: the geometric mean over seeds."""
  cross = summ["columns"]
  groups: dict[str, list[int]] = {}
  for j in range(pan.taus.size):
    status = cross["status"][:, j]
    if np.all(status == "crossed"):
      continue
    counts = ", ".join(f"{int(np.sum(status == k))} {label}" for k, label in
                       (("above", "above 1/2 in every cell"), ("below", "below 1/2 in every cell"),
                        ("crossed", "cross")) if np.any(status == k))
    groups.setdefault(counts, []).append(j)
  recall = 10.0 ** np.log10(pan.recall).mean(axis=(0, 2))
  return "; ".join(f"tau {', '.join(f'{pan.taus[j]:g}' for j in cols)} "
                   f"(p {', '.join(f'{recall[j]:.2g}' for j in cols)}): {counts}" for counts, cols in groups.items())


def panel_text(pipeline: str, algorithm: str, pan: Panel, summ: dict) -> str:
  """One caption bullet: the share on the law's side, plateau counts and the boundary offset."""
  own_law = ("its law (the student's optimum)" if pipeline == "K-A"
             else "its own law (A-K's reference is the teacher: the aligned teacher's optimum)")
  text = (f"- **{pipeline}, {ALGORITHM_LABELS[algorithm]}**: {summ['cells_on_law_side']} of {summ['n_cells']} cells "
          f"(mean log-odds over {summ['n_seeds']} seeds) and {summ['seed_cells_on_law_side']} of "
          f"{summ['n_seed_cells']} seed-cells on the side of 1/2 of {own_law}")
  if pipeline != "K-A":
    text += (f"; at or above 1/2 in {summ['cells_escaped_where_ka_trapped']} of the {summ['cells_ka_trapped']} "
             "cells where K-A's law predicts the trap")
  text += ". "
  if summ["trained"]:
    stage = "alignment" if pipeline == "K-A" else "alignment of the teacher"
    text += (f"Plateau reached ({stage}): {summ['runs_reached']} of {summ['n_seed_cells']} runs; "
             f"{summ['runs_budget']} ran out of their {summ['budget']}-step budget first (not converged; hollow "
             f"markers); cells with every seed at its plateau: {summ['cells_all_reached']} of {summ['n_cells']}. ")
  else:
    text += "No training (the Gibbs tilt by quadrature). "
  off = summ["offset"]
  n_common = len(summ["common_columns"])
  reference = "K-A's law boundary" if pipeline != "K-A" else "the law's boundary"
  if off is None:
    text += f"Trained boundary minus {reference}: none (no tau column is crossed by every seed)"
  else:
    text += (f"Trained boundary minus {reference}: {_fmt(off['mean_diff'])} [{_fmt(off['ci_low'])}, "
             f"{_fmt(off['ci_high'])}] in Delta/beta (over the {n_common} of {pan.taus.size} tau columns every seed "
             f"crosses; {off['n_positive']}/{off['n']} seeds above +{OFFSET_RESOLUTION:g}, "
             f"{off['n_negative']}/{off['n']} below -{OFFSET_RESOLUTION:g}, sign p = {off['sign_p']:.2g})")
  missing = _columns_not_crossed(pan, summ)
  if missing:
    text += f". Columns not crossed by every seed: {missing}"
  return text + "."


def caption(rows: Sequence[dict], summary: dict | None = None, *, options_text: str = "",
            quadrature_error: float | None = None) -> str:
  """The figure's caption, every number from ``rows`` (the CSV as read back)."""
  summary = summary or summarize(rows)
  ka = panel(rows, "K-A", "exact")
  recalls = 10.0 ** np.log10(ka.recall).mean(axis=(0, 2))
  y_lo, y_hi = float(ka.y.min()), float(ka.y.max())
  law_lo, law_hi = float(ka.ka_law.mean(axis=0).min()), float(ka.ka_law.mean(axis=0).max())
  student = str(rows[0]["student"])
  lines = [
      f"**Trained phase map (MoG, {student} student).** Colour: log-odds of the aligned mass "
      f"log(m/(1-m)), mean over {ka.seeds.size} seeds (clipped to +-{LOG_ODDS_LIMIT:g}; colour scale +-10), at each "
      "cell's geometric means over seeds of the student's recall p (x) and of Delta/beta of the reward under the "
      "student (y), both axes logarithmic; markers: the seeds at "
      "their own (p, Delta/beta), up-triangles at or above 1/2, down-triangles below, hollow where the alignment "
      "ran out of its budget before its plateau. Dashed: the law's boundary Delta/beta = log((1-p)/p), where "
      "sigmoid(logit p + Delta/beta) = 1/2 (K-A escapes above it). Top row K-A (the student aligned); bottom row "
      "A-K (the teacher aligned, then distilled at the same tau), drawn at K-A's coordinates.",
      "",
      f"Grid: tau = {', '.join(f'{t:g}' for t in ka.taus)} (student recall "
      f"{', '.join(f'{p:.2g}' for p in recalls)}, geometric means over seeds) x beta = "
      f"{', '.join(f'{b:g}' for b in ka.betas)} (Delta/beta from {y_lo:.3g} to {y_hi:.3g}) x seeds "
      f"{', '.join(str(int(s)) for s in ka.seeds)}; K-A's law log-odds logit p + Delta/beta at the cells (means "
      f"over seeds) run from {law_lo:+.1f} to {law_hi:+.1f}, i.e. from {-law_lo / math.log(10):.1f} decades of "
      f"recall below the boundary to {law_hi / math.log(10):.1f} above it. A cell is on the law's side when the mean over seeds of the "
      "trained log-odds and of the law's log-odds have the same sign; seed-cells count seed by seed. The trained "
      "boundary of a (seed, tau) column is where its log-odds cross 0 along Delta/beta, by linear interpolation "
      "between the last cell below 1/2 and the next (never extrapolated); its offset is that Delta/beta minus "
      "log((1-p)/p) of the seed's student (positive: more Delta/beta needed than the law says). Per panel: the "
      "mean over seeds of each seed's mean offset over the tau columns every seed crosses, with the paired "
      "Student-t 95% interval and the exact two-sided sign test over the seeds beyond the resolution "
      f"+-{OFFSET_RESOLUTION:g}.",
      ""]
  if quadrature_error is not None:
    lines += [f"Exact tilts: masses by an edge-aligned Gauss-Legendre rule, resolution {quadrature_error:.2g} in "
              "mass (largest change on a refined rule). A-K's exact model is the teacher's exact tilt distilled by "
              "exact KD (EM on the grid) at the same tau.", ""]
  for (pipeline, algorithm), summ in summary.items():
    lines.append(panel_text(pipeline, algorithm, panel(rows, pipeline, algorithm), summ))
  if options_text:
    lines += ["", f"Options: {options_text}."]
  return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ the figure data
def _cell_corners(centres_TxB: np.ndarray) -> np.ndarray:
  """Corners (T+1, B+1) of the quadrilateral cells around centres (T, B): the mean of the four
  neighbouring centres, the grid extended by one linearly extrapolated row and column per side."""
  c = np.asarray(centres_TxB, dtype=np.float64)
  ext = np.empty((c.shape[0] + 2, c.shape[1] + 2))
  ext[1:-1, 1:-1] = c
  ext[0, 1:-1], ext[-1, 1:-1] = 2 * c[0] - c[1], 2 * c[-1] - c[-2]
  ext[:, 0], ext[:, -1] = 2 * ext[:, 1] - ext[:, 2], 2 * ext[:, -2] - ext[:, -3]
  return 0.25 * (ext[:-1, :-1] + ext[1:, :-1] + ext[:-1, 1:] + ext[1:, 1:])


def figure_data(rows: Sequence[dict]) -> dict[str, np.ndarray]:
  """The arrays the figure draws (saved as its ``_data.npz``), keyed ``<what>`` or ``<what>__<P>__<A>``."""
  data: dict[str, np.ndarray] = {"pipelines": np.asarray(PHASE_PIPELINES), "algorithms": np.asarray(PHASE_ALGORITHMS),
                                 "log_odds_limit": np.asarray(LOG_ODDS_LIMIT)}
  for pipeline in PHASE_PIPELINES:
    for algorithm in PHASE_ALGORITHMS:
      pan = panel(rows, pipeline, algorithm)
      key = f"__{pipeline}__{algorithm}"
      # cells sit at the geometric means over seeds of p and Delta/beta (both axes are logarithmic)
      log10_p = np.broadcast_to(np.log10(pan.recall).mean(axis=(0, 2))[:, None], pan.y.shape[1:])
      log10_y = np.log10(pan.y).mean(axis=0)
      data.update({
          "seed_recall" + key: pan.recall, "seed_delta_over_beta" + key: pan.y, "seed_log_odds" + key: pan.log_odds,
          "seed_budget" + key: pan.state == schema.PLATEAU_BUDGET,
          "cell_log_odds" + key: pan.log_odds.mean(axis=0),
          "corner_recall" + key: 10.0 ** _cell_corners(log10_p),
          "corner_delta_over_beta" + key: 10.0 ** _cell_corners(log10_y),
      })
      if pipeline == PHASE_PIPELINES[0] and algorithm == PHASE_ALGORITHMS[0]:
        data.update({"seeds": pan.seeds, "taus": pan.taus, "betas": pan.betas})
  recall = np.concatenate([np.ravel(data[f"seed_recall__{p}__{a}"]) for p in PHASE_PIPELINES
                           for a in PHASE_ALGORITHMS])
  corners = np.concatenate([np.ravel(data[f"corner_recall__{p}__{a}"]) for p in PHASE_PIPELINES
                            for a in PHASE_ALGORITHMS])
  # the boundary reaches Delta/beta = 0 at p = 1/2, off a logarithmic axis: drawn up to p = 0.45
  line_p = np.geomspace(min(recall.min(), corners.min()), min(max(recall.max(), corners.max()), 0.45), 200)
  data.update({"boundary_recall": line_p, "boundary_delta_over_beta": law_boundary(line_p)})
  return data


# ------------------------------------------------------------------------------ the run
def write_phase_map(out_dir, grid: PhaseGrid, config: MogConfig, *, options_text: str = "") -> list[Path]:
  """Write the CSVs, the figure (with its data) and the caption of ``grid`` into ``out_dir``.

  The summary, the caption and the figure are computed from the CSV as written and read back,
  so every number in them can be recomputed from the file.
  """
  from recall_theory.mog.figures import plot_trained_phase

  out = Path(out_dir)
  cols = phase_columns(grid, config)
  schema.report_ceiling_violations(cols, where="mog --phase-map")
  paths = [io.write_columns_csv(out / f"{FILE_STEM}.csv", cols)]
  rows = schema.read_results(paths[0])
  summary = summarize(rows)
  paths.append(io.write_columns_csv(out / f"{FILE_STEM}_boundary.csv", boundary_columns(rows, summary)))
  paths += plot_trained_phase(out, figure_data(rows), name=FILE_STEM)
  text = caption(rows, summary, options_text=options_text,
                 quadrature_error=float(np.max(grid.tilt_quadrature_error)))
  paths.append(io.write_text(out / f"{FILE_STEM}_caption.md", text))
  return paths


def run_phase_map(out_dir, config: MogConfig, taus: Sequence[float], betas: Sequence[float], seeds: Sequence[int], *,
                  student: str = "4-mode", dtype=None, chunk_size: int | None = None, options_text: str = "",
                  log: Callable[[str], None] | None = None) -> list[Path]:
  """Train the phase map (:func:`run_phase_grid`) and write it (:func:`write_phase_map`)."""
  from recall_theory import progress

  taus_np = check_axis("taus", taus)
  with progress.stage("mog phase map", total=taus_np.size, unit="taus") as bar:
    grid = run_phase_grid(config, taus_np, betas, seeds, student=student, dtype=dtype, chunk_size=chunk_size,
                          on_tau=lambda _tau: bar.update(1))
  paths = write_phase_map(out_dir, grid, config, options_text=options_text)
  if log is not None:
    log(f"mog --phase-map: {grid.seeds.size} seeds x {taus_np.size} taus x {grid.betas.size} betas, "
        f"{len(paths)} files")
  return paths
