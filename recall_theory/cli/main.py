"""Entry point of the ``recall-theory`` command.

Each subcommand lives in its own module exposing ``register(subparsers)`` (which adds
its parser and sets ``func``). Bad input anywhere becomes one line on stderr and exit
code 2; nothing is written before arguments are validated.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from recall_theory.errors import InputError, TrainingDivergedError

# Subcommand modules, imported lazily so `recall-theory verify` never pays for flax.
SUBCOMMANDS = (
    "recall_theory.cli.verify_cmd",
    "recall_theory.cli.sweep_cmd",
    "recall_theory.cli.mog_cmd",
    "recall_theory.cli.lm_cmd",
    "recall_theory.cli.generate_cmd",
    "recall_theory.cli.smollm2_cmd",
)

PROG = "recall-theory"


class OneLineArgumentParser(argparse.ArgumentParser):
  """argparse that reports a usage error as a single line and exits with code 2."""

  def error(self, message: str) -> "NoReturn":  # type: ignore[name-defined]
    self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
  parser = OneLineArgumentParser(
      prog=PROG,
      description="Exact theory and simulations: the reference model's recall bounds alignment.")
  sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineArgumentParser)
  for mod_name in SUBCOMMANDS:
    try:
      mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as err:
      if err.name == mod_name:  # the track is not part of this install
        continue
      raise
    mod.register(sub)
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  try:
    return int(args.func(args) or 0)
  except InputError as err:
    print(f"{PROG} {args.command}: error: {err}", file=sys.stderr)
    return 2
  except TrainingDivergedError as err:  # the run stopped itself; its last good checkpoint is kept
    print(f"{PROG} {args.command}: training diverged: {err}", file=sys.stderr)
    return 3


if __name__ == "__main__":  # pragma: no cover
  sys.exit(main())
