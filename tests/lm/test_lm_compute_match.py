"""`recall-theory lm --match-compute`: ladder validation, crossings, a tiny run, a slow cpu-tiny run."""

import dataclasses
import math

import numpy as np
import pytest

from recall_theory.cli import main as cli_main
from recall_theory.errors import InputError
from recall_theory.lm import compute_match as cm
from recall_theory.lm import presets


def _one_line(capsys):
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1, err
  return err[0]


def test_parse_ladder_accepts_increasing_positive_scales():
  assert cm.parse_ladder("1,4,16,64") == (1.0, 4.0, 16.0, 64.0)
  assert cm.parse_ladder(" 0.5, 2.5 ") == (0.5, 2.5)


@pytest.mark.parametrize("text, named", [("1,0,4", "0"), ("1,-2", "-2"), ("1,inf", "inf"),
                                         ("nan", "nan"), ("1,4,4", "4"), ("4,1", "1"),
                                         ("1,x", "'x'"), ("1,,4", "'1,,4'")])
def test_parse_ladder_names_the_bad_value(text, named):
  with pytest.raises(InputError) as err:
    cm.parse_ladder(text)
  assert "--ladder" in str(err.value) and named in str(err.value)


@pytest.mark.parametrize("ladder", ["1,0", "2,1", "1,nan"])
def test_cli_refuses_bad_ladder_before_anything(ladder, capsys, tmp_path):
  rc = cli_main.main(["lm", "--match-compute", "--ladder", ladder, "--out", str(tmp_path / "o")])
  assert rc == 2
  assert "--ladder" in _one_line(capsys)
  assert not (tmp_path / "o").exists()


def test_cli_refuses_ladder_over_the_time_limit(capsys, tmp_path):
  rc = cli_main.main(["lm", "--match-compute", "--ladder", "1,4,16,64,256", "--time-limit", "600",
                      "--out", str(tmp_path / "o")])
  assert rc == 2
  line = _one_line(capsys)
  assert "--ladder 1,4,16,64,256" in line and "--time-limit 600" in line
  assert not (tmp_path / "o").exists()


def test_cli_ladder_needs_match_compute(capsys, tmp_path):
  assert cli_main.main(["lm", "--ladder", "1,2", "--out", str(tmp_path / "o")]) == 2
  assert "--match-compute" in _one_line(capsys)


def test_default_ladder_fits_the_stated_limit_on_cpu_tiny():
  est = cm.estimate_seconds(presets.CPU_TINY, cm.DEFAULT_LADDER, 3, "cpu-tiny")
  assert 0 < est <= cm.DEFAULT_TIME_LIMIT_S
  longer = cm.estimate_seconds(presets.CPU_TINY, cm.DEFAULT_LADDER + (256.0,), 3, "cpu-tiny")
  assert longer > est


def test_scaled_config_scales_pairs_and_steps_only():
  c = presets.CPU_TINY
  s = cm.scaled_config(c, 4)
  assert s.n_pairs == 4 * c.n_pairs
  assert s.preference_train.steps == 4 * c.preference_train.steps
  assert s.rloo_train.steps == 4 * c.rloo_train.steps
  assert s.preference_train.batch_size == c.preference_train.batch_size
  assert s.beta == c.beta and s.student_train == c.student_train
  assert cm.scaled_config(c, 1e-6).n_pairs == 1  # never below one


def test_first_crossing_interpolates_in_log_cost():
  cost = np.array([1.0, 4.0, 16.0])
  assert cm.first_crossing(cost, np.array([0.1, 0.2, 0.4]), 0.3)["cost"] == pytest.approx(8.0)
  assert cm.first_crossing(cost, np.array([0.5, 0.6, 0.7]), 0.3) == {"status": "below", "cost": 1.0}
  assert cm.first_crossing(cost, np.array([0.1, 0.1, 0.2]), 0.3) == {"status": "not_reached",
                                                                     "cost": 16.0}


def test_first_crossing_resolution_makes_near_ties_reach_the_level():
  cost = np.array([1.0, 4.0])
  share = np.array([0.9990, 0.99999])
  assert cm.first_crossing(cost, share, 1.0)["status"] == "not_reached"
  assert cm.first_crossing(cost, share, 1.0, resolution=1e-3)["status"] == "below"
  assert cm.first_crossing(cost, share, 1.0, resolution=1e-4)["status"] == "crossed"


