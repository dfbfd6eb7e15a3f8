"""``recall-theory sweep``: the main job -- recall against aligned target mass, exactly.

Every option is validated before anything is computed or written; an option that does
not apply to the chosen ``--model`` is an error naming it (never silently ignored), and
errors name the flag as typed (``--resolution``), never an internal field.
"""

from __future__ import annotations

import argparse
import math
import time

# Defaults of the options whose meaning depends on --model. They are declared with
# default=None so that an option the user typed can be told from one left alone.
THEORY_DEFAULTS = {
    "ratio_min": 1e-2, "ratio_max": 1e2, "beta_min": 1e-3, "beta_max": 1e3, "beta": 1.0, "gap": 1.0,
    "budgets": (0.1, 1.0, 10.0), "regularizers": ("reverse_kl", "forward_kl", "chi2_kl", "ipo", "best_of_n"),
}
THEORY_ONLY = ("ratio_min", "ratio_max", "beta_min", "beta_max", "beta", "gap", "budgets", "regularizers")
MOG_ONLY = ("betas",)
MOG_MAX_RESOLUTION = 10_000
FIGURE_POINTS = 400  # figures draw at most this many grid points per axis (a coarse view)


def _flag(dest: str) -> str:
  return "--" + dest.replace("_", "-")


def _floats(text: str) -> tuple[float, ...]:
  try:
    return tuple(float(v) for v in text.split(",") if v.strip())
  except ValueError as err:
    raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from err


def _names(text: str) -> tuple[str, ...]:
  return tuple(v.strip() for v in text.split(",") if v.strip())


def register(subparsers) -> None:
  p = subparsers.add_parser(
      "sweep", help="sweep reference recall against aligned target mass (the main job)",
      description="Exact aligned target mass and KL cost over a log grid of reference recall x "
                  "(gap/beta at fixed beta) and x (beta at fixed gap), for each regularizer, with the "
                  "law's columns (predicted mass, KL, KL ceiling) beside every cell, plus the KL-budget "
                  "ceiling. Writes recall_sweep.csv/.npz, recall_ceiling.csv and the figures "
                  "recall_phase.{pdf,png} and recall_ceiling.{pdf,png} with their data. The grid is "
                  "computed and written in blocks, so memory does not grow with --resolution; a grid "
                  "whose files would not fit on the disk is refused before anything is computed.")
  p.add_argument("--model", choices=("theory", "mog"), default="theory",
                 help="theory: exact two-level closed forms (default); mog: both pipelines on the "
                      "Mixture-of-Gaussians set-up as the reference's weight on the target mode varies")
  p.add_argument("--recall-min", type=float, default=None, help="smallest recall (default 1e-12; mog: 1e-8)")
  p.add_argument("--recall-max", type=float, default=None, help="largest recall (default 0.5)")
  p.add_argument("--resolution", type=int, default=None,
                 help="grid points per axis (default 120, at most 10000; mog: the track's default)")
  p.add_argument("--ratio-min", type=float, default=None, help="theory: smallest gap/beta (default 1e-2)")
  p.add_argument("--ratio-max", type=float, default=None, help="theory: largest gap/beta (default 1e2)")
  p.add_argument("--beta-min", type=float, default=None, help="theory: smallest beta (default 1e-3)")
  p.add_argument("--beta-max", type=float, default=None, help="theory: largest beta (default 1e3)")
  p.add_argument("--beta", type=float, default=None, help="theory: beta of the gap/beta map (default 1)")
  p.add_argument("--gap", type=float, default=None, help="theory: reward gap of the beta map (default 1)")
  p.add_argument("--budgets", type=_floats, default=None,
                 help="theory: KL budgets of the ceiling, comma-separated (default 0.1,1,10)")
  p.add_argument("--regularizers", type=_names, default=None,
                 help="theory: comma-separated subset of reverse_kl,forward_kl,chi2_kl,ipo,best_of_n (default all)")
  p.add_argument("--betas", type=_floats, default=None,
                 help="mog only: betas of the pipelines, comma-separated (default 0.1,0.3,1,3)")
  p.add_argument("--out", default="results/sweep", help="output folder (default results/sweep)")
  p.add_argument("--dtype", choices=("float32", "float64"), default="float64",
                 help="floating point precision (default float64; float32 needs recall >= 1.2e-38)")
  p.add_argument("--no-figures", action="store_true", help="theory: write the data only")
  p.set_defaults(func=run)


