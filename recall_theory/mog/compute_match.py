"""Compute-matched K-A vs A-K on the Mixture-of-Gaussians track (issue 11, MoG part).

``recall-theory mog --match-compute --ladder 1,4,16,64`` fits, per seed and student variant,
the teacher (EM on p* samples) and the KD student once (as :func:`recall_theory.mog.pipelines.
references`), then at one beta (default :data:`DEFAULT_BETA`):

* **K-A** at every budget scale ``s``: policy gradient with ``round(s * pg_steps)`` steps of
  ``pg_batch`` on-policy samples (``s`` times the samples, same batch, learning rate and
  epochs per batch); DPO with ``round(s * dpo_pairs)`` preference pairs from the student
  (``s`` times the samples) and the same ``dpo_steps`` full-batch Adam steps;
* **A-K** (align the teacher at 1x, distil it with the KD recipe) and the **control**
  K-A(teacher-ref) at 1x.

Cost, per stage and summed over the pipeline: samples drawn (p* samples for the teacher,
teacher samples for each KD fit, on-policy PG samples, 2 per DPO pair) and gradient steps
(EM iterations for the fits, ``n_epochs`` Adam steps per PG batch, one per DPO step). The
exact tilt has no budget (0 samples): it appears as the law's optimum ``predicted_mass``,
K-A's limit at infinite budget. Target masses are exact (bivariate normal cdf).

The measured price of low recall (:func:`recall_theory.lm.compute_match.crossings`): the
ratio of K-A's alignment samples (and total samples) where its mass first reaches A-K's, to
A-K's; the prediction from the sampling trap is ``p_teacher / p_student`` (equal expected
target samples); the recalls are exact, so each seed's ratio is too (no binomial interval,
unlike the LM track's :func:`recall_theory.lm.compute_match.predicted_price`): the notes give
its geometric mean over seeds with a t-interval. Outputs: ``mog_compute.csv``,
``mog_compute.{pdf,png}`` + data, ``mog_compute_notes.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import TYPE_CHECKING, Sequence

import jax
import numpy as np

from recall_theory import stats, xla_cpu
from recall_theory.errors import InputError
from recall_theory.ladder import crossings, describe_crossing, parse_ladder, scale_count
from recall_theory.lm.compute_match import plot_ladder  # the figure moves below the tracks next

if TYPE_CHECKING:  # annotations only: the track's setup is imported where it runs
  from recall_theory.mog.setup import MogConfig

# Below the 4-mode student's trap boundary: its exact tilt reaches the target, so what K-A
# lacks at 1x is samples of it (the sampling trap), which a budget can buy. At beta 0.1 the
# exact tilt itself stays near the student's recall (the learning trap): no budget helps.
DEFAULT_BETA = 0.03
DEFAULT_LADDER = (1.0, 4.0, 16.0, 64.0)
# Exact masses differ in the 7th digit where both sit at 1: K-A "reaches" A-K within this
# absolute mass (the same resolution the comparisons use; below it = tie).
RESOLUTION = 1e-3
DEFAULT_SEEDS = 4
DEFAULT_TIME_LIMIT_S = 1200.0
ALGORITHMS = ("pg", "dpo")
ALGORITHM_NAMES = {"pg": "policy gradient", "dpo": "DPO"}
FLOOR = 1e-10  # masses are drawn clipped to [FLOOR, 1 - FLOOR] on the figure's log-odds axis


@dataclasses.dataclass(frozen=True)
class StepTimes:
  """Seconds per unit of work behind the ``--time-limit`` estimate (float64, 2 CPU cores,
  deliberately on the slow side): per PG step (batch 256, 2 epochs), per DPO step and 1000
  pairs, per KD/EM fit, and per compilation."""
  pg_step: float = 4e-4
  dpo_step_per_kpair: float = 6e-4
  fit: float = 0.3
  compile_s: float = 6.0


STEP_TIMES = StepTimes()


def scaled(config, algorithm: str, scale: float):
  """The MogConfig with K-A's budget of ``algorithm`` scaled (see module docstring)."""
  if algorithm == "pg":
    return dataclasses.replace(config, pg_steps=scale_count(config.pg_steps, scale))
  return dataclasses.replace(config, dpo_pairs=scale_count(config.dpo_pairs, scale))


