"""``recall-theory sweep``: the main job -- recall against aligned target mass, exactly."""

from __future__ import annotations

import argparse
import time


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
                  "(gap/beta at fixed beta) and x (beta at fixed gap), for each regularizer, plus the "
                  "KL-budget ceiling. Writes recall_sweep.csv/.npz, recall_ceiling.csv and the figures "
                  "recall_phase.{pdf,png} and recall_ceiling.{pdf,png} with their data.")
  p.add_argument("--model", choices=("theory", "mog"), default="theory",
                 help="theory: exact two-level closed forms (default); mog: both pipelines on the "
                      "Mixture-of-Gaussians set-up as the reference's weight on the target mode varies")
  p.add_argument("--recall-min", type=float, default=None, help="smallest recall (default 1e-12; mog: 1e-8)")
  p.add_argument("--recall-max", type=float, default=None, help="largest recall (default 0.5)")
  p.add_argument("--resolution", type=int, default=None,
                 help="grid points per axis (default 120; mog: the track's default)")
  p.add_argument("--ratio-min", type=float, default=1e-2, help="smallest gap/beta (default 1e-2)")
  p.add_argument("--ratio-max", type=float, default=1e2, help="largest gap/beta (default 1e2)")
  p.add_argument("--beta-min", type=float, default=1e-3, help="smallest beta (default 1e-3)")
  p.add_argument("--beta-max", type=float, default=1e3, help="largest beta (default 1e3)")
  p.add_argument("--beta", type=float, default=1.0, help="beta of the gap/beta map (default 1)")
  p.add_argument("--gap", type=float, default=1.0, help="reward gap of the beta map (default 1)")
  p.add_argument("--budgets", type=_floats, default=(0.1, 1.0, 10.0),
                 help="KL budgets of the ceiling, comma-separated (default 0.1,1,10)")
  p.add_argument("--regularizers", type=_names,
                 default=("reverse_kl", "forward_kl", "chi2_kl", "ipo", "best_of_n"),
                 help="comma-separated subset of reverse_kl,forward_kl,chi2_kl,ipo,best_of_n")
  p.add_argument("--betas", type=_floats, default=None,
                 help="mog only: betas of the pipelines, comma-separated (default 0.1,0.3,1,3)")
  p.add_argument("--out", default="figures", help="output folder (default figures/)")
  p.add_argument("--dtype", choices=("float32", "float64"), default="float64",
                 help="floating point precision (default float64; float32 needs recall >= 1e-37)")
  p.add_argument("--no-figures", action="store_true", help="write the data only")
  p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
  from recall_theory import io
  from recall_theory.errors import InputError

  if args.model == "mog":
    return _run_mog(args)
  from recall_theory.sweep import SweepConfig

  resolution = 120 if args.resolution is None else args.resolution
  config = SweepConfig(
      recall_min=1e-12 if args.recall_min is None else args.recall_min,
      recall_max=0.5 if args.recall_max is None else args.recall_max,
      n_recall=resolution, n_y=resolution, ratio_min=args.ratio_min, ratio_max=args.ratio_max,
      beta_min=args.beta_min, beta_max=args.beta_max, fixed_beta=args.beta, fixed_gap=args.gap,
      budgets=args.budgets, regularizers=args.regularizers, dtype=args.dtype).validate()
  if not config.budgets:
    raise InputError("--budgets must list at least one budget")
  out = io.prepare_output_dir(args.out)

  from recall_theory.sweep import compute_sweep, tidy_columns

  start = time.perf_counter()
  result = compute_sweep(config)
  seconds = time.perf_counter() - start
  written = [io.write_columns_csv(out / "recall_sweep.csv", tidy_columns(result))]
  written.append(io.save_npz(out / "recall_sweep.npz", **result))
  budgets, recall = result["budgets"], result["recall"]
  written.append(io.write_columns_csv(out / "recall_ceiling.csv", {
      "budget": budgets.repeat(recall.size), "recall": recall[None].repeat(budgets.size, 0).ravel(),
      "ceiling": result["ceiling"].ravel(), "ceiling_loose": result["ceiling_loose"].ravel()}))
  if not args.no_figures:
    from recall_theory.plotting import save_figure
    from recall_theory.plotting.phase import phase_figures
    ceiling_keys = ("recall", "budgets", "ceiling", "ceiling_loose")
    for name, fig in phase_figures(result).items():
      data = {k: result[k] for k in ceiling_keys} if name == "recall_ceiling" else result
      written += save_figure(fig, out, name, data=data)
  _print_summary(result, seconds)
  for path in written:
    print(f"wrote {path}")
  return 0


def _print_summary(result, seconds: float) -> None:
  import numpy as np
  regs = list(result["regularizers"])
  recall, ratio = result["recall"], result["ratio"]
  print(f"computed {len(regs)} regularizers x 2 maps x {result['mass_beta'].shape[1]} x {recall.size} "
        f"cells in {seconds:.2f} s")
  row = int(np.argmin(np.abs(np.log(ratio / 10.0))))
  print(f"aligned target mass at gap/beta = {ratio[row]:.3g} (beta = {float(result['fixed_beta']):g}):")
  cols = [int(np.argmin(np.abs(np.log(recall / r)))) for r in (recall[0], 1e-6, 1e-3, recall[-1])]
  print("  " + f"{'recall':>12s}" + "".join(f"{name:>12s}" for name in regs))
  for c in cols:
    print("  " + f"{recall[c]:12.3g}" + "".join(
        f"{result['mass_gap_over_beta'][g, row, c]:12.3g}" for g in range(len(regs))))


def _run_mog(args: argparse.Namespace) -> int:
  from recall_theory import io
  from recall_theory.errors import InputError

  try:
    from recall_theory.mog.sweep import run_recall_sweep
  except ImportError as err:  # pragma: no cover
    raise InputError(f"--model mog needs the Mixture-of-Gaussians track: {err}") from err
  kwargs = dict(weight_min=1e-8 if args.recall_min is None else args.recall_min,
                weight_max=0.5 if args.recall_max is None else args.recall_max,
                dtype=args.dtype)
  if args.resolution is not None:
    kwargs["n_weights"] = args.resolution
  if args.betas is not None:
    kwargs["betas"] = args.betas
  out = io.prepare_output_dir(args.out)
  for path in run_recall_sweep(out, **kwargs):
    print(f"wrote {path}")
  return 0
