"""The four levels of theory.md item 13 on the Mixture-of-Gaussians track (exact masses).

Per (seed, beta, student) cell and pipeline (``K-A``: student policy and reference; ``A``:
teacher, teacher; ``K-A(teacher-ref)``: student policy, teacher reference), the target mass
of

1. **law**: the Gibbs tilt ``pi_ref e^{R/beta}/Z`` of the reference (region rule, exact);
2. **best in class**: the policy's family (its number of components) fitted to that tilt by
   maximum likelihood, the infinite-sample limit: EM on the grid with the tilt's cell masses
   as weights, started from the policy's initial mixture (forward KL, the same projection as
   the transformer track's fit to tilt samples);
3. **covering sampler**: policy gradient and DPO trained to their plateau on draws from
   ``q = (1 - lam) pi_ref + lam g``, where ``g`` is the reference restricted to the target
   region on the grid (cell by its reference mass among the cells whose centre lies in A,
   then uniform in the cell): a density known at every point, ``g(x) = m_c / h^2``.

   * PG: the clipped surrogate on q's draws with self-normalised importance weights
     ``w = pi_old(x)/q(x)`` (the advantage standardised under the same weights);
   * DPO: pairs ``x1, x2 ~ q`` with the run's Bradley-Terry labels; the optimum is the
     tilt for any pair distribution with full support (theory item 5);
4. **as it is**: the grid's own trainers (:func:`recall_theory.mog.pipelines.run_single`),
   to plateau.

PG and DPO tilt by the same reward (``R/beta``: DPO's labels are ``sigmoid(R1 - R2)``), so the
law and the best fit are shared by both algorithms. Every mass is exact (bivariate normal
cdf), so the decomposition (:mod:`recall_theory.decomposition`) has no evaluation noise;
its spread over seeds is that of the trained references and the training draws.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from recall_theory import schema, xla_cpu
from recall_theory.errors import InputError, check_int_range
from recall_theory.mog import pipelines as mog_pl
from recall_theory.mog.divergence_guard import new_watch, update_watch
from recall_theory.mog.dpo import (DPOConfig, PreferencePairs, held_out_dpo_loss, label_probability,
                                   make_preference_pairs, train_dpo_to_plateau)
from recall_theory.mog.em import fit_em
from recall_theory.mog.grid_run import build_problem, exact_tilt_masses
from recall_theory.mog.mixture import Mixture, log_prob, sample
from recall_theory.mog.params import all_finite, from_mixture, to_mixture
from recall_theory.mog.pg import PGConfig
from recall_theory.mog.quadrature import Grid, expect, log_density_on_grid, log_normalize
from recall_theory.mog.region import mixture_region_mass
from recall_theory.mog.setup import MogConfig, parse_betas
from recall_theory.plateau import plateau_schedule, run_to_plateau

PIPELINES = ("K-A", "A", "K-A(teacher-ref)")
ALGORITHMS = ("pg", "dpo")
COVERING_SHARE = 0.5
BEST_FIT_ITERATIONS = 200
# EM has converged when its weighted log-likelihood moved by less than this (nats) over the
# second half of its iterations.
BEST_FIT_TOLERANCE = 1e-4


class Proposal(NamedTuple):
  """``q = (1 - lam) pi_ref + lam g`` with ``g`` the reference on the target's grid cells."""
  reference: Mixture
  log_cell_mass_G: jax.Array   # log m_c of g over the grid's cells (-inf off the target)
  share: jax.Array             # lam


def covering_proposal(reference: Mixture, grid: Grid, target_G: jax.Array, share) -> Proposal:
  """The covering proposal of one reference (see the module docstring)."""
  log_ref_G = log_density_on_grid(reference, grid)
  log_m = jnp.where(target_G > 0, log_ref_G, -jnp.inf)
  return Proposal(reference, log_m - jax.nn.logsumexp(log_m), jnp.asarray(share, log_ref_G.dtype))


