"""Shared statistics, the law's columns and the progress facility against hand values."""

import io as _io
import math

import numpy as np
import pytest

from recall_theory import progress, schema, stats
from recall_theory import theory as th
from recall_theory.errors import InputError


def test_mean_sd_is_the_sample_sd():
  mean, sd, n = stats.mean_sd([1.0, 2.0, 3.0, 4.0])
  assert (mean, n) == (2.5, 4)
  assert sd == pytest.approx(math.sqrt(5.0 / 3.0))          # sum of squares 5, over n - 1
  assert math.isnan(stats.mean_sd([1.0])[1])


def test_wilson_interval_published_values():
  # Newcombe (1998), Table I: 5/10 -> 0.2366-0.7634, 0/10 -> 0-0.2775.
  assert stats.wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
  assert stats.wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
  with pytest.raises(ValueError):
    stats.wilson_interval(11, 10)


def test_paired_comparison_t_interval_and_ties():
  # diffs 1, 2, 3: mean 2, sd 1, t_{2, 0.975} = 4.302653 -> half width 2.484138
  cmp = stats.paired_comparison([2.0, 4.0, 6.0], [1.0, 2.0, 3.0])
  assert cmp["ci_low"] == pytest.approx(2 - 2.484138, abs=1e-6)
  assert cmp["verdict"] == "tie"                      # the interval crosses zero
  assert (cmp["n_positive"], cmp["n_negative"]) == (3, 0)
  ahead = stats.paired_comparison([0.9, 0.8, 0.85], [0.1, 0.2, 0.15])
  assert ahead["verdict"] == "ahead" and "3 of 3 seeds higher" in stats.describe_comparison(ahead, "A-K", "K-A")
  tiny = stats.paired_comparison([1e-5, 2e-5, 3e-5], [0.0, 0.0, 0.0], resolution=1e-3)
  assert tiny["verdict"] == "tie" and tiny["n_tied"] == 3
  assert "tie" in stats.describe_comparison(tiny, "A-K", "K-A", fmt=".2g")
  assert stats.paired_comparison([0.1, 0.2], [0.5, 0.6])["verdict"] == "behind"


def test_law_columns_and_ceiling_violation_is_loud():
  cols = schema.law_columns(reference_recall=[1e-3, 1e-3], delta_over_beta=4.0,
                            aligned_mass=[0.0518, 0.9], kl=[0.5, 0.5], n_samples=[0, 512],
                            aligned_mass_interval=([0.05, 0.85], [0.053, 0.95]), estimator="test")
  assert tuple(cols) == schema.LAW_COLUMNS
  with th.float64():
    ceiling = float(th.kl_ceiling(1e-3, 0.5))
  np.testing.assert_allclose(cols["kl_ceiling"], ceiling)
  assert cols["above_ceiling"].tolist() == [False, True]      # 0.85 > ceiling(1e-3, 0.5) = 0.127
  assert cols["expected_target_samples"].tolist() == pytest.approx([0.0, 0.512])
  assert cols["p_no_target_sample"][0] == 1.0
  stream = _io.StringIO()
  assert schema.report_ceiling_violations(cols, "unit", stream=stream) == 1
  assert stream.getvalue().startswith("LAW VIOLATION (unit)")
  with pytest.raises(ValueError, match="aligned_mass_interval"):
    schema.law_columns(reference_recall=0.1, delta_over_beta=0.0, aligned_mass=0.5, kl=0.1,
                       n_samples=1, aligned_mass_interval=(0.6, 0.7))


def test_read_results_names_file_and_missing_columns(tmp_path):
  old = tmp_path / "old_results.csv"
  old.write_text("pipeline,algorithm,seed,target_mass\nK-A,dpo,0,0.1\n")
  with pytest.raises(InputError, match=r"old_results.csv: missing column\(s\) track, .*reference_recall"):
    schema.read_results(old)
  good = tmp_path / "good_results.csv"
  cols = schema.law_columns(reference_recall=0.01, delta_over_beta=1.0, aligned_mass=0.02, kl=0.01,
                            n_samples=10)
  header = list(schema.ID_COLUMNS + schema.LAW_COLUMNS)
  row = ["mog", "K-A", "exact", "0", "beta=1"] + [str(cols[c][0]) for c in schema.LAW_COLUMNS]
  good.write_text(",".join(header) + "\n" + ",".join(row) + "\n")
  rows = schema.read_results(good)
  assert rows[0]["reference_recall"] == 0.01 and rows[0]["above_ceiling"] is False
  empty = tmp_path / "empty_results.csv"
  empty.write_text(",".join(header) + "\n")
  with pytest.raises(InputError, match="no result rows"):
    schema.read_results(empty)


def test_progress_prints_one_line_per_stage_off_a_terminal():
  progress.set_enabled(True)
  stream = _io.StringIO()
  with progress.stage("teacher", total=4, stream=stream) as bar:
    for _ in range(6):
      bar.update(1, loss=0.25)
  line = stream.getvalue()
  assert line.startswith("teacher: 4/4 in ") and line.endswith("loss=0.25\n") and line.count("\n") == 1
  stream = _io.StringIO()
  with pytest.raises(RuntimeError):
    with progress.stage("student", total=None, stream=stream) as bar:
      bar.update(3)
      raise RuntimeError
  assert stream.getvalue().startswith("student: 3 in ") and "(stopped)" in stream.getvalue()
  progress.set_enabled(False)
  try:
    stream = _io.StringIO()
    with progress.stage("quiet", total=2, stream=stream) as bar:
      bar.update(2)
    assert stream.getvalue() == ""
  finally:
    progress.set_enabled(True)


def test_progress_off_a_terminal_says_a_stage_started_and_counts_in_its_unit(monkeypatch):
  """Issue 21: with output redirected a stage's line came only when it ended, and counts had
  no unit ("mog phase map: 0 in 8.3s")."""
  progress.set_enabled(True)
  monkeypatch.setattr(progress, "START_AFTER_S", 0.0)  # announce at once (the default waits 1 s)
  stream = _io.StringIO()
  with progress.stage("decode", total=64, unit="tokens", stream=stream) as bar:
    assert stream.getvalue() == "decode: started (64 tokens)\n"  # before any step ends
    bar.set(8)
  assert stream.getvalue().splitlines()[1].startswith("decode: 8/64 tokens in ")
  stream = _io.StringIO()
  with progress.stage("phase map", stream=stream):
    pass
  assert stream.getvalue().splitlines()[1].startswith("phase map: done in ")  # not "0"


def test_progress_start_line_waits_so_quick_stages_stay_one_line(monkeypatch):
  progress.set_enabled(True)
  monkeypatch.setattr(progress, "START_AFTER_S", 0.05)
  stream = _io.StringIO()
  with progress.stage("quick", total=1, unit="runs", stream=stream) as bar:
    bar.update(1)
  assert stream.getvalue().startswith("quick: 1/1 runs in ") and stream.getvalue().count("\n") == 1
  stream = _io.StringIO()
  with progress.stage("slow", total=2, unit="runs", stream=stream) as bar:
    import time
    time.sleep(0.5)
    bar.update(2)
  assert stream.getvalue().splitlines()[0] == "slow: started (2 runs)"


def test_progress_reports_counts_while_a_long_stage_runs(monkeypatch):
  progress.set_enabled(True)
  monkeypatch.setattr(progress, "REPORT_EVERY_S", 0.0)
  stream = _io.StringIO()
  with progress.stage("grid", total=3, unit="runs", stream=stream) as bar:
    bar.update(1)
  assert stream.getvalue().startswith("grid: 1/3 runs after ")
