"""Benchmark of the Mixture-of-Gaussians track (numbers measured here, never claimed in tests).

1. The whole grid in one jitted, vmapped call (``grid_run``'s route) against a Python loop over the
   same jitted single run, on the same (seed, beta, student) points; compile time is excluded from
   both (each is warmed up once) and reported separately.
2. The closed-form quadratic tilt of an 8-component mixture against its quadrature reference on a
   2-D grid: time per evaluation and the largest log-density difference.

3. ``--stages``: the grid run's profile, compile and run time of each stage (vmapped over the runs),
   each stage built three ways in the same run: the package's, the same code under plain
   ``jax.jit`` (XLA:CPU's library reductions on; :mod:`recall_theory.xla_cpu`), and that code with
   the einsum forms of the log-density and the EM scatter (the code before they were written out).

Usage:  python experiments/bench_mog.py [--seeds 4] [--betas 2] [--repeats 3] [--dtype float64] [--stages]
                                        [--json PATH]
Prints a small table and the ratios; ``--json PATH`` also writes every figure as a
:func:`recall_theory.bench.entry` record (baseline from the same run, compile and run time
apart) for ``experiments/bench_all.py``.
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


def bench_grid(args) -> list[dict]:
  """Vmapped grid and lax.map chunks against a Python loop of single runs; returns bench entries."""
  import jax
  from recall_theory import bench
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
  what = f"{n} runs ({args.seeds} seeds x {args.betas} betas x {len(cfg.students)} students, quick budget, {args.dtype})"
  loop = f"Python loop over the jitted single run (compile {compile_single:.1f} s)"
  return [
      bench.entry(f"mog grid, one jitted vmapped call, {what}", t_vmap, "s", baseline=loop, baseline_value=t_loop,
                  compile_s=compile_batched, run_s=t_vmap, max_rel_diff_exact=float(diff_exact),
                  max_rel_diff_trained=float(diff_trained)),
      bench.entry(f"mog grid, one jitted lax.map over vmapped chunks of {chunk}, {what}", t_map, "s",
                  baseline=loop, baseline_value=t_loop, compile_s=compile_mapped, run_s=t_map),
  ]


def bench_tilt(args) -> list[dict]:
  """Closed-form quadratic tilt against quadrature on the grid; returns bench entries."""
  import jax
  from recall_theory import bench
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
  return [bench.entry(f"mog exact tilt of the 8-mode p* by a quadratic reward, closed form, {len(betas)} betas",
                      t_closed, "s", baseline=f"quadrature on a {args.grid_n}x{args.grid_n} grid",
                      baseline_value=t_quad, run_s=t_closed, max_abs_log_density_diff=err)]


def bench_stages(args) -> list[dict]:
  """Profile of the grid run, stage by stage: compile and run time of each jitted, vmapped stage.

  Stages follow :func:`recall_theory.mog.pipelines.run_single`: the references (EM teacher, KD
  student), the exact route (tilts, exact KD, the reverse-KL control), PG (3 runs), DPO (pairs and 3
  runs), sampled KD of the aligned teachers (4 fits), the metrics (15 models), and the post-pass
  (exact tilt masses on the region rule). Run time is best of ``--repeats``, excluding compile.
  """
  import jax
  import jax.numpy as jnp
  from recall_theory.mog import distill as kd
  from recall_theory.mog.dpo import DPOConfig, make_preference_pairs, train_dpo
  from recall_theory.mog.grid_run import build_problem, exact_tilt_masses
  from recall_theory.mog.metrics import metrics_on_grid
  from recall_theory.mog.params import from_mixture
  from recall_theory.mog.pg import PGConfig, train_pg
  from recall_theory.mog.pipelines import profile_for, references, selective
  from recall_theory.mog.quadrature import log_density_on_grid, tilt_on_grid, tilted_components
  from recall_theory.mog.setup import MogConfig

  cfg = MogConfig()
  if args.config == "quick":
    cfg = dataclasses.replace(cfg, n_teacher_samples=1000, n_student_samples=1000, em_iters=30, pg_steps=60,
                              dpo_steps=60, dpo_pairs=512, control_steps=40, grid_n=81)
  dtype = getattr(jnp, args.dtype)
  problem = build_problem(cfg, dtype)
  grid, land = problem.grid, problem.land
  s, b, v = (a.ravel() for a in np.meshgrid(np.arange(args.seeds), np.geomspace(0.03, 3.0, args.betas),
                                            np.arange(len(cfg.students)), indexing="ij"))
  seeds, betas, var = jnp.asarray(s, jnp.uint32), jnp.asarray(b, dtype), jnp.asarray(v, jnp.int32)
  refs = jax.jit(jax.vmap(lambda sd, vr: references(sd, vr, problem, cfg)))(seeds, var)
  teacher, student = refs

  def exact(t, st, beta, vr):
    prof = profile_for(t, problem.truth, problem.table.log_profile_SxK[vr])
    lw, comp, mu, cov = tilted_components(t, land.reward_G, beta, grid)
    qs = [kd.distill_forward_grid(kd.selective_log_weights(lw, prof, tau), comp, mu, cov, grid,
                                  problem.table.active_SxC[vr], n_iter=cfg.em_iters)
          for tau in (cfg.kd_temperature, cfg.kd_recovery_temperature)]
    log_at, _ = tilt_on_grid(log_density_on_grid(t, grid), land.reward_G, beta, grid)
    control, _ = kd.distill_reverse_kl_grid(st, log_at, grid, n_steps=cfg.control_steps,
                                           learning_rate=cfg.control_lr)
    return qs, control

  def pg(t, st, beta):
    stack = lambda *xs: jax.tree_util.tree_map(lambda *a: jnp.stack(a), *xs)
    inits = stack(from_mixture(st), from_mixture(t), from_mixture(st))
    return jax.vmap(train_pg, in_axes=(0, 0, 0, None, None, None))(
        jax.random.split(jax.random.PRNGKey(0), 3), inits, stack(st, t, t), problem.reward, beta,
        PGConfig(n_steps=cfg.pg_steps, batch_size=cfg.pg_batch, learning_rate=cfg.pg_lr))[0]

  def dpo(t, st, beta):
    stack = lambda *xs: jax.tree_util.tree_map(lambda *a: jnp.stack(a), *xs)
    pairs = jax.vmap(make_preference_pairs, in_axes=(0, 0, None, None, None))(
        jax.random.split(jax.random.PRNGKey(1), 2), stack(st, t), problem.reward, cfg.dpo_pairs, 0.0)
    pairs3 = jax.tree_util.tree_map(lambda a: a[jnp.asarray([0, 1, 1])], pairs)
    inits = stack(from_mixture(st), from_mixture(t), from_mixture(st))
    return jax.vmap(train_dpo, in_axes=(0, 0, None, None))(
        inits, pairs3, beta, DPOConfig(n_steps=cfg.dpo_steps, learning_rate=cfg.dpo_lr, n_pairs=cfg.dpo_pairs))[0]

  def sampled_kd(t, vr):
    prof = profile_for(t, problem.truth, problem.table.log_profile_SxK[vr])
    return [kd.distill_forward_samples(jax.random.PRNGKey(i), selective(t, prof, cfg.kd_temperature),
                                       problem.table.active_SxC[vr], n_samples=cfg.n_student_samples,
                                       n_iter=cfg.em_iters) for i in range(4)]

  def metrics(t, st):
    log_t = log_density_on_grid(t, grid)
    log_s = log_density_on_grid(st, grid)
    return jnp.stack([metrics_on_grid(log_s + 0.0 * i, log_t, land, grid, cfg.support_threshold)
                      for i in range(15)])

  stages = {
      "references (EM teacher + KD student)": (lambda sd, vr: references(sd, vr, problem, cfg), (seeds, var)),
      "exact (tilts, exact KD x2, control)": (exact, (teacher, student, betas, var)),
      "policy gradient (3 runs)": (pg, (teacher, student, betas)),
      "DPO (pairs + 3 runs)": (dpo, (teacher, student, betas)),
      "sampled KD of aligned teachers (4 fits)": (sampled_kd, (teacher, var)),
      "metrics of 15 models on the grid": (metrics, (teacher, student)),
  }
  from recall_theory import bench, xla_cpu
  from recall_theory.mog import mixture

  # Three builds of every stage, timed in the same run: the package's (2-D log-density and EM
  # scatter written out, :func:`recall_theory.xla_cpu.jit`), the same code under plain jax.jit
  # (XLA:CPU's library reductions on), and plain jax.jit with the einsum forms of both (the code
  # before they were written out), swapped in wherever the stages look them up while tracing.
  from recall_theory.mog import em, quadrature
  einsum_forms = [(mixture, "component_log_prob", mixture.component_log_prob_einsum),
                  (quadrature, "component_log_prob", mixture.component_log_prob_einsum),
                  (em, "_weighted_scatter", em._weighted_scatter_einsum)]

  def build(fn, variant):
    jitted = (xla_cpu.jit if variant == "package" else jax.jit)(jax.vmap(fn))
    if variant != "einsum, jax.jit":
      return jitted

    def with_einsum(*xs):
      kept = [(module, name, getattr(module, name)) for module, name, _ in einsum_forms]
      for module, name, form in einsum_forms:
        setattr(module, name, form)
      try:
        return jitted(*xs)
      finally:
        for module, name, original in kept:
          setattr(module, name, original)
    return with_einsum

  variants = ("package", "plain jax.jit", "einsum, jax.jit")
  print(f"stages of the grid run, {len(s)} runs vmapped ({args.config} config, {args.dtype}, "
        f"{jax.devices()[0].platform} x{jax.device_count()}); run time, best of {args.repeats}, "
        f"compile apart; xla_cpu options: {xla_cpu.cpu_compiler_options()}")
  print(f"  {'stage':42s}  {'package':>17s}  {'plain jax.jit':>13s}  {'einsum+jax.jit':>14s}  ratio vs einsum")
  entries = []
  total_c = total_r = 0.0
  totals = dict.fromkeys(variants, 0.0)
  for name, (fn, inputs) in stages.items():
    timed = {}
    for variant in variants:
      run_fn = build(fn, variant)
      t0 = time.perf_counter()
      jax.block_until_ready(run_fn(*inputs))
      first = time.perf_counter() - t0
      run = _time(lambda: jax.block_until_ready(run_fn(*inputs)), args.repeats)
      timed[variant] = (first - run, run)
      totals[variant] += run
    compile_s, run = timed["package"]
    base = timed["einsum, jax.jit"][1]
    total_c += compile_s
    total_r += run
    print(f"  {name:42s}: {run:7.3f} s (c {compile_s:5.1f})  {timed['plain jax.jit'][1]:11.3f} s  "
          f"{base:12.3f} s  {base / run:6.2f}x")
    entries.append(bench.entry(f"mog stage {name}, {len(s)} runs ({args.config} config)", run, "s",
                               baseline="the same stage with the einsum log-density and EM scatter under plain jax.jit, same run",
                               baseline_value=base, compile_s=compile_s, run_s=run,
                               plain_jit_run_s=timed["plain jax.jit"][1]))
  print(f"  {'all stages':42s}: {totals['package']:7.3f} s {'':9s}  {totals['plain jax.jit']:11.3f} s  "
        f"{totals['einsum, jax.jit']:12.3f} s  {totals['einsum, jax.jit'] / totals['package']:6.2f}x")
  entries.append(bench.entry(f"mog grid stages together, {len(s)} runs ({args.config} config)", totals["package"],
                             "s", baseline="the same stages with the einsum log-density and EM scatter under plain jax.jit, same run",
                             baseline_value=totals["einsum, jax.jit"], run_s=totals["package"],
                             plain_jit_run_s=totals["plain jax.jit"]))
  t0 = time.perf_counter()
  flat_refs = jax.tree_util.tree_map(lambda a, c: jnp.concatenate([a, c]), student, teacher)
  exact_tilt_masses(cfg, flat_refs, problem.reward, np.geomspace(0.03, 3.0, args.betas), dtype)
  post = time.perf_counter() - t0
  print(f"  {'post-pass: exact tilt masses (2 rules)':42s}: compile + run {post:7.2f} s")
  print(f"  total (package): compile {total_c:.1f} s, run {total_r:.2f} s (+ post-pass {post:.1f} s)")
  for e in entries[:-1]:
    e["share_of_run"] = e["run_s"] / total_r if total_r else None
  entries.append(bench.entry(f"mog stage post-pass: exact tilt masses (2 rules), {len(s)} runs", post, "s"))
  return entries


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--seeds", type=int, default=4)
  parser.add_argument("--betas", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--grid-n", type=int, default=121)
  parser.add_argument("--map-batch", type=int, default=2, help="vmap chunk size inside lax.map")
  parser.add_argument("--dtype", choices=("float32", "float64"), default="float64")
  parser.add_argument("--stages", action="store_true", help="profile the grid run stage by stage instead")
  parser.add_argument("--config", choices=("default", "quick"), default="default",
                      help="--stages: the default run's budget or --quick's")
  parser.add_argument("--json", default=None, metavar="PATH",
                      help="also write the figures as bench records (experiments/bench_all.py)")
  args = parser.parse_args()
  for flag, value, low in (("--seeds", args.seeds, 1), ("--betas", args.betas, 1), ("--repeats", args.repeats, 1),
                           ("--grid-n", args.grid_n, 16), ("--map-batch", args.map_batch, 1)):
    if value < low:
      parser.exit(2, f"bench_mog.py: error: {flag} must be an integer >= {low}, got {value}\n")
  import jax
  if args.dtype == "float64":
    jax.config.update("jax_enable_x64", True)
  if args.stages:
    entries = bench_stages(args)
  else:
    entries = bench_tilt(args) + bench_grid(args)
  if args.json:
    from recall_theory import bench
    bench.write_report(args.json, "mog", entries)


if __name__ == "__main__":
  main()
