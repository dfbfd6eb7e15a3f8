"""``recall-theory gap``: where a trained model's shortfall from the law comes from.

For each pipeline (K-A, A, K-A(teacher-ref)), algorithm and seed, four levels of aligned
target mass on the same reference and coefficient, each trained to its plateau
(theory.md item 13): the law (the population optimum), the best in the model class (fitted
to the exact tilt), the algorithm on a sampler that covers the target, and the algorithm
as it is. Their logit differences split the shortfall into the learning trap (K-A's law
against A's), representation, optimisation and sampling. Writes into ``--out``:
``gap_levels.csv``, ``gap_decomposition.csv``, ``gap.{pdf,png}`` + ``gap_data.npz`` and the
generated ``gap_caption.md``.

``--track lm`` (the transformer track: presets cpu-tiny and test; DPO and RLOO) or
``--track mog`` (the Mixture-of-Gaussians track: policy gradient and DPO, exact masses).
Heavy imports happen inside :func:`run`.
"""

from __future__ import annotations

import argparse

from recall_theory.cli import plateau_flags
from recall_theory.errors import InputError

DEFAULT_OUT = "results/gap"
TRACK_ALGORITHMS = {"lm": ("dpo", "rloo"), "mog": ("pg", "dpo")}
LM_PRESETS = ("cpu-tiny", "test")
DEFAULT_MOG_BETAS = (0.3,)


def register(subparsers) -> None:
  p = subparsers.add_parser("gap", help="split a trained model's shortfall from the law into its causes",
                            description=__doc__.split("\n\n")[0])
  p.add_argument("--track", choices=tuple(TRACK_ALGORITHMS), default="lm",
                 help="lm (transformers) or mog (Mixture of Gaussians) (default lm)")
  p.add_argument("--preset", default="cpu-tiny",
                 help=f"lm: experiment size, one of {', '.join(LM_PRESETS)} (default cpu-tiny)")
  p.add_argument("--seeds", default="5", help="number of seeds (e.g. 5 -> 0..4) or a comma list (default 5)")
  p.add_argument("--algorithms", default=None,
                 help="comma list: lm from dpo,rloo; mog from pg,dpo (default: both of the track's)")
  p.add_argument("--betas", default=None,
                 help=f"mog: comma list of beta values > 0 (default {','.join(map(str, DEFAULT_MOG_BETAS))})")
  plateau_flags.add_arguments(p)
  p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
  p.add_argument("--quiet", action="store_true", help="no progress bars and no caption on stdout")
  p.add_argument("--from-levels", default=None, metavar="CSV",
                 help="train nothing: rebuild the term table, figure and caption from a gap_levels.csv "
                      "an earlier run wrote (its run.json beside it names that run) (default: train)")
  p.set_defaults(func=run)


def parse_algorithms(text: str | None, track: str) -> tuple[str, ...]:
  supported = TRACK_ALGORITHMS[track]
  if text is None:
    return supported
  algs = tuple(dict.fromkeys(a.strip().lower() for a in text.split(",") if a.strip()))
  bad = [a for a in algs if a not in supported]
  if bad or not algs:
    raise InputError(f"--algorithms: the {track} decomposition covers {','.join(supported)}; "
                     f"got {text!r}")
  return algs


def parse_betas(text: str) -> list[float]:
  """``--betas`` as sorted distinct finite values > 0 (one line naming the flag otherwise)."""
  import math
  try:
    values = [float(v) for v in text.split(",") if v.strip()]
  except ValueError:
    values = []
  if not values or not all(math.isfinite(v) and v > 0 for v in values):
    raise InputError(f"--betas must be a comma list of finite numbers > 0, got {text!r}")
  return sorted(set(values))


def lm_description(preset: str) -> str:
  """What the lm levels are made of (the caption's description), from the preset's sizes."""
  from recall_theory.lm import gap
  sizes = gap.GAP_SIZES[preset]
  return (f"Transformer track, preset {preset}: teacher and student trained once; per "
          f"seed, pools of {sizes.student_pool} student and {sizes.teacher_pool} teacher "
          f"samples give the law (p_ref, Delta/beta), the exact tilt's samples (rejection) "
          f"and the covering proposal ({sizes.covering_share:g} of draws from the reference "
          f"conditioned on the target); masses of levels 2-4 from {sizes.eval_samples} "
          "policy samples each.")