def alignment_budget(config, algorithm: str) -> tuple[int, int]:
  """(samples drawn, gradient steps) of one alignment with ``algorithm`` at ``config``."""
  if algorithm == "pg":
    return config.pg_steps * config.pg_batch, config.pg_steps * 2  # PGConfig.n_epochs = 2
  return 2 * config.dpo_pairs, config.dpo_steps


def estimate_seconds(config, ladder, n_seeds: int, t: StepTimes = STEP_TIMES) -> float:
  """Estimated wall seconds (:class:`StepTimes`): steps x per-step time, fits, compilations."""
  n_var = len(config.students)
  per_run = 3 * t.fit  # teacher, student, A-K's distillation
  compiles = 3 + 2 * len(ladder) + 4
  for s in ladder:
    per_run += scale_count(config.pg_steps, s) * t.pg_step
    per_run += config.dpo_steps * scale_count(config.dpo_pairs, s) / 1000 * t.dpo_step_per_kpair
  per_run += 2 * (config.pg_steps * t.pg_step
                  + config.dpo_steps * config.dpo_pairs / 1000 * t.dpo_step_per_kpair) * 2
  return compiles * t.compile_s + n_seeds * n_var * per_run


# -- jitted pieces (static configs: one compilation per budget) ----------------------------
@functools.partial(xla_cpu.jit, static_argnames=("pg_cfg",))
def _train_pg(key, init, reference, reward, beta, pg_cfg):
  from recall_theory.mog.pg import train_pg
  params, _, watch = train_pg(key, init, reference, reward, beta, pg_cfg)
  return params, watch


@functools.partial(xla_cpu.jit, static_argnames=("dpo_cfg",))
def _train_dpo(key, init, reference, reward, beta, dpo_cfg):
  from recall_theory.mog.dpo import make_preference_pairs, train_dpo
  pairs = make_preference_pairs(key, reference, reward, dpo_cfg.n_pairs, dpo_cfg.label_noise)
  params, _, watch = train_dpo(init, pairs, beta, dpo_cfg)
  return params, watch


def align(key, init_mixture, reference, problem, beta: float, config, algorithm: str):
  """Align ``init_mixture`` against ``reference`` with ``algorithm``; the policy (Mixture)."""
  from recall_theory.mog.divergence_guard import raise_if_diverged
  from recall_theory.mog.dpo import DPO_QUANTITIES, DPOConfig
  from recall_theory.mog.params import from_mixture, to_mixture
  from recall_theory.mog.pg import PG_QUANTITIES, PGConfig
  import jax.numpy as jnp

  b = jnp.asarray(beta, problem.grid.points_GxD.dtype)
  if algorithm == "pg":
    cfg = PGConfig(n_steps=config.pg_steps, batch_size=config.pg_batch,
                   learning_rate=config.pg_lr)
    params, watch = _train_pg(key, from_mixture(init_mixture), reference, problem.reward, b, cfg)
    raise_if_diverged(watch, "policy gradient", PG_QUANTITIES)
  else:
    cfg = DPOConfig(n_steps=config.dpo_steps, learning_rate=config.dpo_lr,
                    n_pairs=config.dpo_pairs, label_noise=config.label_noise)
    params, watch = _train_dpo(key, from_mixture(init_mixture), reference, problem.reward, b, cfg)
    raise_if_diverged(watch, "DPO", DPO_QUANTITIES)
  return to_mixture(params)