def _typed(args: argparse.Namespace, dests) -> list[str]:
  return [_flag(d) for d in dests if getattr(args, d, None) is not None]


def _check_out(args: argparse.Namespace) -> None:
  from recall_theory.errors import InputError
  if not str(args.out).strip():
    raise InputError("--out must name a folder, got ''")


def theory_config(args: argparse.Namespace):
  """The validated :class:`~recall_theory.sweep.SweepConfig` of a ``--model theory`` command line."""
  from recall_theory.errors import InputError
  from recall_theory.sweep import SweepConfig

  if args.betas is not None:
    raise InputError("--betas applies only to --model mog (the theory sweep's beta axis is "
                     "--beta-min/--beta-max, the gap/beta map's beta is --beta)")
  values = {k: (THEORY_DEFAULTS[k] if getattr(args, k) is None else getattr(args, k)) for k in THEORY_ONLY}
  resolution = 120 if args.resolution is None else args.resolution
  return SweepConfig(
      recall_min=1e-12 if args.recall_min is None else args.recall_min,
      recall_max=0.5 if args.recall_max is None else args.recall_max,
      n_recall=resolution, n_y=resolution, ratio_min=values["ratio_min"], ratio_max=values["ratio_max"],
      beta_min=values["beta_min"], beta_max=values["beta_max"], fixed_beta=values["beta"],
      fixed_gap=values["gap"], budgets=tuple(values["budgets"]), regularizers=tuple(values["regularizers"]),
      dtype=args.dtype).validate()


def run(args: argparse.Namespace) -> int:
  _check_out(args)
  if args.model == "mog":
    return _run_mog(args)
  from recall_theory import io, progress
  from recall_theory import sweep

  config = theory_config(args)
  figure_points = 0 if args.no_figures else FIGURE_POINTS
  sweep.check_resources(config, args.out, figure_points)
  out = io.prepare_output_dir(args.out)

  n_blocks = len(sweep.MAPS) * len(config.regularizers) * math.ceil(config.n_y / config.rows_per_chunk)
  start = time.perf_counter()
  # the first block compiles every map's program (~10 s on a cold cache): the name says so,
  # so a log that shows only "started" for a while is not read as a hang
  with progress.stage("sweep (the first block compiles)", total=n_blocks, unit="blocks") as bar, \
      sweep.stream_sweep(config, out, on_block=lambda block: bar.update(1)) as files:
    seconds = time.perf_counter() - start
    result = files.result
    _report_checks(files)
    cells = 2 * len(config.regularizers) * config.n_y * config.n_recall
    if not args.no_figures:
      from recall_theory.plotting import save_figure
      from recall_theory.plotting.phase import phase_figures
      coarse = sweep.subsample(result, FIGURE_POINTS)
      ceiling_keys = ("recall", "budgets", "ceiling", "ceiling_loose")
      phase_keys = ("recall", "ratio", "beta_axis", "half_mass_ratio", "regularizers", "fixed_beta", "fixed_gap",
                    "recall_index", "y_index", "mass_gap_over_beta", "mass_beta")
      for name, fig in phase_figures(coarse).items():
        keys = ceiling_keys if name == "recall_ceiling" else phase_keys
        save_figure(fig, out, name, data={k: coarse[k] for k in keys})
    _print_summary(result, seconds, args)
    print(f"kl_ceiling: Newton from each optimum's own mass; {files.bisection_fallbacks} of {cells} cells "
          f"({100 * files.bisection_fallbacks / cells:.2g}%) by theory.kl_ceiling's bisection; "
          f"{files.above_ceiling} cells above their ceiling")
  return 0


def _report_checks(files) -> None:
  import sys
  if files.above_ceiling:
    print(f"LAW VIOLATION (sweep): {files.above_ceiling} cells with aligned_mass above kl_ceiling; "
          f"this is a bug", file=sys.stderr)


