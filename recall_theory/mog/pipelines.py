"""The two pipelines, the control and the recall-recovery variant, for one (seed, beta, student).

* **K-A** (KD then Align): distill the teacher into the student, align the student with
  pi_ref = student.
* **A-K** (Align then KD): align the teacher with pi_ref = teacher, distill the aligned
  teacher into the student's family with the same KD recipe.
* **K-A(teacher-ref)**, the control reviewers asked for: the student policy, aligned with
  pi_ref = teacher.
* **A-K(tau)**: A-K with a softer KD temperature (``kd_recovery_temperature``): recall
  recovered by distillation temperature.

Each is run with three alignment algorithms: ``exact`` (the Gibbs tilt by quadrature; for
the control, the exact optimum *within the student family*, reverse-KL projection of the
tilted teacher from the student, theory item 1), ``pg`` (:mod:`recall_theory.mog.pg`) and
``dpo`` (:mod:`recall_theory.mog.dpo`).

Why K-A can show *higher overall recall* (the reviewers' puzzle): E_{p*}[log q] is the
log-density a model keeps on every mode of p*, so it is dominated by the modes it does not cover.
A model that kept its reference's spread (an aligned K-A that did not reach the target) can score
a higher E_{p*}[log q] than one that moved its mass to the target; the Gibbs tilt only reweights
the student, while A-K's student is refitted to an aligned teacher. Neither is recall of the
desirable behaviour. ``mog_notes.md`` of a run lists, from that run's numbers, the betas at which
each happens and the target masses beside them; ``mog_tradeoff`` plots recall against target mass.

Every run also records "A", the aligned teacher (A-K's first step), so that each aligned model
carries the law's prediction (:mod:`recall_theory.mog.report`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from recall_theory.mog import distill as kd
from recall_theory.mog.dpo import (DPOConfig, held_out_dpo_loss, label_probability, make_preference_pairs,
                                   train_dpo, train_dpo_to_plateau)
from recall_theory.mog.em import fit_em
from recall_theory.mog.metrics import Landscape, metrics_on_grid
from recall_theory.mog.mixture import Mixture, log_prob, normalize_log_weights, sample
from recall_theory.mog.params import from_mixture, to_mixture
from recall_theory.mog.pg import PGConfig, train_pg, train_pg_to_plateau
from recall_theory.mog.quadrature import (Grid, expect, log_density_on_grid, log_normalize, tilt_on_grid,
                                          tilted_components)
from recall_theory.mog.region import TargetRegion, mixture_region_mass
from recall_theory.mog.setup import ALGORITHMS, PIPELINES, RESULT_PIPELINES, MogConfig, StudentTable

TRAINERS = ("pg K-A", "pg A-K", "pg K-A(teacher-ref)", "dpo K-A", "dpo A-K", "dpo K-A(teacher-ref)")


class Problem(NamedTuple):
  """Arrays shared by every run of a grid (replicated across devices).

  ``region`` (host boxes, static) is the target region A of the exact masses.
  """
  truth: Mixture
  grid: Grid
  land: Landscape
  reward: object
  table: StudentTable
  region: TargetRegion


class TrainedRuns(NamedTuple):
  """How the six trained runs of one cell ended, in :data:`TRAINERS` order (pg x3, dpo x3).

  ``steps_6`` used, ``reached_6`` whether the plateau rule held (always False for a
  fixed-step run, one of a config without a rule), ``objective_6`` the last held-out objective (PG:
  J/beta on the grid, nats; DPO: label-averaged held-out loss, nats per pair), ``optimum_6``
  its optimum (DPO: the tilt's held-out loss; PG: nan here, log Z from the region rule on the
  host).
  """
  steps_6: jax.Array
  reached_6: jax.Array
  objective_6: jax.Array
  optimum_6: jax.Array

  @classmethod
  def fixed_steps(cls, pg_steps: int, dpo_steps: int, dtype) -> "TrainedRuns":
    nan = jnp.full((6,), jnp.nan, dtype)
    return cls(jnp.asarray([pg_steps] * 3 + [dpo_steps] * 3, jnp.int32), jnp.zeros((6,), bool),
               nan, nan)


class RunOutput(NamedTuple):
  """One run.

  ``metrics_PxAxM``: every metric for the pipelines of :data:`RESULT_PIPELINES` (the four
  compared ones and "A", the aligned teacher) x algorithms; its ``target_mass`` entries are
  replaced on the host by ``exact_mass_PxA`` (bivariate normal cdf for every model that is a
  mixture; NaN for the two exact Gibbs tilts, K-A exact and A exact, whose masses come from
  the edge-aligned quadrature of :mod:`recall_theory.mog.region` after the grid run).
  ``student``/``teacher``: the two references (for that quadrature and the law's columns).
  """
  metrics_PxAxM: jax.Array
  exact_mass_PxA: jax.Array
  student_target_mass: jax.Array
  teacher_target_mass: jax.Array
  student: Mixture
  teacher: Mixture
  watch_step_T: jax.Array
  watch_quantity_T: jax.Array
  log_density_plot: jax.Array  # (2 + P*A, n_plot, n_plot) or (0,) when not kept
  trained: TrainedRuns


def fit_teacher(key: jax.Array, truth: Mixture, config: MogConfig) -> Mixture:
  """High-recall teacher: EM on samples of p*, started near every mode (covers all of them)."""
  k_data, k_init = jax.random.split(key)
  x_NxD = sample(k_data, truth, config.n_teacher_samples)
  k, d = truth.means_KxD.shape
  init = Mixture(jnp.full((k,), -jnp.log(k), truth.means_KxD.dtype),
                 truth.means_KxD + 0.05 * jax.random.normal(k_init, truth.means_KxD.shape, truth.means_KxD.dtype),
                 jnp.broadcast_to(0.04 * jnp.eye(d, dtype=truth.means_KxD.dtype), (k, d, d)))
  return fit_em(x_NxD, init, config.em_iters).mixture


def profile_for(mixture: Mixture, truth: Mixture, log_profile_modes_K: jax.Array) -> jax.Array:
  """The KD profile carried to each component via its nearest mode of p*."""
  sq = jnp.sum((mixture.means_KxD[:, None] - truth.means_KxD[None]) ** 2, axis=-1)
  return log_profile_modes_K[jnp.argmin(sq, axis=-1)]


def selective(mixture: Mixture, log_profile_K: jax.Array, temperature) -> Mixture:
  return mixture._replace(log_weights_K=kd.selective_log_weights(mixture.log_weights_K, log_profile_K,
                                                                 temperature))


def first_components(mixture: Mixture, k: int) -> Mixture:
  """The first ``k`` components (weights renormalised; a no-op on the weights when the rest are 0)."""
  return Mixture(normalize_log_weights(mixture.log_weights_K[:k]), mixture.means_KxD[:k], mixture.covs_KxDxD[:k])


def references(seed, variant, problem: Problem, config: MogConfig, kd_temperature=None) -> tuple[Mixture, Mixture]:
  """(teacher, student) of one run: EM teacher from seed's samples of p*, KD student (variant).

  ``kd_temperature``: the KD recipe's tau, a traceable scalar (None: ``config.kd_temperature``).
  """
  tau = config.kd_temperature if kd_temperature is None else kd_temperature
  k_teacher, k_student, _ = jax.random.split(jax.random.PRNGKey(seed), 3)
  k_student = jax.random.fold_in(k_student, variant)
  teacher = fit_teacher(k_teacher, problem.truth, config)
  prof_teacher = profile_for(teacher, problem.truth, problem.table.log_profile_SxK[variant])
  student = kd.distill_forward_samples(k_student, selective(teacher, prof_teacher, tau),
                                       problem.table.active_SxC[variant], n_samples=config.n_student_samples,
                                       n_iter=config.em_iters)
  return teacher, student


def run_single(seed, beta, variant, problem: Problem, config: MogConfig,
               keep_densities: bool = False, kd_temperature=None) -> RunOutput:
  """Every pipeline x algorithm for one seed, beta and student variant (pure; vmap over all three).

  ``kd_temperature``: the KD recipe's tau for K-A's student and A-K's distillation, a traceable
  scalar, so that one compiled program serves every tau (None: ``config.kd_temperature``).
  """
  tau = config.kd_temperature if kd_temperature is None else kd_temperature
  truth, grid, land, reward = problem.truth, problem.grid, problem.land, problem.reward
  k_train = jax.random.fold_in(jax.random.split(jax.random.PRNGKey(seed), 3)[2], variant)
  log_profile_modes = problem.table.log_profile_SxK[variant]
  # Students are padded to the teacher's K components (shared shapes for the stacked PG/DPO runs);
  # the fits that only produce a student (exact KD, sampled KD, the control) use the first
  # max_student_components, which hold every active component: the padded ones have weight exactly
  # 0 and zero gradient, so the results are the same to rounding, at about half the cost.
  k_student = config.max_student_components
  active = problem.table.active_SxC[variant][:k_student]
  teacher, student = references(seed, variant, problem, config, tau)
  prof_teacher = profile_for(teacher, truth, log_profile_modes)
  log_teacher_G = log_density_on_grid(teacher, grid)
  log_student_G = log_density_on_grid(student, grid)

  def measure(log_q_G, log_ref_G):
    return metrics_on_grid(log_q_G, log_ref_G, land, grid, config.support_threshold)

  def distill_mixture(key_kd, aligned_teacher: Mixture, temperature):
    src = selective(aligned_teacher, profile_for(aligned_teacher, truth, log_profile_modes), temperature)
    return kd.distill_forward_samples(key_kd, src, active, n_samples=config.n_student_samples,
                                      n_iter=config.em_iters)

  # --- exact -------------------------------------------------------------------------------
  reward_G = land.reward_G
  temps = jnp.stack([jnp.asarray(tau, reward_G.dtype), jnp.asarray(config.kd_recovery_temperature, reward_G.dtype)])
  log_ka_G, _ = tilt_on_grid(log_student_G, reward_G, beta, grid)
  lw_t, log_comp_GxK, mu_t, cov_t = tilted_components(teacher, reward_G, beta, grid)

  region_mass = lambda q: mixture_region_mass(q, problem.region)

  def exact_kd(temperature):
    sel_lw = kd.selective_log_weights(lw_t, prof_teacher, temperature)
    q = kd.distill_forward_grid(sel_lw, log_comp_GxK, mu_t, cov_t, grid, active, n_iter=config.em_iters)
    return log_density_on_grid(q, grid), region_mass(q)

  exact_ak_2xG, exact_ak_mass_2 = jax.vmap(exact_kd)(temps)
  log_aligned_teacher_G, _ = tilt_on_grid(log_teacher_G, reward_G, beta, grid)
  control, _ = kd.distill_reverse_kl_grid(first_components(student, k_student), log_aligned_teacher_G, grid,
                                         n_steps=config.control_steps, learning_rate=config.control_lr)
  exact = [log_ka_G, exact_ak_2xG[0], log_density_on_grid(control, grid), exact_ak_2xG[1],
           log_aligned_teacher_G]
  nan = jnp.asarray(jnp.nan, reward_G.dtype)
  exact_mass = [nan, exact_ak_mass_2[0], region_mass(control), exact_ak_mass_2[1], nan]

  # --- trained: three policy-gradient and three DPO runs, vmapped ----------------------------
  # Runs: K-A (student, ref student), A-K (teacher, ref teacher), control (student, ref teacher).
  stack = lambda *trees: jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)
  inits = stack(from_mixture(student), from_mixture(teacher), from_mixture(student))
  refs3 = stack(student, teacher, teacher)
  pg_cfg = PGConfig(n_steps=config.pg_steps, batch_size=config.pg_batch, learning_rate=config.pg_lr)
  k_pg, k_dpo, k_kd = jax.random.split(k_train, 3)
  dpo_cfg = DPOConfig(n_steps=config.dpo_steps, learning_rate=config.dpo_lr, n_pairs=config.dpo_pairs,
                      label_noise=config.label_noise)
  pair_refs = stack(student, teacher)
  k_pairs, k_heldout = jax.random.split(k_dpo)
  pairs2 = jax.vmap(make_preference_pairs, in_axes=(0, 0, None, None, None))(
      jax.random.split(k_pairs if config.plateau is not None else k_dpo, 2), pair_refs, reward,
      config.dpo_pairs, config.label_noise)
  pairs3 = jax.tree_util.tree_map(lambda a: a[jnp.asarray([0, 1, 1])], pairs2)
  if config.plateau is None:
    pg_params, _, pg_watch = jax.vmap(train_pg, in_axes=(0, 0, 0, None, None, None))(
        jax.random.split(k_pg, 3), inits, refs3, reward, beta, pg_cfg)
    dpo_params, _, dpo_watch = jax.vmap(train_dpo, in_axes=(0, 0, None, None))(inits, pairs3, beta, dpo_cfg)
    trained = TrainedRuns.fixed_steps(config.pg_steps, config.dpo_steps, reward_G.dtype)
  else:
    pg_params, pg_watch, dpo_params, dpo_watch, trained = _train_to_plateau(
        k_pg, k_heldout, inits, refs3, pair_refs, pairs3, beta, problem, config, region_mass)
  policies = jax.vmap(to_mixture)(jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]),
                                                         pg_params, dpo_params))  # pg x3, dpo x3
  log_policies_6xG = jax.vmap(lambda m: log_density_on_grid(m, grid))(policies)
  policy_mass_6 = jax.vmap(region_mass)(policies)
  # A-K: distill the aligned teachers (pg, dpo) at both KD temperatures, vmapped.
  aligned_teachers = jax.tree_util.tree_map(lambda a: a[jnp.asarray([1, 1, 4, 4])], policies)
  temps4 = jnp.tile(temps, 2)

  def sampled_kd(key_kd, aligned, temperature):
    q = distill_mixture(key_kd, aligned, temperature)
    return log_density_on_grid(q, grid), region_mass(q)

  log_ak_4xG, ak_mass_4 = jax.vmap(sampled_kd)(jax.random.split(k_kd, 4), aligned_teachers, temps4)
  pg = [log_policies_6xG[0], log_ak_4xG[0], log_policies_6xG[2], log_ak_4xG[1], log_policies_6xG[1]]
  dpo = [log_policies_6xG[3], log_ak_4xG[2], log_policies_6xG[5], log_ak_4xG[3], log_policies_6xG[4]]
  pg_mass = [policy_mass_6[0], ak_mass_4[0], policy_mass_6[2], ak_mass_4[1], policy_mass_6[1]]
  dpo_mass = [policy_mass_6[3], ak_mass_4[2], policy_mass_6[5], ak_mass_4[3], policy_mass_6[4]]

  refs = [log_student_G, log_teacher_G, log_teacher_G, log_teacher_G, log_teacher_G]
  by_algo = {"exact": exact, "pg": pg, "dpo": dpo}
  mass_by_algo = {"exact": exact_mass, "pg": pg_mass, "dpo": dpo_mass}
  metrics = jnp.stack([jnp.stack([measure(by_algo[a][p], refs[p]) for a in ALGORITHMS])
                       for p in range(len(RESULT_PIPELINES))])
  exact_mass_PxA = jnp.stack([jnp.stack([mass_by_algo[a][p] for a in ALGORITHMS])
                              for p in range(len(RESULT_PIPELINES))])
  student_mass = region_mass(student)
  teacher_mass = region_mass(teacher)
  if keep_densities:
    n = int(round(grid.points_GxD.shape[0] ** 0.5))
    stack = [log_teacher_G, log_student_G] + [by_algo[a][p] for p in range(len(PIPELINES)) for a in ALGORITHMS]
    dens = jnp.stack([s.reshape(n, n)[::2, ::2] for s in stack])
  else:
    dens = jnp.zeros((0,), log_teacher_G.dtype)
  return RunOutput(metrics, exact_mass_PxA, student_mass, teacher_mass, student, teacher,
                   jnp.concatenate([pg_watch.step, dpo_watch.step]),
                   jnp.concatenate([pg_watch.quantity, dpo_watch.quantity]), dens, trained)


def _train_to_plateau(k_pg, k_heldout, inits, refs3, pair_refs, pairs3, beta, problem: Problem,
                      config: MogConfig, region_mass):
  """The six trained runs of :func:`run_single`, each until the plateau rule holds.

  Held-out objectives (:mod:`recall_theory.plateau`): policy gradient's ``J/beta = E_pi[r]/beta
  - KL(pi || pi_ref)`` by quadrature on the grid (exact up to the grid's resolution); DPO's
  label-averaged loss on ``dpo_pairs`` held-out pairs from the same reference, whose optimum
  is the tilt's loss (``h* = r1 - r2``). Returns both runs' parameters and watches and their
  :class:`TrainedRuns` (PG's optimum, log Z, is added on the host from the region rule).
  """
  grid, reward, reward_G, rule = problem.grid, problem.reward, problem.land.reward_G, config.plateau
  pg_cfg = PGConfig(n_steps=config.pg_steps, batch_size=config.pg_batch, learning_rate=config.pg_lr)
  dpo_cfg = DPOConfig(n_steps=config.dpo_steps, learning_rate=config.dpo_lr, n_pairs=config.dpo_pairs,
                      label_noise=config.label_noise)

  def pg_run(key, init, ref):
    log_ref_G = log_normalize(log_density_on_grid(ref, grid), grid)[0]

    def evaluate(params):
      q = to_mixture(params)
      log_q_G = log_normalize(log_density_on_grid(q, grid), grid)[0]
      return expect(log_q_G, reward_G / beta - (log_q_G - log_ref_G), grid), region_mass(q)

    return train_pg_to_plateau(key, init, ref, reward, beta, pg_cfg, rule, evaluate)

  pg_params, pg_watch, pg_state = jax.vmap(pg_run)(jax.random.split(k_pg, 3), inits, refs3)

  def held_out(key, ref):
    k1, k2 = jax.random.split(key)
    first, second = sample(k1, ref, config.dpo_pairs), sample(k2, ref, config.dpo_pairs)
    q = label_probability(reward, first, second, config.label_noise)
    return first, second, log_prob(ref, first), log_prob(ref, second), q

  heldout2 = jax.vmap(held_out)(jax.random.split(k_heldout, 2), pair_refs)
  heldout3 = jax.tree_util.tree_map(lambda a: a[jnp.asarray([0, 1, 1])], heldout2)

  def dpo_run(init, pairs, first, second, ref_first, ref_second, q):
    r_first, r_second = reward(first), reward(second)
    optimum = jnp.mean(-(q * jax.nn.log_sigmoid(r_first - r_second)
                         + (1.0 - q) * jax.nn.log_sigmoid(r_second - r_first)))

    def evaluate(params):
      loss = held_out_dpo_loss(params, first, second, ref_first, ref_second, q, beta)
      return loss, region_mass(to_mixture(params))

    params, watch, state = train_dpo_to_plateau(init, pairs, beta, dpo_cfg, rule, evaluate)
    return params, watch, state, optimum

  dpo_params, dpo_watch, dpo_state, dpo_optimum = jax.vmap(dpo_run)(inits, pairs3, *heldout3)
  nan3 = jnp.full((3,), jnp.nan, reward_G.dtype)
  trained = TrainedRuns(steps_6=jnp.concatenate([pg_state.steps, dpo_state.steps]),
                        reached_6=jnp.concatenate([pg_state.reached, dpo_state.reached]),
                        objective_6=jnp.concatenate([pg_state.objective, dpo_state.objective]),
                        optimum_6=jnp.concatenate([nan3, dpo_optimum]))
  return pg_params, pg_watch, dpo_params, dpo_watch, trained
