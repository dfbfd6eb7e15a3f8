"""One jitted call for a whole grid of seeds x beta x student variant, sharded over devices.

The grid is flattened to one axis of length n = seeds * betas * students, padded to a
multiple of the device count, and placed with ``NamedSharding(Mesh(devices, ("grid",)),
PartitionSpec("grid"))``; the shared :class:`~recall_theory.mog.pipelines.Problem` is
replicated. ``xla_cpu.jit(jax.vmap(run_single))`` (:mod:`recall_theory.xla_cpu`) then runs each
device's slice locally: the same command runs on one CPU, several GPUs or a TPU slice, and
the results do not depend on the device count (every run draws its randomness from its own seed).

Example::

  result = run_grid(MogConfig(), seeds=range(8), betas=[0.05, 0.2, 1.0])
  result.metrics.shape   # (8, 3, 2, 4, 3, 8): seed, beta, student, pipeline, algorithm, metric
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from recall_theory import xla_cpu
from recall_theory.errors import InputError, check_int_range
from recall_theory.mog.divergence_guard import Watch, raise_if_diverged
from recall_theory.mog.metrics import METRICS, Landscape
from recall_theory.mog.mixture import Mixture, log_prob, normalize_log_weights
from recall_theory.mog.pipelines import TRAINERS, Problem, run_single
from recall_theory.mog.region import RegionRule, make_region_rule, tilt_kl, tilt_log_integrals
from recall_theory.mog.quadrature import make_grid
from recall_theory.mog.reward import make_bump_reward
from recall_theory.mog.setup import (ALGORITHMS, ALIGNED_TEACHER, RESULT_PIPELINES, TARGETS, MogConfig, ground_truth, parse_betas, student_table,
                                     target_mask, target_region, voronoi_target_indicator)


class GridResult(NamedTuple):
  """Host arrays of a grid run.

  ``metrics``: (S, B, V, P, A, M) over seeds, betas, students, :data:`RESULT_PIPELINES`,
  algorithms, metrics; its ``target_mass`` is exact (orthant cdf for mixtures, edge-aligned
  quadrature for the Gibbs tilts). ``student_target_mass``/``teacher_target_mass`` (S, B, V):
  the references' exact recall of the target. ``student_delta_over_beta`` /
  ``teacher_delta_over_beta`` (S, B, V): the law's (L_A - L_{A^c})/beta of the reward under
  each reference. ``tilt_quadrature_error``: the largest change of a tilted mass when the
  region rule is refined (the resolution of those masses). ``log_densities``:
  (S, B, V, 2+P*A, n, n) or None.
  """
  seeds: np.ndarray
  betas: np.ndarray
  students: tuple
  metrics: np.ndarray
  student_target_mass: np.ndarray
  teacher_target_mass: np.ndarray
  log_densities: np.ndarray | None
  plot_axis: np.ndarray
  student_delta_over_beta: np.ndarray
  teacher_delta_over_beta: np.ndarray
  tilt_quadrature_error: float
  student_mixtures: Mixture | None = None   # leaves (S, V, ...): the students of beta index 0
  teacher_mixtures: Mixture | None = None   # leaves (S, ...)
  # How each trained run ended, (S, B, V, 6) in TRAINERS order (pg K-A, pg A, pg control, dpo
  # K-A, dpo A, dpo control): steps used, whether the plateau rule held (config.plateau; False
  # for every run without a rule), the last held-out objective and its optimum (PG: J/beta on the
  # grid against log Z of the reference's tilt on the region rule; DPO: the held-out loss against
  # the tilt's loss on the same pairs).
  trained_steps: np.ndarray | None = None
  trained_reached: np.ndarray | None = None
  trained_objective: np.ndarray | None = None
  trained_optimum: np.ndarray | None = None


def build_problem(config: MogConfig, dtype=None, reward=None) -> Problem:
  """Ground truth, quadrature grid, oracle reward and landscape arrays for ``config``.

  ``reward`` swaps the oracle: any pytree with ``__call__(x_NxD) -> r_N`` (default: the bump
  reward of :mod:`recall_theory.mog.reward` around the configured target).
  """
  config.validate()
  dtype = dtype or jnp.result_type(float)
  truth = ground_truth(config, dtype)
  grid = make_grid(config.grid_lo, config.grid_hi, config.grid_n, dtype)
  if reward is None:
    reward = make_bump_reward(TARGETS[config.target], config.reward_width, dtype)
  tmask = jnp.asarray(target_mask(config))
  target_G = voronoi_target_indicator(grid.points_GxD, truth.means_KxD, tmask)
  log_truth_G = log_prob(truth, grid.points_GxD)
  truth_target = truth._replace(log_weights_K=normalize_log_weights(
      jnp.where(tmask, truth.log_weights_K, -jnp.inf)))
  land = Landscape(reward(grid.points_GxD), target_G, log_truth_G, log_prob(truth_target, grid.points_GxD))
  return Problem(truth, grid, land, reward, student_table(config, dtype), target_region(config))


@functools.lru_cache(maxsize=8)
def _compiled(config: MogConfig, keep_densities: bool, chunk_size: int | None = None):
  """The jitted, vmapped grid for ``config``: arguments (seeds, betas, variants, tau, problem).

  The KD temperature tau is a traced (replicated) argument, not part of the program: callers
  pass ``config`` with :data:`_TAU_PLACEHOLDER` as its ``kd_temperature``, so runs at every tau
  share one compilation (``recall-theory mog --phase-map`` runs one grid per tau).
  """
  def one(seed, beta, variant, tau, problem):
    return run_single(seed, beta, variant, problem, config=config, keep_densities=keep_densities,
                      kd_temperature=tau)

  grid_fn = jax.vmap(one, in_axes=(0, 0, 0, None, None))
  if chunk_size is None:
    return xla_cpu.jit(grid_fn)

  # lax.map over chunks of ``chunk_size`` runs (each chunk vmapped): memory grows with the
  # chunk, not with the grid, at the price of less parallel work per step. The last chunk is
  # padded with copies of the last run (dropped again), so every chunk has one shape.
  def chunked(seeds, betas, variants, tau, problem):
    n = seeds.shape[0]
    n_chunks = -(-n // chunk_size)
    take = jnp.concatenate([jnp.arange(n), jnp.full((n_chunks * chunk_size - n,), n - 1)])
    xs = jax.tree_util.tree_map(lambda a: a[take].reshape((n_chunks, chunk_size) + a.shape[1:]),
                                (seeds, betas, variants))
    out = jax.lax.map(lambda x: grid_fn(*x, tau, problem), xs)
    return jax.tree_util.tree_map(lambda a: a.reshape((n_chunks * chunk_size,) + a.shape[2:])[:n], out)

  return xla_cpu.jit(chunked)


# Stands in for kd_temperature in the key of _compiled (the real tau is a traced argument).
_TAU_PLACEHOLDER = 1.0


def reference_tilt_integrals(refs: Mixture, reward, betas, rule: RegionRule
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(log I_A, log I_{A^c}, KL(tilt || ref)) of every reference tilted at every beta, each (R, B).

  I_S = int_S ref e^{R/beta}.

  One reference's log-density on the region rule's nodes (Q,) is computed once and reused for
  all betas; ``lax.map`` over references keeps memory at one (Q, K) array.
  """
  reward_Q = reward(rule.points_QxD)
  betas = jnp.asarray(betas, rule.points_QxD.dtype)

  def one(ref):
    log_ref_Q = log_prob(ref, rule.points_QxD)
    return jax.vmap(lambda b: (*tilt_log_integrals(log_ref_Q, reward_Q, b, rule),
                               tilt_kl(log_ref_Q, reward_Q, b, rule)))(betas)

  log_ia, log_iac, kl = xla_cpu.jit(lambda r: jax.lax.map(one, r))(refs)
  return np.asarray(log_ia), np.asarray(log_iac), np.asarray(kl)