def options_line(changed: dict) -> str:
  """The summary's options line; "non-default options: defaults" read as a contradiction."""
  from recall_theory.cli.main import describe_options
  return f"non-default options: {describe_options(changed)}" if changed else "options: all defaults"


def _print_summary(result, seconds: float, args: argparse.Namespace) -> None:
  import numpy as np
  regs = [str(r) for r in result["regularizers"]]
  recall, ratio = np.asarray(result["recall"]), np.asarray(result["ratio"])
  n_y = result["mass_beta"].shape[1]
  print(f"computed {len(regs)} regularizers x 2 maps x {n_y} x {recall.size} cells in {seconds:.2f} s "
        f"(written as they were computed)")
  print(options_line(getattr(args, "non_default_options", {}) or {}))
  row = int(np.argmin(np.abs(np.log(ratio / 10.0))))
  print(f"aligned target mass at gap/beta = {ratio[row]:.3g} (beta = {float(result['fixed_beta']):g}):")
  cols = [int(np.argmin(np.abs(np.log(recall / r)))) for r in (recall[0], 1e-6, 1e-3, recall[-1])]
  print("  " + f"{'recall':>12s}" + "".join(f"{name:>12s}" for name in regs))
  for c in cols:
    print("  " + f"{recall[c]:12.3g}" + "".join(
        f"{float(result['mass_gap_over_beta'][g, row, c]):12.3g}" for g in range(len(regs))))


# ------------------------------------------------------------------------- --model mog
def mog_arguments(args: argparse.Namespace) -> dict:
  """Validated keyword arguments of ``mog.sweep.run_recall_sweep``; every error names a flag."""
  import numpy as np
  from recall_theory import errors
  from recall_theory.errors import InputError

  ignored = _typed(args, THEORY_ONLY) + (["--no-figures"] if args.no_figures else [])
  if ignored:
    raise InputError(f"{', '.join(ignored)} {'does' if len(ignored) == 1 else 'do'} not apply to --model mog "
                     f"(it takes --recall-min, --recall-max, --resolution, --betas, --dtype, --out)")
  recall_min = 1e-8 if args.recall_min is None else args.recall_min
  recall_max = 0.5 if args.recall_max is None else args.recall_max
  from recall_theory.sweep import check_recall_range
  check_recall_range(recall_min, recall_max, args.dtype, max_inclusive=False)
  kwargs = dict(weight_min=recall_min, weight_max=recall_max, dtype=args.dtype)
  if args.resolution is not None:
    kwargs["n_weights"] = errors.check_int_range("--resolution", args.resolution, 2, MOG_MAX_RESOLUTION)
  if args.betas is not None:
    betas = np.asarray(args.betas, dtype=np.float64)
    if betas.size == 0:
      raise InputError("--betas must list at least one beta, got ''")
    errors.check_positive("--betas", betas)
    from recall_theory.cli.checks import check_representable
    check_representable("--betas", betas, args.dtype)
    kwargs["betas"] = tuple(float(b) for b in betas)
  return kwargs


# internal names of mog.sweep's checks -> the flag a user typed (a safety net: mog_arguments
# validates first, so these messages should never reach a user)
_MOG_FLAGS = {"weight_min": "--recall-min", "weight_max": "--recall-max", "weights": "--recall-min/--recall-max",
              "n_weights": "--resolution", "betas": "--betas", "beta": "--betas", "dtype": "--dtype"}


def _run_mog(args: argparse.Namespace) -> int:
  import re
  from recall_theory.errors import InputError

  kwargs = mog_arguments(args)
  try:
    from recall_theory.mog.sweep import run_recall_sweep
  except ImportError as err:  # pragma: no cover
    raise InputError(f"--model mog needs the Mixture-of-Gaussians track: {err}") from err
  try:
    # run_recall_sweep calls io.prepare_output_dir itself (after its own checks): hand it the
    # target, not a staging folder of ours, or its files would be staged twice and never land
    run_recall_sweep(args.out, **kwargs)
  except InputError as err:
    message = str(err)
    for name, flag in _MOG_FLAGS.items():
      message = re.sub(rf"\b{name}\b", flag, message)
    raise InputError(message) from err
  return 0