def run_match_compute(config, ladder: Sequence[float], seeds: Sequence[int], beta: float, *,
                      dtype=None, progress: bool = True) -> list[dict]:
  """Rows (ID columns, law columns, cost) of K-A over ``ladder``, A-K and the control.

  For every student variant of ``config`` and every seed; the teacher and student rows
  carry their fitting cost. Must run inside ``jax.enable_x64`` for float64.
  """
  import jax.numpy as jnp

  from recall_theory import progress as progress_lib
  from recall_theory import schema
  from recall_theory.mog import grid_run
  from recall_theory.mog.metrics import METRICS, metrics_on_grid
  from recall_theory.mog.pipelines import profile_for, references, selective
  from recall_theory.mog import distill as kd
  from recall_theory.mog.quadrature import log_density_on_grid
  from recall_theory.mog.region import mixture_region_mass

  problem = grid_run.build_problem(config, dtype)
  fit_samples = {"teacher": config.n_teacher_samples, "student": config.n_student_samples}
  kl_index = METRICS.index("kl_to_reference")
  rows: list[dict] = []
  total = len(config.students) * len(seeds)
  with progress_lib.stage("mog --match-compute", total=total, unit="reference pairs",
                          enabled=progress) as bar:
    for v, student_name in enumerate(config.students):
      for seed in seeds:
        teacher, student = references(seed, v, problem, config)
        refs = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), student, teacher)
        log_ia, log_iac, _, _ = grid_run.exact_tilt_masses(config, refs, problem.reward, [beta],
                                                           dtype)
        p = {"student": float(mixture_region_mass(student, problem.region)),
             "teacher": float(mixture_region_mass(teacher, problem.region))}
        d = grid_run.delta_over_beta(log_ia[:, 0], log_iac[:, 0],
                                     np.array([p["student"], p["teacher"]]))
        dob = {"student": float(d[0]), "teacher": float(d[1])}
        log_ref = {"student": log_density_on_grid(student, problem.grid),
                   "teacher": log_density_on_grid(teacher, problem.grid)}
        k_train = jax.random.fold_in(jax.random.split(jax.random.PRNGKey(seed), 3)[2], v)
        k_pg, k_dpo, k_kd = jax.random.split(k_train, 3)
        keys = {"pg": jax.random.split(k_pg, 3), "dpo": jax.random.split(k_dpo, 2)}
        setting = f"student={student_name};beta={beta:g};target={config.target}"
        fit_steps = config.em_iters

        def row(pipeline, algorithm, model, ref_name, sampler_name, stages, scale, n_samples):
          mass = float(mixture_region_mass(model, problem.region))
          log_q = log_density_on_grid(model, problem.grid)
          kl = float(metrics_on_grid(log_q, log_ref[ref_name], problem.land, problem.grid,
                                     config.support_threshold)[kl_index])
          law = schema.law_rows(schema.law_columns(
              reference_recall=p[ref_name], delta_over_beta=dob[ref_name], aligned_mass=mass,
              kl=kl, n_samples=n_samples, sampler_recall=p[sampler_name],
              estimator="exact: target masses by the bivariate normal cdf; Delta/beta by the "
                        "edge-aligned region rule; KL by quadrature"))[0]
          r = {"track": "mog", "pipeline": pipeline, "algorithm": algorithm, "seed": seed,
               "setting": setting + ("" if math.isnan(scale) else f";budget={scale:g}x"),
               "student": student_name, "beta": beta, "ladder_scale": scale,
               "target_mass": mass, **law, "law_reference": ref_name, "sampler": sampler_name}
          own = stages[-1]
          r.update(stage_samples_drawn=own[1], stage_steps=own[2],
                   pipeline_samples_drawn=sum(s[1] for s in stages),
                   pipeline_steps=sum(s[2] for s in stages),
                   pipeline_stages="+".join(s[0] for s in stages))
          rows.append(r)

        teacher_stage = ("teacher", fit_samples["teacher"], fit_steps)
        student_stage = ("student", fit_samples["student"], fit_steps)
        nan = math.nan
        for name, model, stages in (("teacher", teacher, (teacher_stage,)),
                                    ("student", student, (teacher_stage, student_stage))):
          r_law = {k: math.nan for k in schema.LAW_COLUMNS}
          r_law.update(above_ceiling=False, estimator="not aligned: reference row")
          rows.append({"track": "mog", "pipeline": name, "algorithm": "none", "seed": seed,
                       "setting": setting, "student": student_name, "beta": beta,
                       "ladder_scale": nan,
                       "target_mass": float(mixture_region_mass(model, problem.region)),
                       **r_law, "law_reference": "", "sampler": "",
                       "stage_samples_drawn": stages[-1][1], "stage_steps": stages[-1][2],
                       "pipeline_samples_drawn": sum(s[1] for s in stages),
                       "pipeline_steps": sum(s[2] for s in stages),
                       "pipeline_stages": "+".join(s[0] for s in stages)})
        for alg in ALGORITHMS:
          ka_key = keys[alg][0]
          for scale in ladder:
            cfg = scaled(config, alg, scale)
            pol = align(ka_key, student, student, problem, beta, cfg, alg)
            n, steps = alignment_budget(cfg, alg)
            row("K-A", alg, pol, "student", "student",
                (teacher_stage, student_stage, (f"K-A x{scale:g}", n, steps)), scale, n)
          n, steps = alignment_budget(config, alg)
          a = align(keys[alg][1], teacher, teacher, problem, beta, config, alg)
          src = selective(a, profile_for(a, problem.truth,
                                         problem.table.log_profile_SxK[v]), config.kd_temperature)
          k_index = 0 if alg == "pg" else 2  # run_single's A-K keys at the KD temperature
          ak = kd.distill_forward_samples(jax.random.split(k_kd, 4)[k_index], src,
                                          problem.table.active_SxC[v],
                                          n_samples=config.n_student_samples,
                                          n_iter=config.em_iters)
          row("A-K", alg, ak, "teacher", "teacher",
              (teacher_stage, ("A", n, steps),
               ("A-K distillation", config.n_student_samples, fit_steps)), 1.0, n)
          ctrl_key = keys["pg"][2] if alg == "pg" else keys["dpo"][1]
          ctrl = align(ctrl_key, student, teacher, problem, beta, config, alg)
          row("K-A(teacher-ref)", alg, ctrl, "teacher", "student" if alg == "pg" else "teacher",
              (teacher_stage, student_stage, ("control", n, steps)), 1.0, n)
        bar.update(1)
  schema.report_ceiling_violations(rows, where="mog --match-compute")
  return rows


