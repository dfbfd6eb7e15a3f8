"""The ``recall-theory mog`` experiment: grid run, tidy CSVs, the figure set, generated notes.

:func:`run_mog` writes into ``out_dir``:

* ``mog_results.csv``: one row per (pipeline, algorithm, student, beta, seed), pipelines K-A, A-K,
  K-A(teacher-ref), A-K(tau) and A (the aligned teacher, A-K's first step), with the shared
  :data:`recall_theory.schema.ID_COLUMNS`, every metric of :data:`recall_theory.mog.metrics.METRICS`
  and the law's :data:`recall_theory.schema.LAW_COLUMNS` (exact: orthant cdf and edge-aligned
  quadrature, see :mod:`recall_theory.mog.region`);
* ``mog_summary.csv``: mean and sample sd (ddof = 1) over seeds of every metric and of the law's
  prediction, per pipeline, algorithm, student, beta;
* ``mog_gap.csv``: A-K minus K-A in reward and target mass, paired by seed: mean, sample sd,
  Student-t interval, sign counts and verdict (ahead / behind / tie at the stated resolution);
* ``mog_summary.txt`` and ``mog_notes.md``: generated from those numbers only;
* figures ``mog_densities``, ``mog_metrics_<student>``, ``mog_tradeoff``, ``mog_phase``
  (each .pdf, .png and _data.npz).

Law columns of the A-K rows: A-K's aligned model is the aligned teacher (row "A", reference the
teacher); the distilled A-K student is recorded against the same reference (the teacher), with
the teacher's p_ref and Delta/beta, so its prediction is the aligned teacher's optimum and its
KL is KL(A-K student || teacher).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from recall_theory import io, schema, stats
from recall_theory.mog.metrics import METRICS
from recall_theory.mog.setup import ALGORITHMS, ALIGNED_TEACHER, PIPELINES, RESULT_PIPELINES, TARGETS, MogConfig

# Target masses closer than this count as a tie (absolute mass): far above the quadrature and
# cdf error of the masses (reported with each run), below any difference a reader would act on.
MASS_RESOLUTION = 1e-3
# Rewards: E_q[R] in [0, 1], the same resolution.
REWARD_RESOLUTION = 1e-3
ESTIMATOR = ("exact: target masses by the bivariate normal cdf (mixtures) and an edge-aligned "
             "Gauss-Legendre rule (Gibbs tilts); KL by quadrature")


def _trained_samples(config: MogConfig) -> dict[str, int]:
  """Sampler draws each algorithm trains on: 0 (exact), on-policy PG samples, 2 per DPO pair."""
  return {"exact": 0, "pg": config.pg_steps * config.pg_batch, "dpo": 2 * config.dpo_pairs}


def law_arrays(res, config: MogConfig) -> dict[str, np.ndarray]:
  """The law's inputs per (S, B, V, P, A): p_ref, Delta/beta, aligned mass, KL, n, sampler recall.

  K-A's reference is the student; every other pipeline's is the teacher. Samplers: PG samples
  on-policy from its initial policy (the student for K-A and the control, the teacher for A);
  DPO's pairs come from the reference (student for K-A, teacher otherwise); the A-K rows carry
  the draws of the aligned teacher they distil.
  """
  shape = res.metrics.shape[:5]
  p_idx = np.arange(len(RESULT_PIPELINES)).reshape(1, 1, 1, -1, 1)
  a_idx = np.arange(len(ALGORITHMS)).reshape(1, 1, 1, 1, -1)
  is_ka = p_idx == RESULT_PIPELINES.index("K-A")
  expand = lambda x: np.asarray(x)[..., None, None]
  p_ref = np.where(is_ka, expand(res.student_target_mass), expand(res.teacher_target_mass))
  delta = np.where(is_ka, expand(res.student_delta_over_beta), expand(res.teacher_delta_over_beta))
  n_by_algo = _trained_samples(config)
  n = np.asarray([n_by_algo[a] for a in ALGORITHMS], dtype=float)[a_idx]
  student_init = is_ka | (p_idx == RESULT_PIPELINES.index("K-A(teacher-ref)"))
  pg = a_idx == ALGORITHMS.index("pg")
  sampler = np.where(pg & student_init, expand(res.student_target_mass), p_ref)
  return {
      "reference_recall": np.broadcast_to(p_ref, shape),
      "delta_over_beta": np.broadcast_to(delta, shape),
      "aligned_mass": res.metrics[..., METRICS.index("target_mass")],
      "kl": res.metrics[..., METRICS.index("kl_to_reference")],
      "n_samples": np.broadcast_to(n, shape),
      "sampler_recall": np.broadcast_to(sampler, shape),
  }


def law_table(res, config: MogConfig) -> dict[str, np.ndarray]:
  """schema.law_columns over every aligned model of the grid, flattened in (S, B, V, P, A) order."""
  arrays = law_arrays(res, config)
  estimator = ESTIMATOR
  if config.label_noise > 0:
    estimator += (f"; dpo with label noise {config.label_noise:g}: Delta/beta of the noise-free "
                  "Bradley-Terry reward (the noisy labels' optimum is not a Gibbs tilt)")
  return schema.law_columns(**{k: v.ravel() for k, v in arrays.items()}, estimator=estimator)


# Trained runs of the grid per (pipeline, algorithm): their index in GridResult.trained_* (TRAINERS order).
_TRAINED_INDEX = {("K-A", "pg"): 0, (ALIGNED_TEACHER, "pg"): 1, ("K-A(teacher-ref)", "pg"): 2,
                  ("K-A", "dpo"): 3, (ALIGNED_TEACHER, "dpo"): 4, ("K-A(teacher-ref)", "dpo"): 5}


def training_table(res, config: MogConfig) -> dict[str, np.ndarray]:
  """:data:`recall_theory.schema.TRAINING_COLUMNS` over the grid, flattened in (S, B, V, P, A) order.

  Trained runs (PG, DPO of K-A, A and the control): steps used, the budget, ``reached`` or
  ``budget`` by the plateau rule (``fixed`` for a config without one), the held-out objective,
  its optimum and the sub-optimality (PG: ``log Z - J/beta``; DPO: held-out loss minus the
  tilt's; nan with label noise, whose minimiser is not a tilt). A-K and A-K(tau) end in a fixed-iteration distillation (``fixed``); the exact
  algorithm is ``exact``. ``kl_to_optimum`` = KL(q || the law's optimum) =
  ``KL(q || pi_ref) + log Z - E_q[R]/beta`` (grid quadrature, ``log Z`` of the reference's tilt
  from the region rule); 0 for the exact tilts (they are the optimum), nan for the A-K rows
  (a distillation after alignment has no optimum in the law).
  """
  shape = res.metrics.shape[:5]
  n_s, n_b, n_v, n_p, n_a = shape
  steps = np.zeros(shape, np.int64)
  budget = np.zeros(shape, np.int64)
  state = np.full(shape, schema.PLATEAU_EXACT, dtype=object)
  objective = np.full(shape, np.nan)
  optimum = np.full(shape, np.nan)
  subopt = np.full(shape, np.nan)
  kl_opt = np.full(shape, np.nan)
  betas = res.betas.reshape(1, -1, 1)
  log_z_student = res.trained_optimum[..., 0] if res.trained_optimum is not None else None
  log_z_teacher = res.trained_optimum[..., 1] if res.trained_optimum is not None else None
  reward = res.metrics[..., METRICS.index("reward")]
  kl_ref = res.metrics[..., METRICS.index("kl_to_reference")]
  for p, pipeline in enumerate(RESULT_PIPELINES):
    for a, algorithm in enumerate(ALGORITHMS):
      if algorithm == "exact":
        if pipeline in ("K-A", ALIGNED_TEACHER):
          kl_opt[..., p, a] = 0.0
        elif pipeline == "K-A(teacher-ref)" and log_z_teacher is not None:
          kl_opt[..., p, a] = kl_ref[..., p, a] + log_z_teacher - reward[..., p, a] / betas
        continue
      if pipeline not in ("K-A", ALIGNED_TEACHER, "K-A(teacher-ref)"):
        steps[..., p, a] = budget[..., p, a] = config.em_iters
        state[..., p, a] = schema.PLATEAU_FIXED
        continue
      t = _TRAINED_INDEX[(pipeline, algorithm)]
      steps[..., p, a] = res.trained_steps[..., t]
      budget[..., p, a] = config.pg_steps if algorithm == "pg" else config.dpo_steps
      state[..., p, a] = (schema.PLATEAU_FIXED if config.plateau is None else
                          np.where(res.trained_reached[..., t], schema.PLATEAU_REACHED, schema.PLATEAU_BUDGET))
      objective[..., p, a] = res.trained_objective[..., t]
      if algorithm == "dpo" and config.label_noise > 0:
        continue  # noisy labels: DPO's minimiser is not the tilt, so no optimum to measure against
      optimum[..., p, a] = res.trained_optimum[..., t]
      subopt[..., p, a] = (optimum[..., p, a] - objective[..., p, a] if algorithm == "pg"
                           else objective[..., p, a] - optimum[..., p, a])
      log_z = log_z_student if pipeline == "K-A" else log_z_teacher
      kl_opt[..., p, a] = kl_ref[..., p, a] + log_z - reward[..., p, a] / betas
  return {"steps": steps.ravel(), "max_steps": budget.ravel(), "plateau": state.ravel(),
          "objective": objective.ravel(), "objective_optimum": optimum.ravel(),
          "suboptimality": subopt.ravel(), "kl_to_optimum": kl_opt.ravel()}


def results_columns(res, config: MogConfig | None = None) -> dict[str, np.ndarray]:
  """Flatten a GridResult into tidy columns: shared ids, student, beta, metrics, law columns."""
  config = config or MogConfig()
  s, b, v, p, a = np.meshgrid(np.arange(len(res.seeds)), np.arange(len(res.betas)), np.arange(len(res.students)),
                              np.arange(len(RESULT_PIPELINES)), np.arange(len(ALGORITHMS)), indexing="ij")
  students = np.asarray(res.students)[v.ravel()]
  betas = res.betas[b.ravel()]
  cols = {
      "track": np.full(s.size, "mog", dtype=object),
      "pipeline": np.asarray(RESULT_PIPELINES)[p.ravel()],
      "algorithm": np.asarray(ALGORITHMS)[a.ravel()],
      "seed": res.seeds[s.ravel()],
      "setting": np.asarray([f"student={st};beta={be:g};target={config.target}" for st, be in zip(students, betas)],
                            dtype=object),
      "student": students,
      "beta": betas,
  }
  for m, name in enumerate(METRICS):
    cols[name] = res.metrics[..., m].ravel()
  law = law_table(res, config)
  cols["reference_target_mass"] = law["reference_recall"]
  cols.update(law)
  if res.trained_steps is not None:
    cols.update(training_table(res, config))
  return cols


def _mean_sd_over_seeds(values_SxN: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per column: (mean, sample sd) over the seed axis via :func:`recall_theory.stats.mean_sd`."""
  flat = values_SxN.reshape(values_SxN.shape[0], -1)
  out = np.asarray([stats.mean_sd(flat[:, j])[:2] for j in range(flat.shape[1])])
  return out[:, 0].reshape(values_SxN.shape[1:]), out[:, 1].reshape(values_SxN.shape[1:])


def summary_columns(res, config: MogConfig | None = None) -> dict[str, np.ndarray]:
  """Mean and sample sd (ddof = 1) over seeds per (pipeline, algorithm, student, beta)."""
  config = config or MogConfig()
  b, v, p, a = np.meshgrid(np.arange(len(res.betas)), np.arange(len(res.students)), np.arange(len(RESULT_PIPELINES)),
                           np.arange(len(ALGORITHMS)), indexing="ij")
  cols = {"pipeline": np.asarray(RESULT_PIPELINES)[p.ravel()], "algorithm": np.asarray(ALGORITHMS)[a.ravel()],
          "student": np.asarray(res.students)[v.ravel()], "beta": res.betas[b.ravel()],
          "n_seeds": np.full(b.size, len(res.seeds))}
  for m, name in enumerate(METRICS):
    mean, sd = _mean_sd_over_seeds(res.metrics[..., m])
    cols[f"{name}_mean"], cols[f"{name}_sd"] = mean.ravel(), sd.ravel()
  law = law_table(res, config)
  shape = res.metrics.shape[:5]
  for name in ("reference_recall", "predicted_mass", "expected_target_samples", "kl_ceiling"):
    mean, sd = _mean_sd_over_seeds(np.asarray(law[name], dtype=float).reshape(shape))
    cols[f"{name}_mean"], cols[f"{name}_sd"] = mean.ravel(), sd.ravel()
  return cols


def _comparison(res, name: str, b: int, v: int, a: int, first: str = "A-K", second: str = "K-A") -> dict:
  m = METRICS.index(name)
  i, j = RESULT_PIPELINES.index(first), RESULT_PIPELINES.index(second)
  resolution = MASS_RESOLUTION if name == "target_mass" else REWARD_RESOLUTION
  return stats.paired_comparison(res.metrics[:, b, v, i, a, m], res.metrics[:, b, v, j, a, m], resolution)


def gap_columns(res) -> dict[str, np.ndarray]:
  """A-K minus K-A (paired by seed) in reward and target mass: mean, sample sd, interval, signs, verdict."""
  b, v, a = np.meshgrid(np.arange(len(res.betas)), np.arange(len(res.students)), np.arange(len(ALGORITHMS)),
                        indexing="ij")
  cols = {"algorithm": np.asarray(ALGORITHMS)[a.ravel()], "student": np.asarray(res.students)[v.ravel()],
          "beta": res.betas[b.ravel()]}
  for name in ("reward", "target_mass"):
    cmps = [_comparison(res, name, bi, vi, ai) for bi, vi, ai in zip(b.ravel(), v.ravel(), a.ravel())]
    for key, col in (("mean_diff", "gap_mean"), ("sd_diff", "gap_sd"), ("ci_low", "gap_ci_low"),
                     ("ci_high", "gap_ci_high"), ("n_positive", "ak_higher_seeds"),
                     ("n_negative", "ak_lower_seeds"), ("n_tied", "tied_seeds"), ("verdict", "ak_verdict")):
      cols[f"{name}_{col}"] = np.asarray([c[key] for c in cmps])
    cols[f"{name}_resolution"] = np.asarray([c["resolution"] for c in cmps])
  return cols


def _options_line(options: dict | None, config: MogConfig) -> str:
  from recall_theory.options import describe_options
  text = describe_options(dict(options or {}))
  target = "two-target run (targets (1, 1) and (-1, 1))" if config.target == "two" else "one target (1, 1)"
  return f"options: {text}; {target}"


def _fmt_mass(x: float) -> str:
  return f"{x:.3g}"


def verdict_lines(res) -> list[str]:
  """Per student and algorithm: A-K vs K-A in target mass at every beta, one generated phrase each."""
  lines = []
  tm = METRICS.index("target_mass")
  ka, ak = RESULT_PIPELINES.index("K-A"), RESULT_PIPELINES.index("A-K")
  for v, student in enumerate(res.students):
    for a, algo in enumerate(ALGORITHMS):
      lines.append(f"* {student} student, {algo}:")
      for b, beta in enumerate(res.betas):
        cmp = _comparison(res, "target_mass", b, v, a)
        text = stats.describe_comparison(cmp, "A-K", "K-A", fmt=".3g")
        mean_ak = stats.mean_sd(res.metrics[:, b, v, ak, a, tm])[0]
        mean_ka = stats.mean_sd(res.metrics[:, b, v, ka, a, tm])[0]
        lines.append(f"  - beta {beta:.3g}: {text}; mean target mass A-K {_fmt_mass(mean_ak)}, "
                     f"K-A {_fmt_mass(mean_ka)}.")
  return lines


def verdict_counts(res) -> dict[tuple[str, str], dict[str, int]]:
  """{(student, algorithm): {"ahead": n_betas, "behind": ..., "tie": ...}} for target mass."""
  out = {}
  for v, student in enumerate(res.students):
    for a, algo in enumerate(ALGORITHMS):
      counts = {"ahead": 0, "behind": 0, "tie": 0}
      for b in range(len(res.betas)):
        counts[_comparison(res, "target_mass", b, v, a)["verdict"]] += 1
      out[(student, algo)] = counts
  return out


def summary_text(res, config: MogConfig | None = None, options: dict | None = None) -> str:
  """The run in a few lines: set-up, options, reference recalls, A-K vs K-A verdict counts."""
  config = config or MogConfig()
  lines = [f"{len(res.seeds)} seeds x {len(res.betas)} betas ({res.betas.min():g}..{res.betas.max():g}) "
           f"x students {', '.join(res.students)}", _options_line(options, config)]
  for v, student in enumerate(res.students):
    mean, sd, n = stats.mean_sd(res.student_target_mass[:, 0, v])
    lines.append(f"{student} student's exact recall of the target: mean {mean:.3g} (sd {sd:.2g}, n = {n}); "
                 f"seed {res.seeds[0]}: {res.student_target_mass[0, 0, v]:.3g}")
  mean, sd, n = stats.mean_sd(res.teacher_target_mass[:, 0, 0])
  lines.append(f"teacher's exact recall of the target: mean {mean:.3g} (sd {sd:.2g}, n = {n})")
  lines.append(f"A-K vs K-A in target mass (paired over seeds, t 95% interval; tie below {MASS_RESOLUTION:g} "
               "absolute mass); number of betas:")
  for (student, algo), c in verdict_counts(res).items():
    lines.append(f"  {student:7s} {algo:5s}: A-K ahead {c['ahead']}, behind {c['behind']}, tie {c['tie']}")
  lines += plateau_lines(res, config)
  lines.append(stats.SD_CAPTION)
  return "\n".join(lines)


def plateau_lines(res, config: MogConfig) -> list[str]:
  """How the trained runs ended: plateau reached or budget, steps used, per trainer."""
  if res.trained_steps is None:
    return []
  if config.plateau is None:
    return [f"trained runs: fixed steps (pg {config.pg_steps}, dpo {config.dpo_steps}), no plateau rule"]
  rule = config.plateau
  lines = [f"training to the plateau (recall_theory.plateau: first check {rule.first_check} steps, then at "
           f"every doubling; held-out objective within {rule.objective_tolerance:g} nats and mass within "
           f"{rule.mass_logit_tolerance:g} logit or {rule.mass_tolerance:g}; budgets pg {config.pg_steps}, "
           f"dpo {config.dpo_steps} steps); runs that reached it / all, steps used (min-max):"]
  for name, t in _TRAINED_INDEX.items():
    reached = res.trained_reached[..., t]
    steps = res.trained_steps[..., t]
    lines.append(f"  {name[1]:3s} {name[0]:17s}: {int(reached.sum())}/{reached.size}, steps "
                 f"{int(steps.min())}-{int(steps.max())}")
  return lines


def _law_lines(res, config: MogConfig) -> list[str]:
  law = law_table(res, config)
  shape = res.metrics.shape[:5]
  pred = np.asarray(law["predicted_mass"], dtype=float).reshape(shape)
  meas = np.asarray(law["aligned_mass"], dtype=float).reshape(shape)
  expected = np.asarray(law["expected_target_samples"], dtype=float).reshape(shape)
  above = np.asarray(law["above_ceiling"], dtype=bool)
  ex, pg, dpo = (ALGORITHMS.index(a) for a in ("exact", "pg", "dpo"))
  ka, teacher = RESULT_PIPELINES.index("K-A"), RESULT_PIPELINES.index(ALIGNED_TEACHER)
  lines = ["Every aligned model's row in `mog_results.csv` carries the law (theory item 12): "
           "p_ref, Delta/beta = (L_A - L_{A^c})/beta of the reward R under that reference, the predicted "
           "optimum sigmoid(logit p_ref + Delta/beta), the measured mass, the expected number of target "
           "samples among the draws it trained on, the KL paid and the KL-budget ceiling.", ""]
  dev = max(np.max(np.abs(meas[..., ka, ex] - pred[..., ka, ex])), np.max(np.abs(meas[..., teacher, ex] - pred[..., teacher, ex])))
  lines.append(f"* Exact tilts (K-A exact, A exact): the measured mass equals the prediction to {dev:.1g} "
               "(the law is exact for the Gibbs tilt).")
  for a, algo in ((pg, "pg"), (dpo, "dpo")):
    for p, pipe in ((ka, "K-A"), (teacher, "A (aligned teacher)")):
      gap = meas[..., p, a] - pred[..., p, a]
      lines.append(f"* {algo} {pipe}: measured minus predicted mass, median {np.median(gap):.3g}, "
                   f"range [{gap.min():.3g}, {gap.max():.3g}] over {gap.size} runs; expected target samples "
                   f"median {np.median(expected[..., p, a]):.3g} (range {expected[..., p, a].min():.3g} to "
                   f"{expected[..., p, a].max():.3g}).")
  lines.append(f"* Runs above their KL ceiling: {int(above.sum())} of {above.size} (any would be a bug).")
  lines.append(f"* Quadrature resolution of the tilted masses (largest change under a refined rule): "
               f"{res.tilt_quadrature_error:.1g}.")
  return lines


def notes_text(res, config: MogConfig, options: dict | None = None) -> str:
  """Notes generated from the run's numbers: reference recalls, the law, verdicts, recall puzzle, control."""
  ka, ak, akt, ctl = (RESULT_PIPELINES.index(p) for p in ("K-A", "A-K", "A-K(tau)", "K-A(teacher-ref)"))
  ex = ALGORITHMS.index("exact")
  tm, rc = METRICS.index("target_mass"), METRICS.index("recall")
  lines = ["# Notes on the Mixture-of-Gaussians figures (generated from this run's numbers)", "",
           "```", summary_text(res, config, options), "```", "",
           "## The law beside every aligned model", ""] + _law_lines(res, config) + [
           "", "## A-K against K-A, per beta", "",
           f"Paired over seeds (same seed, same teacher); `ahead` needs the Student-t 95% interval of the "
           f"mean difference above 0 and a mean difference above {MASS_RESOLUTION:g} absolute target mass; "
           "otherwise the pipelines tie.", ""] + verdict_lines(res)
  lines += ["", "## Overall recall E_p*[log q] against target mass (exact alignment)", ""]
  for v, student in enumerate(res.students):
    mean = res.metrics[:, :, v].mean(0)
    higher = [b for b in range(len(res.betas)) if mean[b, ka, ex, rc] > mean[b, ak, ex, rc]]
    if not higher:
      lines.append(f"* {student} student: K-A never has the higher mean recall (exact alignment).")
      continue
    lines.append(f"* {student} student: K-A has the higher mean recall at beta = "
                 + ", ".join(f"{res.betas[b]:.3g}" for b in higher) + ":")
    for b in higher:
      lines.append(f"  - beta {res.betas[b]:.3g}: recall K-A {mean[b, ka, ex, rc]:.1f} vs A-K {mean[b, ak, ex, rc]:.1f}; "
                   f"target mass K-A {mean[b, ka, ex, tm]:.3g} vs A-K {mean[b, ak, ex, tm]:.3g}; "
                   f"A-K(tau) recall {mean[b, akt, ex, rc]:.1f} with target mass {mean[b, akt, ex, tm]:.3g}.")
  lines += ["", "Best mean recall among the betas at which a pipeline's mean target mass is at least 0.9 "
            "(exact alignment; the masses differ, so this is not a comparison at equal mass):"]
  for v, student in enumerate(res.students):
    mean = res.metrics[:, :, v].mean(0)
    parts = []
    for p in (ka, ak, akt):
      ok = mean[:, p, ex, tm] >= 0.9
      if ok.any():
        b = int(np.flatnonzero(ok)[np.argmax(mean[ok, p, ex, rc])])
        parts.append(f"{RESULT_PIPELINES[p]} recall {mean[b, p, ex, rc]:.1f} at mass {mean[b, p, ex, tm]:.3f} "
                     f"(beta {res.betas[b]:.3g})")
      else:
        parts.append(f"{RESULT_PIPELINES[p]} never")
    lines.append(f"* {student} student: " + "; ".join(parts) + ".")
  lines += ["",
            "Overall recall E_p*[log q] is the log-density a model keeps on *every* mode of p*, so it is",
            "dominated by the modes a model does not cover, through the thinness of its tails: a model that",
            "left its reference's spread intact can score a higher recall than one that moved its mass to the",
            "target. Aligning by a Gibbs tilt reweights the reference; A-K's student is refitted to an aligned",
            "teacher. Neither makes E_p*[log q] a measure of recall of the desirable behaviour.", "",
            "## The control (K-A with the teacher as reference)", "",
            "With the high-recall teacher as pi_ref the optimum of the objective lifts the target (row A). The",
            "exact control draws no samples, so wherever it stays below that optimum the cause is not sampling:",
            "it is the optimisation within the student family (reverse-KL descent from the student, whose",
            "components sit away from the target). PG samples on-policy from the student, DPO's pairs come from",
            "the teacher. Betas at which the control's mean target mass reaches 1/2:"]
  for v, student in enumerate(res.students):
    parts = []
    for a, algo in enumerate(ALGORITHMS):
      mean = res.metrics[:, :, v, ctl, a, tm].mean(0)
      hit = [f"{res.betas[b]:.3g}" for b in range(len(res.betas)) if mean[b] >= 0.5]
      parts.append(f"{algo}: " + (", ".join(hit) if hit else "none")
                   + f" (mean mass {mean.min():.3g} to {mean.max():.3g})")
    lines.append(f"* {student} student: " + "; ".join(parts) + ".")
  lines += ["", f"Set-up: {len(config.students)} students ({', '.join(config.students)}), KD temperature "
            f"{config.kd_temperature:g}, recovery temperature {config.kd_recovery_temperature:g}, selection "
            f"margin {config.selection_margin:g}, bump reward width {config.reward_width:g}, "
            f"target {config.target!r}, grid {config.grid_n}x{config.grid_n}; {stats.SD_CAPTION}."]
  return "\n".join(lines) + "\n"


def _figure_pool(workers: int):
  """A pool of ``workers`` spawned processes for the metrics figures, or None for none.

  Spawned (not forked): the parent runs XLA's threads, which a fork would copy half-way. The
  figures are drawn from the same arrays with the same matplotlib and style, so their bytes do
  not depend on which process draws them; hooks of
  :func:`recall_theory.plotting.style.before_save` live in this process only, so callers that
  install them (the figure checks) keep the default ``figure_workers=0``.
  """
  if workers <= 0:
    return None
  import concurrent.futures
  import multiprocessing
  pool = concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
  for _ in range(workers):
    pool.submit(_import_figures)  # its start-up and imports overlap the grid run
  return pool


def _import_figures() -> None:
  import recall_theory.mog.figures  # noqa: F401


def run_mog(out_dir, config: MogConfig, seeds: Sequence[int], betas: Sequence[float], *, dtype=None,
            phase_points: int = 17, log=print, options: dict | None = None,
            chunk_size: int | None = None, figure_workers: int = 0) -> list[Path]:
  """Run the grid, write CSVs and figures into ``out_dir``; returns the written paths.

  ``options``: the non-default command-line options, named in the summary and the notes.
  ``figure_workers``: processes that draw the two metrics figures (24 panels each, the slowest)
  while this one writes the tables, draws the other figures and computes the phase map (0: all
  here; the command line uses 1). The worker starts before the grid so its imports overlap it.
  Prints one loud line per aligned model above its KL ceiling (there should be none).
  """
  import time

  from recall_theory import progress
  from recall_theory.mog.grid_run import run_grid

  out = Path(out_dir)
  pool = _figure_pool(figure_workers)
  try:
    t0 = time.perf_counter()
    n_runs = len(list(seeds)) * len(list(betas)) * len(config.students)
    with progress.stage("mog grid (compile + run)", total=n_runs, unit="runs") as bar:
      res = run_grid(config, seeds, betas, dtype=dtype, keep_densities=True, chunk_size=chunk_size)
      bar.set(n_runs)
    log(f"grid run (compile + run): {time.perf_counter() - t0:.1f} s")
    return paths_after_grid(out, res, config, dtype=dtype, phase_points=phase_points, log=log,
                            options=options, pool=pool)
  finally:
    if pool is not None:
      pool.shutdown(wait=True, cancel_futures=True)


def paths_after_grid(out: Path, res, config: MogConfig, *, dtype=None, phase_points: int = 17, log=print,
                     options: dict | None = None, pool=None) -> list[Path]:
  """Everything :func:`run_mog` writes from the grid's result (tables, notes, figures, phase map)."""
  import time

  import jax.numpy as jnp

  from recall_theory import progress
  from recall_theory.mog import figures
  from recall_theory.mog.grid_run import build_problem
  from recall_theory.mog.sweep import phase_map_dispatch

  # The metrics figures need only the grid's metrics: hand them to the worker first.
  metric_figures = [_draw(pool, figures.plot_metrics, out, res.betas, res.metrics[:, :, v, :len(PIPELINES)], s)
                    for v, s in enumerate(res.students)]
  results = results_columns(res, config)
  schema.report_ceiling_violations({k: results[k] for k in schema.ID_COLUMNS + schema.LAW_COLUMNS}, where="mog")
  paths = [io.write_columns_csv(out / "mog_results.csv", results),
           io.write_columns_csv(out / "mog_summary.csv", summary_columns(res, config)),
           io.write_columns_csv(out / "mog_gap.csv", gap_columns(res))]
  text = summary_text(res, config, options)
  log(text)
  paths.append(io.write_text(out / "mog_summary.txt", text + "\n"))
  paths.append(io.write_text(out / "mog_notes.md", notes_text(res, config, options)))

  problem = build_problem(config, dtype)
  n = config.grid_n
  log_truth = np.asarray(problem.land.log_truth_G).reshape(n, n)[::2, ::2]
  b_mid = int(np.argmin(np.abs(np.log(res.betas) - np.log(0.3))))
  dens = res.log_densities[0, b_mid]  # (V, 2 + P*A, n', n')
  named = {"teacher": dens[0, 0]}
  for v, s in enumerate(res.students):
    named[f"student:{s}"] = dens[v, 1]
  for p, pipe in enumerate(PIPELINES):
    named[f"aligned:{pipe}"] = dens[0, 2 + p * len(ALGORITHMS) + ALGORITHMS.index("exact")]
  # Drawn here: the worker has the two metrics figures, about as long as these, the tables and the phase map.
  other_figures = [
      _draw(None, figures.plot_densities, out, res.plot_axis, named, log_truth, np.asarray(TARGETS[config.target]),
            float(res.betas[b_mid]), res.students),
      _draw(None, figures.plot_tradeoff, out, res.betas, res.metrics[:, :, 0, :len(PIPELINES)], res.students[0])]

  # The phase map needs only the betas' range (its figure is drawn here, after it).
  phase_betas = np.geomspace(res.betas.min(), res.betas.max(), phase_points)
  recalls = np.geomspace(1e-12, 0.5, phase_points)
  student = phase_student(res.students)
  t0 = time.perf_counter()
  n_points = len(phase_betas) * len(recalls)
  with progress.stage("mog phase map", total=n_points, unit="points") as bar:
    phase = phase_map_dispatch(config, phase_betas, recalls, student=student, dtype=dtype or jnp.float64)()
    bar.set(n_points)  # one compiled call computes every point
  log(f"phase map: {time.perf_counter() - t0:.1f} s")
  phase_paths = figures.plot_phase(out, phase_betas, recalls, phase, student)
  t0 = time.perf_counter()
  drawn = [done() for done in [other_figures[0], *metric_figures, other_figures[1]]]
  if pool is not None:
    log(f"figures of the worker process: waited {time.perf_counter() - t0:.1f} s for them")
  return paths + [p for d in drawn for p in d] + phase_paths


def phase_student(students) -> str:
  """The phase map's student: the one with no mode near the target (3-mode), whose own tail
  recall (< 1e-12) does not mask the recall p the map sets; else the first."""
  return "3-mode" if "3-mode" in students else students[0]


def _draw(pool, plot, *args):
  """``plot(*args)`` here (``pool`` None) or in the pool's worker; returns a function giving its paths."""
  if pool is None:
    paths = plot(*args)
    return lambda: paths
  return pool.submit(plot, *args).result
