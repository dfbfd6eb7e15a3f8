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
import functools
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from recall_theory.errors import InputError, check_int_range, check_positive
from recall_theory.mog import distill as kd
from recall_theory.mog.em import DEAD_LOG_WEIGHT
from recall_theory.mog.mixture import Mixture, normalize_log_weights
from recall_theory.mog.quadrature import log_density_on_grid, log_normalize, tilt_on_grid, tilted_components
from recall_theory.mog.setup import STUDENT_KEEPS, MogConfig, target_mask

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


def _pipeline_masses(teacher: Mixture, beta, problem, profile, active, config: MogConfig):
  """(student recall, K-A target mass, A-K target mass, aligned-teacher mass, K-A reward, A-K reward)."""
  grid, land = problem.grid, problem.land
  mass = lambda log_q: jnp.sum(jnp.exp(log_normalize(log_q, grid)[0] + grid.log_cell_area) * land.target_G)
  reward = lambda log_q: jnp.sum(jnp.exp(log_normalize(log_q, grid)[0] + grid.log_cell_area) * land.reward_G)
  zero = jnp.zeros(problem.grid.points_GxD.shape[:1], teacher.means_KxD.dtype)
  _, log_comp, mu, cov = tilted_components(teacher, zero, 1.0, grid)
  student = _exact_kd(teacher.log_weights_K, log_comp, mu, cov, profile, config.kd_temperature, grid,
                      active, config.em_iters)
  log_student = log_density_on_grid(student, grid)
  log_ka, _ = tilt_on_grid(log_student, land.reward_G, beta, grid)
  lw_t, log_comp_t, mu_t, cov_t = tilted_components(teacher, land.reward_G, beta, grid)
  ak = _exact_kd(lw_t, log_comp_t, mu_t, cov_t, profile, config.kd_temperature, grid, active, config.em_iters)
  log_ak = log_density_on_grid(ak, grid)
  log_aligned, _ = tilt_on_grid(log_density_on_grid(teacher, grid), land.reward_G, beta, grid)
  return jnp.stack([mass(log_student), mass(log_ka), mass(log_ak), mass(log_aligned),
                    reward(log_ka), reward(log_ak)])


def _student_row(config: MogConfig, problem, student: str):
  names = list(config.students)
  if student not in names:
    raise InputError(f"student must be one of {names}, got {student!r}")
  i = names.index(student)
  return problem.table.log_profile_SxK[i], problem.table.active_SxC[i]


def recall_sweep(config: MogConfig, weights: Sequence[float], betas: Sequence[float], *,
                 student: str = "4-mode", dtype=jnp.float64) -> dict[str, np.ndarray]:
  """Exact target masses of both pipelines over (teacher target weight, beta); arrays of shape (W, B)."""
  problem = _problem(config, dtype)
  profile, active = _student_row(config, problem, student)
  tmask = jnp.asarray(target_mask(config))
  w = jnp.asarray(weights, dtype)
  b = jnp.asarray(betas, dtype)

  def one(weight, beta):
    teacher = _teacher_with_target_weight(problem.truth, tmask, weight)
    return _pipeline_masses(teacher, beta, problem, profile, active, config)

  out = np.asarray(jax.jit(jax.vmap(jax.vmap(one, (None, 0)), (0, None)))(w, b))
  names = ("student_target_mass", "ka_target_mass", "ak_target_mass", "aligned_teacher_target_mass",
           "ka_reward", "ak_reward")
  return {n: out[..., i] for i, n in enumerate(names)}


def phase_map(config: MogConfig, betas: Sequence[float], recalls: Sequence[float], *,
              student: str = "4-mode", dtype=jnp.float64) -> dict[str, np.ndarray]:
  """Target-mass gap A-K - K-A over (beta, K-A reference recall p); arrays of shape (B, P)."""
  problem = _problem(config, dtype)
  profile, active = _student_row(config, problem, student)
  grid, land = problem.grid, problem.land
  teacher = problem.truth
  zero = jnp.zeros(grid.points_GxD.shape[:1], dtype)
  _, log_comp, mu, cov = tilted_components(teacher, zero, 1.0, grid)
  student_m = _exact_kd(teacher.log_weights_K, log_comp, mu, cov, profile, config.kd_temperature, grid,
                        active, config.em_iters)
  log_student = log_density_on_grid(student_m, grid)
  tmask = jnp.asarray(target_mask(config))
  target_only = teacher._replace(log_weights_K=normalize_log_weights(
      jnp.where(tmask, teacher.log_weights_K, DEAD_LOG_WEIGHT)))
  log_target = log_density_on_grid(target_only, grid)
  mass = lambda log_q: jnp.sum(jnp.exp(log_normalize(log_q, grid)[0] + grid.log_cell_area) * land.target_G)

  def ak_mass(beta):
    lw_t, log_comp_t, mu_t, cov_t = tilted_components(teacher, land.reward_G, beta, grid)
    ak = _exact_kd(lw_t, log_comp_t, mu_t, cov_t, profile, config.kd_temperature, grid, active,
                   config.em_iters)
    return mass(log_density_on_grid(ak, grid))

  def ka_mass(beta, p):
    log_ref = jnp.logaddexp(jnp.log1p(-p) + log_student, jnp.log(p) + log_target)
    return mass(tilt_on_grid(log_ref, land.reward_G, beta, grid)[0])

  b = jnp.asarray(betas, dtype)
  p = jnp.asarray(recalls, dtype)
  ak = np.asarray(jax.jit(jax.vmap(ak_mass))(b))
  ka = np.asarray(jax.jit(jax.vmap(jax.vmap(ka_mass, (None, 0)), (0, None)))(b, p))
  ref_recall = np.asarray(jax.vmap(lambda q: mass(jnp.logaddexp(jnp.log1p(-q) + log_student,
                                                               jnp.log(q) + log_target)))(p))
  return {"ak_target_mass": ak, "ka_target_mass": ka, "gap": ak[:, None] - ka,
          "reference_recall": ref_recall}


def run_recall_sweep(out_dir, *, weight_min: float = 1e-8, weight_max: float = 0.5, n_weights: int = 29,
                     betas: Sequence[float] = (0.1, 0.3, 1.0, 3.0), dtype: str = "float64",
                     student: str = "4-mode", target: str = "one") -> list[Path]:
  """Sweep the reference's (teacher's) weight on the target mode against aligned-mode mass.

  Writes ``mog_recall_sweep.csv`` (one row per weight and beta) and the figure
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
  ww, bb = np.meshgrid(weights, betas_np, indexing="ij")
  cols = {"teacher_target_weight": ww, "beta": bb, **res}
  paths = [io.write_columns_csv(out / "mog_recall_sweep.csv", cols)]
  from recall_theory.mog.figures import plot_recall_sweep
  paths += plot_recall_sweep(out, weights, betas_np, res)
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