# -- analysis, figure, notes ----------------------------------------------------------------
def analyse(rows, ladder, students, algorithms=ALGORITHMS) -> dict:
  """Per (student, algorithm): arrays of the figure and crossings in alignment and total samples."""
  out = {}
  for st in students:
    for alg in algorithms:
      pick = lambda pipe: sorted((r for r in rows if r["student"] == st and r["algorithm"] == alg
                                  and r["pipeline"] == pipe), key=lambda r: r["seed"])
      seeds = sorted({r["seed"] for r in pick("A-K")})
      ka = {(r["seed"], float(r["ladder_scale"])): r for r in pick("K-A")}
      get = lambda f: np.array([[float(ka[(s, float(x))][f]) for x in ladder] for s in seeds])
      ak, ctrl = pick("A-K"), pick("K-A(teacher-ref)")
      arr = lambda sel, f: np.array([float(r[f]) for r in sel])
      res = {"seeds": seeds, "ka_mass_SxL": get("target_mass"),
             "ka_align_SxL": get("n_samples"), "ka_total_SxL": get("pipeline_samples_drawn"),
             "ka_limit_S": get("predicted_mass")[:, 0],
             "ak_mass_S": arr(ak, "target_mass"), "ak_align_S": arr(ak, "n_samples"),
             "ak_total_S": arr(ak, "pipeline_samples_drawn"),
             "ctrl_mass_S": arr(ctrl, "target_mass"), "ctrl_total_S": arr(ctrl, "pipeline_samples_drawn"),
             "p_student_S": get("reference_recall")[:, 0], "p_teacher_S": arr(ak, "reference_recall")}
      res["cross_align"] = crossings(res["ka_align_SxL"], res["ka_mass_SxL"], res["ak_mass_S"],
                                     res["ak_align_S"], RESOLUTION)
      res["cross_total"] = crossings(res["ka_total_SxL"], res["ka_mass_SxL"], res["ak_mass_S"],
                                     res["ak_total_S"], RESOLUTION)
      out[(st, alg)] = res
  return out


