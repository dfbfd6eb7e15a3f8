"""Exact sweeps over the reference's recall of the target (``recall-theory sweep --model mog``).

Everything here is deterministic and exact up to quadrature (no sampling, no training):
the teacher is p* itself (a perfect high-recall model), distillation is the KD recipe with
exact expectations (forward-KL projection by EM with quadrature weights), and alignment is
the Gibbs tilt on the grid.

* :func:`recall_sweep`: the teacher's weight w on the target mode goes from ``weight_min`` to
  ``weight_max`` (the other modes share 1 - w equally); for each w and beta, the target mass
  after K-A (distill, then tilt the student) and after A-K (tilt the teacher, then distill),
  with the references' own recall of the target (K-A's reference is the student).
* :func:`phase_map`: K-A's reference is the student with its target recall set to p (a target
  component of weight p mixed in); A-K is unchanged; returns the gap A-K - K-A in target mass
  over (beta, p). The gap closes only where p is large enough that logit p + D/beta > 0.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from recall_theory import xla_cpu
from recall_theory.errors import InputError, check_int_range, check_positive
from recall_theory.mog import distill as kd
from recall_theory.mog.em import DEAD_LOG_WEIGHT
from recall_theory.mog.mixture import Mixture, log_prob, normalize_log_weights
from recall_theory.mog.quadrature import (kl_on_grid, log_density_on_grid, log_normalize, tilt_on_grid,
                                          tilted_components)
from recall_theory.mog.region import mixture_region_mass, tilt_kl, tilt_log_integrals, tilted_mass
from recall_theory.mog.setup import TARGETS, MogConfig, target_mask, target_region

DTYPES = {"float32": jnp.float32, "float64": jnp.float64}


def _problem(config: MogConfig, dtype):
  from recall_theory.mog.grid_run import build_problem
  return build_problem(config, dtype)


def _teacher_with_target_weight(truth: Mixture, tmask: jax.Array, weight) -> Mixture:
  """p* with total weight ``weight`` on the target modes (split equally) and 1 - weight on the rest."""
  n_t = jnp.sum(tmask)
  n_o = tmask.shape[0] - n_t
  log_w = jnp.where(tmask, jnp.log(weight) - jnp.log(n_t), jnp.log1p(-weight) - jnp.log(n_o))
  return truth._replace(log_weights_K=log_w.astype(truth.means_KxD.dtype))


def _exact_kd(teacher_lw, log_comp_GxK, means, covs, profile, temperature, grid, active, n_iter):
  sel = kd.selective_log_weights(teacher_lw, profile, temperature)
  return kd.distill_forward_grid(sel, log_comp_GxK, means, covs, grid, active, n_iter=n_iter)


def _region_rule(config: MogConfig, dtype):
  from recall_theory.mog.region import make_region_rule
  return make_region_rule(target_region(config), np.asarray(TARGETS[config.target]), dtype=dtype)


def _tilted_mass(log_ref_Q, reward_Q, beta, rule):
  """Exact pi(A) of the Gibbs tilt of a reference given on the region rule's nodes."""
  return tilted_mass(*tilt_log_integrals(log_ref_Q, reward_Q, beta, rule))


def _grid_reward(log_q, problem):
  grid, land = problem.grid, problem.land
  return jnp.sum(jnp.exp(log_normalize(log_q, grid)[0] + grid.log_cell_area) * land.reward_G)


def _student_row(config: MogConfig, problem, student: str):
  names = list(config.students)
  if student not in names:
    raise InputError(f"student must be one of {names}, got {student!r}")
  i = names.index(student)
  return problem.table.log_profile_SxK[i], problem.table.active_SxC[i]