def _grid_geometry(grid: Grid):
  n = int(round(grid.points_GxD.shape[0] ** 0.5))
  h = jnp.exp(0.5 * grid.log_cell_area)
  lo = grid.points_GxD[0, 0] - 0.5 * h
  return n, h, lo


def sample_proposal(key, proposal: Proposal, grid: Grid, n_draws: int) -> jax.Array:
  """``n_draws`` points from q: (n, D)."""
  n, h, lo = _grid_geometry(grid)
  k_mix, k_ref, k_cell, k_unif = jax.random.split(key, 4)
  from_ref = sample(k_ref, proposal.reference, n_draws)
  # inverse cdf over the cells (a categorical would draw n x G Gumbel variables)
  cdf = jnp.cumsum(jnp.exp(proposal.log_cell_mass_G))
  u = jax.random.uniform(k_cell, (n_draws,), cdf.dtype) * cdf[-1]
  cell = jnp.clip(jnp.searchsorted(cdf, u, side="right"), 0, cdf.shape[0] - 1)
  centre = grid.points_GxD[cell]
  from_g = centre + h * (jax.random.uniform(k_unif, centre.shape, centre.dtype) - 0.5)
  use_g = jax.random.bernoulli(k_mix, proposal.share, (n_draws,))
  return jnp.where(use_g[:, None], from_g, from_ref)


def log_proposal_density(x_NxD: jax.Array, proposal: Proposal, grid: Grid) -> jax.Array:
  """``log q(x) = log((1 - lam) pi_ref(x) + lam m_c(x) / h^2)``: (N,)."""
  n, h, lo = _grid_geometry(grid)
  idx = jnp.floor((x_NxD - lo) / h).astype(jnp.int32)
  inside = jnp.all((idx >= 0) & (idx < n), axis=-1)
  flat = jnp.clip(idx[:, 1], 0, n - 1) * n + jnp.clip(idx[:, 0], 0, n - 1)  # grid is "xy": row = y
  log_g = jnp.where(inside, proposal.log_cell_mass_G[flat] - grid.log_cell_area, -jnp.inf)
  return jnp.logaddexp(jnp.log1p(-proposal.share) + log_prob(proposal.reference, x_NxD),
                       jnp.log(proposal.share) + log_g)


def _weighted_pg_step(config: PGConfig, reference: Mixture, reward, beta, opt, proposal: Proposal,
                      grid: Grid):
  """Clipped-surrogate PG on q's draws, self-normalised importance weights ``pi_old/q``."""

  def loss_fn(params, x_BxD, log_old_B, adv_B, w_B):
    log_p_B = log_prob(to_mixture(params), x_BxD)
    ratio_B = jnp.exp(log_p_B - log_old_B)
    clipped = jnp.clip(ratio_B, 1.0 - config.clip_eps, 1.0 + config.clip_eps)
    return -jnp.sum(w_B * jnp.minimum(ratio_B * adv_B, clipped * adv_B))

  grad_fn = jax.value_and_grad(loss_fn)

  def step(t, key_t, params, opt_state, watch):
    policy = to_mixture(params)
    x_BxD = jax.lax.stop_gradient(sample_proposal(key_t, proposal, grid, config.batch_size))
    log_old_B = jax.lax.stop_gradient(log_prob(policy, x_BxD))
    log_w = log_old_B - log_proposal_density(x_BxD, proposal, grid)
    w_B = jax.nn.softmax(log_w)                                    # self-normalised weights
    shaped_B = reward(x_BxD) - beta * (log_old_B - log_prob(reference, x_BxD))
    mean = jnp.sum(w_B * shaped_B)
    sd = jnp.sqrt(jnp.sum(w_B * (shaped_B - mean) ** 2))
    adv_B = (shaped_B - mean) / (sd + 1e-8)
    loss = jnp.zeros((), x_BxD.dtype)
    for _ in range(config.n_epochs):
      loss, grads = grad_fn(params, x_BxD, log_old_B, adv_B, w_B)
      updates, opt_state = opt.update(grads, opt_state, params)
      params = optax.apply_updates(params, updates)
    finite = jnp.stack([jnp.isfinite(loss), jnp.all(jnp.isfinite(shaped_B)), all_finite(params)])
    return params, opt_state, update_watch(watch, t, finite)

  return step


