"""``recall-theory reproduce``: rerun every default run into figures/ and regenerate the README.

The only command that writes into ``figures/``. ``--check`` reruns into a temporary copy
and reports every committed number that no longer matches (exit 1), leaving the
repository untouched.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
  from recall_theory.reproduce import STEPS, STEP_NAMES
  steps = "; ".join(f"{s.name}: {s.about}" for s in STEPS)
  p = subparsers.add_parser(
      "reproduce", help="rerun every default run into figures/ and regenerate the README's numbers",
      description=f"Reruns the default runs ({steps}), writes their outputs into --figures, their "
                  "wall times into timings.json, and the README's generated blocks. --check reruns "
                  "into a temporary copy and reports committed numbers that no longer match.")
  p.add_argument("--check", action="store_true",
                 help="rerun into a temporary folder and compare; change nothing (exit 1 on mismatch). "
                      "Exact results are compared cell by cell (--rtol); trained and sampled ones "
                      "by their means over seeds, within seed-to-seed noise; it prints the rule "
                      "applied to each file")
  p.add_argument("--only", default=None,
                 help=f"comma-separated subset of {','.join(STEP_NAMES)} (default: all)")
  p.add_argument("--figures", default="figures", help="the committed results folder (default figures)")
  p.add_argument("--readme", default="README.md", help="the README to regenerate (default README.md)")
  p.add_argument("--rtol", type=float, default=1e-6,
                 help="relative tolerance of --check for exact numbers (default 1e-6)")
  p.add_argument("--readme-only", action="store_true",
                 help="rerun nothing: only regenerate the README's blocks from --figures")
  p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
  from pathlib import Path

  from recall_theory import io, readme, reproduce
  from recall_theory.errors import InputError

  if args.only is None:
    # --check is about the committed numbers: the test suite runs there only when named
    # the first-run suite (its own empty cache, the longest step) runs only when named
    steps = [s for s in reproduce.STEPS
             if not (args.check and s.runner == "pytest") and not s.cold_cache]
  else:
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in reproduce.STEP_NAMES]
    if not names or unknown:
      raise InputError(f"--only must list steps from {','.join(reproduce.STEP_NAMES)}, "
                       f"got {args.only!r}")
    steps = [s for s in reproduce.STEPS if s.name in names]
  if not (args.rtol >= 0 and args.rtol < 1):
    raise InputError(f"--rtol must lie in [0, 1), got {args.rtol:g}")
  figures, readme_path = Path(args.figures), Path(args.readme)
  if not figures.is_dir():
    raise InputError(f"--figures: {str(figures)!r} is not a folder")
  _check_readme(readme_path, must_exist=args.readme_only)  # before any step reruns
  if args.readme_only:
    io.write_text(readme_path, readme.render_readme(_read_readme(readme_path), figures))
    print(f"regenerated the generated blocks of {readme_path}")
    return 0
  try:
    rules: dict = {}
    problems = reproduce.reproduce(figures, readme_path, steps, check=args.check, rtol=args.rtol,
                                   atol=1e-12, rules=rules)
  except RuntimeError as err:
    print(f"recall-theory reproduce: {err}", file=sys.stderr)
    return 1
  if args.check:
    for path, rule in rules.items():
      print(f"rule {rule}: {path}")
    for line in problems:
      print(line)
    print(f"reproduce --check: {len(problems)} mismatch(es) over {', '.join(s.name for s in steps)}")
    return 1 if problems else 0
  print(f"reproduced {', '.join(s.name for s in steps)} into {figures} and regenerated {readme_path}")
  return 0


def _check_readme(path, *, must_exist: bool) -> None:
  """--readme names a file; a missing one is skipped by a rerun but is all --readme-only has."""
  from recall_theory.errors import InputError
  if path.is_dir():
    raise InputError(f"--readme: {str(path)!r} is a folder; give the README file to regenerate "
                     f"(default README.md)")
  if must_exist and not path.is_file():
    raise InputError(f"--readme: {str(path)!r} does not exist; --readme-only regenerates the blocks "
                     f"of an existing README (default README.md)")


def _read_readme(path) -> str:
  from recall_theory.errors import InputError
  try:
    return path.read_text(encoding="utf-8")
  except (OSError, UnicodeDecodeError) as err:
    raise InputError(f"--readme: cannot read {str(path)!r}: {getattr(err, 'strerror', None) or err}") from err