def _fmt(x: float) -> str:
  return f"{x:.3g}"


def notes_markdown(analysis, *, ladder, beta, seeds, elapsed, estimate, time_limit,
                   options: str, config) -> str:
  """``mog_compute_notes.md``: budgets, cost table, measured price beside the prediction."""
  lad = ",".join(f"{s:g}" for s in ladder)
  lines = [f"# Compute-matched K-A vs A-K, MoG track (beta {beta:g}, {len(seeds)} seeds, "
           f"ladder {lad})", "", options, "",
           f"Wall time {elapsed:.0f} s (estimate before the run {estimate:.0f} s; time limit "
           f"{time_limit:g} s).", "",
           f"What scales: K-A's policy-gradient steps ({config.pg_steps} x scale, batch "
           f"{config.pg_batch}: samples scale) and its DPO preference pairs ({config.dpo_pairs} x "
           f"scale, {config.dpo_steps} full-batch steps). A-K and the control at 1x. Cost: samples "
           f"drawn per pipeline (p* samples for the teacher {config.n_teacher_samples}, teacher "
           f"samples per KD fit {config.n_student_samples}, on-policy PG samples, 2 per DPO pair) "
           f"and gradient steps (EM iterations {config.em_iters} per fit, 2 Adam steps per PG "
           f"batch, 1 per DPO step); the CSV has both per stage and per pipeline. Target masses "
           f"are exact; law's optimum = the exact Gibbs tilt of the reference (K-A's infinite-"
           f"budget limit). K-A reaches A-K when its mass is within {RESOLUTION:g} of A-K's (same seed); "
           f"differences below {RESOLUTION:g} are ties. " + stats.SD_CAPTION + ".", ""]
  for (st, alg), res in analysis.items():
    name = ALGORITHM_NAMES[alg]
    p_t, p_s = float(np.mean(res["p_teacher_S"])), float(np.mean(res["p_student_S"]))
    ratio_S = res["p_teacher_S"] / res["p_student_S"]
    pred = float(np.exp(np.mean(np.log(ratio_S))))
    lo, hi = (stats.mean_interval(np.log(ratio_S)) if len(ratio_S) > 1 else (math.nan, math.nan))
    lines += [f"## {st} student, {name}", "",
              "| pipeline | scale | alignment samples | total samples | target mass (mean ± sd) |",
              "|---|---|---|---|---|"]
    for j, s in enumerate(ladder):
      m, sd, _ = stats.mean_sd(res["ka_mass_SxL"][:, j])
      lines.append(f"| K-A | {s:g}x | {res['ka_align_SxL'][:, j].mean():.0f} | "
                   f"{res['ka_total_SxL'][:, j].mean():.0f} | {_fmt(m)} ± {_fmt(sd)} |")
    for pipe, mk, tk in (("A-K", "ak_mass_S", "ak_total_S"),
                         ("K-A(teacher-ref)", "ctrl_mass_S", "ctrl_total_S")):
      m, sd, _ = stats.mean_sd(res[mk])
      lines.append(f"| {pipe} | 1x | {res['ak_align_S'].mean():.0f} | {res[tk].mean():.0f} | "
                   f"{_fmt(m)} ± {_fmt(sd)} |")
    cmp = stats.paired_comparison(res["ka_mass_SxL"][:, -1], res["ak_mass_S"], RESOLUTION)
    max_s = ladder[-1]
    lines += ["",
              f"- Recalls (exact, mean over seeds): p_teacher = {_fmt(p_t)}, p_student = "
              f"{_fmt(p_s)}. Exact (bivariate normal cdf, no sampling), so each seed's ratio "
              f"p_teacher/p_student is exact: a binomial (Katz) interval would be degenerate, and "
              f"the interval below is the spread over seeds.",
              f"- Predicted price (equal expected target samples): p_teacher/p_student = "
              f"{_fmt(pred)}" + ("" if math.isnan(lo) else
                                 f" [{_fmt(math.exp(lo))}, {_fmt(math.exp(hi))}] (geometric mean "
                                 f"over seeds, 95% t-interval)")
              + f" times A-K's alignment samples; the ladder reaches {max_s:g}x"
              + (" (short of the prediction)." if max_s < pred else "."),
              "- Measured price in alignment samples: "
              + describe_crossing(res["cross_align"], unit="alignment samples",
                                  max_label=f"{max_s:g}x ({res['ka_align_SxL'][:, -1].mean():.0f}"
                                            f" samples)") + ".",
              "- Measured price in total samples of the pipeline: "
              + describe_crossing(res["cross_total"], unit="total samples",
                                  max_label=f"{max_s:g}x ({res['ka_total_SxL'][:, -1].mean():.0f}"
                                            f" samples)") + ".",
              f"- At {max_s:g}x: " + stats.describe_comparison(cmp, f"K-A {max_s:g}x", "A-K",
                                                               fmt=".3g") + ".",
              f"- K-A's infinite-budget limit (exact tilt of the student, the law's optimum; at the mean "
              f"log-odds over seeds, as drawn): {_fmt(limit_mass(res))}"
              + ("; below A-K's mass: the learning trap, no budget closes the gap at this beta."
                 if limit_mass(res) < np.mean(res["ak_mass_S"]) - RESOLUTION else
                 f"; within {RESOLUTION:g} of A-K's mass or above: what K-A lacks is samples of the "
                 "target (the sampling trap); the law does not rule out a crossing beyond the ladder."),
              *[f"- Above the limit: {line} (mean log10 odds over seeds); the exact tilt is the optimum "
                "of the objective, not a bound on the trained policy." for line in
                above_exact_tilt({(st, alg): res}, ladder)],
              f"- Clipped on the figure (masses outside [{FLOOR:g}, 1 - {FLOOR:g}] drawn at the clip): "
              + clipped_sentence(res) + ".",
              ""]
  return "\n".join(lines) + "\n"