def mog_description() -> str:
  from recall_theory.mog import gap
  return (f"Mixture-of-Gaussians track (float64): every mass exact; the best in class is "
          f"the family's EM fit to the tilt on the grid ({gap.BEST_FIT_ITERATIONS} "
          f"iterations); the covering proposal draws {gap.COVERING_SHARE:g} of its points "
          "from the reference restricted to the target's grid cells.")


def rebuild(args: argparse.Namespace, options: str) -> int:
  """``--from-levels``: the outputs of an earlier run, rebuilt from its level table."""
  import json
  from pathlib import Path

  from recall_theory import gap_report, io
  source = Path(args.from_levels)
  if not source.is_file():
    raise InputError(f"--from-levels: {args.from_levels!r} is not a file")
  rows = gap_report.read_levels(source)
  tracks = sorted({r["track"] for r in rows})
  if tracks != [args.track]:
    raise InputError(f"--from-levels: {args.from_levels!r} holds the track(s) {', '.join(tracks)}, "
                     f"not --track {args.track}")
  text = source.read_text(encoding="utf-8")
  origin = "an earlier run"
  record = source.parent / "run.json"
  if record.is_file():
    try:
      run = json.loads(record.read_text()).get("runs", {}).get("gap", {})
      if run.get("command") and (run.get("arguments") or {}).get("from_levels"):
        origin = f"an earlier rebuild, `{run['command']}` (the training run is not recorded beside it)"
      elif run.get("command"):
        origin = f"`{run['command']}` ({run.get('started', '?')} to {run.get('finished', '?')})"
    except (ValueError, AttributeError):
      pass
  description = (lm_description(args.preset) if args.track == "lm" else mog_description())
  description += f" Levels as written by {origin}; terms, figure and caption rebuilt from them."
  out = io.prepare_output_dir(args.out)
  gap_report.write_gap(out, rows, track=args.track, description=description, elapsed=None,
                       options=options, levels_text=text)
  if not args.quiet:
    print((out / gap_report.CAPTION).read_text(), end="")
  return 0


def run(args: argparse.Namespace) -> int:
  import time

  from recall_theory.cli.lm_cmd import parse_seeds
  from recall_theory.cli.main import describe_options

  seeds = parse_seeds(args.seeds)
  algorithms = parse_algorithms(args.algorithms, args.track)
  overrides = plateau_flags.parse(args)
  if args.track == "lm":
    if args.preset not in LM_PRESETS:
      raise InputError(f"--preset: the lm decomposition covers {', '.join(LM_PRESETS)}; got {args.preset!r}")
    if args.betas is not None:
      raise InputError("--betas applies to --track mog only (the lm track's coefficients come from "
                       "its preset)")
  elif args.preset != "cpu-tiny":
    raise InputError("--preset applies to --track lm only")
  options = describe_options(getattr(args, "non_default_options", {}) or {})
  if args.from_levels is not None:
    return rebuild(args, options)
  from recall_theory import io, progress
  if args.track == "lm":
    from recall_theory.lm import gap, presets
    config = plateau_flags.apply_lm(presets.get_preset(args.preset), overrides).validate()
    sizes = gap.GAP_SIZES[args.preset].validate()
    out = io.prepare_output_dir(args.out)
    if args.quiet:
      progress.set_enabled(False)
    start = time.perf_counter()
    rows = gap.run_gap(config, sizes, seeds, algorithms=algorithms, progress=not args.quiet,
                       setting=f"preset={args.preset}")
    description = lm_description(args.preset)
  else:
    import jax
    from recall_theory.mog import gap
    from recall_theory.mog.setup import MogConfig
    betas = list(DEFAULT_MOG_BETAS) if args.betas is None else parse_betas(args.betas)
    from recall_theory.mog.setup import check_beta_range
    check_beta_range("--betas", betas)
    config = plateau_flags.apply_mog(MogConfig(), overrides).validate()
    out = io.prepare_output_dir(args.out)
    start = time.perf_counter()
    with jax.enable_x64(True):
      rows = gap.run_gap(config, seeds, betas)
    rows = [r for r in rows if r["algorithm"] in algorithms]
    description = mog_description()
  elapsed = time.perf_counter() - start
  from recall_theory import gap_report
  gap_report.write_gap(out, rows, track=args.track, description=description, elapsed=elapsed,
                       options=options)
  if not args.quiet:
    print((out / gap_report.CAPTION).read_text(), end="")
  return 0
