"""``recall-theory mog``: the Mixture-of-Gaussians figure set (both pipelines, exact and trained).

Runs every seed x beta x student variant in one jitted, vmapped call sharded over all
devices, and writes ``mog_results.csv`` (with the law's columns), summaries, generated notes
and the figures (with their data) into ``--out`` (default ``results/mog``). ``--quick`` runs a
reduced grid. ``--taus`` runs the recall sweep over the KD sharpening temperature instead;
``--phase-map`` trains K-A and A-K over taus x betas x seeds instead (the trained phase map,
:mod:`recall_theory.mog.trained_phase`).
``--chunk-size N`` trades speed for memory (``lax.map`` over chunks of N vmapped runs). The two
metrics figures are drawn by one spawned worker process while this one writes the tables, the
other figures and the phase map. Heavy imports (jax, the track) happen inside :func:`run`.
"""

from __future__ import annotations

import argparse

from recall_theory.cli import plateau_flags

DEFAULT_OUT = "results/mog"
DEFAULT_TAU_BETAS = (0.03, 0.1, 0.3, 1.0)
# The trained phase map's grid (4-mode student): taus whose students' recall spans about 3e-4 to
# 6e-2, and betas whose Delta/beta (about 0.7 to 20) reaches a decade of recall on either side of
# the law's boundary log((1-p)/p) in every tau column (chosen with the exact tau sweep).
PHASE_TAUS = (0.07, 0.09, 0.11, 0.13, 0.17, 0.3)
PHASE_BETAS = (0.04, 0.063, 0.1, 0.16, 0.25, 0.4)
PHASE_SEEDS = 5
PHASE_QUICK_TAUS = (0.1, 0.3)
PHASE_QUICK_BETAS = (0.04, 0.1, 0.25)
PHASE_QUICK_SEEDS = 2
PHASE_STUDENTS = ("4-mode", "3-mode")


def _values(values) -> str:
  return ",".join(f"{v:g}" for v in values)


def register(subparsers) -> None:
  p = subparsers.add_parser("mog", help="Mixture-of-Gaussians track: K-A vs A-K, exact and trained, over seeds and beta",
                            description=__doc__.split("\n\n")[0])
  p.add_argument("--quick", action="store_true", help="reduced grid and training budget (with --phase-map: "
                 "tiny samples and budgets, seconds)")
  p.add_argument("--seeds", type=int, default=None,
                 help=f"number of seeds (default 8; quick 2; --phase-map {PHASE_SEEDS}, quick {PHASE_QUICK_SEEDS})")
  p.add_argument("--betas", type=str, default=None,
                 help="comma-separated beta values (instead of --beta-min/--beta-max/--n-betas; "
                      "default: the log-spaced range)")
  p.add_argument("--beta-min", type=float, default=None, help="smallest beta of the log-spaced range (default 0.01; quick 0.03)")
  p.add_argument("--beta-max", type=float, default=None, help="largest beta of the log-spaced range (default 10; quick 3)")
  p.add_argument("--n-betas", type=int, default=None, help="number of betas in the range (default 7; quick 3)")
  p.add_argument("--target", choices=("one", "two"), default="one", help="one target mode or two (default one)")
  p.add_argument("--label-noise", type=float, default=0.0, help="DPO label flip probability in [0, 0.5) (default 0)")
  p.add_argument("--dpo-pairs", type=int, default=None, help="DPO preference-pair budget (>= 16; default 4096; quick 512)")
  p.add_argument("--taus", type=str, default=None,
                 help="comma-separated KD sharpening temperatures (> 0): run the exact recall sweep over tau "
                      f"(betas default {','.join(f'{b:g}' for b in DEFAULT_TAU_BETAS)}) instead of the grid; with "
                      f"--phase-map, the map's temperatures, at least 2 (default {_values(PHASE_TAUS)}; quick "
                      f"{_values(PHASE_QUICK_TAUS)})")
  p.add_argument("--phase-map", action="store_true",
                 help="train K-A and A-K (PG, DPO to their plateau, and the exact tilt) over --taus x --betas x "
                      "--seeds and write the trained phase map: CSV, figure, generated caption (betas default "
                      f"{_values(PHASE_BETAS)}; quick {_values(PHASE_QUICK_BETAS)})")
  p.add_argument("--student", choices=PHASE_STUDENTS, default=None,
                 help="the student variant of --phase-map (default 4-mode)")
  p.add_argument("--chunk-size", type=int, default=None,
                 help="run the grid as lax.map over chunks of this many vmapped runs, an integer in "
                      "[1, 1000000]: memory grows with the chunk instead of the grid, at some speed "
                      "(default: one vmap over the whole grid; the numbers agree to rounding)")
  p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
  p.add_argument("--dtype", choices=("float32", "float64"), default="float64", help="floating point type (default float64)")
  p.add_argument("--match-compute", action="store_true",
                 help="compute-matched run: K-A's PG/DPO budget over --ladder against A-K and the control "
                      "at 1x, one beta (recall_theory.mog.compute_match)")
  p.add_argument("--ladder", default=None, help="increasing budget scales for --match-compute (default 1,4,16,64)")
  p.add_argument("--time-limit", type=float, default=None,
                 help="seconds; --match-compute refuses a ladder estimated to run longer (default 1200)")
  plateau_flags.add_arguments(p)  # --max-steps --first-check --plateau-tolerance
  p.add_argument("--quiet", action="store_true",
                 help="no progress lines and no summary on stdout (files are written as usual)")
  p.set_defaults(func=run)