def limit_mass(res: dict) -> float:
  """K-A's exact tilt over seeds as the figure draws it and the notes compare it: the mass at
  the mean log-odds over seeds (the quantity :func:`above_exact_tilt` measures against)."""
  return float(1.0 / (1.0 + 10.0 ** -np.mean(log10_odds(res["ka_limit_S"]))))


def log10_odds(mass) -> np.ndarray:
  """log10(m / (1 - m)) of exact masses (finite: 0 and 1 moved to the nearest floats inside)."""
  m = np.clip(np.asarray(mass, float), np.finfo(float).tiny, np.nextafter(1.0, 0.0))
  return np.log10(m) - np.log10(1.0 - m)


def above_exact_tilt(analysis, ladder, min_decades: float = 1.0) -> list[str]:
  """Panels where trained K-A at the largest budget sits ``min_decades`` or more of odds
  above its exact tilt (the dotted limit line): mean over seeds of log10 odds, each side."""
  found = []
  for (st, alg), res in analysis.items():
    excess = float(np.mean(log10_odds(res["ka_mass_SxL"][:, -1])) - np.mean(log10_odds(res["ka_limit_S"])))
    if excess >= min_decades:
      found.append(f"{st} student, {ALGORITHM_NAMES[alg]}: trained K-A at {ladder[-1]:g}x sits {excess:.1f} "
                   f"decades of odds above its exact tilt")
  return found


