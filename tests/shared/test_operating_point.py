"""Operating points from the law: trap boundaries, windows, the presets' coefficients."""

import csv
import doctest
import math
from pathlib import Path

import pytest

from recall_theory import operating_point as op
from recall_theory import stats
from recall_theory.errors import InputError

ROOT = Path(__file__).resolve().parents[2]


def test_trap_boundary_by_hand():
  assert op.trap_boundary(0.5) == 0.0
  assert op.trap_boundary(0.1) == pytest.approx(math.log(9.0), rel=1e-15)
  assert op.trap_boundary(1e-300) == pytest.approx(690.7755, rel=1e-6)
  assert op.trap_boundary(0.0) == math.inf and op.trap_boundary(1.0) == -math.inf
  with pytest.raises(InputError, match="recall must be in"):
    op.trap_boundary(1.5)


def test_coefficient_puts_the_point_where_asked():
  # window (log 9, log 99); a quarter of the way: log 9 + (log 99 - log 9)/4
  beta = op.coefficient_for(2.0, p_teacher=0.1, p_student=0.01, position=0.25)
  target = math.log(9) + 0.25 * (math.log(99) - math.log(9))
  assert beta == pytest.approx(2.0 / target, rel=1e-14)
  where = op.placement(2.0 / beta, p_teacher=0.1, p_student=0.01)
  assert where.inside and where.position == pytest.approx(0.25, rel=1e-12)


@pytest.mark.parametrize("kwargs, match", [
    ({"p_teacher": 0.01, "p_student": 0.1}, "no window"),
    ({"p_teacher": 0.1, "p_student": 0.0}, "no finite upper end"),
    ({"p_teacher": 0.1, "p_student": 0.01, "position": 1.0}, "position must be"),
])
def test_coefficient_refuses_a_missing_window(kwargs, match):
  with pytest.raises(InputError, match=match):
    op.coefficient_for(1.0, **kwargs)


def test_placement_names_the_side_it_misses():
  below = op.placement(1.0, p_teacher=0.1, p_student=0.01)
  above = op.placement(5.0, p_teacher=0.1, p_student=0.01)
  assert not below.inside and "A is trapped too" in below.describe()
  assert not above.inside and "K-A is not trapped" in above.describe()
  same = op.placement(3.0, p_teacher=0.01, p_student=0.01)
  assert not same.inside and "no window" in same.describe()


def test_module_example_runs():
  failures, _ = doctest.testmod(op)
  assert failures == 0


def _presets():
  from recall_theory.lm import presets
  from recall_theory.lm.hub import experiment
  for name, measured in presets.MEASURED.items():
    yield name, measured, presets.PRESETS[name]
  for name, measured in experiment.MEASURED.items():
    yield name, measured, experiment.get_preset(name).comparison


@pytest.mark.parametrize("name, measured, config", list(_presets()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_preset_sits_inside_its_measured_window(name, measured, config):
  for algorithm, coefficient in (("dpo", config.beta), ("rloo", config.rloo_beta)):
    where = measured.placement(algorithm, coefficient)
    assert where.inside, f"{name} {algorithm}: {where.describe()}"


@pytest.mark.parametrize("name, measured, config", list(_presets()), ids=lambda v: v if isinstance(v, str) else "")
def test_measured_recalls_are_those_of_the_committed_run(name, measured, config):
  rows = list(csv.DictReader(open(ROOT / measured.source)))

  def recall(pipeline):
    return float(next(r for r in rows if r["pipeline"] == pipeline and r["algorithm"] == "dpo")
                 ["reference_recall"])

  assert recall("A") == pytest.approx(measured.teacher, rel=1e-3)
  assert recall("K-A") == pytest.approx(measured.student, rel=1e-3)


def _rows(p_student, p_teacher, delta_over_beta):
  base = {"algorithm": "rloo", "delta_over_beta_low": 0.0, "delta_over_beta_high": 9.0,
          "predicted_mass_low": 0.0, "predicted_mass_high": 1.0, "reference_recall_low": 0.0,
          "reference_recall_high": 1.0}
  ka = dict(base, pipeline="K-A", reference_recall=p_student, delta_over_beta=delta_over_beta,
            predicted_mass=1 / (1 + (1 - p_student) / p_student * math.exp(-delta_over_beta)))
  a = dict(base, pipeline="A", reference_recall=p_teacher, delta_over_beta=delta_over_beta,
           predicted_mass=1 / (1 + (1 - p_teacher) / p_teacher * math.exp(-delta_over_beta)))
  return [ka, a]


def test_run_summary_warns_only_outside_the_window():
  from recall_theory.lm import presets, report
  config = presets.CPU_TINY
  inside = _rows(0.01, 0.1, 3.0)
  outside = _rows(0.01, 0.1, 5.0)
  assert report.operating_point_warnings(inside, config) == []
  lines = report.operating_point_warnings(outside, config)
  assert len(lines) == 1 and lines[0].startswith("warning: RLOO") and "K-A is not trapped" in lines[0]
  assert "33% of the way through the window" in report.operating_point(inside, config)


def test_sign_test_resolution():
  assert stats.min_seeds_for_sign_test(0.05) == 6
  assert stats.min_seeds_for_sign_test(0.0625) == 5
  assert "too few seeds to call" in stats.sign_test_note(5, 0)
  assert stats.sign_test_note(6, 0) == "sign test p = 0.031"
  cmp = stats.paired_comparison([1, 2, 3, 4, 5], [0, 0, 0, 0, 0])
  text = stats.describe_comparison(cmp, "A-K", "K-A")
  assert "ahead" in text and "sign test p = 0.062: too few seeds to call" in text
