"""The plateau flags shared by ``lm``, ``mog`` and ``gap``: every trained alignment stage's
budget and stopping rule (:mod:`recall_theory.plateau`).

* ``--max-steps N``: the budget of every stage trained to a plateau (an integer >= 1);
* ``--first-check N``: steps before the first check of the rule (an integer >= 1, at most
  the budget);
* ``--plateau-tolerance X``: the largest change of the held-out objective over a doubling
  of the steps, in nats (finite, > 0).

Every value is checked before any training, with one line naming the flag as typed.
"""

from __future__ import annotations

import dataclasses
import math

from recall_theory.errors import InputError, check_int_range

MAX_STEPS = 10_000_000


def add_arguments(parser) -> None:
  parser.add_argument("--max-steps", type=str, default=None, metavar="N",
                      help="budget of every alignment stage trained to its plateau, an integer in "
                           f"[1, {MAX_STEPS}] (default: the preset's)")
  parser.add_argument("--first-check", type=str, default=None, metavar="N",
                      help="steps before the plateau rule is first checked (then at every doubling), "
                           "an integer in [1, --max-steps] (default: the preset's)")
  parser.add_argument("--plateau-tolerance", type=str, default=None, metavar="X",
                      help="largest change of the held-out objective over a doubling of the steps "
                           "that counts as a plateau, nats, a finite number > 0 (default: the preset's)")


def _integer(flag: str, text: str, high: int) -> int:
  try:
    value = float(text)
  except ValueError:
    raise InputError(f"{flag} must be an integer in [1, {high}], got {text!r}") from None
  if not math.isfinite(value):
    raise InputError(f"{flag} must be an integer in [1, {high}], got {text!r}")
  return check_int_range(flag, value, 1, high)


def parse(args) -> dict:
  """The validated overrides: ``{"max_steps", "first_check", "objective_tolerance"}`` (None: keep)."""
  max_steps = None if args.max_steps is None else _integer("--max-steps", args.max_steps, MAX_STEPS)
  first = None
  if args.first_check is not None:
    first = _integer("--first-check", args.first_check, max_steps or MAX_STEPS)
  tolerance = None
  if args.plateau_tolerance is not None:
    try:
      tolerance = float(args.plateau_tolerance)
    except ValueError:
      tolerance = math.nan
    if not (math.isfinite(tolerance) and tolerance > 0):
      raise InputError(f"--plateau-tolerance must be a finite number > 0, got {args.plateau_tolerance!r}")
  return {"max_steps": max_steps, "first_check": first, "objective_tolerance": tolerance}


def _rule(rule, overrides: dict, budget: int, where: str):
  first = overrides["first_check"] or rule.first_check
  tolerance = overrides["objective_tolerance"] or rule.objective_tolerance
  if first > budget:
    flag = "--first-check" if overrides["first_check"] else "--max-steps"
    raise InputError(f"{flag}: the first plateau check ({first} steps) must not exceed the budget "
                     f"({budget} steps) of {where}")
  return dataclasses.replace(rule, first_check=first, objective_tolerance=tolerance)


def apply_stage(stage, overrides: dict, where: str):
  """A :class:`~recall_theory.lm.pipeline.StageConfig` with the overrides (stages with a rule)."""
  if stage.plateau is None:
    return stage
  steps = overrides["max_steps"] or stage.steps
  return dataclasses.replace(stage, steps=steps, plateau=_rule(stage.plateau, overrides, steps, where))


def apply_lm(config, overrides: dict):
  """The transformer config with every alignment stage's budget and rule overridden."""
  return dataclasses.replace(
      config, preference_train=apply_stage(config.preference_train, overrides, "the preference stages"),
      rloo_train=apply_stage(config.rloo_train, overrides, "the RLOO stages"))


def apply_mog(config, overrides: dict):
  """The MoG config with the PG and DPO budgets and the rule overridden."""
  if config.plateau is None:
    return config
  pg = overrides["max_steps"] or config.pg_steps
  dpo = overrides["max_steps"] or config.dpo_steps
  rule = _rule(config.plateau, overrides, min(pg, dpo), "the PG and DPO runs")
  return dataclasses.replace(config, pg_steps=pg, dpo_steps=dpo, plateau=rule)