def clipped_sentence(res: dict) -> str:
  """How many per-seed masses of each pipeline the figure clips, and whether the exact tilt is."""
  parts = []
  for pipe, values in (("K-A", res["ka_mass_SxL"]), ("A-K", res["ak_mass_S"]),
                       ("K-A(teacher-ref)", res["ctrl_mass_S"])):
    v = np.ravel(values)
    below, above = int(np.sum(v < FLOOR)), int(np.sum(v > 1 - FLOOR))
    if below or above:
      parts.append(f"{pipe} {below + above} of {v.size} ({below} below, {above} above)")
  limit = limit_mass(res)
  if not FLOOR <= limit <= 1 - FLOOR:
    parts.append(f"the exact tilt ({limit:.3g}, not drawn)")
  return ", ".join(parts) if parts else "none"


def plot_compute(rows, out, *, ladder, beta, students) -> list:
  """The ``mog_compute`` figure from the run's rows (target mass against samples drawn)."""
  analysis = analyse(rows, ladder, students)
  panels = []
  for (st, alg), res in analysis.items():
    panels.append({"key": f"{st}__{alg}", "title": f"{st} student, {ALGORITHM_NAMES[alg]}",
                   "scales_L": list(ladder),
                   "ka_cost_SxL": res["ka_total_SxL"], "ka_share_SxL": res["ka_mass_SxL"],
                   "ak_cost_S": res["ak_total_S"], "ak_share_S": res["ak_mass_S"],
                   "ctrl_cost_S": res["ctrl_total_S"], "ctrl_share_S": res["ctrl_mass_S"],
                   "ka_limit": limit_mass(res),
                   "ka_limit_label": "K-A, exact tilt (budget $\\to\\infty$)", "ka_limit_short": "exact tilt",
                   "floor": FLOOR, "xscale": "log", "yscale": "logit", "band": "range"})
  overshoot = above_exact_tilt(analysis, ladder)
  note = ("\n".join(overshoot) + " (mean log-odds over seeds):\nthe dotted line (the exact tilt at that mean) "
          "is the exact optimum of the objective, not a bound on the trained policy") if overshoot else ""
  return plot_ladder(panels, out, "mog_compute", xlabel="samples drawn by the whole pipeline",
                     ylabel="aligned target mass (log-odds axis)", figure_note=note,
                     caption_note=(f"beta {beta:g}; K-A's budget scaled by the ladder; small markers: seeds "
                                   f"(K-A circles, A-K squares, K-A(teacher-ref) diamonds; the last two drawn 5 pt "
                                   f"right and left of their cost, K-A's at 1x); line and large markers: "
                                   f"mean; band and error bars: range over seeds; dotted: K-A's exact tilt at the "
                                   f"mean log-odds over seeds (the figure note's reference); masses are clipped to "
                                   f"[{FLOOR:g}, 1 - {FLOOR:g}] (drawn at the clip as triangles, in the grey strips)"))


def write_outputs(rows, out, *, ladder, beta, seeds, elapsed, estimate, time_limit, options,
                  config) -> str:
  from recall_theory import io

  io.write_csv(out / "mog_compute.csv", rows)
  plot_compute(rows, out, ladder=ladder, beta=beta, students=config.students)
  text = notes_markdown(analyse(rows, ladder, config.students), ladder=ladder, beta=beta, seeds=seeds,
                        elapsed=elapsed, estimate=estimate, time_limit=time_limit, options=options,
                        config=config)
  io.write_text(out / "mog_compute_notes.md", text)
  return text


# The compute-matched experiment compares fixed budgets, not plateaus: its 1x runs take exactly
# BASE_STEPS policy-gradient and DPO steps (no plateau rule) on BASE_PAIRS DPO pairs.
BASE_STEPS = 200
BASE_PAIRS = 1024


def fixed_budget(config: MogConfig, dpo_pairs: int | None = None) -> MogConfig:
  """The config with fixed 1x budgets (``BASE_STEPS``, ``dpo_pairs`` or ``BASE_PAIRS``, no rule)."""
  return dataclasses.replace(config, pg_steps=BASE_STEPS, dpo_steps=BASE_STEPS,
                             dpo_pairs=BASE_PAIRS if dpo_pairs is None else dpo_pairs, plateau=None)


