"""``recall-theory mog --phase-map``: the quick run's files, its caption against the CSV, the exact
tilts against the law, the crossing rule, and bad input (one line, exit code 2, nothing written)."""

import csv
import math
import re

import numpy as np
import pytest

from recall_theory.cli import main as cli_main

FILES = ("mog_phase_trained.csv", "mog_phase_trained_boundary.csv", "mog_phase_trained.pdf",
         "mog_phase_trained.png", "mog_phase_trained_data.npz", "mog_phase_trained_caption.md", "run.json")
COLUMNS = ("track", "pipeline", "algorithm", "seed", "setting", "student", "tau", "beta", "student_recall",
           "student_delta_over_beta", "law_boundary", "student_law_mass", "aligned_log_odds", "law_log_odds",
           "reference_recall", "delta_over_beta", "predicted_mass", "aligned_mass", "steps", "max_steps", "plateau",
           "plateau_reached", "tilt_quadrature_error")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
  """One quick run (2 taus x 3 betas x 2 seeds, 40-step budgets), its figure checked as it is saved."""
  from recall_theory.plotting.figure_check import checking_saved_figures
  out = tmp_path_factory.mktemp("phase") / "out"
  with checking_saved_figures() as found:
    assert cli_main.main(["mog", "--phase-map", "--quick", "--quiet", "--out", str(out)]) == 0
  with open(out / "mog_phase_trained.csv", newline="") as fh:
    rows = list(csv.DictReader(fh))
  return out, rows, found


def test_quick_run_writes_every_file_and_a_clean_figure(quick_run):
  out, _, found = quick_run
  for name in FILES:
    assert (out / name).is_file() and (out / name).stat().st_size > 0, name
  assert found == {"mog_phase_trained": []}, found   # no overlapping text, no legend over data


def test_csv_has_one_row_per_seed_cell_algorithm_pipeline(quick_run):
  _, rows, _ = quick_run
  missing = [c for c in COLUMNS if c not in rows[0]]
  assert not missing, missing
  keys = {(r["seed"], r["tau"], r["beta"], r["algorithm"], r["pipeline"]) for r in rows}
  assert len(keys) == len(rows) == 2 * 2 * 3 * 3 * 2
  assert {r["plateau_reached"] for r in rows if r["algorithm"] == "exact"} == {"exact"}
  trained = [r for r in rows if r["algorithm"] != "exact"]
  assert {r["plateau_reached"] for r in trained} <= {"yes", "no"}
  for r in trained:   # "no" exactly where the budget ran out
    assert (r["plateau_reached"] == "no") == (r["plateau"] == "budget")
    assert (r["plateau"] == "budget") == (int(r["steps"]) == int(r["max_steps"]) == 40) or r["plateau"] == "reached"


def test_exact_tilt_cells_agree_with_the_law_within_quadrature(quick_run):
  """K-A's exact tilt at every cell is the law's sigmoid(logit p + Delta/beta) of the student, to the
  quadrature's resolution; the trained models and A-K are not (so the comparison can fail)."""
  _, rows, _ = quick_run

  def law_gap(r):
    p, y = float(r["student_recall"]), float(r["student_delta_over_beta"])
    law = 1.0 / (1.0 + math.exp(-(math.log(p) - math.log1p(-p) + y)))
    return abs(float(r["aligned_mass"]) - law)

  exact = [r for r in rows if r["pipeline"] == "K-A" and r["algorithm"] == "exact"]
  assert len(exact) == 12
  for r in exact:
    assert law_gap(r) <= float(r["tilt_quadrature_error"]) + 1e-9, r
    assert abs(float(r["aligned_mass"]) - float(r["predicted_mass"])) <= float(r["tilt_quadrature_error"]) + 1e-9
  for pipeline, algorithm in (("K-A", "pg"), ("K-A", "dpo"), ("A-K", "exact")):
    gaps = [law_gap(r) for r in rows if r["pipeline"] == pipeline and r["algorithm"] == algorithm]
    assert max(gaps) > 1e-2, (pipeline, algorithm)


# --- the caption against the CSV, recomputed here without the module's code ----------------------
def _panel(rows, pipeline, algorithm):
  sel = [r for r in rows if r["pipeline"] == pipeline and r["algorithm"] == algorithm]
  seeds = sorted({int(r["seed"]) for r in sel})
  taus = sorted({float(r["tau"]) for r in sel})
  betas = sorted({float(r["beta"]) for r in sel})
  at = {(int(r["seed"]), float(r["tau"]), float(r["beta"])): r for r in sel}
  get = lambda key: np.array([[[float(at[(s, t, b)][key]) for b in betas] for t in taus] for s in seeds])
  state = np.array([[[at[(s, t, b)]["plateau"] for b in betas] for t in taus] for s in seeds])
  return get("student_recall"), get("student_delta_over_beta"), get("aligned_log_odds"), get("law_log_odds"), state


def _crossing(y, l):
  """The Delta/beta where a column's log-odds last turn from < 0 to >= 0 (None: no such turn)."""
  pairs = sorted(zip(y, l))
  last_below = max((i for i, (_, v) in enumerate(pairs) if v < 0), default=None)
  if last_below is None or last_below == len(pairs) - 1:
    return None
  (y0, l0), (y1, l1) = pairs[last_below], pairs[last_below + 1]
  return y0 + (0 - l0) / (l1 - l0) * (y1 - y0)


