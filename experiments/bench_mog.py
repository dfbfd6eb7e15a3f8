"""Benchmark of the Mixture-of-Gaussians track (numbers measured here, never claimed in tests).

1. The whole grid in one jitted, vmapped call (``grid_run``'s route) against a Python loop over the
   same jitted single run, on the same (seed, beta, student) points; compile time is excluded from
   both (each is warmed up once) and reported separately.
2. The closed-form quadratic tilt of an 8-component mixture against its quadrature reference on a
   2-D grid: time per evaluation and the largest log-density difference.

Usage:  python experiments/bench_mog.py [--seeds 4] [--betas 2] [--repeats 3] [--dtype float64]
Prints a small table and the ratios.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import time

import numpy as np


def _time(fn, repeats: int) -> float:
  """Best-of-``repeats`` wall time of ``fn()`` (which must block until done)."""
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - t0)
  return best


def bench_grid(args) -> None:
  import jax
  import jax.numpy as jnp
  from recall_theory.mog.grid_run import build_problem
  from recall_theory.mog.pipelines import run_single
  from recall_theory.mog.setup import MogConfig

  # The --quick budget: the comparison concerns dispatch and vectorisation, not training length.
  cfg = dataclasses.replace(MogConfig(), n_teacher_samples=1000, n_student_samples=1000, em_iters=30,
                            pg_steps=60, dpo_steps=60, dpo_pairs=512, control_steps=40, grid_n=81)
  dtype = getattr(jnp, args.dtype)
  problem = build_problem(cfg, dtype)
  betas = np.geomspace(0.03, 3.0, args.betas)
  s, b, v = (a.ravel() for a in np.meshgrid(np.arange(args.seeds), betas, np.arange(len(cfg.students)),
                                            indexing="ij"))
  seeds = jnp.asarray(s, jnp.uint32)
  beta_arr = jnp.asarray(b, dtype)
  var = jnp.asarray(v, jnp.int32)
  n = len(s)
  single = jax.jit(functools.partial(run_single, config=cfg))
  batched = jax.jit(jax.vmap(functools.partial(run_single, config=cfg), in_axes=(0, 0, 0, None)))

  t0 = time.perf_counter()
  jax.block_until_ready(batched(seeds, beta_arr, var, problem).metrics_PxAxM)
  compile_batched = time.perf_counter() - t0
  t0 = time.perf_counter()
  jax.block_until_ready(single(seeds[0], beta_arr[0], var[0], problem).metrics_PxAxM)
  compile_single = time.perf_counter() - t0

  def run_loop():
    outs = [single(seeds[i], beta_arr[i], var[i], problem).metrics_PxAxM for i in range(n)]
    jax.block_until_ready(outs)
    return outs

  def run_batched():
    return jax.block_until_ready(batched(seeds, beta_arr, var, problem).metrics_PxAxM)

  chunk = args.map_batch
  mapped = jax.jit(lambda s_, b_, v_, pb: jax.lax.map(
      lambda xs: run_single(xs[0], xs[1], xs[2], pb, config=cfg).metrics_PxAxM, (s_, b_, v_),
      batch_size=chunk))
  t0 = time.perf_counter()
  jax.block_until_ready(mapped(seeds, beta_arr, var, problem))
  compile_mapped = time.perf_counter() - t0

  def run_mapped():
    return jax.block_until_ready(mapped(seeds, beta_arr, var, problem))

  t_loop = _time(run_loop, args.repeats)
  t_vmap = _time(run_batched, args.repeats)
  t_map = _time(run_mapped, args.repeats)
  from recall_theory.mog.setup import ALGORITHMS
  loop_m = np.stack([np.asarray(o) for o in run_loop()])
  rel = np.abs(loop_m - np.asarray(run_batched())) / (np.abs(loop_m) + 1e-9)
  ex = ALGORITHMS.index("exact")
  diff_exact = rel[:, :, ex].max()
  diff_trained = np.delete(rel, ex, axis=2).max()
  print(f"grid of {n} runs ({args.seeds} seeds x {args.betas} betas x {len(cfg.students)} students), "
        f"{args.dtype}, {jax.device_count()} {jax.devices()[0].platform} device(s)")
  print(f"  python loop over jitted single run : {t_loop:8.3f} s  (compile {compile_single:.1f} s)")
  print(f"  one jitted vmapped call            : {t_vmap:8.3f} s  (compile {compile_batched:.1f} s)")
  print(f"  one jitted lax.map (vmap chunks {chunk:2d}): {t_map:8.3f} s  (compile {compile_mapped:.1f} s)")
  print(f"  speed-up vmap / loop               : {t_loop / t_vmap:8.2f}x")
  print(f"  speed-up lax.map / loop            : {t_loop / t_map:8.2f}x")
  print(f"  max relative difference loop vs vmap: exact {diff_exact:.1e}; trained {diff_trained:.1e} "
        "(rounding-order differences amplified by PG/DPO training)")


def bench_tilt(args) -> None:
  import jax
  import jax.numpy as jnp
  from recall_theory.mog.grid_run import build_problem
  from recall_theory.mog.quadrature import log_density_on_grid, make_grid, tilt_on_grid
  from recall_theory.mog.setup import MogConfig
  from recall_theory.mog.tilt import tilt_quadratic

  dtype = getattr(jnp, args.dtype)
  ref = build_problem(MogConfig(), dtype).truth
  center = jnp.asarray([1.0, 1.0], dtype)
  prec = jnp.asarray([[4.0, 1.0], [1.0, 3.0]], dtype)
  betas = jnp.asarray(np.geomspace(0.05, 5.0, 64), dtype)
  grid = make_grid(-2.5, 2.5, args.grid_n, dtype)
  reward_G = -0.5 * jnp.einsum("gi,ij,gj->g", grid.points_GxD - center, prec, grid.points_GxD - center)
  log_ref_G = log_density_on_grid(ref, grid)

  closed = jax.jit(jax.vmap(lambda b: tilt_quadratic(ref, center, prec, b)))
  closed_on_grid = jax.jit(jax.vmap(lambda b: log_density_on_grid(tilt_quadratic(ref, center, prec, b)[0], grid)))
  quad = jax.jit(jax.vmap(lambda b: tilt_on_grid(log_ref_G, reward_G, b, grid)))
  jax.block_until_ready(closed(betas))
  jax.block_until_ready(quad(betas))
  t_closed = _time(lambda: jax.block_until_ready(closed(betas)), args.repeats * 5)
  t_quad = _time(lambda: jax.block_until_ready(quad(betas)), args.repeats * 5)
  log_q, log_z = quad(betas)
  err = float(jnp.max(jnp.abs(closed_on_grid(betas) - log_q)))
  err_z = float(jnp.max(jnp.abs(closed(betas)[1] - log_z)))
  print(f"exact tilt of the 8-mode p* by a quadratic reward, {len(betas)} betas in 0.05..5, "
        f"grid {args.grid_n}x{args.grid_n}, {args.dtype}")
  print(f"  closed form (mixture parameters)   : {t_closed * 1e3:8.3f} ms")
  print(f"  quadrature on the grid             : {t_quad * 1e3:8.3f} ms")
  print(f"  speed-up closed / quadrature       : {t_quad / t_closed:8.1f}x")
  print(f"  max |log pi* closed - quadrature|  : {err:.2e}   max |log Z difference|: {err_z:.2e}")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--seeds", type=int, default=4)
  parser.add_argument("--betas", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--grid-n", type=int, default=121)
  parser.add_argument("--map-batch", type=int, default=2, help="vmap chunk size inside lax.map")
  parser.add_argument("--dtype", choices=("float32", "float64"), default="float64")
  args = parser.parse_args()
  import jax
  if args.dtype == "float64":
    jax.config.update("jax_enable_x64", True)
  bench_tilt(args)
  bench_grid(args)


if __name__ == "__main__":
  main()