# what --match-compute takes, for every message that refuses a flag combination with it
USE = ("--match-compute takes --betas with one value, --seeds, --ladder, --time-limit, --target, "
       "--label-noise, --dpo-pairs, --dtype, --out")


def run_cli(args, config) -> int:
  """``recall-theory mog --match-compute``: validate, run, write ``--out``."""
  import time

  from recall_theory.options import describe_options
  from recall_theory.errors import check_int_range
  from recall_theory.io import prepare_output_dir

  if not args.match_compute:
    given = [f for f, v in (("--ladder", args.ladder), ("--time-limit", args.time_limit))
             if v is not None]
    raise InputError(f"{', '.join(given)} only applies with --match-compute ({USE})")
  clash = [f for f, v in (("--taus", args.taus), ("--quick", args.quick or None),
                          ("--chunk-size", args.chunk_size), ("--beta-min", args.beta_min),
                          ("--beta-max", args.beta_max), ("--n-betas", args.n_betas))
           if v is not None]
  if clash:
    raise InputError(f"{', '.join(clash)} does not apply to --match-compute ({USE})")
  from recall_theory import plateau as plateau_lib
  plateau_lib.refuse_with_fixed_budget(
      [f for f in plateau_lib.PLATEAU_FLAGS if getattr(args, f[2:].replace("-", "_"), None) is not None],
      BASE_STEPS, f" ({USE})")
  config = fixed_budget(config, args.dpo_pairs)
  beta = DEFAULT_BETA
  if args.betas is not None:
    try:
      values = [float(v) for v in args.betas.split(",") if v.strip()]
    except ValueError as err:
      raise InputError(f"--betas must be one number > 0 with --match-compute, got "
                       f"{args.betas!r}") from err
    if len(values) != 1 or not math.isfinite(values[0]) or values[0] <= 0:
      raise InputError(f"--betas must be one finite number > 0 with --match-compute, got "
                       f"{args.betas!r}")
    beta = values[0]
  n_seeds = check_int_range("--seeds", args.seeds if args.seeds is not None else DEFAULT_SEEDS,
                            1, 10_000)
  ladder = parse_ladder(args.ladder) if args.ladder is not None else DEFAULT_LADDER
  limit = DEFAULT_TIME_LIMIT_S if args.time_limit is None else args.time_limit
  if not (math.isfinite(limit) and limit > 0):
    raise InputError(f"--time-limit must be a finite number of seconds > 0, got {limit:g}")
  for alg in ALGORITHMS:
    for s in ladder:
      scaled(config, alg, s).validate()
  estimate = estimate_seconds(config, ladder, n_seeds)
  if estimate > limit:
    raise InputError(f"--ladder {','.join(f'{s:g}' for s in ladder)} needs an estimated "
                     f"{estimate:.0f} s for {n_seeds} seed(s), above --time-limit {limit:g} s: give "
                     f"--time-limit {math.ceil(estimate)} or more, a shorter --ladder or fewer --seeds")
  out = prepare_output_dir(args.out)
  options = ("Non-default options: "
             + describe_options(getattr(args, "non_default_options", {})) + ".")
  import jax.numpy as jnp

  say = (lambda *a, **k: None) if getattr(args, "quiet", False) else print
  say(f"mog --match-compute: beta {beta:g}, ladder {','.join(f'{s:g}' for s in ladder)}, "
        f"{n_seeds} seed(s) x {len(config.students)} students; estimated {estimate:.0f} s on "
        f"2 idle cores, time limit {limit:g} s")
  start = time.perf_counter()
  seeds = list(range(n_seeds))
  with jax.enable_x64(args.dtype == "float64"):
    rows = run_match_compute(config, ladder, seeds, beta, dtype=getattr(jnp, args.dtype))
  elapsed = time.perf_counter() - start
  text = write_outputs(rows, out, ladder=ladder, beta=beta, seeds=seeds, elapsed=elapsed,
                       estimate=estimate, time_limit=limit, options=options, config=config)
  say(text, end="")
  return 0