def _expected(rows, pipeline, algorithm):
  from scipy import stats as sps
  recall, y, l, law, state = _panel(rows, pipeline, algorithm)
  out = {"cells": int(np.sum((l.mean(0) >= 0) == (law.mean(0) >= 0))), "n_cells": l[0].size,
         "seed_cells": int(np.sum((l >= 0) == (law >= 0))), "n_seed_cells": l.size,
         "reached": int(np.sum(state == "reached")), "budget": int(np.sum(state == "budget"))}
  n_s, n_t, _ = y.shape
  cross = [[_crossing(y[s, t], l[s, t]) for t in range(n_t)] for s in range(n_s)]
  common = [t for t in range(n_t) if all(cross[s][t] is not None for s in range(n_s))]
  if common:
    offsets = np.array([np.mean([cross[s][t] - math.log((1 - recall[s, t, 0]) / recall[s, t, 0]) for t in common])
                        for s in range(n_s)])
    half = sps.t.ppf(0.975, n_s - 1) * offsets.std(ddof=1) / math.sqrt(n_s)
    out["offset"] = (offsets.mean(), offsets.mean() - half, offsets.mean() + half)
  return out


@pytest.mark.parametrize("pipeline", ["K-A", "A-K"])
@pytest.mark.parametrize("algorithm", ["pg", "dpo", "exact"])
def test_caption_numbers_match_the_csv(quick_run, pipeline, algorithm):
  out, rows, _ = quick_run
  text = (out / "mog_phase_trained_caption.md").read_text()
  label = {"pg": "PG", "dpo": "DPO", "exact": "exact"}[algorithm]
  line = next(ln for ln in text.splitlines() if ln.startswith(f"- **{pipeline}, {label}**"))
  want = _expected(rows, pipeline, algorithm)
  assert f"{want['cells']} of {want['n_cells']} cells (mean log-odds over 2 seeds)" in line, line
  assert f"{want['seed_cells']} of {want['n_seed_cells']} seed-cells" in line, line
  if algorithm == "exact":
    assert "No training" in line
  else:
    assert f"Plateau reached ({'alignment' if pipeline == 'K-A' else 'alignment of the teacher'}): " \
           f"{want['reached']} of {want['n_seed_cells']} runs; {want['budget']} ran out" in line, line
  if "offset" in want:
    mean, low, high = (0.0 if round(v, 2) == 0 else v for v in want["offset"])
    assert f"{mean:+.2f} [{low:+.2f}, {high:+.2f}] in Delta/beta" in line, line
  else:
    assert "none (no tau column is crossed by every seed)" in line, line


def test_exact_k_a_boundary_is_the_laws(quick_run):
  """The exact tilt's log-odds are linear in Delta/beta: its interpolated boundary is the law's."""
  out, rows, _ = quick_run
  want = _expected(rows, "K-A", "exact")
  assert "offset" in want, "the quick grid must cross the law's boundary in every tau column"
  assert all(abs(v) < 1e-6 for v in want["offset"]), want["offset"]
  with open(out / "mog_phase_trained_boundary.csv", newline="") as fh:
    boundary = [r for r in csv.DictReader(fh) if r["pipeline"] == "K-A" and r["algorithm"] == "exact"]
  assert len(boundary) == 4 and all(r["status"] == "crossed" and abs(float(r["offset"])) < 1e-6 for r in boundary)


# --- the crossing rule -----------------------------------------------------------------------------
@pytest.mark.parametrize("y, l, status, at", [
    ([1.0, 2.0, 3.0], [-2.0, -1.0, 1.0], "crossed", 2.5),
    ([3.0, 1.0, 2.0], [1.0, -2.0, -1.0], "crossed", 2.5),          # unsorted cells
    ([1.0, 2.0, 3.0], [1.0, -1.0, 3.0], "crossed", 2.25),          # non-monotone: the last turn upward
    ([1.0, 2.0], [0.0, 4.0], "above", None),                       # 0 counts as >= 1/2
    ([1.0, 2.0], [-3.0, -0.5], "below", None),
])
def test_column_crossing(y, l, status, at):
  from recall_theory.mog.trained_phase import column_crossing
  got_status, got_at = column_crossing(np.asarray(y), np.asarray(l))
  assert got_status == status
  assert (math.isnan(got_at) if at is None else got_at == pytest.approx(at))


# --- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, needles", [
    (["--taus", "0.1"], ["--taus", "at least 2", "> 0"]),
    (["--taus", "0.1,0.1"], ["--taus", "at least 2 distinct"]),
    (["--taus", "0.1,-0.2"], ["--taus", "finite and > 0", "-0.2"]),
    (["--taus", "0.1,inf"], ["--taus", "finite and > 0", "inf"]),
    (["--taus", "0.1,nan"], ["--taus", "nan"]),
    (["--betas", "0.1"], ["--betas", "at least 2"]),
    (["--betas", "0.1,0"], ["--betas", "> 0"]),
    (["--betas", "0.1,inf"], ["--betas", "finite"]),
    (["--n-betas", "1"], ["--n-betas", "at least 2"]),
    (["--seeds", "1"], ["--seeds", "[2, 10000]"]),
    (["--match-compute"], ["--match-compute does not apply"]),
])
def test_bad_input_is_one_line_exit_2_nothing_written(argv, needles, capsys, tmp_path):
  out = tmp_path / "out"
  assert cli_main.main(["mog", "--phase-map", *argv, "--out", str(out)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1, err
  for needle in needles:
    assert needle in err[0], (needle, err[0])
  assert not out.exists()


def test_student_without_phase_map_is_refused(capsys, tmp_path):
  assert cli_main.main(["mog", "--student", "3-mode", "--out", str(tmp_path / "out")]) == 2
  assert re.search(r"--student applies to --phase-map only", capsys.readouterr().err)