def recall_sweep(config: MogConfig, weights: Sequence[float], betas: Sequence[float], *,
                 student: str = "4-mode", dtype=jnp.float64) -> dict[str, np.ndarray]:
  """Exact target masses of both pipelines over (teacher target weight, beta); arrays of shape (W, B).

  Masses of mixtures (the student, A-K's distilled student) by the orthant cdf, masses of the
  Gibbs tilts (K-A, the aligned teacher) by the edge-aligned region rule
  (:mod:`recall_theory.mog.region`); rewards by the midpoint grid (smooth integrands).
  ``ka_delta_over_beta``/``ak_delta_over_beta``: the law's (L_A - L_{A^c})/beta of the reward
  under the student / the teacher.
  """
  problem = _problem(config, dtype)
  profile, active = _student_row(config, problem, student)
  tmask = jnp.asarray(target_mask(config))
  rule = _region_rule(config, dtype)
  reward_Q = problem.reward(rule.points_QxD)
  grid, land = problem.grid, problem.land
  region = problem.region
  b = jnp.asarray(betas, dtype)
  zero = jnp.zeros(grid.points_GxD.shape[:1], dtype)

  def one_weight(weight):
    teacher = _teacher_with_target_weight(problem.truth, tmask, weight)
    _, log_comp, mu, cov = tilted_components(teacher, zero, 1.0, grid)
    student_m = _exact_kd(teacher.log_weights_K, log_comp, mu, cov, profile, config.kd_temperature, grid,
                          active, config.em_iters)
    log_student_G = log_density_on_grid(student_m, grid)
    log_s_Q = log_prob(student_m, rule.points_QxD)
    log_t_Q = log_prob(teacher, rule.points_QxD)
    p_student = mixture_region_mass(student_m, region)
    p_teacher = mixture_region_mass(teacher, region)

    def per_beta(beta):
      s_ia, s_iac = tilt_log_integrals(log_s_Q, reward_Q, beta, rule)
      t_ia, t_iac = tilt_log_integrals(log_t_Q, reward_Q, beta, rule)
      lw_t, log_comp_t, mu_t, cov_t = tilted_components(teacher, land.reward_G, beta, grid)
      ak = _exact_kd(lw_t, log_comp_t, mu_t, cov_t, profile, config.kd_temperature, grid, active,
                     config.em_iters)
      log_ka_G, _ = tilt_on_grid(log_student_G, land.reward_G, beta, grid)
      ka_delta = (s_ia - jnp.log(p_student)) - (s_iac - jnp.log1p(-p_student))
      ak_delta = (t_ia - jnp.log(p_teacher)) - (t_iac - jnp.log1p(-p_teacher))
      log_ak_G = log_density_on_grid(ak, grid)
      ak_kl = kl_on_grid(log_normalize(log_ak_G, grid)[0], log_density_on_grid(teacher, grid), grid)
      return jnp.stack([p_student, tilted_mass(s_ia, s_iac), mixture_region_mass(ak, region),
                        tilted_mass(t_ia, t_iac), _grid_reward(log_ka_G, problem),
                        _grid_reward(log_ak_G, problem), p_teacher, ka_delta, ak_delta,
                        tilt_kl(log_s_Q, reward_Q, beta, rule), tilt_kl(log_t_Q, reward_Q, beta, rule), ak_kl])

    return jax.vmap(per_beta)(b)

  out = np.asarray(xla_cpu.jit(lambda w: jax.lax.map(one_weight, w))(jnp.asarray(weights, dtype)))
  names = ("student_target_mass", "ka_target_mass", "ak_target_mass", "aligned_teacher_target_mass",
           "ka_reward", "ak_reward", "teacher_target_mass", "ka_delta_over_beta", "ak_delta_over_beta",
           "ka_kl", "aligned_teacher_kl", "ak_kl")
  return {n: out[..., i] for i, n in enumerate(names)}


def phase_map(config: MogConfig, betas: Sequence[float], recalls: Sequence[float], *,
              student: str = "4-mode", dtype=jnp.float64) -> dict[str, np.ndarray]:
  """Target-mass gap A-K - K-A over (beta, K-A reference recall p); arrays of shape (B, P).

  K-A's reference is the student with a target-only component of weight p mixed in; its recall
  (1 - p) student(A) + p target(A) is exact (orthant cdf), and so are the tilted masses
  (region rule) and A-K's (cdf of the distilled mixture).
  """
  return phase_map_dispatch(config, betas, recalls, student=student, dtype=dtype)()


