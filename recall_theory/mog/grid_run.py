"""One jitted call for a whole grid of seeds x beta x student variant, sharded over devices.

The grid is flattened to one axis of length n = seeds * betas * students, padded to a
multiple of the device count, and placed with ``NamedSharding(Mesh(devices, ("grid",)),
PartitionSpec("grid"))``; the shared :class:`~recall_theory.mog.pipelines.Problem` is
replicated. ``jax.jit(jax.vmap(run_single))`` then runs each device's slice locally: the
same command runs on one CPU, several GPUs or a TPU slice, and the results do not depend
on the device count (every run draws its randomness from its own seed).

Example::

  result = run_grid(MogConfig(), seeds=range(8), betas=[0.05, 0.2, 1.0])
  result.metrics.shape   # (8, 3, 2, 4, 3, 8): seed, beta, student, pipeline, algorithm, metric
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from recall_theory.errors import InputError, check_int_range
from recall_theory.mog.divergence_guard import Watch, raise_if_diverged
from recall_theory.mog.metrics import Landscape
from recall_theory.mog.mixture import Mixture, log_prob, normalize_log_weights
from recall_theory.mog.pipelines import TRAINERS, Problem, run_single
from recall_theory.mog.quadrature import make_grid
from recall_theory.mog.reward import make_bump_reward
from recall_theory.mog.setup import (TARGETS, MogConfig, ground_truth, parse_betas, student_table,
                                     target_mask, voronoi_target_indicator)


class GridResult(NamedTuple):
  """Host arrays. metrics: (S, B, V, P, A, M); recalls: (S, B, V); densities: (S, B, V, 2+P*A, n, n) or None."""
  seeds: np.ndarray
  betas: np.ndarray
  students: tuple
  metrics: np.ndarray
  student_target_mass: np.ndarray
  teacher_target_mass: np.ndarray
  log_densities: np.ndarray | None
  plot_axis: np.ndarray


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
  return Problem(truth, grid, land, reward, student_table(config, dtype))


@functools.lru_cache(maxsize=8)
def _compiled(config: MogConfig, keep_densities: bool):
  fn = functools.partial(run_single, config=config, keep_densities=keep_densities)
  return jax.jit(jax.vmap(fn, in_axes=(0, 0, 0, None)))


def grid_mesh(devices: Sequence | None = None) -> Mesh:
  """A one-axis mesh named "grid" over ``devices`` (default: every device)."""
  return Mesh(np.asarray(devices if devices is not None else jax.devices()), ("grid",))


def run_grid(config: MogConfig, seeds: Sequence[int], betas: Sequence[float], *, dtype=None,
             keep_densities: bool = False, devices: Sequence | None = None, reward=None) -> GridResult:
  """Run every (seed, beta, student) in one jitted, vmapped, device-sharded call.

  Raises TrainingDivergedError (naming trainer, step, quantity and run) if any PG or DPO
  run went non-finite, InputError for bad arguments.
  """
  config.validate()
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
  problem = jax.device_put(problem, replicated)
  out = jax.device_get(_compiled(config, keep_densities)(seed_arr, beta_arr, var_arr, problem))
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
  return GridResult(seeds_np, betas_np, tuple(config.students),
                    np.asarray(out.metrics_PxAxM)[:n].reshape(shape + out.metrics_PxAxM.shape[1:]),
                    np.asarray(out.student_target_mass)[:n].reshape(shape),
                    np.asarray(out.teacher_target_mass)[:n].reshape(shape), dens, axis)
