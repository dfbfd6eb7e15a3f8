"""``recall-theory lm``: the transformer comparison K-A vs A-K vs the control.

Trains the teacher on p* samples, distils the student at temperature tau, then for each
seed and alignment algorithm runs K-A, A-K and K-A with the teacher as reference, and
writes into ``--out``:

* ``lm_results.csv``: one row per (pipeline, algorithm, seed) with the metrics, the
  law's columns (:data:`recall_theory.schema.LAW_COLUMNS`) and the stages' cost;
* ``lm_summary.md``: means ± sample sd over seeds, measured against predicted mass,
  and why the preset's operating point puts K-A inside the trap;
* ``lm_comparison.{pdf,png}`` and ``lm_comparison_data.npz``: the figure and its data;
* ``lm_config.json``: the configuration that produced them.

With ``--taus 0.3,0.45,...`` it runs the recall sweep instead
(:mod:`recall_theory.lm.tau_sweep`): ``lm_tau_sweep.csv``, ``lm_tau_summary.md``,
``lm_tau_sweep.{pdf,png}`` and its data, and ``lm_config.json``.

Heavy imports (jax, flax) happen inside :func:`run`, so ``recall-theory --help`` is fast.
"""

from __future__ import annotations

import argparse
import sys
import math

from recall_theory.cli import plateau_flags
from recall_theory.errors import InputError

PRESET_NAMES = ("cpu-tiny", "gpu", "test")
ALGORITHM_NAMES = ("dpo", "ipo", "simpo", "rloo")
MAX_SEED = 2**31 - 1


def parse_seeds(text: str) -> list[int]:
  """"3" -> [0, 1, 2]; "0,4,7" -> [0, 4, 7] (distinct non-negative integers)."""
  try:
    if "," in text:
      seeds = [int(s) for s in text.split(",") if s.strip()]
    else:
      count = int(text)
  except ValueError as err:
    raise InputError(f"--seeds must be a count (e.g. 3) or a comma list (e.g. 0,1,2), got "
                     f"{text!r}") from err
  if "," not in text:
    if not 1 <= count <= 10_000:
      raise InputError(f"--seeds must be a count in [1, 10000] or a comma list, got {text!r}")
    seeds = list(range(count))
  if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
    raise InputError(f"--seeds must give at least one distinct non-negative seed, got {text!r}")
  if max(seeds) > MAX_SEED:  # numpy and jax keys hold int64; stage keys add offsets to a seed
    raise InputError(f"--seeds: every seed must be an integer in [0, {MAX_SEED}], got {max(seeds)}")
  return seeds


def parse_algorithms(text: str | None) -> tuple[str, ...] | None:
  if text is None:
    return None
  algs = tuple(a.strip().lower() for a in text.split(",") if a.strip())
  bad = [a for a in algs if a not in ALGORITHM_NAMES]
  if bad or not algs:
    raise InputError(f"--algorithms must be a comma list from {ALGORITHM_NAMES}, got {text!r}")
  return algs