def _finite(flag: str, value: float) -> None:
  import math
  from recall_theory.errors import InputError
  if not math.isfinite(value):
    raise InputError(f"{flag} must be finite and > 0, got {value:g}")


def _betas(args, default_list=None) -> list[float]:
  """Betas from --betas, or the log-spaced range; every flag checked, conflicts reported."""
  from recall_theory.errors import InputError, check_int_range, check_positive
  import numpy as np
  from recall_theory.cli.checks import check_representable
  from recall_theory.mog.setup import check_beta_range
  for flag, value in (("--beta-min", args.beta_min), ("--beta-max", args.beta_max)):
    if value is not None:
      _finite(flag, value)
      check_positive(flag, value)
      check_representable(flag, value, args.dtype)  # a subnormal beta is 0 to XLA
      check_beta_range(flag, value)
  if args.beta_min is not None and args.beta_max is not None and not args.beta_max >= args.beta_min:
    raise InputError(f"--beta-max must be >= --beta-min, got {args.beta_max:g} < {args.beta_min:g}")
  if args.n_betas is not None:
    check_int_range("--n-betas", args.n_betas, 1, 200)
  if args.betas is not None:
    given = [f for f, v in (("--beta-min", args.beta_min), ("--beta-max", args.beta_max),
                            ("--n-betas", args.n_betas)) if v is not None]
    if given:
      raise InputError(f"--betas lists the betas; {', '.join(given)} cannot be combined with it")
    try:
      values = [float(v) for v in args.betas.split(",") if v.strip()]
    except ValueError as err:
      raise InputError(f"--betas must be a comma-separated list of numbers > 0, got {args.betas!r}") from err
    if not values:
      raise InputError(f"--betas must list at least one value > 0, got {args.betas!r}")
    for v in values:
      _finite("--betas", v)
    check_positive("--betas", values)
    check_representable("--betas", values, args.dtype)
    check_beta_range("--betas", values)
    return sorted(set(values))
  if default_list is not None and args.beta_min is None and args.beta_max is None and args.n_betas is None:
    return list(default_list)
  lo = args.beta_min if args.beta_min is not None else (0.03 if args.quick else 0.01)
  hi = args.beta_max if args.beta_max is not None else (3.0 if args.quick else 10.0)
  if not hi >= lo:
    raise InputError(f"--beta-max must be >= --beta-min, got {hi:g} < {lo:g}")
  n = args.n_betas if args.n_betas is not None else (3 if args.quick else 7)
  return list(np.geomspace(lo, hi, n))


