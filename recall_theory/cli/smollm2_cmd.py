"""``recall-theory smollm2``: K-A vs A-K against a real pretrained SmolLM2 as p*.

Needs the weights (``python -m recall_theory.lm.hub.fetch``) and the smollm2 extra.
Writes into ``--out`` (default ``results/smollm2``):

* ``smollm2_results.csv``: one row per pipeline, algorithm and seed, plus ``p*``
  reference rows, with the shared id and law columns of :mod:`recall_theory.schema`
  estimated from samples (:func:`recall_theory.lm.hub.experiment.smollm2_rows`);
* ``smollm2_summary.md``: means ± sample sd, the target's base rate, the law's
  prediction beside each aligned model, and the options changed from their defaults;
* ``smollm2_comparison.{pdf,png}`` + ``_data.npz``, ``smollm2_config.json``.

Example::

  recall-theory smollm2 --preset smollm2-cpu-smoke --out results/smollm2-smoke
  recall-theory smollm2 --preset smollm2-gpu --seeds 3 --out results/smollm2-gpu
"""

from __future__ import annotations

import argparse
import sys

from recall_theory.errors import InputError

PRESET_NAMES = ("smollm2-cpu-smoke", "smollm2-gpu")


def register(subparsers) -> None:
  p = subparsers.add_parser(
      "smollm2", help="K-A vs A-K with a real SmolLM2 as ground truth (needs the smollm2 extra)",
      description=__doc__.split("\n\n")[0])
  add_arguments(p)
  from recall_theory.lm import distributed
  distributed.add_arguments(p)   # --coordinator --num-processes --process-id (multi-host runs)
  p.set_defaults(func=run)


def add_arguments(p) -> None:
  p.add_argument("--preset", default="smollm2-cpu-smoke",
                 help=f"one of {', '.join(PRESET_NAMES)} (default smollm2-cpu-smoke)")
  p.add_argument("--seeds", default=None,
                 help="number of seeds or a comma list (default: the preset's)")
  p.add_argument("--algorithms", default=None, help="comma list from dpo,ipo,simpo,rloo (default: the preset's)")
  p.add_argument("--model", default=None,
                 help="p* checkpoint (default smollm2-135m-instruct; a .gguf or HF folder)")
  p.add_argument("--out", default="results/smollm2", help="output folder (default results/smollm2)")
  p.add_argument("--checkpoint-dir", default=None, help="folder for Orbax stage checkpoints (default: none)")
  p.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir")
  p.add_argument("--n-devices", type=int, default=None, help="devices in the data-parallel mesh (default: all)")
  p.add_argument("--cache-dir", default=None, help="weights cache (default ~/.cache/recall-theory)")
  p.add_argument("--quiet", action="store_true", help="no progress bars")


def check_cache_dir(cache_dir) -> None:
  """A --cache-dir that exists must be a folder (else every lookup reads as missing weights)."""
  from pathlib import Path
  if cache_dir is not None and Path(cache_dir).expanduser().exists() and not Path(cache_dir).expanduser().is_dir():
    raise InputError(f"--cache-dir {str(cache_dir)!r} is not a folder (give the folder that holds "
                     f"the weights, or leave it out for ~/.cache/recall-theory)")


def run(args: argparse.Namespace) -> int:
  import dataclasses

  from recall_theory.cli.lm_cmd import parse_algorithms, parse_seeds

  if args.preset not in PRESET_NAMES:
    raise InputError(f"--preset must be one of {list(PRESET_NAMES)}, got {args.preset!r}")
  algorithms = parse_algorithms(args.algorithms)
  if args.resume and args.checkpoint_dir is None:
    raise InputError("--resume needs --checkpoint-dir")
  from pathlib import Path
  if args.checkpoint_dir is not None and Path(args.checkpoint_dir).exists() \
      and not Path(args.checkpoint_dir).is_dir():
    raise InputError(f"--checkpoint-dir {args.checkpoint_dir!r} is not a folder")

  from recall_theory.lm import distributed
  distributed.initialize_from_args(args)   # before any computation; one process otherwise
  # every flag before the weights are looked for: a bad --n-devices must not read as missing weights
  from recall_theory.cli.checks import check_mesh_flags
  check_mesh_flags(args.n_devices)
  check_cache_dir(args.cache_dir)

  from recall_theory import io, progress, schema
  from recall_theory.cli.main import describe_options
  from recall_theory.lm import report
  from recall_theory.lm.hub import experiment as exp

  preset = exp.get_preset(args.preset)
  seeds = parse_seeds(args.seeds if args.seeds is not None else str(preset.seeds))
  comparison = preset.comparison
  if algorithms is not None:
    comparison = dataclasses.replace(comparison, algorithms=algorithms)
  pstar = preset.pstar if args.model is None else dataclasses.replace(preset.pstar,
                                                                      model=args.model)
  preset = dataclasses.replace(preset, pstar=pstar.validate(), comparison=comparison)
  out = io.prepare_output_dir(args.out)

  was_enabled = progress.is_enabled()
  progress.set_enabled(was_enabled and not args.quiet)  # the p* load stages too
  try:
    rows, info = exp.run_experiment(preset, seeds, checkpoint_dir=args.checkpoint_dir,
                                    resume=args.resume, progress=not args.quiet,
                                    n_devices=args.n_devices, cache_dir=args.cache_dir,
                                    preset=args.preset)
  finally:
    progress.set_enabled(was_enabled)
  violations = schema.report_ceiling_violations(rows, where="smollm2")
  options = describe_options(getattr(args, "non_default_options", {}))
  summary = exp.summary_markdown(rows, info, preset=args.preset, seeds=seeds, pstar=pstar,
                                 options=options, violations=violations,
                                 config=preset.comparison)
  io.write_csv(out / "smollm2_results.csv", rows, fieldnames=exp.csv_columns(rows))
  io.write_text(out / "smollm2_summary.md", summary)
  io.write_json(out / "smollm2_config.json", {"preset": args.preset, "seeds": seeds, **info,
                                              "non_default_options": options,
                                              "ceiling_violations": violations,
                                              "experiment": preset.to_dict()})
  report.plot_comparison(rows, out, name="smollm2_comparison", metrics=report.SMOLLM2_METRICS)
  print(summary, end="")
  for line in report.operating_point_warnings(rows, preset.comparison):
    print(line, file=sys.stderr)
  return 0