def test_crossings_interval_only_when_every_seed_crossed():
  cost = np.array([[1.0, 4.0, 16.0]] * 3)
  share = np.array([[0.1, 0.3, 0.5], [0.1, 0.2, 0.5], [0.1, 0.25, 0.5]])
  out = cm.crossings(cost, share, np.array([0.3, 0.3, 0.3]), np.array([1.0, 1.0, 1.0]))
  assert list(out["status_S"]) == ["crossed"] * 3
  assert out["ratio_low"] < out["ratio_gm"] < out["ratio_high"]
  assert out["ratio_S"][0] == pytest.approx(4.0)
  share[1] = [0.1, 0.1, 0.1]
  out = cm.crossings(cost, share, np.array([0.3, 0.3, 0.3]), np.array([1.0, 1.0, 1.0]))
  assert out["n_not_reached"] == 1 and math.isnan(out["ratio_low"])
  text = cm.describe_crossing(out, unit="samples", max_label="16x")
  assert "2 of 3 seeds" in text and "lower bounds" in text


def test_predicted_price_interval_brackets_the_ratio():
  r, lo, hi = cm.predicted_price(0.03, 0.002, (0.028, 0.032), (0.0015, 0.0027))
  assert r == pytest.approx(15.0) and lo < r < hi


def test_tiny_run_records_cost_and_scales_budget(tmp_path):
  config = dataclasses.replace(presets.TEST, algorithms=("dpo",))
  rows = cm.run_match_compute(config, (1.0, 2.0), [0], progress=False, setting="preset=test")
  ka = sorted((r for r in rows if r["pipeline"] == "K-A"), key=lambda r: r["ladder_scale"])
  assert [r["ladder_scale"] for r in ka] == [1.0, 2.0]
  assert ka[1]["n_samples"] == 2 * ka[0]["n_samples"] == 4 * config.n_pairs
  assert ka[1]["alignment_steps"] == 2 * config.preference_train.steps
  assert ka[1]["pipeline_flops"] > ka[0]["pipeline_flops"] > 0
  student = next(r for r in rows if r["pipeline"] == "student")
  # K-A's total = teacher + student + its alignment; the alignment is what the ladder scales
  assert ka[0]["pipeline_flops"] == pytest.approx(student["pipeline_flops"]
                                                  + ka[0]["stage_train_flops"]
                                                  + ka[0]["stage_sampling_flops"]
                                                  + ka[0]["stage_reference_flops"])
  ak = next(r for r in rows if r["pipeline"] == "A-K")
  assert {"A-K", "K-A(teacher-ref)", "teacher", "student"} <= {r["pipeline"] for r in rows}
  assert ak["n_samples"] == ka[0]["n_samples"]
  for r in rows:
    assert r["track"] == "lm" and "reference_recall" in r and "pipeline_pflops" in r
  text = cm.write_outputs(rows, tmp_path, ladder=(1.0, 2.0), preset="test", seeds=[0],
                          elapsed=1.0, estimate=1.0, time_limit=10.0, options="defaults",
                          algorithms=("dpo",))
  for name in ("lm_compute.csv", "lm_compute.png", "lm_compute.pdf", "lm_compute_data.npz",
               "compute_notes.md"):
    assert (tmp_path / name).exists()
  assert "Predicted price of low recall" in text and "Measured price" in text


@pytest.mark.slow
def test_cpu_tiny_reduced_ladder(tmp_path):
  """cpu-tiny, DPO, 2 seeds, ladder 1,4: the command end to end (a few minutes on 2 cores)."""
  rc = cli_main.main(["lm", "--match-compute", "--ladder", "1,4", "--seeds", "2",
                      "--algorithms", "dpo", "--quiet", "--out", str(tmp_path / "o")])
  assert rc == 0
  notes = (tmp_path / "o" / "compute_notes.md").read_text()
  assert "p_teacher/p_student" in notes and "Measured price in alignment samples" in notes
  from recall_theory import schema
  rows = schema.read_results(tmp_path / "o" / "lm_compute.csv")
  assert {r["pipeline"] for r in rows} >= {"K-A", "A-K", "K-A(teacher-ref)"}
