"""``recall-theory mog``: the Mixture-of-Gaussians figure set (both pipelines, exact and trained).

Runs every seed x beta x student variant in one jitted, vmapped call sharded over all
devices, and writes ``mog_results.csv``, summaries and the figures (with their data) into
``--out`` (default ``figures/mog``). ``--quick`` runs a reduced grid in under a minute.
Heavy imports (jax, the track) happen inside :func:`run`.
"""

from __future__ import annotations

import argparse

DEFAULT_OUT = "figures/mog"


def register(subparsers) -> None:
  p = subparsers.add_parser("mog", help="Mixture-of-Gaussians track: K-A vs A-K, exact and trained, over seeds and beta",
                            description=__doc__.split("\n\n")[0])
  p.add_argument("--quick", action="store_true", help="reduced grid and training budget (< 1 min on 2 cores)")
  p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 8; quick 2)")
  p.add_argument("--betas", type=str, default=None, help="comma-separated beta values (overrides the range)")
  p.add_argument("--beta-min", type=float, default=None, help="smallest beta of the log-spaced range (default 0.01; quick 0.03)")
  p.add_argument("--beta-max", type=float, default=None, help="largest beta of the log-spaced range (default 10; quick 3)")
  p.add_argument("--n-betas", type=int, default=None, help="number of betas in the range (default 7; quick 3)")
  p.add_argument("--target", choices=("one", "two"), default="one", help="one target mode or two")
  p.add_argument("--label-noise", type=float, default=0.0, help="DPO label flip probability in [0, 0.5)")
  p.add_argument("--dpo-pairs", type=int, default=None, help="DPO preference-pair budget")
  p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
  p.add_argument("--dtype", choices=("float32", "float64"), default="float64", help="floating point type")
  p.set_defaults(func=run)


def _betas(args) -> list[float]:
  from recall_theory.errors import InputError, check_int_range, check_positive
  import numpy as np
  if args.betas:
    try:
      values = [float(v) for v in args.betas.split(",") if v.strip()]
    except ValueError as err:
      raise InputError(f"--betas must be a comma-separated list of numbers, got {args.betas!r}") from err
    if not values:
      raise InputError("--betas must list at least one value")
    check_positive("--betas", values)
    return values
  lo = args.beta_min if args.beta_min is not None else (0.03 if args.quick else 0.01)
  hi = args.beta_max if args.beta_max is not None else (3.0 if args.quick else 10.0)
  check_positive("--beta-min", lo)
  check_positive("--beta-max", hi)
  if not hi >= lo:
    raise InputError(f"--beta-max must be >= --beta-min, got {hi:g} < {lo:g}")
  n = check_int_range("--n-betas", args.n_betas if args.n_betas is not None else (3 if args.quick else 7), 1, 200)
  return list(np.geomspace(lo, hi, n))


def build_config(args):
  """The MogConfig for the parsed arguments (validated)."""
  import dataclasses
  from recall_theory.errors import InputError, check_probability
  from recall_theory.mog.setup import MogConfig
  check_probability("--label-noise", args.label_noise)
  if args.label_noise >= 0.5:
    raise InputError(f"--label-noise must be < 0.5, got {args.label_noise:g}")
  cfg = MogConfig(target=args.target, label_noise=args.label_noise)
  if args.quick:
    cfg = dataclasses.replace(cfg, n_teacher_samples=1000, n_student_samples=1000, em_iters=30, pg_steps=60,
                              dpo_steps=60, dpo_pairs=512, control_steps=40, grid_n=81)
  if args.dpo_pairs is not None:
    cfg = dataclasses.replace(cfg, dpo_pairs=args.dpo_pairs)
  return cfg.validate()


def run(args: argparse.Namespace) -> int:
  import time
  from recall_theory.errors import check_int_range
  from recall_theory.io import prepare_output_dir

  n_seeds = check_int_range("--seeds", args.seeds if args.seeds is not None else (2 if args.quick else 8), 1, 10_000)
  betas = _betas(args)
  config = build_config(args)
  out = prepare_output_dir(args.out)

  if args.quick:
    # A small grid is dominated by XLA compilation: level 0 compiles ~3x faster and runs ~2x
    # slower, the right trade for --quick. Ignored if the backend is already initialised.
    import os
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
  import jax
  import jax.numpy as jnp
  from recall_theory.mog.report import run_mog

  start = time.perf_counter()
  print(f"mog: {n_seeds} seeds x {len(betas)} betas x {len(config.students)} students on "
        f"{jax.device_count()} {jax.devices()[0].platform} device(s), {args.dtype}")
  # scoped, so an in-process caller (a notebook, the tests) keeps its own precision setting
  with jax.enable_x64(args.dtype == "float64"):
    paths = run_mog(out, config, range(n_seeds), betas, dtype=getattr(jnp, args.dtype))
  print(f"mog: wrote {len(paths)} files to {out} in {time.perf_counter() - start:.1f} s")
  return 0
