"""Benchmark: the jitted, vectorised recall sweep against a straightforward NumPy/SciPy one.

The baseline computes the same quantities as ``recall_theory.sweep.compute_sweep``
the way one would without JAX: NumPy broadcasting for the closed forms and, for
every grid cell, a SciPy ``brentq`` root (the chi^2+KL normaliser with
``scipy.special.lambertw``, and the exact KL-budget ceiling). Both run in this process,
on the same grid, in float64; the script checks that they agree and prints the ratio.

    python experiments/bench_theory.py --resolution 200
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import numpy as np
from scipy import optimize, special

REGULARIZERS = ("reverse_kl", "forward_kl", "chi2_kl", "ipo", "best_of_n")


def _logit(p):
  with np.errstate(divide="ignore"):
    return np.log(p) - np.log1p(-p)


def _sigmoid(x):
  return special.expit(x)


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
    masses = []
    masses.append(_sigmoid(_logit(p) + s))
    a = 1.0 - s
    root = np.sqrt(a * a + 4 * p * s)
    with np.errstate(divide="ignore", invalid="ignore"):
      masses.append(np.where(a >= 0, 2 * p / (a + root), (root - a) / (2 * s)))
    masses.append(np.vectorize(_chi2_mass_cell)(p, s))
    masses.append(_sigmoid(_logit(p) + (special.expit(np.broadcast_to(gap, p.shape)) - 0.5) / beta))
    n = np.exp(np.minimum(s, 700.0))
    masses.append(-np.expm1(n * np.log1p(-p)))
    mass = np.stack(masses)
    out[f"mass_{map_name}"] = mass
    out[f"kl_{map_name}"] = _bernoulli_kl(np.clip(mass, 0, 1), p[None])
  out["ceiling"] = np.array([[_ceiling_cell(p, b) for p in recall] for b in budgets])
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--resolution", type=int, default=200, help="grid points per axis (default 200)")
  parser.add_argument("--repeats", type=int, default=3, help="timed repeats of the JAX sweep (best of)")
  args = parser.parse_args()

  import jax
  from recall_theory.sweep import SweepConfig, compute_sweep

  config = SweepConfig(n_recall=args.resolution, n_y=args.resolution, dtype="float64")
  start = time.perf_counter()
  result = compute_sweep(config)
  first = time.perf_counter() - start
  times = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    result = compute_sweep(config)
    times.append(time.perf_counter() - start)
  jax_time = min(times)

  start = time.perf_counter()
  base = numpy_sweep(result["recall"], result["ratio"], result["beta_axis"], config.fixed_beta,
                     config.fixed_gap, config.budgets)
  numpy_time = time.perf_counter() - start

  cells = 2 * len(REGULARIZERS) * args.resolution ** 2
  worst = {}
  for key in ("mass_gap_over_beta", "mass_beta", "ceiling"):
    a, b = result[key], base[key]
    rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-300)
    worst[key] = float(np.max(np.where(np.abs(a - b) < 1e-15, 0.0, rel)))
  print(f"machine: {platform.processor() or platform.machine()}, jax {jax.__version__} on "
        f"{jax.devices()[0].platform}, {jax.device_count()} device(s)")
  print(f"grid: {args.resolution} x {args.resolution} x 2 maps x {len(REGULARIZERS)} regularizers "
        f"= {cells} cells, + {len(config.budgets)} x {args.resolution} ceiling cells, float64")
  print(f"jax sweep (jitted, warm, best of {args.repeats}): {jax_time:8.3f} s   (first call incl. compile: {first:.3f} s)")
  print(f"numpy/scipy sweep (per-cell brentq)        : {numpy_time:8.3f} s")
  print(f"speed-up (numpy / jax warm): {numpy_time / jax_time:8.1f}x   (numpy / jax incl. compile: {numpy_time / first:.1f}x)")
  print("max relative disagreement: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))


if __name__ == "__main__":
  main()