def phase_map_dispatch(config: MogConfig, betas: Sequence[float], recalls: Sequence[float], *,
                       student: str = "4-mode", dtype=jnp.float64):
  """Start :func:`phase_map` and return a function that waits for it and returns its arrays.

  JAX dispatches asynchronously: the two jitted maps run on XLA's threads while the caller's
  Python thread may do other work before it waits (``run_mog`` waits at once: the figure
  worker process is what overlaps its drawing).
  """
  problem = _problem(config, dtype)
  profile, active = _student_row(config, problem, student)
  grid, land = problem.grid, problem.land
  region = problem.region
  rule = _region_rule(config, dtype)
  reward_Q = problem.reward(rule.points_QxD)
  teacher = problem.truth
  zero = jnp.zeros(grid.points_GxD.shape[:1], dtype)
  _, log_comp, mu, cov = tilted_components(teacher, zero, 1.0, grid)
  student_m = _exact_kd(teacher.log_weights_K, log_comp, mu, cov, profile, config.kd_temperature, grid,
                        active, config.em_iters)
  tmask = jnp.asarray(target_mask(config))
  target_only = teacher._replace(log_weights_K=normalize_log_weights(
      jnp.where(tmask, teacher.log_weights_K, DEAD_LOG_WEIGHT)))
  log_s_Q = log_prob(student_m, rule.points_QxD)
  log_target_Q = log_prob(target_only, rule.points_QxD)

  def ak_mass(beta):
    lw_t, log_comp_t, mu_t, cov_t = tilted_components(teacher, land.reward_G, beta, grid)
    ak = _exact_kd(lw_t, log_comp_t, mu_t, cov_t, profile, config.kd_temperature, grid, active,
                   config.em_iters)
    return mixture_region_mass(ak, region)

  def ka_masses(beta, p):
    log_ref_Q = jnp.logaddexp(jnp.log1p(-p) + log_s_Q, jnp.log(p) + log_target_Q)
    return _tilted_mass(log_ref_Q, reward_Q, beta, rule)

  b = jnp.asarray(betas, dtype)
  p = jnp.asarray(recalls, dtype)
  ak_dev = xla_cpu.jit(jax.vmap(ak_mass))(b)
  ka_dev = xla_cpu.jit(lambda bb, pp: jax.lax.map(lambda beta: jax.vmap(lambda q: ka_masses(beta, q))(pp), bb))(b, p)
  ref_dev = (1 - p) * mixture_region_mass(student_m, region) + p * mixture_region_mass(target_only, region)

  def result() -> dict[str, np.ndarray]:
    ak, ka, ref_recall = np.asarray(ak_dev), np.asarray(ka_dev), np.asarray(ref_dev)
    return {"ak_target_mass": ak, "ka_target_mass": ka, "gap": ak[:, None] - ka,
            "reference_recall": ref_recall}

  return result