def build_config(args, phase_map: bool = False):
  """The MogConfig for the parsed arguments (validated; errors name the flag). ``phase_map``:
  --quick means the phase map's quick sizes (recall_theory.mog.trained_phase.quick_config)."""
  import dataclasses
  import math
  from recall_theory.errors import InputError, check_int_range, check_probability
  from recall_theory.mog.setup import MogConfig
  if not math.isfinite(args.label_noise):
    raise InputError(f"--label-noise must lie in [0, 0.5), got {args.label_noise:g}")
  check_probability("--label-noise", args.label_noise)
  if args.label_noise >= 0.5:
    raise InputError(f"--label-noise must be < 0.5, got {args.label_noise:g}")
  if args.dpo_pairs is not None:
    check_int_range("--dpo-pairs", args.dpo_pairs, 16, 10_000_000)
  overrides = plateau_flags.parse(args)
  cfg = MogConfig(target=args.target, label_noise=args.label_noise)
  if args.quick and phase_map:
    from recall_theory.mog.trained_phase import quick_config
    cfg = quick_config(cfg)
  elif args.quick:
    cfg = dataclasses.replace(cfg, n_teacher_samples=1000, n_student_samples=1000, em_iters=30, pg_steps=400,
                              dpo_steps=400, dpo_pairs=512, control_steps=40, grid_n=81,
                              plateau=dataclasses.replace(cfg.plateau, first_check=50))
  if args.dpo_pairs is not None:
    cfg = dataclasses.replace(cfg, dpo_pairs=args.dpo_pairs)
  return plateau_flags.apply_mog(cfg, overrides).validate()


def _check_tau_options(args) -> None:
  """Options of the trained grid do not apply to the exact tau sweep: say so instead of ignoring them."""
  from recall_theory.errors import InputError
  unused = [flag for flag, value in (("--seeds", args.seeds), ("--quick", args.quick or None),
                                     ("--label-noise", args.label_noise or None), ("--dpo-pairs", args.dpo_pairs),
                                     ("--chunk-size", args.chunk_size)) if value is not None]
  if unused:
    raise InputError(f"--taus runs the exact tau sweep (no seeds, no training); {', '.join(unused)} "
                     "does not apply to it")


def _phase_taus(args) -> list[float]:
  """--taus of --phase-map: at least 2 distinct temperatures, each finite and > 0 (default PHASE_TAUS)."""
  import math
  from recall_theory.errors import InputError, check_representable
  if args.taus is None:
    return list(PHASE_QUICK_TAUS if args.quick else PHASE_TAUS)
  rule = "at least 2 distinct comma-separated temperatures, each finite and > 0"
  try:
    values = [float(v) for v in args.taus.split(",") if v.strip()]
  except ValueError:
    raise InputError(f"--taus must list {rule}, got {args.taus!r}") from None
  bad = [v for v in values if not (math.isfinite(v) and v > 0)]
  if bad:
    raise InputError(f"--taus must list {rule}, got {bad[0]:g}")
  check_representable("--taus", values, args.dtype)
  if len(set(values)) < 2:
    raise InputError(f"--taus must list {rule} for --phase-map (a phase map needs 2 points per axis), "
                     f"got {args.taus!r}")
  return sorted(set(values))


def _phase_betas(args) -> list[float]:
  """Betas of --phase-map (the --betas list or the range flags, each checked): at least 2 distinct."""
  from recall_theory.errors import InputError
  betas = _betas(args, default_list=PHASE_QUICK_BETAS if args.quick else PHASE_BETAS)
  if len(set(betas)) < 2:
    flag = "--betas" if args.betas is not None else "--n-betas"
    raise InputError(f"{flag} must give at least 2 distinct betas, each finite and > 0, for --phase-map "
                     f"(a phase map needs 2 points per axis), got {len(set(betas))}")
  return betas


def _check_phase_options(args) -> None:
  """Options of the other modes do not apply to --phase-map (and --student needs it): say so."""
  from recall_theory.errors import InputError
  if not args.phase_map:
    if args.student is not None:
      raise InputError("--student applies to --phase-map only (the comparison grid runs every student)")
    return
  unused = [flag for flag, value in (("--match-compute", args.match_compute or None), ("--ladder", args.ladder),
                                     ("--time-limit", args.time_limit)) if value is not None]
  if unused:
    raise InputError(f"--phase-map trains the phase map; {', '.join(unused)} does not apply to it")


