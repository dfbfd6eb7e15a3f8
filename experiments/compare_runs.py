"""Did a change of arithmetic move a results table beyond its seed-to-seed noise?

Trained runs (policy gradient, DPO) are chaotic in rounding: a change that only reorders
floating-point operations (a fused kernel, a written-out product) moves them as much as a fresh
draw of noise would. Cell-by-cell tolerances (``recall-theory reproduce --check``) then fail by
design; the question is whether each cell's *mean over seeds* moved by more than its standard
error. For every group of rows sharing the id columns except the seed, this prints the change of
the mean in units of the standard error of that difference, sqrt(sd_committed^2 + sd_rerun^2) /
sqrt(seeds) (two independent draws of the same noise), per metric; how many rows changed at all;
and the largest relative change of a single cell (the scale for exact, seed-free rows).

Usage:  python experiments/compare_runs.py COMMITTED.csv RERUN.csv [--metrics reward,target_mass]
        python experiments/compare_runs.py git:HEAD~1:figures/mog/mog_results.csv figures/mog/mog_results.csv
A ``git:REV:PATH`` argument reads the file as committed at REV.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys

import numpy as np
import pandas as pd



def read(spec: str) -> pd.DataFrame:
  if spec.startswith("git:"):
    rev, path = spec[4:].split(":", 1)
    text = subprocess.run(["git", "show", f"{rev}:{path}"], check=True, capture_output=True, text=True).stdout
    return pd.read_csv(io.StringIO(text))
  return pd.read_csv(spec)


def id_columns(table: pd.DataFrame, metrics) -> list[str]:
  """Every column that is not a metric, not the seed and not derived from the metrics: text
  columns and the numeric settings (beta, tau, ladder_scale, teacher_target_weight, ...)."""
  settings = {"beta", "tau", "ladder_scale", "teacher_target_weight"}
  return [c for c in table.columns if c != "seed" and c not in metrics
          and (not pd.api.types.is_numeric_dtype(table[c]) or c in settings)]


def compare(old: pd.DataFrame, new: pd.DataFrame, metrics, keys=None) -> pd.DataFrame:
  """One row per metric: rows changed, groups with several seeds, the largest and median
  |change of mean| / SE of the difference, the largest relative change of one cell."""
  if list(old.columns) != list(new.columns) or len(old) != len(new):
    raise ValueError("the two tables differ in columns or rows: not the same run")
  keys = list(keys) if keys else id_columns(old, metrics)
  if "seed" in old.columns and old.duplicated(keys + ["seed"]).any():
    raise ValueError(f"rows repeat a seed within a group of {keys}: name the id columns with --keys")
  out = []
  for m in metrics:
    a, b = old[m].astype(float), new[m].astype(float)
    changed = int((~np.isclose(a, b, rtol=0, atol=0, equal_nan=True)).sum())
    frame = old[keys].assign(a=a, b=b, d=b - a)
    g = frame.groupby(keys, dropna=False)
    n = g["a"].count()
    se = np.sqrt(g["a"].var() + g["b"].var()) / np.sqrt(n)   # NaN for single-row groups
    shift = g["d"].mean().abs()
    z = (shift / se)[se > 0]
    worst = z.idxmax() if len(z) else None
    with np.errstate(divide="ignore", invalid="ignore"):
      rel = np.abs(b - a) / np.maximum(np.abs(a), np.abs(b))
    out.append({"metric": m, "rows_changed": changed, "rows": len(a), "groups_with_seeds": len(z),
                "max_shift_in_se": float(z.max()) if len(z) else float("nan"),
                "median_shift_in_se": float(z.median()) if len(z) else float("nan"),
                "max_rel_change": float(np.nanmax(rel)) if changed else 0.0, "worst_group": worst})
  return pd.DataFrame(out)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("committed")
  parser.add_argument("rerun")
  parser.add_argument("--metrics", default="reward,target_mass,recall,precision,kl_to_reference")
  parser.add_argument("--keys", default=None,
                      help="comma list of the columns that name a group (default: text columns and settings)")
  args = parser.parse_args()
  try:
    old, new = read(args.committed), read(args.rerun)
    metrics = [m for m in args.metrics.split(",") if m]
    missing = [m for m in metrics if m not in old.columns]
    if missing:
      parser.exit(2, f"compare_runs.py: error: --metrics: no column {missing[0]!r} in {args.committed}\n")
    keys = [k for k in (args.keys or "").split(",") if k]
    unknown = [k for k in keys if k not in old.columns]
    if unknown:
      parser.exit(2, f"compare_runs.py: error: --keys: no column {unknown[0]!r} in {args.committed}\n")
    table = compare(old, new, metrics, keys)
  except (OSError, ValueError, subprocess.CalledProcessError) as err:
    parser.exit(2, f"compare_runs.py: error: {err}\n")
  with pd.option_context("display.width", 200, "display.max_colwidth", 80):
    print(table.to_string(index=False))
  sys.stdout.flush()


if __name__ == "__main__":
  main()
