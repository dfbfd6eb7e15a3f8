"""Training to a plateau: one stated stopping rule for every trained alignment stage.

A stage trains until its held-out objective and its aligned mass stop moving, or until
its step budget runs out. Both are measured at the checkpoints ``c, 2c, 4c, ...`` steps
(``c = first_check``; the budget is the last checkpoint), and the stage has reached its
**plateau** at step ``2s`` when, over that last doubling of steps,

* the held-out objective ``J`` moved by at most ``objective_tolerance`` nats, or by less
  than its resolution ``z SE[J(2s) - J(s)]``; and
* the aligned mass ``m`` moved by at most ``mass_logit_tolerance`` in logit units, or by
  at most ``max(mass_tolerance, z SE[m(2s) - m(s)])`` in mass.

The standard errors are those of the *paired* change over the same held-out draws
(common random numbers: the same evaluation key at every checkpoint), so a change that
the held-out set cannot resolve is not counted as a change; for exact evaluations (the
Mixture-of-Gaussians track) they are 0 and only the tolerances apply. A stage that
reaches its budget without meeting the rule is *not* converged, and its row says so.

The learning rate of a stage trained to a plateau cannot depend on a total step count it
does not know: :func:`plateau_schedule` is constant for ``first_check`` steps (after a
linear warm-up) and then decays like ``1/step``, so every doubling of the steps halves it
and each doubling moves the parameters by about the same summed step size
(``first_check lr ln 2``): the change over a doubling shrinks as the gradient does, and a
stage that has reached its optimum stops moving. (A ``1/sqrt(step)`` decay moves them
``sqrt(2)`` times further in every doubling, so a slowly converging objective never meets
the rule.) The sum of the rates still diverges, so a stage far from its optimum keeps
moving (Robbins and Monro 1951).

The comparison is written with ``jax.numpy`` so it runs on the host (LM stages) and inside
``jit``/``vmap`` (the MoG grid, where every cell stops on its own).

Example::

  rule = PlateauRule(first_check=64)
  rule.checkpoints(1024)          # (64, 128, 256, 512, 1024)
  bool(reached(rule, objective_change=0.004, objective_se=0.01,
               mass_before=0.31, mass_after=0.32, mass_se=0.01))   # True
  bool(reached(rule, objective_change=0.05, objective_se=0.0, mass_before=0.31,
               mass_after=0.31, mass_se=0.0))                      # False: 0.05 > 0.02
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from recall_theory.errors import InputError


@dataclasses.dataclass(frozen=True)
class PlateauRule:
  """When a stage has converged (see the module docstring).

  Attributes:
    first_check: steps before the first checkpoint ``c``; later ones at ``2c, 4c, ...``.
    objective_tolerance: largest change of the held-out objective over a doubling, nats.
    mass_logit_tolerance: largest change of ``logit m`` over a doubling.
    mass_tolerance: largest change of ``m`` itself (a floor for masses near 0 or 1,
      where logits move with no change a reader would notice).
    resolution_z: ``z`` of the resolution ``z SE`` under which a change is not counted.
  """
  first_check: int = 64
  objective_tolerance: float = 0.02
  mass_logit_tolerance: float = 0.1
  mass_tolerance: float = 1e-3
  resolution_z: float = 2.0

  def validate(self, name: str = "plateau") -> "PlateauRule":
    v = self.first_check
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
      raise InputError(f"{name}.first_check must be a positive integer, got {v!r}")
    for field in ("objective_tolerance", "mass_logit_tolerance", "mass_tolerance", "resolution_z"):
      value = getattr(self, field)
      if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or \
          not math.isfinite(value) or value <= 0:
        raise InputError(f"{name}.{field} must be a finite number > 0, got {value!r}")
    return self

  def checkpoints(self, max_steps: int) -> tuple[int, ...]:
    """The steps at which the rule is evaluated: ``c, 2c, 4c, ...`` below ``max_steps``, then
    ``max_steps`` itself (the budget always ends on a checkpoint)."""
    steps, s = [], int(self.first_check)
    while s < max_steps:
      steps.append(s)
      s *= 2
    steps.append(int(max_steps))
    return tuple(steps)


def logit(m):
  """``log(m / (1 - m))`` with masses clipped to [1e-300, 1 - 1e-16] (0 and 1 stay finite)."""
  m = jnp.clip(jnp.asarray(m, jnp.result_type(float)), 1e-300, 1.0 - 1e-16)
  return jnp.log(m) - jnp.log1p(-m)


def reached(rule: PlateauRule, *, objective_change, objective_se, mass_before, mass_after, mass_se):
  """Whether one doubling meets the rule (a boolean array; broadcasts; jit-safe).

  Args:
    rule: the plateau rule.
    objective_change: ``J(2s) - J(s)``.
    objective_se: standard error of that change (0 for an exact objective).
    mass_before, mass_after: ``m(s)`` and ``m(2s)``.
    mass_se: standard error of ``m(2s) - m(s)`` (0 for exact masses).
  """
  z = rule.resolution_z
  objective_still = jnp.abs(objective_change) <= jnp.maximum(rule.objective_tolerance,
                                                             z * jnp.asarray(objective_se))
  mass_change = jnp.abs(jnp.asarray(mass_after) - jnp.asarray(mass_before))
  logit_change = jnp.abs(logit(mass_after) - logit(mass_before))
  mass_still = (logit_change <= rule.mass_logit_tolerance) | \
      (mass_change <= jnp.maximum(rule.mass_tolerance, z * jnp.asarray(mass_se)))
  return objective_still & mass_still


def paired_se(before_N, after_N) -> float:
  """Standard error of ``mean(after) - mean(before)`` over the same n draws (ddof = 1)."""
  d = np.asarray(after_N, np.float64) - np.asarray(before_N, np.float64)
  if d.size < 2:
    return 0.0
  return float(np.std(d, ddof=1) / math.sqrt(d.size))


@dataclasses.dataclass
class Checkpoint:
  """One evaluation of a stage: the held-out objective and the aligned mass at ``step``.

  ``objective_N`` and ``in_target_N`` are the per-draw values behind the two means (None
  for an exact evaluation); the next checkpoint pairs with them for the standard errors.
  ``optimum`` is the objective's optimal value and ``suboptimality`` the distance to it
  in the objective's direction (``optimum - objective`` for a reward, ``objective -
  optimum`` for a loss; nan when the objective has no known optimum).
  """
  step: int
  objective: float
  mass: float
  optimum: float = math.nan
  suboptimality: float = math.nan
  objective_N: np.ndarray | None = None
  in_target_N: np.ndarray | None = None

  def to_json(self) -> dict:
    out = {"step": int(self.step), "objective": float(self.objective), "mass": float(self.mass),
           "optimum": float(self.optimum), "suboptimality": float(self.suboptimality)}
    if self.objective_N is not None:
      out["objective_N"] = np.asarray(self.objective_N, np.float64).tolist()
    if self.in_target_N is not None:
      out["in_target_N"] = np.asarray(self.in_target_N, bool).tolist()
    return out

  @classmethod
  def from_json(cls, d: dict) -> "Checkpoint":
    return cls(int(d["step"]), float(d["objective"]), float(d["mass"]), float(d.get("optimum", math.nan)),
               float(d.get("suboptimality", math.nan)),
               None if d.get("objective_N") is None else np.asarray(d["objective_N"], np.float64),
               None if d.get("in_target_N") is None else np.asarray(d["in_target_N"], bool))


def compare(rule: PlateauRule, before: Checkpoint, after: Checkpoint) -> bool:
  """Whether the doubling from ``before`` to ``after`` meets the rule (host values).

  A last stretch shorter than a doubling (a budget that is not ``first_check 2^k``) never
  counts: under the 1/t schedule it moves the parameters too little to judge.
  """
  if after.step < 2 * before.step:
    return False
  obj_se = (paired_se(before.objective_N, after.objective_N)
            if before.objective_N is not None and after.objective_N is not None else 0.0)
  mass_se = (paired_se(before.in_target_N, after.in_target_N)
             if before.in_target_N is not None and after.in_target_N is not None else 0.0)
  return bool(reached(rule, objective_change=after.objective - before.objective, objective_se=obj_se,
                      mass_before=before.mass, mass_after=after.mass, mass_se=mass_se))


def plateau_schedule(learning_rate: float, *, warmup_steps: int = 0,
                     constant_steps: int = 1) -> optax.Schedule:
  """``lr min(1, t / warmup) min(1, constant_steps / t)``: no total step count needed.

  Linear warm-up over ``warmup_steps``, constant until ``constant_steps``, then ``1/t``
  (halved by every doubling of the steps; see the module docstring).
  """
  warmup = max(int(warmup_steps), 0)
  hold = max(int(constant_steps), 1)

  def schedule(count):
    t = jnp.asarray(count, jnp.float32)
    ramp = jnp.minimum(1.0, (t + 1.0) / warmup) if warmup else 1.0
    return learning_rate * ramp * jnp.minimum(1.0, hold / jnp.maximum(t, 1.0))

  return schedule


class PlateauState(NamedTuple):
  """The driver's state inside ``jit``: the trainer's ``carry`` and the plateau bookkeeping.

  ``segment``: index of the next checkpoint; ``steps``: steps run so far; ``objective``,
  ``mass``: the last evaluation; ``reached``: the rule held at the last checkpoint.
  """
  carry: Any
  segment: jax.Array
  steps: jax.Array
  objective: jax.Array
  mass: jax.Array
  reached: jax.Array


def run_to_plateau(step_fn: Callable, evaluate: Callable, carry, rule: PlateauRule,
                   max_steps: int) -> PlateauState:
  """Train inside ``jit`` until the rule holds or ``max_steps`` steps have run.

  ``step_fn(t, carry) -> carry`` is one optimiser step (``t`` the step index, traced);
  ``evaluate(carry) -> (objective, mass)`` the exact held-out objective and aligned mass
  (no standard errors: only the tolerances apply). Under ``vmap`` each run stops on its
  own: the loop runs while any run goes on, and a finished run's state no longer changes.
  """
  checks = jnp.asarray(rule.checkpoints(max_steps), jnp.int32)
  n_checks = int(checks.shape[0])
  objective0, mass0 = evaluate(carry)

  def keep_going(state: PlateauState):
    return (~state.reached) & (state.segment < n_checks)

  def segment(state: PlateauState) -> PlateauState:
    end = checks[state.segment]
    carry = jax.lax.fori_loop(state.steps, end, step_fn, state.carry)
    objective, mass = evaluate(carry)
    held = (state.segment > 0) & (end >= 2 * state.steps) & reached(rule, objective_change=objective - state.objective,
                                         objective_se=0.0, mass_before=state.mass,
                                         mass_after=mass, mass_se=0.0)
    return PlateauState(carry, state.segment + 1, end, objective, mass, held)

  start = PlateauState(carry, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32),
                       jnp.asarray(objective0), jnp.asarray(mass0), jnp.zeros((), bool))
  return jax.lax.while_loop(keep_going, segment, start)


PLATEAU_FLAGS = ("--max-steps", "--first-check", "--plateau-tolerance")


def refuse_with_fixed_budget(given: list[str], base_steps: int, use: str = "") -> None:
  """One line refusing plateau flags where runs compare fixed budgets (the compute ladders)."""
  if given:
    raise InputError(f"--match-compute compares fixed budgets ({base_steps} steps at 1x, no plateau "
                     f"rule); {', '.join(given)} does not apply to it{use}")
