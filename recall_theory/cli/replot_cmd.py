"""``recall-theory replot``: redraw committed figures from the data saved beside them.

Each figure is redrawn by the function its command calls, from its ``_data.npz`` or its
results CSV (:mod:`recall_theory.replot`), so a change to a drawing reaches the committed
figures without rerunning the experiments. Written in place by default (``--out`` the
figures root), as one run: ``run.json`` of each folder names ``replot`` as the maker of
the figure files.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
  from recall_theory.replot import FIGURES, REPLOTTERS
  p = subparsers.add_parser(
      "replot", help="redraw committed figures from their saved data (no experiment rerun)",
      description="Redraw figures from the _data.npz and results CSVs saved beside them, with the "
                  "figure functions the commands call. Figures: " + ", ".join(REPLOTTERS) + ".")
  p.add_argument("names", nargs="*", metavar="FIGURE", help="figures to redraw (default: all)")
  p.add_argument("--figures", default=str(FIGURES), metavar="DIR",
                 help="figures root to read (default: the checkout's figures/)")
  p.add_argument("--out", default=None, metavar="DIR",
                 help="root to write the redrawn figures under (default: --figures, in place)")
  p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
  from pathlib import Path

  from recall_theory.replot import REPLOTTERS, replot
  replot(args.names or list(REPLOTTERS), Path(args.figures), None if args.out is None else Path(args.out))
  return 0