def _pg_objective(grid: Grid, reward_G, beta, reference: Mixture, region_mass):
  log_ref_G = log_normalize(log_density_on_grid(reference, grid), grid)[0]

  def evaluate(params):
    q = to_mixture(params)
    log_q_G = log_normalize(log_density_on_grid(q, grid), grid)[0]
    return expect(log_q_G, reward_G / beta - (log_q_G - log_ref_G), grid), region_mass(q)

  return evaluate


def gap_cell(seed, beta, variant, problem: mog_pl.Problem, config: MogConfig):
  """Levels 2 to 4 of one cell (pure; vmap over cells). Masses are exact.

  Returns ``best_mass_3`` (pipelines), ``best_converged_3``, and for levels 3 and 4
  ``*_mass_6``, ``*_steps_6``, ``*_reached_6`` in the order pg x3, dpo x3 (pipelines as in
  :data:`PIPELINES`).
  """
  grid, reward, rule = problem.grid, problem.reward, config.plateau
  reward_G = problem.land.reward_G
  region_mass = lambda m: mixture_region_mass(m, problem.region)
  teacher, student = mog_pl.references(seed, variant, problem, config)
  active_student = problem.table.active_SxC[variant]
  inits = [(student, active_student), (teacher, jnp.ones_like(active_student)),
           (student, active_student)]
  refs = [student, teacher, teacher]

  # --- level 2: the family's best fit to the tilt (EM on the grid) -----------------------------
  reg = 1e-6 + jnp.exp(grid.log_cell_area) / 12.0   # Sheppard's correction, as in the KD fits
  best_mass, best_converged = [], []
  for (init, active), ref in zip(inits, refs):
    log_tilt_G = log_normalize(log_density_on_grid(ref, grid) + reward_G / beta, grid)[0]
    weights_G = jnp.exp(log_tilt_G + grid.log_cell_area)
    fit = fit_em(grid.points_GxD, init, BEST_FIT_ITERATIONS, weights_N=weights_G, active_K=active,
                 reg=reg)
    best_mass.append(region_mass(fit.mixture))
    ll = fit.log_likelihood_T
    best_converged.append(jnp.abs(ll[-1] - ll[BEST_FIT_ITERATIONS // 2]) < BEST_FIT_TOLERANCE)

  # --- level 3: PG and DPO on the covering proposal --------------------------------------------
  key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), variant), 0x6A9)
  pg_cfg = PGConfig(n_steps=config.pg_steps, batch_size=config.pg_batch, learning_rate=config.pg_lr)
  dpo_cfg = DPOConfig(n_steps=config.dpo_steps, learning_rate=config.dpo_lr, n_pairs=config.dpo_pairs,
                      label_noise=config.label_noise)
  cover_mass, cover_steps, cover_reached = [], [], []
  for p, ((init, _), ref) in enumerate(zip(inits, refs)):
    proposal = covering_proposal(ref, grid, problem.land.target_G, COVERING_SHARE)
    opt = optax.adam(plateau_schedule(config.pg_lr, constant_steps=rule.first_check))
    update = _weighted_pg_step(pg_cfg, ref, reward, beta, opt, proposal, grid)
    keys = jax.random.split(jax.random.fold_in(key, p), config.pg_steps)
    start = from_mixture(init)

    def pg_step(t, carry, update=update, keys=keys):
      params, opt_state, watch = carry
      return update(t, keys[t], params, opt_state, watch)

    objective = _pg_objective(grid, reward_G, beta, ref, region_mass)
    final = run_to_plateau(pg_step, lambda c, objective=objective: objective(c[0]),
                           (start, opt.init(start), new_watch()), rule, config.pg_steps)
    cover_mass.append(region_mass(to_mixture(final.carry[0])))
    cover_steps.append(final.steps)
    cover_reached.append(final.reached)
  for p, ((init, _), ref) in enumerate(zip(inits, refs)):
    proposal = covering_proposal(ref, grid, problem.land.target_G, COVERING_SHARE)
    k1, k2, k3, k4, k5 = jax.random.split(jax.random.fold_in(key, 100 + p), 5)
    first = sample_proposal(k1, proposal, grid, config.dpo_pairs)
    second = sample_proposal(k2, proposal, grid, config.dpo_pairs)
    first_wins = jax.random.bernoulli(k3, label_probability(reward, first, second, config.label_noise))
    chosen = jnp.where(first_wins[:, None], first, second)
    rejected = jnp.where(first_wins[:, None], second, first)
    pairs = PreferencePairs(chosen, rejected, log_prob(ref, chosen), log_prob(ref, rejected))
    h1 = sample_proposal(k4, proposal, grid, config.dpo_pairs)
    h2 = sample_proposal(k5, proposal, grid, config.dpo_pairs)
    q = label_probability(reward, h1, h2, config.label_noise)
    lr1, lr2 = log_prob(ref, h1), log_prob(ref, h2)

    def evaluate(params, h1=h1, h2=h2, lr1=lr1, lr2=lr2, q=q):
      return (held_out_dpo_loss(params, h1, h2, lr1, lr2, q, beta), region_mass(to_mixture(params)))

    params, _, state = train_dpo_to_plateau(from_mixture(init), pairs, beta, dpo_cfg, rule, evaluate)
    cover_mass.append(region_mass(to_mixture(params)))
    cover_steps.append(state.steps)
    cover_reached.append(state.reached)

  # --- level 4: the grid's trainers as they are ----------------------------------------------------
  stack = lambda *trees: jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)
  k_train = jax.random.fold_in(jax.random.split(jax.random.PRNGKey(seed), 3)[2], variant)
  k_pg, k_dpo, _ = jax.random.split(k_train, 3)
  k_pairs, k_heldout = jax.random.split(k_dpo)
  pair_refs = stack(student, teacher)
  pairs2 = jax.vmap(make_preference_pairs, in_axes=(0, 0, None, None, None))(
      jax.random.split(k_pairs, 2), pair_refs, reward, config.dpo_pairs, config.label_noise)
  pairs3 = jax.tree_util.tree_map(lambda a: a[jnp.asarray([0, 1, 1])], pairs2)
  inits3 = stack(*[from_mixture(i) for i, _ in inits])
  pg_params, _, dpo_params, _, trained = mog_pl._train_to_plateau(
      k_pg, k_heldout, inits3, stack(*refs), pair_refs, pairs3, beta, problem, config, region_mass)
  as_is_mass = jnp.concatenate([jax.vmap(lambda p: region_mass(to_mixture(p)))(pg_params),
                                jax.vmap(lambda p: region_mass(to_mixture(p)))(dpo_params)])
  return {"best_mass_3": jnp.stack(best_mass), "best_converged_3": jnp.stack(best_converged),
          "cover_mass_6": jnp.stack(cover_mass), "cover_steps_6": jnp.stack(cover_steps),
          "cover_reached_6": jnp.stack(cover_reached), "as_is_mass_6": as_is_mass,
          "as_is_steps_6": trained.steps_6, "as_is_reached_6": trained.reached_6,
          "student": student, "teacher": teacher}


