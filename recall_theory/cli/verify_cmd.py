"""``recall-theory verify``: check every identity and bound of the theory core numerically."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      "verify", help="check every theory identity numerically (float64, seeded)",
      description="Check each identity and bound of the theory (listed with their references in "
                  "the docstring of recall_theory.theory; --list names the checks) on seeded random "
                  "instances by two independent routes; exit 1 if any check fails.")
  parser.add_argument("--seed", type=int, default=0, help="seed of the random instances (default 0)")
  parser.add_argument("--check", action="append", metavar="NAME",
                      help="run only this check (repeatable; default: every check); see --list")
  parser.add_argument("--list", action="store_true", help="list the checks and exit")
  parser.add_argument("--json", action="store_true", help="print results as JSON")
  parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
  from recall_theory import verify
  from recall_theory.errors import check_int_range

  check_int_range("--seed", args.seed, 0, 2**31 - 1)
  if args.list:
    for check in verify.CHECKS.values():
      print(f"{check.name:34s} item {check.item:>2s}  {check.description}")
    return 0
  results = verify.run_checks(args.check, seed=args.seed)
  if args.json:
    payload = [dict(name=r.name, item=r.item, description=r.description, instances=r.instances,
                    max_error=r.max_error, tolerance=r.tolerance, passed=r.passed) for r in results]
    json.dump({"passed": all(r.passed for r in results), "checks": payload}, sys.stdout, indent=2)
    print()
  else:
    print(format_table(results))
  return 0 if all(r.passed for r in results) else 1


def format_table(results) -> str:
  header = f"{'identity':34s} {'item':>4s} {'instances':>9s} {'max error':>10s} {'tolerance':>9s}  verdict"
  lines = [header, "-" * len(header)]
  for r in results:
    lines.append(f"{r.name:34s} {r.item:>4s} {r.instances:9d} {r.max_error:10.2e} "
                 f"{r.tolerance:9.0e}  {'pass' if r.passed else 'FAIL'}")
  failed = sum(not r.passed for r in results)
  lines.append(f"{len(results) - failed} passed, {failed} failed")
  return "\n".join(lines)