def _run_phase_map(args, options: dict, say) -> int:
  """``mog --phase-map``: every flag checked before jax is imported, then the map trained and written."""
  import time
  from recall_theory.cli.main import describe_options
  from recall_theory.errors import check_int_range
  from recall_theory.io import prepare_output_dir
  taus = _phase_taus(args)
  betas = _phase_betas(args)
  default_seeds = PHASE_QUICK_SEEDS if args.quick else PHASE_SEEDS
  n_seeds = check_int_range("--seeds", args.seeds if args.seeds is not None else default_seeds, 2, 10_000)
  if args.chunk_size is not None:
    check_int_range("--chunk-size", args.chunk_size, 1, 1_000_000)
  config = build_config(args, phase_map=True)
  out = prepare_output_dir(args.out)
  import jax
  import jax.numpy as jnp
  from recall_theory.mog.trained_phase import run_phase_map
  student = args.student or PHASE_STUDENTS[0]
  start = time.perf_counter()
  say(f"mog --phase-map: {n_seeds} seeds x {len(taus)} taus x {len(betas)} betas, {student} student, "
      f"budget {config.pg_steps} steps, {args.dtype}")
  with jax.enable_x64(args.dtype == "float64"):
    paths = run_phase_map(out, config, taus, betas, range(n_seeds), student=student, dtype=getattr(jnp, args.dtype),
                          chunk_size=args.chunk_size, options_text=describe_options(dict(options)))
  say(f"mog --phase-map: {len(paths)} files in {time.perf_counter() - start:.1f} s")
  return 0


def _silent(*_args, **_kwargs) -> None:
  """print's stand-in under --quiet."""


def run(args: argparse.Namespace) -> int:
  import time
  from recall_theory.errors import check_int_range
  from recall_theory.io import prepare_output_dir

  options = getattr(args, "non_default_options", {})
  if args.quiet:  # the command line restores the setting when the run ends
    from recall_theory import progress
    progress.set_enabled(False)
  say = _silent if args.quiet else print
  _check_phase_options(args)
  if args.phase_map:
    return _run_phase_map(args, options, say)
  if args.match_compute or args.ladder is not None or args.time_limit is not None:
    from recall_theory.mog.compute_match import run_cli
    return run_cli(args, build_config(args))
  if args.taus is not None:
    from recall_theory.mog.sweep import parse_taus
    taus = parse_taus(args.taus, "--taus")
    _check_tau_options(args)
    betas = _betas(args, default_list=DEFAULT_TAU_BETAS)
    config = build_config(args)
    out = prepare_output_dir(args.out)
    import jax
    import jax.numpy as jnp
    from recall_theory.mog.taus import run_tau_sweep
    with jax.enable_x64(args.dtype == "float64"):
      paths = run_tau_sweep(out, config, taus, betas, dtype=getattr(jnp, args.dtype), options=options)
    return 0

  n_seeds = check_int_range("--seeds", args.seeds if args.seeds is not None else (2 if args.quick else 8), 1, 10_000)
  if args.chunk_size is not None:
    check_int_range("--chunk-size", args.chunk_size, 1, 1_000_000)
  betas = _betas(args)
  config = build_config(args)
  out = prepare_output_dir(args.out)

  # --quick compiles at XLA's default optimisation level like every run: with the persistent
  # compilation cache the compile is paid once, and the optimised programs make every later
  # run faster (level 0 had compiled ~3x faster but run ~2x slower, and gave other floats).
  import jax
  import jax.numpy as jnp
  from recall_theory.mog.report import run_mog

  start = time.perf_counter()
  say(f"mog: {n_seeds} seeds x {len(betas)} betas x {len(config.students)} students on "
        f"{jax.device_count()} {jax.devices()[0].platform} device(s), {args.dtype}")
  # scoped, so an in-process caller (a notebook, the tests) keeps its own precision setting
  with jax.enable_x64(args.dtype == "float64"):
    # One figure worker: the metrics figures are drawn on the second core while this process
    # writes the tables, the other figures and the phase map.
    paths = run_mog(out, config, range(n_seeds), betas, dtype=getattr(jnp, args.dtype), options=options,
                    chunk_size=args.chunk_size, figure_workers=1, log=say)
  say(f"mog: {len(paths)} files in {time.perf_counter() - start:.1f} s")
  return 0