@functools.lru_cache(maxsize=4)
def _compiled(config: MogConfig):
  return xla_cpu.jit(jax.vmap(functools.partial(gap_cell, config=config), in_axes=(0, 0, 0, None)))


def run_gap(config: MogConfig, seeds: Sequence[int], betas: Sequence[float], *, dtype=None,
            setting_prefix: str = "") -> list[dict]:
  """Every level of every (seed, beta, student, pipeline, algorithm): rows for
  :mod:`recall_theory.decomposition` (``setting`` = ``student=...;beta=...``)."""
  config.validate()
  if config.plateau is None:
    raise InputError("the decomposition trains every level to its plateau: the config needs a plateau rule")
  seeds_np = np.asarray([check_int_range("seed", s, 0, 2 ** 31 - 1) for s in seeds])
  if seeds_np.size == 0:
    raise InputError("seeds must contain at least one seed")
  betas_np = parse_betas(betas)
  problem = build_problem(config, dtype)
  s_idx, b_idx, v_idx = (a.ravel() for a in np.meshgrid(np.arange(len(seeds_np)), np.arange(len(betas_np)),
                                                       np.arange(len(config.students)), indexing="ij"))
  beta_dtype = problem.grid.points_GxD.dtype
  out = jax.device_get(_compiled(config)(jnp.asarray(seeds_np[s_idx], jnp.uint32),
                                         jnp.asarray(betas_np[b_idx], beta_dtype),
                                         jnp.asarray(v_idx, jnp.int32), problem))
  # Level 1: the exact tilts of each cell's two references on the region rule.
  refs = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([jnp.asarray(a), jnp.asarray(b)]),
                                out["student"], out["teacher"])
  n = len(s_idx)
  log_ia, log_iac, _, quad_err = exact_tilt_masses(config, refs, problem.reward, betas_np, beta_dtype)
  law_student = 1.0 / (1.0 + np.exp(log_iac[:n, :] - log_ia[:n, :]))[np.arange(n), b_idx]
  law_teacher = 1.0 / (1.0 + np.exp(log_iac[n:, :] - log_ia[n:, :]))[np.arange(n), b_idx]
  rows = []
  for c in range(n):
    setting = (f"{setting_prefix}student={config.students[v_idx[c]]};beta={betas_np[b_idx[c]]:g};"
               f"target={config.target}")
    law = [law_student[c], law_teacher[c], law_teacher[c]]
    for a, alg in enumerate(ALGORITHMS):
      for p, pipeline in enumerate(PIPELINES):
        t = a * 3 + p
        base = {"track": "mog", "pipeline": pipeline, "algorithm": alg, "seed": int(seeds_np[s_idx[c]]),
                "setting": setting, "student": config.students[v_idx[c]],
                "beta": float(betas_np[b_idx[c]]), "n_eval": 0, "quadrature_error": quad_err}
        levels = {
            "law": (law[p], schema.PLATEAU_EXACT, 0, 0),
            "best_in_class": (out["best_mass_3"][c, p],
                              schema.PLATEAU_REACHED if out["best_converged_3"][c, p] else schema.PLATEAU_BUDGET,
                              BEST_FIT_ITERATIONS, BEST_FIT_ITERATIONS),
            "covering_sampler": (out["cover_mass_6"][c, t],
                                 schema.plateau_state(bool(out["cover_reached_6"][c, t])),
                                 int(out["cover_steps_6"][c, t]),
                                 config.pg_steps if alg == "pg" else config.dpo_steps),
            "as_is": (out["as_is_mass_6"][c, t], schema.plateau_state(bool(out["as_is_reached_6"][c, t])),
                      int(out["as_is_steps_6"][c, t]), config.pg_steps if alg == "pg" else config.dpo_steps),
        }
        for level, (mass, state, steps, budget) in levels.items():
          rows.append({**base, "level": level, "aligned_mass": float(mass),
                       "aligned_mass_low": float(mass), "aligned_mass_high": float(mass),
                       "steps": steps, "max_steps": budget, "plateau": state})
  return rows