def tau_sweep(config: MogConfig, taus: Sequence[float], betas: Sequence[float], *,
              student: str = "4-mode", dtype=jnp.float64) -> dict[str, np.ndarray]:
  """Exact K-A and A-K over the KD sharpening temperature tau and beta; arrays of shape (T, B).

  The teacher is p* itself (as in :func:`recall_sweep`); the student is the KD recipe at
  temperature tau (selective weights (w s)^{1/tau}: smaller tau drops the non-kept modes harder,
  so the student's recall of the target falls as tau decreases). K-A tilts the student; A-K
  tilts the teacher and distils it at the same tau. Returns the student's recall, both
  pipelines' masses, the aligned teacher's mass, the law's Delta/beta under the student (K-A)
  and the teacher (A), and the KL each exact tilt pays.
  """
  problem = _problem(config, dtype)
  profile, active = _student_row(config, problem, student)
  rule = _region_rule(config, dtype)
  reward_Q = problem.reward(rule.points_QxD)
  grid, land, region = problem.grid, problem.land, problem.region
  teacher = problem.truth
  zero = jnp.zeros(grid.points_GxD.shape[:1], dtype)
  _, log_comp, mu, cov = tilted_components(teacher, zero, 1.0, grid)
  log_t_Q = log_prob(teacher, rule.points_QxD)
  p_teacher = mixture_region_mass(teacher, region)
  b = jnp.asarray(betas, dtype)

  def one_tau(tau):
    student_m = _exact_kd(teacher.log_weights_K, log_comp, mu, cov, profile, tau, grid, active, config.em_iters)
    log_s_Q = log_prob(student_m, rule.points_QxD)
    p_student = mixture_region_mass(student_m, region)

    def per_beta(beta):
      s_ia, s_iac = tilt_log_integrals(log_s_Q, reward_Q, beta, rule)
      t_ia, t_iac = tilt_log_integrals(log_t_Q, reward_Q, beta, rule)
      lw_t, log_comp_t, mu_t, cov_t = tilted_components(teacher, land.reward_G, beta, grid)
      ak = _exact_kd(lw_t, log_comp_t, mu_t, cov_t, profile, tau, grid, active, config.em_iters)
      log_ak_G = log_density_on_grid(ak, grid)
      ak_kl = kl_on_grid(log_normalize(log_ak_G, grid)[0], log_density_on_grid(teacher, grid), grid)
      return jnp.stack([
          p_student, tilted_mass(s_ia, s_iac), mixture_region_mass(ak, region), tilted_mass(t_ia, t_iac),
          p_teacher, (s_ia - jnp.log(p_student)) - (s_iac - jnp.log1p(-p_student)),
          (t_ia - jnp.log(p_teacher)) - (t_iac - jnp.log1p(-p_teacher)),
          tilt_kl(log_s_Q, reward_Q, beta, rule), tilt_kl(log_t_Q, reward_Q, beta, rule), ak_kl])

    return jax.vmap(per_beta)(b)

  out = np.asarray(xla_cpu.jit(lambda t: jax.lax.map(one_tau, t))(jnp.asarray(taus, dtype)))
  names = ("student_target_mass", "ka_target_mass", "ak_target_mass", "aligned_teacher_target_mass",
           "teacher_target_mass", "ka_delta_over_beta", "teacher_delta_over_beta", "ka_kl",
           "aligned_teacher_kl", "ak_kl")
  return {n: out[..., i] for i, n in enumerate(names)}


def parse_taus(text: str, flag: str = "--taus") -> np.ndarray:
  """Sorted, validated temperatures from a comma-separated string: each finite and > 0, at least one."""
  parts = [v.strip() for v in str(text).split(",")]
  if not any(parts):
    raise InputError(f"{flag} must list at least one temperature > 0, got {text!r}")
  try:
    values = np.asarray([float(v) for v in parts if v], dtype=np.float64)
  except ValueError as err:
    raise InputError(f"{flag} must be a comma-separated list of numbers > 0, got {text!r}") from err
  bad = values[~np.isfinite(values) | (values <= 0)]
  if bad.size:
    raise InputError(f"{flag} values must be finite and > 0, got {bad[0]:g}")
  return np.unique(values)


def _exact_law_rows(res: dict, rows: dict, settings: np.ndarray, extra: dict) -> dict[str, np.ndarray]:
  """Tidy rows of exact pipelines: for each ``pipeline: (mass, reference mass, Delta/beta, kl)``
  key tuple of ``rows``, the shared ids, ``extra`` columns and the law's columns."""
  from recall_theory import schema
  n = settings.size
  parts = []
  for pipe, (mass, ref, delta, kl) in rows.items():
    law = schema.law_columns(reference_recall=res[ref].ravel(), delta_over_beta=res[delta].ravel(),
                             aligned_mass=res[mass].ravel(), kl=res[kl].ravel(), n_samples=0,
                             estimator="exact: orthant cdf (mixtures), edge-aligned Gauss-Legendre (tilts)")
    parts.append({"track": np.full(n, "mog", dtype=object), "pipeline": np.full(n, pipe, dtype=object),
                  "algorithm": np.full(n, "exact", dtype=object), "seed": np.zeros(n, int),
                  "setting": settings, **extra, **law})
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def tau_columns(taus, betas, res: dict, config: MogConfig, student: str) -> dict[str, np.ndarray]:
  """Tidy rows (tau, beta, pipeline in K-A / A-K / A) with the shared ids and the law's columns."""
  tt, bb = (a.ravel() for a in np.meshgrid(taus, betas, indexing="ij"))
  rows = {"K-A": ("ka_target_mass", "student_target_mass", "ka_delta_over_beta", "ka_kl"),
          "A-K": ("ak_target_mass", "teacher_target_mass", "teacher_delta_over_beta", "ak_kl"),
          "A": ("aligned_teacher_target_mass", "teacher_target_mass", "teacher_delta_over_beta",
                "aligned_teacher_kl")}
  settings = np.asarray([f"student={student};tau={t:g};beta={b:g};target={config.target}"
                         for t, b in zip(tt, bb)], dtype=object)
  return _exact_law_rows(res, rows, settings, {
      "student": np.full(tt.size, student, dtype=object), "tau": tt, "beta": bb,
      "student_target_mass": res["student_target_mass"].ravel()})