def exact_tilt_masses(config: MogConfig, refs: Mixture, reward, betas, dtype=None,
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
  """The log-integrals and KL of the tilts (R, B) (see :func:`reference_tilt_integrals`) and
  the quadrature error of the tilted masses.

  The error is the largest |mass - mass on a refined rule| (finest panel and largest panel
  0.01 -> 0.004, 0.3 -> 0.2, order 6 -> 8): the rule's resolution, reported with the results.
  """
  region = target_region(config)
  centers = np.asarray(TARGETS[config.target])
  rule = make_region_rule(region, centers, dtype=dtype)
  fine = make_region_rule(region, centers, finest=0.004, coarsest=0.2, order=8, dtype=dtype)
  log_ia, log_iac, kl = reference_tilt_integrals(refs, reward, betas, rule)
  log_ia_f, log_iac_f, _ = reference_tilt_integrals(refs, reward, betas, fine)
  mass = 1.0 / (1.0 + np.exp(log_iac - log_ia))
  mass_f = 1.0 / (1.0 + np.exp(log_iac_f - log_ia_f))
  return log_ia, log_iac, kl, float(np.max(np.abs(mass - mass_f)))


def delta_over_beta(log_ia, log_iac, reference_recall) -> np.ndarray:
  """(L_A - L_{A^c})/beta = log(I_A / ref(A)) - log(I_Ac / ref(A^c)), L_S = beta log E_ref[e^{R/beta} | S]."""
  p = np.asarray(reference_recall, dtype=np.float64)
  with np.errstate(divide="ignore"):
    return (log_ia - np.log(p)) - (log_iac - np.log1p(-p))


def grid_mesh(devices: Sequence | None = None) -> Mesh:
  """A one-axis mesh named "grid" over ``devices`` (default: every device)."""
  return Mesh(np.asarray(devices if devices is not None else jax.devices()), ("grid",))


def run_grid(config: MogConfig, seeds: Sequence[int], betas: Sequence[float], *, dtype=None,
             keep_densities: bool = False, devices: Sequence | None = None, reward=None,
             chunk_size: int | None = None) -> GridResult:
  """Run every (seed, beta, student) in one jitted, vmapped, device-sharded call.

  ``chunk_size``: run the grid as ``lax.map`` over chunks of that many vmapped runs (bounded
  memory; None = one vmap over the whole grid). Raises TrainingDivergedError (naming trainer,
  step, quantity and run) if any PG or DPO run went non-finite, InputError for bad arguments.
  """
  config.validate()
  if chunk_size is not None:
    chunk_size = check_int_range("chunk_size", chunk_size, 1)
  seeds_np = np.asarray(list(seeds))
  if seeds_np.size == 0:
    raise InputError("seeds must contain at least one seed")
  for s in seeds_np:
    check_int_range("seed", s, 0, 2 ** 31 - 1)
  betas_np = parse_betas(betas)
  problem = build_problem(config, dtype, reward)
  n_s, n_b, n_v = len(seeds_np), len(betas_np), len(config.students)
  s_idx, b_idx, v_idx = (a.ravel() for a in np.meshgrid(np.arange(n_s), np.arange(n_b), np.arange(n_v),
                                                       indexing="ij"))
  n = s_idx.size
  mesh = grid_mesh(devices)
  n_dev = mesh.devices.size
  pad = (-n) % n_dev
  take = np.concatenate([np.arange(n), np.full(pad, n - 1)]).astype(int)
  shard = NamedSharding(mesh, PartitionSpec("grid"))
  replicated = NamedSharding(mesh, PartitionSpec())
  beta_dtype = problem.grid.points_GxD.dtype
  seed_arr = jax.device_put(jnp.asarray(seeds_np[s_idx][take], jnp.uint32), shard)
  beta_arr = jax.device_put(jnp.asarray(betas_np[b_idx][take], beta_dtype), shard)
  var_arr = jax.device_put(jnp.asarray(v_idx[take], jnp.int32), shard)
  tau_arr = jax.device_put(jnp.asarray(config.kd_temperature, beta_dtype), replicated)
  problem = jax.device_put(problem, replicated)
  grid_fn = _compiled(dataclasses.replace(config, kd_temperature=_TAU_PLACEHOLDER), keep_densities, chunk_size)
  out = jax.device_get(grid_fn(seed_arr, beta_arr, var_arr, tau_arr, problem))
  names = [f"seed={seeds_np[s_idx[i]]}, beta={betas_np[b_idx[i]]:g}, student={config.students[v_idx[i]]}"
           for i in range(n)]
  steps, quants = np.asarray(out.watch_step_T)[:n], np.asarray(out.watch_quantity_T)[:n]
  for t, trainer in enumerate(TRAINERS):
    quantities = (("surrogate loss", "shaped reward", "policy parameters") if trainer.startswith("pg")
                  else ("DPO loss", "policy parameters"))
    raise_if_diverged(Watch(steps[:, t], quants[:, t]), trainer, quantities, names)
  shape = (n_s, n_b, n_v)
  dens = np.asarray(out.log_density_plot)[:n].reshape(shape + out.log_density_plot.shape[1:]) \
      if keep_densities else None
  axis = np.asarray(problem.grid.points_GxD[:config.grid_n, 0])[::2]
  metrics = np.asarray(out.metrics_PxAxM)[:n].reshape(shape + out.metrics_PxAxM.shape[1:]).copy()
  exact_mass = np.asarray(out.exact_mass_PxA)[:n].reshape(shape + out.exact_mass_PxA.shape[1:])
  student_mass = np.asarray(out.student_target_mass)[:n].reshape(shape)
  teacher_mass = np.asarray(out.teacher_target_mass)[:n].reshape(shape)

  # The two Gibbs tilts (K-A exact of the student, A exact of the teacher): the references are
  # the same at every beta (teacher: per seed; student: per seed and variant), so each is
  # evaluated once on the region rule and tilted at every beta.
  first = lambda tree: jax.tree_util.tree_map(lambda a: np.asarray(a)[:n].reshape(shape + a.shape[1:])[:, 0], tree)
  students_SxV = first(out.student)            # leaves (S, V, ...)
  teachers_S = jax.tree_util.tree_map(lambda a: a[:, 0], first(out.teacher))
  flat = lambda tree: jax.tree_util.tree_map(lambda a: jnp.asarray(a.reshape((-1,) + a.shape[2:])), tree)
  refs = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), flat(students_SxV),
                                jax.tree_util.tree_map(jnp.asarray, teachers_S))
  log_ia, log_iac, tilt_kl_RxB, quad_err = exact_tilt_masses(config, refs, problem.reward, betas_np, beta_dtype)
  n_sv = n_s * n_v
  s_ia = log_ia[:n_sv].reshape(n_s, n_v, n_b).transpose(0, 2, 1)   # (S, B, V)
  s_iac = log_iac[:n_sv].reshape(n_s, n_v, n_b).transpose(0, 2, 1)
  t_ia = np.broadcast_to(log_ia[n_sv:][:, :, None], shape)
  t_iac = np.broadcast_to(log_iac[n_sv:][:, :, None], shape)
  ex = ALGORITHMS.index("exact")
  exact_mass = exact_mass.copy()
  exact_mass[..., RESULT_PIPELINES.index("K-A"), ex] = 1.0 / (1.0 + np.exp(s_iac - s_ia))
  exact_mass[..., RESULT_PIPELINES.index(ALIGNED_TEACHER), ex] = 1.0 / (1.0 + np.exp(t_iac - t_ia))
  if not np.isfinite(exact_mass).all():
    raise RuntimeError("exact target masses are not all finite")  # a bug, never bad input
  metrics[..., METRICS.index("target_mass")] = exact_mass
  # KL of the two tilts from the same rule (the midpoint grid under-resolves a tilt narrower than a cell).
  kl = METRICS.index("kl_to_reference")
  metrics[..., RESULT_PIPELINES.index("K-A"), ex, kl] = tilt_kl_RxB[:n_sv].reshape(n_s, n_v, n_b).transpose(0, 2, 1)
  metrics[..., RESULT_PIPELINES.index(ALIGNED_TEACHER), ex, kl] = np.broadcast_to(tilt_kl_RxB[n_sv:][:, :, None], shape)
  trained = jax.tree_util.tree_map(lambda a: np.asarray(a)[:n].reshape(shape + a.shape[1:]), out.trained)
  optimum = np.array(trained.optimum_6, dtype=np.float64)
  log_z_student = np.logaddexp(s_ia, s_iac)          # (S, B, V): log of int student e^{R/beta}
  log_z_teacher = np.logaddexp(t_ia, t_iac)
  optimum[..., 0] = log_z_student                     # pg K-A: the student's tilt
  optimum[..., 1] = log_z_teacher                     # pg A
  optimum[..., 2] = log_z_teacher                     # pg control: the teacher's tilt
  return GridResult(seeds_np, betas_np, tuple(config.students), metrics, student_mass, teacher_mass, dens, axis,
                    delta_over_beta(s_ia, s_iac, student_mass), delta_over_beta(t_ia, t_iac, teacher_mass),
                    quad_err, students_SxV, teachers_S, np.asarray(trained.steps_6),
                    np.asarray(trained.reached_6), np.asarray(trained.objective_6, np.float64), optimum)