def register(subparsers) -> None:
  p = subparsers.add_parser("lm", help="transformer track: K-A vs A-K with Flax models",
                            description=__doc__.split("\n\n")[0])
  p.add_argument("--preset", default="cpu-tiny",
                 help=f"experiment size, one of {', '.join(PRESET_NAMES)} (default cpu-tiny)")
  p.add_argument("--seeds", default="5",
                 help="number of seeds (e.g. 5 -> 0,...,4) or a comma list (default 5)")
  p.add_argument("--algorithms", default=None,
                 help=f"comma list from {','.join(ALGORITHM_NAMES)} (default: the preset's)")
  p.add_argument("--tau", type=float, default=None,
                 help="distillation temperature (default: the preset's, 0.6)")
  p.add_argument("--taus", default=None,
                 help="comma list of distillation temperatures (e.g. 0.3,0.45,0.6,0.8,1.0): run "
                      "the recall sweep (K-A and A-K against the student's recall) instead of the "
                      "comparison (default: the comparison)")
  p.add_argument("--kd", default=None, choices=("sequence", "forward_kl", "reverse_kl", "jsd"),
                 help="distillation loss: sequence-level KD on teacher samples at tau, or "
                      "token-level KD on the teacher's tempered logits (default sequence)")
  p.add_argument("--out", default="results/lm", help="output folder (default results/lm)")
  p.add_argument("--checkpoint-dir", default=None,
                 help="folder for Orbax stage checkpoints (default: none)")
  p.add_argument("--resume", action="store_true",
                 help="continue the run whose checkpoints are in --checkpoint-dir")
  p.add_argument("--n-devices", type=int, default=None,
                 help="devices in the data-parallel mesh (default: all)")
  p.add_argument("--fsdp", type=int, default=None,
                 help="shard parameters over this many devices (default: the preset's, 1)")
  p.add_argument("--quiet", action="store_true", help="no progress bars")
  p.add_argument("--match-compute", action="store_true",
                 help="compute-matched run: K-A's alignment budget over --ladder against A-K and "
                      "the control at 1x (recall_theory.lm.compute_match)")
  p.add_argument("--ladder", default=None,
                 help="increasing budget scales for --match-compute (default 1,4,16,64)")
  p.add_argument("--time-limit", type=float, default=None,
                 help="seconds; --match-compute refuses a ladder estimated to run longer "
                      "on 2 idle cores (default 1200)")
  plateau_flags.add_arguments(p)  # --max-steps --first-check --plateau-tolerance
  from recall_theory.lm import distributed
  distributed.add_arguments(p)   # --coordinator --num-processes --process-id (multi-host runs)
  p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
  import dataclasses
  import time
  from pathlib import Path

  seeds = parse_seeds(args.seeds)
  algorithms = parse_algorithms(args.algorithms)
  plateau = plateau_flags.parse(args)
  taus = None
  if args.taus is not None:
    from recall_theory.lm.tau_sweep import parse_taus
    taus = parse_taus(args.taus)
    if args.tau is not None:
      raise InputError("--tau and --taus exclude each other (--taus sweeps the temperature)")
    if args.checkpoint_dir is not None or args.resume:
      raise InputError("--taus runs without checkpoints: drop --checkpoint-dir / --resume")
  if args.tau is not None and not (math.isfinite(args.tau) and args.tau > 0):
    raise InputError(f"--tau must be a positive finite temperature, got {args.tau}")
  if args.resume and args.checkpoint_dir is None:
    raise InputError("--resume needs --checkpoint-dir")
  if args.preset not in PRESET_NAMES:
    raise InputError(f"--preset must be one of {list(PRESET_NAMES)}, got {args.preset!r}")
  if args.checkpoint_dir is not None and Path(args.checkpoint_dir).exists() \
      and not Path(args.checkpoint_dir).is_dir():
    raise InputError(f"--checkpoint-dir {args.checkpoint_dir!r} is not a folder")

  from recall_theory.lm import distributed
  distributed.initialize_from_args(args)   # before any computation; one process otherwise

  from recall_theory import io, progress
  from recall_theory.cli.checks import check_mesh_flags
  from recall_theory.cli.main import describe_options
  from recall_theory.lm import pipeline, presets, report

  config = plateau_flags.apply_lm(presets.get_preset(args.preset), plateau)
  if algorithms is not None:
    config = dataclasses.replace(config, algorithms=algorithms)
  if args.fsdp is not None:
    config = dataclasses.replace(config, fsdp=args.fsdp)
  if args.tau is not None:
    config = dataclasses.replace(config, tau=args.tau)
  if args.kd is not None:
    config = dataclasses.replace(config, kd=args.kd)
  check_mesh_flags(args.n_devices, config.fsdp, fsdp_typed=args.fsdp is not None)
  config.validate()
  if args.match_compute or args.ladder is not None or args.time_limit is not None:
    from recall_theory.lm.compute_match import run_cli
    return run_cli(args, config, seeds)
  if taus is not None:
    for tau in taus:
      dataclasses.replace(config, tau=tau).validate()
  out = io.prepare_output_dir(args.out)
  if args.quiet:
    progress.set_enabled(False)
  options = ("Non-default options: "
             + describe_options(getattr(args, "non_default_options", {})) + ".")
  if taus is not None:
    return _run_sweep(args, config, taus, seeds, out, options)

  start = time.perf_counter()
  setting = f"preset={args.preset};tau={config.tau:g}"
  rows = pipeline.run_comparison(config, seeds, checkpoint_dir=args.checkpoint_dir,
                                 resume=args.resume, progress=not args.quiet,
                                 n_devices=args.n_devices, setting=setting)
  elapsed = time.perf_counter() - start
  io.write_csv(out / "lm_results.csv", rows)
  text = report.summary_markdown(rows, config, preset=args.preset, seeds=seeds, elapsed=elapsed,
                                 options=options)
  io.write_text(out / "lm_summary.md", text)
  io.write_json(out / "lm_config.json", {"preset": args.preset, "seeds": seeds,
                                         "wall_seconds": elapsed, "config": config.to_dict()})
  report.plot_comparison(rows, out)
  if not args.quiet:
    print(text, end="")
  for line in report.operating_point_warnings(rows, config):
    print(line, file=sys.stderr)
  return 0


def _run_sweep(args, config, taus, seeds, out, options) -> int:
  import time

  from recall_theory import io
  from recall_theory.lm import tau_sweep

  start = time.perf_counter()
  rows = tau_sweep.run_tau_sweep(config, taus, seeds, progress=not args.quiet,
                                 n_devices=args.n_devices, setting_prefix=f"preset={args.preset};")
  elapsed = time.perf_counter() - start
  io.write_csv(out / "lm_tau_sweep.csv", rows)
  text = tau_sweep.markdown_report(rows, preset=args.preset, seeds=seeds, elapsed=elapsed,
                                   options=options)
  io.write_text(out / "lm_tau_summary.md", text)
  io.write_json(out / "lm_config.json", {"preset": args.preset, "seeds": seeds, "taus": taus,
                                         "wall_seconds": elapsed, "config": config.to_dict()})
  tau_sweep.plot_tau_sweep(rows, out)
  if not args.quiet:
    print(text, end="")
  return 0