def recall_sweep_columns(weights, betas, res: dict, config: MogConfig, student: str) -> dict[str, np.ndarray]:
  """Tidy rows (weight, beta, pipeline K-A / A-K / A) with the shared ids, the law's columns and,
  on every row, the sweep's quantities of that (weight, beta)."""
  ww, bb = (a.ravel() for a in np.meshgrid(weights, betas, indexing="ij"))
  rows = {"K-A": ("ka_target_mass", "student_target_mass", "ka_delta_over_beta", "ka_kl"),
          "A-K": ("ak_target_mass", "teacher_target_mass", "ak_delta_over_beta", "ak_kl"),
          "A": ("aligned_teacher_target_mass", "teacher_target_mass", "ak_delta_over_beta", "aligned_teacher_kl")}
  settings = np.asarray([f"student={student};teacher_target_weight={w:.6g};beta={b:g};"
                         f"target={config.target}" for w, b in zip(ww, bb)], dtype=object)
  return _exact_law_rows(res, rows, settings, {
      "teacher_target_weight": ww, "beta": bb, **{k: v.ravel() for k, v in res.items()}})


def run_recall_sweep(out_dir, *, weight_min: float = 1e-8, weight_max: float = 0.5, n_weights: int = 29,
                     betas: Sequence[float] = (0.1, 0.3, 1.0, 3.0), dtype: str = "float64",
                     student: str = "4-mode", target: str = "one") -> list[Path]:
  """Sweep the reference's (teacher's) weight on the target mode against aligned-mode mass.

  Writes ``mog_recall_sweep.csv`` (one row per weight, beta and pipeline K-A / A-K / A, with the
  law's columns; see :func:`recall_sweep_columns`) and the figure
  ``mog_recall_sweep`` (.pdf, .png, _data.npz) into ``out_dir``; returns the written paths.
  Raises InputError for 0 < weight_min < weight_max < 1 violated, n_weights < 2, beta <= 0,
  an unknown dtype, student or target.
  """
  from recall_theory import io
  from recall_theory.mog.setup import parse_betas

  check_positive("weight_min", weight_min)
  check_positive("weight_max", weight_max)
  if not weight_min < weight_max < 1:
    raise InputError(f"weights must satisfy 0 < weight_min < weight_max < 1, got {weight_min:g}, {weight_max:g}")
  n_weights = check_int_range("n_weights", n_weights, 2, 10_000)
  betas_np = parse_betas(betas)
  if dtype not in DTYPES:
    raise InputError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
  config = MogConfig(target=target).validate()
  if student not in config.students:
    raise InputError(f"student must be one of {list(config.students)}, got {student!r}")
  out = io.prepare_output_dir(out_dir)
  jdtype = DTYPES[dtype]
  with _x64(jdtype):
    weights = np.geomspace(weight_min, weight_max, n_weights)
    res = recall_sweep(config, weights, betas_np, student=student, dtype=jdtype)
  cols = recall_sweep_columns(weights, betas_np, res, config, student)
  paths = [io.write_columns_csv(out / "mog_recall_sweep.csv", cols)]
  from recall_theory.mog.figures import plot_recall_sweep
  paths += plot_recall_sweep(out, weights, betas_np, res, student)
  return paths


class _x64:
  """Enable float64 for the duration of a call when it is asked for (restores the old value)."""

  def __init__(self, dtype):
    self.want = dtype == jnp.float64

  def __enter__(self):
    self.context = jax.enable_x64(True) if self.want else contextlib.nullcontext()
    self.context.__enter__()

  def __exit__(self, *exc):
    return self.context.__exit__(*exc)
