"""`recall-theory lm --match-compute`: ladder validation, crossings, a tiny run, a slow cpu-tiny run."""

import dataclasses
import math

import numpy as np
import pytest

from recall_theory import stats
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
  base = cm.fixed_budget(presets.CPU_TINY)
  est = cm.estimate_seconds(base, cm.DEFAULT_LADDER, 3, "cpu-tiny")
  assert 0 < est <= cm.DEFAULT_TIME_LIMIT_S
  longer = cm.estimate_seconds(base, cm.DEFAULT_LADDER + (256.0,), 3, "cpu-tiny")
  assert longer > est


def test_the_compute_ladder_runs_fixed_budgets_without_the_plateau_rule():
  base = cm.fixed_budget(presets.CPU_TINY)
  assert base.preference_train.plateau is None and base.rloo_train.plateau is None
  assert base.preference_train.steps == base.rloo_train.steps == cm.BASE_STEPS
  assert base.n_pairs == cm.BASE_PAIRS
  assert presets.CPU_TINY.preference_train.plateau is not None   # the comparison itself keeps its rule


def test_match_compute_refuses_the_plateau_flags(capsys, tmp_path):
  rc = cli_main.main(["lm", "--preset", "test", "--match-compute", "--max-steps", "64",
                      "--out", str(tmp_path / "o")])
  assert rc == 2
  assert "--max-steps does not apply" in _one_line(capsys)


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


Z95 = 1.959963984540054  # Phi^{-1}(0.975)


def test_predicted_price_is_the_katz_log_ratio_interval():
  # p_teacher = 30/1000 = 0.03, p_student = 4/2000 = 0.002: ratio 15, and by hand
  # se = sqrt(1/30 - 1/1000 + 1/4 - 1/2000) = sqrt(0.28183333...) = 0.530880...
  r, lo, hi = cm.predicted_price(30, 1000, 4, 2000)
  se = math.sqrt(0.2818333333333333)
  assert r == pytest.approx(15.0, rel=1e-15)
  assert lo == pytest.approx(15.0 * math.exp(-Z95 * se), rel=1e-12)
  assert hi == pytest.approx(15.0 * math.exp(Z95 * se), rel=1e-12)
  assert lo == pytest.approx(5.2991422, rel=1e-7) and hi == pytest.approx(42.459702, rel=1e-7)
  # symmetric in log around the ratio; swapping teacher and student inverts the interval
  assert math.log(hi / r) == pytest.approx(math.log(r / lo), rel=1e-12)
  r2, lo2, hi2 = cm.predicted_price(4, 2000, 30, 1000)
  assert (r2, lo2, hi2) == pytest.approx((1 / r, 1 / hi, 1 / lo), rel=1e-12)
  # 90% is narrower than 95%
  _, lo90, hi90 = cm.predicted_price(30, 1000, 4, 2000, confidence=0.90)
  assert lo < lo90 < r < hi90 < hi


def test_predicted_price_zero_count_uses_haldane_anscombe():
  # k_student = 0: 0.5 added to each cell, k -> k + 1/2, n -> n + 1, for both recalls:
  # (30.5/1001) / (0.5/2001), se = sqrt(1/30.5 - 1/1001 + 1/0.5 - 1/2001)
  r, lo, hi = cm.predicted_price(30, 1000, 0, 2000)
  ratio = (30.5 / 1001) / (0.5 / 2001)
  se = math.sqrt(1 / 30.5 - 1 / 1001 + 2 - 1 / 2001)
  assert r == pytest.approx(ratio, rel=1e-14)
  assert (lo, hi) == pytest.approx((ratio * math.exp(-Z95 * se), ratio * math.exp(Z95 * se)), rel=1e-12)
  assert math.isfinite(hi) and lo > 0
  # k = n needs no correction: (1 - p)/k = 0
  r, lo, hi = cm.predicted_price(50, 50, 5, 100)
  se = math.sqrt(1 / 5 - 1 / 100)
  assert (r, lo, hi) == pytest.approx((20.0, 20.0 * math.exp(-Z95 * se), 20.0 * math.exp(Z95 * se)), rel=1e-12)


@pytest.mark.parametrize("counts", [(-1, 10, 1, 10), (11, 10, 1, 10), (1, 0, 1, 10), (1.5, 10, 1, 10)])
def test_predicted_price_refuses_bad_counts(counts):
  with pytest.raises(InputError, match="counts"):
    cm.predicted_price(*counts)


def test_predicted_price_covers_95_percent_not_more():
  # Seeded binomial draws at the lm presets' sizes: the Katz interval covers the true ratio
  # about 95% of the time. The ratio of the recalls' opposite Wilson ends (the interval it
  # replaced) covers it in ~98%: too wide to be called 95%.
  rng = np.random.default_rng(0)
  p_t, p_s, n, reps = 0.03, 0.003, 8192, 4000
  k_t, k_s = rng.binomial(n, p_t, reps), rng.binomial(n, p_s, reps)
  katz = wilson = 0
  for a, b in zip(k_t, k_s):
    _, lo, hi = cm.predicted_price(int(a), n, int(b), n)
    katz += lo <= p_t / p_s <= hi
    (tl, th_), (sl, sh) = stats.wilson_interval(int(a), n), stats.wilson_interval(int(b), n)
    wilson += tl / sh <= p_t / p_s <= th_ / sl
  # binomial sd of a 95% coverage over 4000 draws: 0.0034 (bounds at -+4.4 sd)
  assert 0.935 < katz / reps < 0.965
  assert wilson / reps > 0.975


def test_reference_counts_read_from_the_estimator():
  row = {"pipeline": "K-A", "algorithm": "dpo", "reference_recall": 18 / 8192,
         "estimator": "p_ref: monte-carlo n=8192 reference samples (k=18), wilson 95%; delta/beta: ..."}
  assert cm.reference_counts(row) == (18, 8192)
  with pytest.raises(InputError, match="do not"):
    cm.reference_counts({**row, "reference_recall": 0.5})
  with pytest.raises(InputError, match="names no reference counts"):
    cm.reference_counts({**row, "estimator": "exact"})


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
