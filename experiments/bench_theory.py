"""Benchmark of the theory sweep: end to end (compute + files), memory, and the math alone.

Four measurements, each against a baseline measured in the same run, printed as ratios:

0. **The command line end to end** (``--e2e-resolution``, default 1000: the goal, all five
   regularizers, both maps, ~10 million CSV rows and the ``.npz``, no figures): this tree
   against git revision ``--baseline-rev`` (the writer before the CSV was hashed while
   written and the ``.npz`` written in place), fresh processes with filled compilation
   caches, alternating, best of ``--e2e-repeats``; wall, cpu, peak RSS, and whether both
   wrote byte-identical CSV and ``.npz``.
1. **End to end, files included** (``--resolution``, default 1000: 10 million CSV rows):
   :func:`recall_theory.sweep.stream_sweep` (blocks of 2^20 cells, CSV text formatted by
   XLA, arrays streamed to the ``.npz``) against the previous writer, reproduced here as
   :func:`legacy_sweep`: the whole grid in memory, ``tidy_columns`` and pandas'
   ``to_csv(float_format="%.9g")`` (8 columns: the legacy CSV had no law columns, so the
   baseline writes less than the new one).
2. **The command line** (``--cli``): ``recall-theory sweep --no-figures`` in a fresh process,
   with an empty and with a filled compilation cache: wall time and peak resident memory
   (``ru_maxrss`` of the child) at each resolution of ``--memory-resolutions``, to show that
   memory does not grow with the grid.
3. **The math alone** (``--compare-resolution``, default 200): the jitted grid against a
   straightforward NumPy/SciPy one (per-cell ``brentq`` for the chi^2+KL normaliser and the
   KL-budget ceiling); checks they agree.

    python3 experiments/bench_theory.py                       # 0, 1 and 3
    python3 experiments/bench_theory.py --resolution 200 --compare-resolution 0   # mostly 0
    python3 experiments/bench_theory.py --cli --memory-resolutions 200,1000,4000
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import optimize, special

REGULARIZERS = ("reverse_kl", "forward_kl", "chi2_kl", "ipo", "best_of_n")


# ------------------------------------------------------------------- numpy/scipy math
def _logit(p):
  with np.errstate(divide="ignore"):
    return np.log(p) - np.log1p(-p)


def _bernoulli_kl(a, b):
  with np.errstate(divide="ignore", invalid="ignore"):
    first = np.where(a > 0, a * (np.log(a) - np.log(b)), 0.0)
    second = np.where(a < 1, (1 - a) * (np.log1p(-a) - np.log1p(-b)), 0.0)
  return first + second


def _chi2_mass_cell(p, s):
  """p W(e^{s-l}) with l solving p W(e^{s-l}) + (1-p) W(e^{-l}) = 1, by brentq."""
  def w(z):  # W(e^z); e^z overflows past 700, where Newton on W + log W = z takes over
    if z < 700:
      return special.lambertw(np.exp(z)).real
    u = z - math.log(z)
    for _ in range(6):
      u -= (u + math.log(u) - z) / (1.0 + 1.0 / u)
    return u
  total = lambda ell: p * w(s - ell) + (1 - p) * w(-ell) - 1.0
  ell = optimize.brentq(total, min(0.0, s) - 1.0, max(0.0, s) - 1.0 + 1e-12, xtol=1e-14, rtol=1e-15)
  return p * w(s - ell)


def _ceiling_cell(p, budget):
  if budget >= -math.log(p):
    return 1.0
  f = lambda t: _bernoulli_kl(np.float64(t), np.float64(p)) - budget
  return optimize.brentq(f, p, 1.0 - 1e-16, xtol=1e-300, rtol=1e-15)


def numpy_sweep(recall, ratio, beta_axis, fixed_beta, fixed_gap, budgets):
  out = {}
  for map_name, gap, beta in (("gap_over_beta", ratio[:, None] * fixed_beta, fixed_beta),
                              ("beta", np.full_like(beta_axis[:, None], fixed_gap), beta_axis[:, None])):
    p = np.broadcast_to(recall[None, :], (gap.shape[0], recall.size))
    s = np.broadcast_to(gap / beta, p.shape)
    masses = [special.expit(_logit(p) + s)]
    a = 1.0 - s
    root = np.sqrt(a * a + 4 * p * s)
    with np.errstate(divide="ignore", invalid="ignore"):
      masses.append(np.where(a >= 0, 2 * p / (a + root), (root - a) / (2 * s)))
    masses.append(np.vectorize(_chi2_mass_cell)(p, s))
    masses.append(special.expit(_logit(p) + (special.expit(np.broadcast_to(gap, p.shape)) - 0.5) / beta))
    n = np.exp(np.minimum(s, 700.0))
    masses.append(-np.expm1(n * np.log1p(-p)))
    mass = np.stack(masses)
    out[f"mass_{map_name}"] = mass
    out[f"kl_{map_name}"] = _bernoulli_kl(np.clip(mass, 0, 1), p[None])
  out["ceiling"] = np.array([[_ceiling_cell(p, b) for p in recall] for b in budgets])
  return out


# ------------------------------------------------------------------ the legacy writer
def legacy_sweep(config, out: Path) -> None:
  """The sweep as written before streaming: whole grid in memory, pandas CSV, np.savez."""
  import jax
  import jax.numpy as jnp
  from recall_theory import io, sweep
  from recall_theory import theory as th

  def grid(recall, gap, beta, regularizers):
    masses, kls = [], []
    for name in regularizers:
      mass = sweep.aligned_mass_by_regularizer(name, recall, gap, beta)
      masses.append(mass)
      kls.append(th.aligned_kl(recall, gap, beta) if name == "reverse_kl" else sweep._kl_of_mass(mass, recall))
    return jnp.stack(masses), jnp.stack(kls)

  with jax.enable_x64(True):
    axes = sweep.axes(config)
    r = jnp.asarray(axes["recall"])[None, :]
    compiled = jax.jit(grid, static_argnums=3)
    regs = tuple(config.regularizers)
    mass_a, kl_a = compiled(r, jnp.asarray(axes["ratio"])[:, None] * config.fixed_beta, config.fixed_beta, regs)
    mass_b, kl_b = compiled(r, config.fixed_gap, jnp.asarray(axes["beta_axis"])[:, None], regs)
    ceiling = sweep.ceilings(config, axes["recall"])
    result = {**axes, "mass_gap_over_beta": np.asarray(mass_a), "kl_gap_over_beta": np.asarray(kl_a),
              "mass_beta": np.asarray(mass_b), "kl_beta": np.asarray(kl_b), **ceiling,
              "regularizers": np.asarray(regs), "fixed_beta": np.asarray(config.fixed_beta),
              "fixed_gap": np.asarray(config.fixed_gap)}
  cols = {k: [] for k in ("map", "regularizer", "recall", "beta", "gap", "gap_over_beta", "aligned_mass", "kl")}
  for map_name in sweep.MAPS:
    mass, kl = result[f"mass_{map_name}"], result[f"kl_{map_name}"]
    n_y, n_r = mass.shape[1:]
    if map_name == "gap_over_beta":
      beta = np.full(n_y, config.fixed_beta)
      gap = result["ratio"] * beta
    else:
      beta, gap = result["beta_axis"], np.full(n_y, config.fixed_gap)
    for g, name in enumerate(regs):
      cols["map"].append(np.full(n_y * n_r, map_name))
      cols["regularizer"].append(np.full(n_y * n_r, name))
      cols["recall"].append(np.tile(result["recall"], n_y))
      cols["beta"].append(np.repeat(beta, n_r))
      cols["gap"].append(np.repeat(gap, n_r))
      cols["gap_over_beta"].append(np.repeat(gap / beta, n_r))
      cols["aligned_mass"].append(mass[g].ravel())
      cols["kl"].append(kl[g].ravel())
  io.write_columns_csv(out / "recall_sweep.csv", {k: np.concatenate(v) for k, v in cols.items()})
  io.save_npz(out / "recall_sweep.npz", **result)


def _cpu() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def _timed(fn):
  wall, cpu = time.perf_counter(), _cpu()
  fn()
  return time.perf_counter() - wall, _cpu() - cpu


def _peak_rss_of(proc: subprocess.Popen) -> float:
  """Wait for ``proc``; return its peak resident memory in GiB (VmHWM, polled).

  Not ``ru_maxrss``: Linux carries the parent's high-water mark into a forked child, so a
  child of this (large) benchmark process would report the parent's memory.
  """
  peak = 0
  while proc.poll() is None:
    try:
      with open(f"/proc/{proc.pid}/status") as fh:
        for line in fh:
          if line.startswith("VmHWM:"):
            peak = max(peak, int(line.split()[1]))
    except OSError:  # exited between poll and open
      pass
    time.sleep(0.05)
  return peak / 2 ** 20


REPO = Path(__file__).resolve().parents[1]
# The sweep's writer before the CSV was hashed while written and the .npz written in place
# (scratch .npy files copied into the .npz, every output re-read for run.json's sha256).
BASELINE_REV = "f09c5c3"


def _cli(resolution: int, cache: str, scratch: Path, source: Path = REPO,
         keep: Path | None = None) -> tuple[float, float, float]:
  """(wall s, child cpu s, peak RSS GiB) of one ``recall-theory sweep --no-figures`` process
  running the package found under ``source``; its output folder is removed unless ``keep``
  names where it goes."""
  out = keep or scratch / f"cli-{resolution}"
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  env = {**os.environ, "PYTHONPATH": str(source)}
  start = time.perf_counter()
  proc = subprocess.Popen([sys.executable, "-m", "recall_theory", "--compile-cache", cache, "sweep",
                           "--resolution", str(resolution), "--no-figures", "--out", str(out)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=source, env=env)
  peak = _peak_rss_of(proc)
  wall = time.perf_counter() - start
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  if proc.returncode:
    raise RuntimeError(f"sweep --resolution {resolution} failed: {proc.stderr.read().decode()[-500:]}")
  if keep is None:
    shutil.rmtree(out, ignore_errors=True)
  cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
  return wall, cpu, peak


def _checkout(rev: str, scratch: Path) -> Path | None:
  """The ``recall_theory`` package of git revision ``rev`` of this repository, unpacked
  under ``scratch`` (None, with a note, where git or the revision is not there)."""
  dest = scratch / f"rev-{rev}"
  dest.mkdir()
  try:
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "recall_theory"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True, capture_output=True)
  except (OSError, subprocess.CalledProcessError) as err:
    print(f"  (no baseline: git revision {rev} not available: {err})")
    return None
  return dest


def _same_bytes(a: Path, b: Path) -> bool:
  """Whether two files hold the same bytes (read in 16 MiB pieces)."""
  if a.stat().st_size != b.stat().st_size:
    return False
  with open(a, "rb") as fa, open(b, "rb") as fb:
    for piece in iter(lambda: fa.read(1 << 24), b""):
      if piece != fb.read(len(piece)):
        return False
  return True


def end_to_end(resolution: int, baseline_rev: str, scratch: Path, repeats: int) -> dict | None:
  """``recall-theory sweep --resolution N --no-figures`` in fresh processes, this tree against
  git revision ``baseline_rev`` (same machine, same run, alternating, each with its own
  filled compilation cache); checks the two write the same CSV and .npz bytes."""
  from recall_theory import bench
  base_src = _checkout(baseline_rev, scratch) if baseline_rev else None
  sources = {"new": REPO} if base_src is None else {"new": REPO, "baseline": base_src}
  outs = {k: scratch / f"e2e-{k}" for k in sources}
  times = {k: [] for k in sources}
  for name, src in sources.items():  # fill each compilation cache; keep the outputs to compare
    _cli(resolution, str(scratch / f"cache-{name}"), scratch, src, keep=outs[name])
  same = None
  if base_src is not None:
    same = all(_same_bytes(outs["new"] / f, outs["baseline"] / f)
               for f in ("recall_sweep.csv", "recall_sweep.npz", "recall_ceiling.csv"))
  for out in outs.values():
    shutil.rmtree(out, ignore_errors=True)
  for _ in range(repeats):
    for name, src in sources.items():
      times[name].append(_cli(resolution, str(scratch / f"cache-{name}"), scratch, src))
  best = {k: min(v, key=lambda t: t[0]) for k, v in times.items()}
  wall, cpu, peak = best["new"]
  label = f"cli sweep --resolution {resolution} --no-figures end to end, filled cache"
  print(f"{label} (best of {repeats}; load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}):")
  print(f"  this tree:             {wall:7.2f} s wall ({cpu:.2f} s cpu), peak RSS {peak:.2f} GiB")
  if "baseline" not in best:
    return bench.entry(label, wall, "s", run_s=wall, cpu_s=cpu, peak_rss_gib=peak)
  b_wall, b_cpu, b_peak = best["baseline"]
  print(f"  baseline ({baseline_rev}):     {b_wall:7.2f} s wall ({b_cpu:.2f} s cpu), peak RSS {b_peak:.2f} GiB")
  print(f"  speed-up (baseline / this tree): {b_wall / wall:.2f}x wall, {b_cpu / cpu:.2f}x cpu; "
        f"CSV, .npz and ceiling CSV byte-identical: {same}")
  return bench.entry(label, wall, "s", baseline=f"git {baseline_rev} (scratch .npy copied into the .npz, "
                     f"run.json re-reads every file)", baseline_value=b_wall, run_s=wall, cpu_s=cpu,
                     baseline_cpu_s=b_cpu, peak_rss_gib=peak, baseline_peak_rss_gib=b_peak,
                     outputs_identical=same)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--resolution", type=int, default=1000, help="end-to-end grid points per axis (default 1000)")
  parser.add_argument("--compare-resolution", type=int, default=200,
                      help="grid of the math-only comparison with NumPy/SciPy (default 200; 0 skips it)")
  parser.add_argument("--cli", action="store_true", help="also time the command line in fresh processes")
  parser.add_argument("--memory-resolutions", default="200,1000",
                      help="resolutions of the command-line runs (comma-separated, default 200,1000)")
  parser.add_argument("--e2e-resolution", type=int, default=1000,
                      help="resolution of the end-to-end command-line comparison with --baseline-rev "
                           "(default 1000, the goal's size; 0 skips it)")
  parser.add_argument("--baseline-rev", default=BASELINE_REV,
                      help=f"git revision of the end-to-end baseline (default {BASELINE_REV}, the writer "
                           f"before hashing while writing; '' runs this tree alone)")
  parser.add_argument("--e2e-repeats", type=int, default=2, help="timed runs of each side (default 2; best kept)")
  parser.add_argument("--scratch", default=None, help="folder for the written files (default: a temporary one)")
  parser.add_argument("--json", default=None, help="also write the results as JSON (experiments/bench_all.py)")
  args = parser.parse_args()

  import jax
  from recall_theory import bench
  from recall_theory.sweep import SweepConfig, compute_sweep, stream_sweep

  entries = []
  scratch = Path(tempfile.mkdtemp(prefix="bench-theory-", dir=args.scratch))
  try:
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, jax {jax.__version__} "
          f"on {jax.devices()[0].platform}, {jax.device_count()} device(s); load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    # 2. the command line, fresh processes
    if args.cli:
      cache = str(scratch / "jax-cache")
      for res in sorted(int(v) for v in args.memory_resolutions.split(",") if v.strip()):
        cold = _cli(res, cache, scratch)
        warm = _cli(res, cache, scratch)
        print(f"cli sweep --resolution {res} --no-figures: empty cache {cold[0]:7.2f} s wall ({cold[1]:.2f} s cpu), "
              f"filled cache {warm[0]:7.2f} s wall ({warm[1]:.2f} s cpu); peak RSS {max(cold[2], warm[2]):.2f} GiB")
        entries.append(bench.entry(f"cli sweep --resolution {res} --no-figures, filled cache", warm[0], "s",
                                   baseline="empty cache", baseline_value=cold[0], run_s=warm[0],
                                   peak_rss_gib=max(cold[2], warm[2])))

    # 0. the command line end to end, against the baseline revision
    if args.e2e_resolution:
      record = end_to_end(args.e2e_resolution, args.baseline_rev, scratch, max(1, args.e2e_repeats))
      if record is not None:
        entries.append(record)

    # 1. end to end, files included
    n = args.resolution
    config = SweepConfig(n_recall=n, n_y=n, dtype="float64")
    rows = 2 * len(REGULARIZERS) * n * n
    new_dir, old_dir = scratch / "new", scratch / "old"
    new_dir.mkdir()
    old_dir.mkdir()

    def streamed():
      with stream_sweep(config, new_dir):
        pass

    new_cold = _timed(streamed)
    new_warm = _timed(streamed)
    old = _timed(lambda: legacy_sweep(config, old_dir))
    size_new = (new_dir / "recall_sweep.csv").stat().st_size
    size_old = (old_dir / "recall_sweep.csv").stat().st_size
    print(f"end to end, resolution {n}: {rows:,} CSV rows + .npz, float64")
    print(f"  streamed (11 columns, {size_new / 1e9:.2f} GB): first call {new_cold[0]:7.2f} s wall "
          f"({new_cold[1]:.2f} s cpu), again (compiled) {new_warm[0]:7.2f} s wall ({new_warm[1]:.2f} s cpu)")
    print(f"  legacy   ( 8 columns, {size_old / 1e9:.2f} GB): {old[0]:7.2f} s wall ({old[1]:.2f} s cpu)")
    print(f"  speed-up (legacy / streamed): {old[0] / new_cold[0]:.1f}x first call, {old[0] / new_warm[0]:.1f}x "
          f"compiled; cpu {old[1] / new_cold[1]:.1f}x / {old[1] / new_warm[1]:.1f}x")
    entries.append(bench.entry(f"sweep end to end, resolution {n} ({rows:,} rows), first call", new_cold[0], "s",
                               baseline="legacy writer (pandas to_csv, 8 columns)", baseline_value=old[0],
                               run_s=new_warm[0], compile_s=new_cold[0] - new_warm[0]))
    shutil.rmtree(new_dir)
    shutil.rmtree(old_dir)

    # 3. the math alone
    if args.compare_resolution:
      m = args.compare_resolution
      cmp_config = SweepConfig(n_recall=m, n_y=m, dtype="float64")
      start = time.perf_counter()
      result = compute_sweep(cmp_config)
      first = time.perf_counter() - start
      start = time.perf_counter()
      result = compute_sweep(cmp_config)
      warm = time.perf_counter() - start
      start = time.perf_counter()
      base = numpy_sweep(result["recall"], result["ratio"], result["beta_axis"], cmp_config.fixed_beta,
                         cmp_config.fixed_gap, cmp_config.budgets)
      numpy_time = time.perf_counter() - start
      worst = {}
      for key in ("mass_gap_over_beta", "mass_beta", "ceiling"):
        a, b = result[key], base[key]
        rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-300)
        worst[key] = float(np.max(np.where(np.abs(a - b) < 1e-15, 0.0, rel)))
      print(f"math only, resolution {m} ({2 * len(REGULARIZERS) * m * m:,} cells + law columns, in memory):")
      print(f"  jax (jitted, warm): {warm:8.3f} s (first call incl. compile: {first:.3f} s)")
      print(f"  numpy/scipy (per-cell brentq, no law columns): {numpy_time:8.3f} s")
      print(f"  speed-up (numpy / jax warm): {numpy_time / warm:8.1f}x   (incl. compile: {numpy_time / first:.1f}x)")
      print("  max relative disagreement: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))
      entries.append(bench.entry(f"sweep math, resolution {m}, jitted", warm, "s",
                                 baseline="numpy/scipy per-cell brentq", baseline_value=numpy_time,
                                 compile_s=first - warm, run_s=warm))
  finally:
    shutil.rmtree(scratch, ignore_errors=True)
  if args.json:
    bench.write_report(args.json, "theory", entries)


if __name__ == "__main__":
  main()
