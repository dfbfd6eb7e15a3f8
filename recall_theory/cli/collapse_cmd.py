"""``recall-theory collapse``: every aligned model of every track against the law's prediction.

Reads the results CSVs that ``sweep``, ``mog``, ``lm`` and ``smollm2`` write (with the law's
columns, :mod:`recall_theory.schema`) and writes into ``--out``:

* ``collapse.{pdf,png}`` + ``collapse_data.npz`` -- (a) the measured aligned mass of every
  trained model at its plateau against the predicted optimum on log-odds axes with the
  KL-ceiling band (runs stopped by their budget as grey crosses, not scored), (b) the
  decomposition runs' models (``gap_levels.csv`` of ``recall-theory gap``) against their
  best in class, (c) the trap boundary ``Delta/beta = log((1-p)/p)`` with every run placed
  on it. Exact Gibbs tilts (the identity the law rests on) and A-K students (a distillation
  after alignment, outside the law) are counted in the caption, not drawn;
* ``collapse.csv`` -- one row per aligned model with its verdict;
* ``collapse_caption.md`` -- the caption, every number generated from the data.

The verdict (how many models sit at their prediction, how far the others fall below it,
how many lie above their KL ceiling -- which must be none) is printed on stdout.

Inputs: ``--inputs FOLDER ...`` are searched recursively for results CSVs; an
older-format file there (no law columns) is an error. Without ``--inputs`` the command
reads ``results/`` when it holds a results CSV (what the user's own sweep/mog/lm/smollm2
runs wrote), else ``figures/`` (the committed results: figures/, figures/mog,
figures/mog/taus, figures/lm, figures/lm/taus, figures/lm/all_algorithms,
figures/smollm2); its first line says which. Older-format files there are skipped with a
note, so the default run works while a track is regenerated.
"""

from __future__ import annotations

import argparse
import sys

USER_INPUTS = "results"     # the default --out of every command: the user's own runs
DEFAULT_INPUTS = "figures"  # the committed results, when the user has none
DEFAULT_OUT = "results/collapse"


def register(subparsers) -> None:
  p = subparsers.add_parser(
      "collapse", help="every aligned model of every track against the law's prediction",
      description="Measured aligned target mass of every aligned model (sweep, mog, lm, smollm2 "
                  "results) against the law's optimum sigmoid(logit p_ref + Delta/beta) on log-odds "
                  "axes, with the KL ceiling, coloured by the expected target-sample count; and the "
                  "trap boundary Delta/beta = log((1-p)/p) with every run on it. Writes "
                  "collapse.{pdf,png}, collapse_data.npz, collapse.csv, collapse_caption.md and "
                  "prints the verdict.")
  p.add_argument("--inputs", nargs="+", default=None, metavar="FOLDER",
                 help="result folders, searched recursively for results CSVs with the law's columns "
                      "(default: results/ when it holds results, else the committed figures/; "
                      "older-format files skipped with a note)")
  p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT}/)")
  p.set_defaults(func=run)


def default_inputs() -> str:
  """``results/`` when it holds a results CSV, else ``figures/``."""
  from recall_theory.errors import InputError
  from recall_theory.plotting import collapse
  try:
    files, _older = collapse.find_result_files([USER_INPUTS], strict=False)
  except InputError:  # no folder, or no results CSV in it
    return DEFAULT_INPUTS
  return USER_INPUTS if files else DEFAULT_INPUTS  # only older-format files: not usable


def run(args: argparse.Namespace) -> int:
  from recall_theory import io, schema
  from recall_theory.cli.main import describe_options
  from recall_theory.plotting import collapse
  from recall_theory.plotting.style import save_figure

  strict = args.inputs is not None
  folders = list(args.inputs) if strict else [default_inputs()]
  if not strict:  # a user who just ran lm must not get the committed figure back unknowingly
    print(f"collapse: reading {folders[0]}/"
          + (" (your results)" if folders[0] == USER_INPUTS else
             f" (the committed results; {USER_INPUTS}/ holds none of yours)"))
  # Everything is read, validated and computed before the output folder is touched.
  files, skipped = collapse.find_result_files(folders, strict=strict)
  table = collapse.classify(collapse.load_points(files))
  if table["verdict"].size == 0:
    from recall_theory.errors import InputError
    raise InputError(f"--inputs: no aligned model with both a measured and a predicted mass in "
                     f"{', '.join(str(f) for f in files)}")
  gap = collapse.load_gap_pairs(folders)
  summary = collapse.summarize(table)
  summary["gap_pairs"] = int(gap["as_is"].size)
  summary["gap_converged"] = int(gap["converged"].sum())
  options = describe_options(getattr(args, "non_default_options", {}) or {})
  caption = collapse.caption(summary, skipped=skipped, options=options)
  fig, data = collapse.collapse_figure(table, gap)

  out = io.prepare_output_dir(args.out)
  save_figure(fig, out, "collapse", data=data)
  io.write_columns_csv(out / collapse.OUTPUT_CSV, collapse.tidy_columns(table))
  io.write_text(out / "collapse_caption.md", caption)

  for path, reason in skipped:
    print(f"collapse: skipped {path}: {reason}", file=sys.stderr)
  if summary["over_ceiling_all"]:
    bad = [{**{c: table[c][i] for c in schema.ID_COLUMNS}, "above_ceiling": True,
            **{c: table[c][i] for c in ("aligned_mass_low", "kl_ceiling", "kl")}}
           for i in range(table["verdict"].size) if table["over_ceiling"][i]]
    schema.report_ceiling_violations(bad, where="collapse")
  for line in collapse.verdict_lines(summary):
    print(line)
  return 0
