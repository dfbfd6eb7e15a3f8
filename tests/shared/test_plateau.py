"""The plateau rule: checkpoints, the comparison, the schedule and the in-jit driver."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recall_theory.errors import InputError
from recall_theory.plateau import (Checkpoint, PlateauRule, compare, paired_se, plateau_schedule,
                                   reached, run_to_plateau)


def test_checkpoints_double_and_end_on_the_budget():
  rule = PlateauRule(first_check=64)
  assert rule.checkpoints(1024) == (64, 128, 256, 512, 1024)
  assert rule.checkpoints(1000) == (64, 128, 256, 512, 1000)
  assert rule.checkpoints(64) == (64,)


@pytest.mark.parametrize("field, value", [
    ("first_check", 0), ("first_check", 2.5), ("first_check", True),
    ("objective_tolerance", 0.0), ("objective_tolerance", math.nan), ("objective_tolerance", math.inf),
    ("mass_logit_tolerance", -1.0), ("mass_tolerance", 0.0), ("resolution_z", math.nan)])
def test_rule_refuses_bad_values_naming_the_field(field, value):
  import dataclasses
  with pytest.raises(InputError, match=f"plateau.{field}"):
    dataclasses.replace(PlateauRule(), **{field: value}).validate()


def test_reached_hand_cases():
  rule = PlateauRule(objective_tolerance=0.02, mass_logit_tolerance=0.1, mass_tolerance=1e-3,
                     resolution_z=2.0)
  # objective moved 0.03 > 0.02 and its resolution 2 x 0.01: not a plateau
  assert not bool(reached(rule, objective_change=0.03, objective_se=0.01, mass_before=0.3,
                          mass_after=0.3, mass_se=0.0))
  # the same change with SE 0.02 is not resolved (2 x 0.02 = 0.04 >= 0.03): plateau
  assert bool(reached(rule, objective_change=0.03, objective_se=0.02, mass_before=0.3,
                      mass_after=0.3, mass_se=0.0))
  # mass 0.30 -> 0.33: logit change 0.139 > 0.1, mass change 0.03 > 1e-3: not a plateau
  assert not bool(reached(rule, objective_change=0.0, objective_se=0.0, mass_before=0.30,
                          mass_after=0.33, mass_se=0.0))
  # ... unless the mass change is within 2 SE (SE 0.02)
  assert bool(reached(rule, objective_change=0.0, objective_se=0.0, mass_before=0.30,
                      mass_after=0.33, mass_se=0.02))
  # tiny masses: 1e-20 -> 1e-19 is a logit change of 2.3 but a mass change below 1e-3
  assert bool(reached(rule, objective_change=0.0, objective_se=0.0, mass_before=1e-20,
                      mass_after=1e-19, mass_se=0.0))


def test_paired_se_is_the_se_of_the_mean_difference():
  before = np.array([1.0, 2.0, 3.0, 4.0])
  after = np.array([1.5, 2.0, 3.5, 4.0])           # differences 0.5, 0, 0.5, 0
  d = after - before
  assert paired_se(before, after) == pytest.approx(np.std(d, ddof=1) / 2.0)


def test_compare_pairs_the_draws_of_two_checkpoints():
  rule = PlateauRule(objective_tolerance=1e-6, mass_logit_tolerance=1e-6, mass_tolerance=1e-6)
  n = 400
  rng = np.random.default_rng(0)
  base = rng.normal(size=n)
  in_a = rng.random(n) < 0.3
  a = Checkpoint(64, float(base.mean()), float(in_a.mean()), objective_N=base, in_target_N=in_a)
  # the same draws shifted by noise of sd 0.01: the change is not resolved
  shifted = base + rng.normal(scale=0.01, size=n)
  b = Checkpoint(128, float(shifted.mean()), float(in_a.mean()), objective_N=shifted, in_target_N=in_a)
  assert compare(rule, a, b)
  # a systematic shift of 0.1 is resolved (SE ~ 0.0005): no plateau
  moved = base + 0.1
  c = Checkpoint(128, float(moved.mean()), float(in_a.mean()), objective_N=moved, in_target_N=in_a)
  assert not compare(rule, a, c)


def test_checkpoint_round_trips_through_json():
  c = Checkpoint(128, 0.5, 0.25, optimum=1.0, suboptimality=0.5, objective_N=np.array([0.4, 0.6]),
                 in_target_N=np.array([True, False]))
  back = Checkpoint.from_json(c.to_json())
  assert (back.step, back.objective, back.mass, back.optimum, back.suboptimality) == (128, 0.5, 0.25, 1.0, 0.5)
  np.testing.assert_array_equal(back.objective_N, c.objective_N)
  np.testing.assert_array_equal(back.in_target_N, c.in_target_N)


def test_plateau_schedule_warms_up_holds_then_halves_every_doubling():
  schedule = plateau_schedule(1e-3, warmup_steps=10, constant_steps=64)
  assert float(schedule(0)) == pytest.approx(1e-4)
  assert float(schedule(9)) == pytest.approx(1e-3)
  assert float(schedule(64)) == pytest.approx(1e-3)
  assert float(schedule(128)) == pytest.approx(5e-4)
  assert float(schedule(256)) == pytest.approx(2.5e-4)


def _toy(rate):
  """Gradient descent on (x - 1)^2 at a given step size: converges geometrically."""
  def step(t, x):
    return x - rate * 2.0 * (x - 1.0)

  def evaluate(x):
    return (x - 1.0) ** 2, jnp.clip(x, 0.0, 1.0)

  return step, evaluate


def test_run_to_plateau_stops_at_the_first_doubling_that_meets_the_rule():
  rule = PlateauRule(first_check=4, objective_tolerance=1e-4, mass_logit_tolerance=1e-2,
                     mass_tolerance=1e-4)
  step, evaluate = _toy(0.05)
  final = jax.jit(lambda x0: run_to_plateau(step, evaluate, x0, rule, 1024))(jnp.float32(0.0))
  assert bool(final.reached)
  # the same rule checked by hand on the host: every earlier doubling moved too much
  x, checks, prev, stop = 0.0, rule.checkpoints(1024), None, None
  for end in checks:
    while end > (stop or 0):
      x = x - 0.05 * 2.0 * (x - 1.0)
      stop = (stop or 0) + 1
    obj, mass = (x - 1.0) ** 2, min(max(x, 0.0), 1.0)
    if prev is not None and bool(reached(rule, objective_change=obj - prev[0], objective_se=0.0,
                                         mass_before=prev[1], mass_after=mass, mass_se=0.0)):
      break
    prev = (obj, mass)
  assert int(final.steps) == end
  assert float(final.carry) == pytest.approx(x, rel=1e-5)


def test_run_to_plateau_under_vmap_stops_each_run_on_its_own():
  rule = PlateauRule(first_check=4, objective_tolerance=1e-4, mass_logit_tolerance=1e-2,
                     mass_tolerance=1e-4)

  def one(rate):
    def step(t, x):
      return x - rate * 2.0 * (x - 1.0)
    return run_to_plateau(step, lambda x: ((x - 1.0) ** 2, jnp.clip(x, 0.0, 1.0)), jnp.float32(0.0),
                          rule, 4096)

  final = jax.jit(jax.vmap(one))(jnp.asarray([0.2, 0.02, 1e-6], jnp.float32))
  steps = np.asarray(final.steps)
  assert steps[0] < steps[1]                          # the faster run stops first
  assert bool(final.reached[0]) and bool(final.reached[1])
  # a run that barely moves meets the rule at its second checkpoint (nothing changes)
  assert steps[2] == 8 and bool(final.reached[2])


def test_run_to_plateau_reports_the_budget_when_the_rule_never_holds():
  rule = PlateauRule(first_check=4, objective_tolerance=1e-9, mass_logit_tolerance=1e-9, mass_tolerance=1e-12)

  def step(t, x):
    return x + 1.0       # never settles

  final = run_to_plateau(step, lambda x: (x, jnp.float32(0.5)), jnp.float32(0.0), rule, 64)
  assert int(final.steps) == 64 and not bool(final.reached)


def test_a_last_stretch_shorter_than_a_doubling_never_counts():
  rule = PlateauRule(first_check=100)
  assert rule.checkpoints(300) == (100, 200, 300)
  a = Checkpoint(200, 1.0, 0.3)
  b = Checkpoint(300, 1.0, 0.3)                     # nothing moved, but 200 -> 300 is no doubling
  assert not compare(rule, a, b)
  assert compare(rule, Checkpoint(100, 1.0, 0.3), a)

  def step(t, x):
    return x                                          # never moves: the rule holds at 200, not before
  final = run_to_plateau(step, lambda x: (x, jnp.float32(0.5)), jnp.float32(0.0), rule, 150)
  assert int(final.steps) == 150 and not bool(final.reached)   # 100 -> 150 is no doubling
