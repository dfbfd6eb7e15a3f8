"""``recall-theory collapse``: synthetic results of all four tracks, the verdict, bad input.

The synthetic CSVs are built with :func:`recall_theory.schema.law_columns` (the same code
the tracks use), with measured masses placed at known log-odds offsets from the
prediction, so every count and median the command prints is known in advance.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import pytest

from recall_theory import io, schema
from recall_theory.cli.main import main
from recall_theory.plotting import collapse


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-np.asarray(x, float)))


def _logit(p):
  p = np.asarray(p, float)
  return np.log(p) - np.log1p(-p)


def _bernoulli_kl(t, p):
  """kl(t || p): the least KL(pi || pi_ref) of any policy with pi(A) = t (so its ceiling >= t)."""
  t, p = np.asarray(t, float), np.asarray(p, float)
  with np.errstate(divide="ignore", invalid="ignore"):
    a = np.where(t > 0, t * np.log(t / p), 0.0)
    b = np.where(t < 1, (1 - t) * np.log((1 - t) / (1 - p)), 0.0)
  return a + b


def _write(folder: Path, name: str, track: str, algorithm, pipeline, p_ref, gap, offset, n_samples,
           *, extra_kl=0.0, mass_interval_halfwidth=None, aligned=None, estimator="exact",
           drop=(), plateau=None) -> int:
  """Write one results CSV; measured mass = sigmoid(logit predicted + offset) unless ``aligned``.

  ``plateau`` (default: ``exact`` without samples, ``reached`` with) is the training column
  that says whether the model converged (only converged trained models are scored).
  """
  p_ref, gap, offset = (np.atleast_1d(np.asarray(v, float)) for v in (p_ref, gap, offset))
  p_ref, gap, offset = np.broadcast_arrays(p_ref, gap, offset)
  predicted = _sigmoid(_logit(p_ref) + gap)
  mass = _sigmoid(_logit(predicted) + offset) if aligned is None else np.broadcast_to(aligned, p_ref.shape)
  interval = None
  if mass_interval_halfwidth is not None:
    interval = (np.clip(mass - mass_interval_halfwidth, 0, 1), np.clip(mass + mass_interval_halfwidth, 0, 1))
  kl = _bernoulli_kl(np.where(np.isfinite(mass), mass, 0.5), p_ref) + extra_kl
  cols = schema.law_columns(reference_recall=p_ref, delta_over_beta=gap, aligned_mass=mass, kl=kl,
                            n_samples=n_samples, aligned_mass_interval=interval, estimator=estimator)
  n = p_ref.size
  rows = []
  for i, law in enumerate(schema.law_rows(cols)):
    samples = np.broadcast_to(n_samples, (n,))[i]
    state = plateau if plateau is not None else ("exact" if samples == 0 else "reached")
    row = {"track": track, "pipeline": np.broadcast_to(pipeline, (n,))[i],
           "algorithm": np.broadcast_to(algorithm, (n,))[i], "seed": i % 3,
           "setting": f"beta={i};p={p_ref[i]:.3g}", "reward": 0.5, **law,
           "plateau": np.broadcast_to(state, (n,))[i]}
    rows.append({k: v for k, v in row.items() if k not in drop})
  folder.mkdir(parents=True, exist_ok=True)
  io.write_csv(folder / name, rows)
  return n


@pytest.fixture()
def tracks(tmp_path):
  """Four result folders, one per track, with known verdicts.

  identity (exact tilts, counted apart): theory (8), mog exact K-A (4)  -> 12, all within
  scored, within: mog pg offset -0.05 (3), lm rloo with an interval that covers the
    prediction (3), smollm2 dpo offset +0.02 (2)                  -> 8 within
  below: mog dpo offset -2 (3), lm dpo offsets -1, -3, -5 (3)     -> 6 below, median 2, max 5
  above: lm ipo offset +1 with exact mass (1)                     -> 1 above
  no prediction: lm simpo (2 rows, NaN Delta/beta)
  """
  root = tmp_path / "runs"
  p = np.logspace(-6, -1, 8)
  _write(root / "sweep", "theory_results.csv", "theory", "reverse_kl", "exact", p, 3.0, 0.0, 0)
  # the sweep's grid file: law columns beside grid cells, no models: not a results file
  (root / "sweep" / "recall_sweep.csv").write_text(
      "map,regularizer,recall,beta,gap,gap_over_beta,aligned_mass,kl,reference_recall,predicted_mass,"
      "kl_ceiling\ngap_over_beta,reverse_kl,1e-12,1,0.01,0.01,1.01e-12,5e-17,1e-12,1.01e-12,1.01e-12\n")
  _write(root / "mog", "mog_results.csv", "mog", "exact", "K-A", [1e-4, 1e-3, 1e-2, 0.1], 5.0, 0.0, 0)
  _write(root / "mog", "mog_pg_results.csv", "mog", "pg", "K-A", [1e-4, 1e-3, 1e-2], 5.0, -0.05, 4096)
  _write(root / "mog" / "taus", "mog_taus_results.csv", "mog", "dpo", "K-A", [1e-4, 1e-3, 1e-2], 5.0,
         -2.0, 2048)
  _write(root / "lm", "lm_results.csv", "lm", "dpo", "K-A", [1e-3, 1e-3, 1e-3], 4.0,
         [-1.0, -3.0, -5.0], 1024, extra_kl=0.1)
  _write(root / "lm" / "taus", "lm_rloo_results.csv", "lm", "rloo", "K-A", [2e-3, 5e-3, 1e-2], 3.0,
         -0.5, 3072, mass_interval_halfwidth=0.1, estimator="monte-carlo n=4096, wilson 95%")
  _write(root / "lm" / "all_algorithms", "lm_results.csv", "lm", "ipo", "K-A", [0.02], 2.0, 1.0, 512)
  _write(root / "lm" / "all_algorithms", "lm_simpo_results.csv", "lm", "simpo", "K-A", [0.02, 0.03],
         np.nan, 0.0, 512, aligned=0.05)
  _write(root / "smollm2", "smollm2_results.csv", "smollm2", "dpo", "A", [0.04, 0.05], 1.0, 0.02,
         256, estimator="monte-carlo n=1024, wilson 95%")
  return root


def _run(args, capsys):
  code = main(["collapse", *args])
  captured = capsys.readouterr()
  return code, captured.out, captured.err


def test_cli_writes_figure_data_csv_caption_and_prints_the_verdict(tracks, tmp_path, capsys):
  out = tmp_path / "out"
  folders = [str(tracks / t) for t in ("sweep", "mog", "lm", "smollm2")]
  code, stdout, stderr = _run(["--inputs", *folders, "--out", str(out)], capsys)
  assert code == 0, stderr
  for name in ("collapse.pdf", "collapse.png", "collapse_data.npz", "collapse.csv", "collapse_caption.md"):
    assert (out / name).stat().st_size > 0, name
  with open(out / "collapse.csv", newline="") as fh:
    rows = list(csv.DictReader(fh))
  assert len(rows) == 27  # 29 rows, 2 SimPO rows without a prediction
  by_verdict = {v: sum(r["verdict"] == v for r in rows) for v in ("within", "below", "above")}
  assert by_verdict == {"within": 20, "below": 6, "above": 1}
  assert sum(r["role"] == "identity" for r in rows) == 12 and sum(r["scored"] == "True" for r in rows) == 15
  assert "collapse: 15 trained models at their plateau: 8 within" in stdout
  assert "6 below (by a median of 2 logit units between the intervals, max 5; 2 between the point values)" in stdout
  assert "1 above" in stdout
  assert "collapse: 0 above their KL ceiling" in stdout
  # expected target samples n q: mog dpo 2048 x (1e-4, 1e-3, 1e-2) -> 0.2 < 1 (below), 2, 20;
  # lm dpo 1024 x 1e-3 = 1.02 (x3, below); everything else >= 1 except mog pg at p 1e-4 (0.41, within)
  assert "sampling trap: 1 of 2 trained models expecting < 1 target sample fall below; 5 of 13" in stdout
  assert "LAW VIOLATION" not in stdout + stderr
  text = (out / "collapse_caption.md").read_text()
  assert "15 models (6 mog, 7 lm, 2 smollm2)" in text
  assert "8 of 15 scored models sit within their interval" in text
  assert "The 12 exact Gibbs tilts" in text and "12 of 12 sit at their prediction" in text
  assert "lm/simpo: 2" in text
  assert "| mog | K-A | dpo | 3 | 0 | 3 | 0 | 2 |" in text
  data = np.load(out / "collapse_data.npz")
  assert data["predicted_mass"].shape == (15,) and data["verdict"].dtype.kind == "U"
  # the command prints no "wrote" lines of its own: main prints one per file moved in (+ run.json)
  assert sum(line.startswith("wrote ") for line in stdout.splitlines()) == len(list(out.iterdir()))


def test_default_run_is_the_same_rule_as_explicit_inputs(tracks, tmp_path, capsys, monkeypatch):
  """Without --inputs the command reads figures/ (recursively) and writes results/collapse."""
  figures = tmp_path / "work" / "figures"
  figures.parent.mkdir()
  os.rename(tracks, figures)
  monkeypatch.chdir(figures.parent)
  code, stdout, stderr = _run([], capsys)
  assert code == 0, stderr
  assert (figures.parent / "results" / "collapse" / "collapse.png").exists()
  assert "collapse: 15 trained models at their plateau: 8 within" in stdout


def test_writing_into_the_input_folder_twice_reads_the_same_models(tracks, capsys):
  """``--out figures`` beside the inputs: the second run must not read collapse.csv back."""
  first = _run(["--inputs", str(tracks), "--out", str(tracks)], capsys)
  second = _run(["--inputs", str(tracks), "--out", str(tracks)], capsys)
  assert first[0] == second[0] == 0, second[2]
  assert "collapse: 15 trained models at their plateau: 8 within" in second[1]
  assert (tracks / "collapse.csv").exists()


def test_verdict_definitions():
  """within: intervals overlap or |logit gap| <= tolerance; otherwise below / above by sign."""
  n = 5
  table = {
      "track": np.array(["mog"] * n), "algorithm": np.array(["pg"] * n), "pipeline": np.array(["K-A"] * n),
      "predicted_mass": np.full(n, 0.2), "predicted_mass_low": np.full(n, 0.2),
      "predicted_mass_high": np.full(n, 0.2),
      # exact hit, inside tolerance, interval covering, below, above
      "aligned_mass": np.array([0.2, _sigmoid(_logit(0.2) - 0.09), 0.1, 0.01, 0.6]),
      "aligned_mass_low": np.array([0.2, _sigmoid(_logit(0.2) - 0.09), 0.05, 0.01, 0.6]),
      "aligned_mass_high": np.array([0.2, _sigmoid(_logit(0.2) - 0.09), 0.21, 0.01, 0.6]),
      "kl_ceiling": np.array([0.3, 0.3, 0.3, 0.3, 0.55]), "above_ceiling": np.zeros(n, bool),
      "reference_recall": np.full(n, 0.01), "delta_over_beta": np.full(n, 3.2),
      "n_samples": np.full(n, 100.0), "expected_target_samples": np.full(n, 1.0),
      "source": np.array(["x.csv"] * n), "plateau": np.array(["reached"] * n),
  }
  out = collapse.classify(table)
  assert out["verdict"].tolist() == ["within", "within", "within", "below", "above"]
  assert out["over_ceiling"].tolist() == [False, False, False, False, True]
  # log((1 - 0.01)/0.01) = 4.595 > 3.2: inside the trap
  assert out["in_trap"].all()
  summary = collapse.summarize(out)
  assert summary["median_shortfall"] == pytest.approx(_logit(0.2) - _logit(0.01))


def test_masses_of_exactly_zero_and_one_are_clipped_to_the_stated_floor(tmp_path, capsys):
  folder = tmp_path / "smollm2"
  _write(folder, "smollm2_results.csv", "smollm2", "dpo", "K-A", [1e-3, 0.3], [1.0, 9.0], 0.0, 64,
         aligned=np.array([0.0, 1.0]), estimator="monte-carlo n=512, wilson 95%")
  out = tmp_path / "out"
  code, stdout, stderr = _run(["--inputs", str(folder), "--out", str(out)], capsys)
  assert code == 0, stderr
  data = np.load(out / "collapse_data.npz")
  floor = float(data["floor"])
  # closest to 0 or 1: predicted sigmoid(logit 0.3 + 9) = 1 - 5.2e-4 -> floor 1e-5
  assert floor == pytest.approx(1e-5)
  assert np.isfinite(data["logit_measured"]).all()
  assert data["logit_measured"][0] == pytest.approx(_logit(1e-5))
  assert data["logit_measured"][1] == pytest.approx(_logit(1 - 1e-5))
  text = (out / "collapse_caption.md").read_text()
  assert "clipped to [1e-5, 1 - 1e-5]" in text and "(2 models clipped;" in text


def test_a_mass_above_its_ceiling_is_loud(tmp_path, capsys):
  folder = tmp_path / "lm"
  _write(folder, "lm_results.csv", "lm", "rloo", "K-A", [1e-3, 1e-3], 2.0, 0.0, 100)
  path = folder / "lm_results.csv"
  with open(path, newline="") as fh:
    rows = list(csv.DictReader(fh))
  rows[1]["kl_ceiling"] = str(float(rows[1]["aligned_mass_low"]) / 2)  # a KL that cannot buy this mass
  io.write_csv(path, rows)
  out = tmp_path / "out"
  code, stdout, stderr = _run(["--inputs", str(folder), "--out", str(out)], capsys)
  assert code == 0
  assert "collapse: 1 above their KL ceiling -- LAW VIOLATION" in stdout
  assert "LAW VIOLATION (collapse)" in stderr
  assert "LAW VIOLATION: 1 model lies above the KL ceiling" in (out / "collapse_caption.md").read_text()


def test_duplicate_rows_of_one_model_are_counted_once(tracks, tmp_path, capsys):
  copy = tmp_path / "copy"
  copy.mkdir()
  (copy / "lm_results.csv").write_bytes((tracks / "lm" / "lm_results.csv").read_bytes())
  out = tmp_path / "out"
  code, stdout, _ = _run(["--inputs", str(tracks / "lm"), str(copy), "--out", str(out)], capsys)
  assert code == 0
  assert "collapse: 7 trained models at their plateau" in stdout
  assert "3 rows repeating a model already read" in (out / "collapse_caption.md").read_text()


# ----------------------------------------------------------------------------- bad input

OLD_LM_HEADER = "pipeline,algorithm,seed,reward,target_share,target_precision,precision,recall,kl_ref\n"


def _assert_one_line_exit_2(code, stdout, stderr, out: Path, *needles):
  assert code == 2
  lines = stderr.strip().splitlines()
  assert len(lines) == 1, stderr
  assert "Traceback" not in stderr
  for needle in needles:
    assert needle in lines[0], (needle, lines[0])
  assert not out.exists(), "nothing may be written on bad input"
  assert "wrote" not in stdout


def test_folder_without_results(tmp_path, capsys):
  empty = tmp_path / "empty"
  empty.mkdir()
  (empty / "notes.csv").write_text("a,b\n1,2\n")  # a CSV that is not a results file
  out = tmp_path / "out"
  code, stdout, stderr = _run(["--inputs", str(empty), "--out", str(out)], capsys)
  _assert_one_line_exit_2(code, stdout, stderr, out, "--inputs", str(empty), "no results CSV")


def test_missing_folder(tmp_path, capsys):
  out = tmp_path / "out"
  code, stdout, stderr = _run(["--inputs", str(tmp_path / "nope"), "--out", str(out)], capsys)
  _assert_one_line_exit_2(code, stdout, stderr, out, "--inputs", "nope", "is not a folder")


def test_older_format_results_fail_when_named(tracks, tmp_path, capsys):
  old = tracks / "lm" / "old" / "lm_results.csv"
  old.parent.mkdir()
  old.write_text(OLD_LM_HEADER + "student,none,0,0.1,0.001,-4,-1,-2,nan\n")
  out = tmp_path / "out"
  code, stdout, stderr = _run(["--inputs", str(tracks / "lm"), "--out", str(out)], capsys)
  _assert_one_line_exit_2(code, stdout, stderr, out, str(old), "older results format",
                          "predicted_mass", "kl_ceiling")


def test_older_format_results_are_skipped_with_a_note_by_the_default_run(tracks, tmp_path, capsys,
                                                                          monkeypatch):
  figures = tmp_path / "work" / "figures"
  figures.parent.mkdir()
  os.rename(tracks, figures)
  (figures / "lm" / "all_algorithms" / "lm_results.csv").write_text(OLD_LM_HEADER + "teacher,none,0,1,1,1,1,1,nan\n")
  monkeypatch.chdir(figures.parent)
  code, stdout, stderr = _run([], capsys)
  assert code == 0, stderr
  assert "collapse: skipped figures/lm/all_algorithms/lm_results.csv: older results format" in stderr
  caption = (figures.parent / "results" / "collapse" / "collapse_caption.md").read_text()
  assert "Skipped figures/lm/all_algorithms/lm_results.csv" in caption
  assert "collapse: 14 trained models at their plateau" in stdout


def test_default_run_with_only_older_format_results_fails(tmp_path, capsys, monkeypatch):
  (tmp_path / "figures" / "lm").mkdir(parents=True)
  (tmp_path / "figures" / "lm" / "lm_results.csv").write_text(OLD_LM_HEADER + "a,b,0,1,1,1,1,1,1\n")
  monkeypatch.chdir(tmp_path)
  code, stdout, stderr = _run([], capsys)
  _assert_one_line_exit_2(code, stdout, stderr, tmp_path / "results", "no results with the law's columns",
                          "figures/lm/lm_results.csv")


@pytest.mark.parametrize("column", ["kl_ceiling", "track", "aligned_mass_high"])
def test_csv_missing_a_column(tmp_path, capsys, column):
  folder = tmp_path / "mog"
  _write(folder, "mog_results.csv", "mog", "exact", "K-A", [1e-3, 1e-2], 4.0, 0.0, 0, drop=(column,))
  out = tmp_path / "out"
  code, stdout, stderr = _run(["--inputs", str(folder), "--out", str(out)], capsys)
  _assert_one_line_exit_2(code, stdout, stderr, out, str(folder / "mog_results.csv"),
                          f"missing column(s) {column}")


@pytest.mark.parametrize("column,value,allowed", [("aligned_mass", "1.5", "in [0, 1]"),
                                                  ("kl", "oops", "a number"),
                                                  ("track", "hub", "one of theory, mog, lm, smollm2")])
def test_csv_with_a_bad_value(tmp_path, capsys, column, value, allowed):
  folder = tmp_path / "mog"
  _write(folder, "mog_results.csv", "mog", "exact", "K-A", [1e-3, 1e-2], 4.0, 0.0, 0)
  path = folder / "mog_results.csv"
  with open(path, newline="") as fh:
    rows = list(csv.DictReader(fh))
  rows[1][column] = value
  io.write_csv(path, rows)
  out = tmp_path / "out"
  code, stdout, stderr = _run(["--inputs", str(folder), "--out", str(out)], capsys)
  _assert_one_line_exit_2(code, stdout, stderr, out, str(path), "line 3", column, allowed)


# ----------------------------------------------------------------------------- the figure

def test_figure_has_no_layout_problems(tracks):
  from recall_theory.plotting.figure_check import check_figure
  files, _ = collapse.find_result_files([tracks], strict=True)
  fig, data = collapse.collapse_figure(collapse.classify(collapse.load_points(files)))
  assert check_figure(fig) == []
  assert math.isfinite(float(data["floor"]))


def test_figure_over_eighteen_decades_has_no_layout_problems(tmp_path):
  """Readable probability ticks when masses span 1e-9 .. 1 - 1e-9 (and an exact 0 and 1)."""
  from recall_theory.plotting.figure_check import check_figure
  rng = np.random.default_rng(0)
  n = 300
  p_ref = 10 ** rng.uniform(-8, -0.5, n)
  _write(tmp_path / "mog", "mog_results.csv", "mog", rng.choice(["exact", "pg", "dpo"], n),
         rng.choice(["K-A", "A-K"], n), p_ref, rng.uniform(0, 25, n), rng.normal(-1, 1, n).clip(max=0),
         rng.choice([0, 512, 4096], n))
  _write(tmp_path / "lm", "lm_results.csv", "lm", "rloo", "K-A", [1e-3, 0.2], [2.0, 30.0], 0.0, 64,
         aligned=np.array([0.0, 1.0]))
  files, _ = collapse.find_result_files([tmp_path], strict=True)
  table = collapse.classify(collapse.load_points(files))
  fig, data = collapse.collapse_figure(table)
  assert check_figure(fig) == []
  # colours resolve n q from 1e-3 up; fewer expected target samples sit at the bar's arrow
  scored = table["scored"] & (table["n_samples"] > 0)
  starved = table["expected_target_samples"][scored] < 1e-3
  assert starved.any()
  summary = collapse.summarize(table)
  assert summary["below_colour_range"] == int(starved.sum())
  assert "below 1e-3 at the arrow of the colour bar" in collapse.caption(summary)
  ticks, labels = collapse.probability_ticks(1e-9, 1 - 1e-9, 5)
  gaps = np.diff(_logit(np.asarray(ticks)))
  assert len(ticks) <= 6 and gaps.min() >= _logit(1 - 1e-9) * 2 / 5 * (1 - 1e-9)


def test_probability_ticks_near_the_middle():
  assert collapse.probability_ticks(1e-3, 0.999)[1] == [
      "$10^{-3}$", "$10^{-2}$", "0.1", "0.5", "0.9", "0.99", "$1-10^{-3}$"]


def test_shortfall_of_a_monte_carlo_zero_is_measured_from_its_interval():
  """0 of n target samples: the point logit sits at the floor, the shortfall uses the Wilson end."""
  table = {
      "track": np.array(["lm"]), "algorithm": np.array(["dpo"]), "pipeline": np.array(["K-A"]),
      "predicted_mass": np.array([0.88]), "predicted_mass_low": np.array([0.07]),
      "predicted_mass_high": np.array([0.98]),
      "aligned_mass": np.array([0.0]), "aligned_mass_low": np.array([0.0]),
      "aligned_mass_high": np.array([0.05]),
      "kl_ceiling": np.array([0.5]), "above_ceiling": np.zeros(1, bool),
      "reference_recall": np.array([0.01]), "delta_over_beta": np.array([6.6]),
      "n_samples": np.array([64.0]), "expected_target_samples": np.array([0.64]),
      "source": np.array(["x.csv"]), "plateau": np.array(["reached"]),
  }
  out = collapse.classify(table)
  assert out["verdict"].tolist() == ["below"]
  assert float(out["floor"]) == pytest.approx(1e-3)  # closest to 0 or 1: 0.02 -> 1e-3
  summary = collapse.summarize(out)
  assert summary["median_shortfall"] == pytest.approx(_logit(0.07) - _logit(0.05))
  assert summary["median_point_shortfall"] == pytest.approx(_logit(0.88) - _logit(1e-3))


def test_default_run_reads_the_users_results_when_there_are_any(tracks, tmp_path, capsys, monkeypatch):
  """Issue 21: a user who had just run lm got the committed figure back unchanged. Without
  --inputs, results/ wins when it holds results; the first line says which folder was read."""
  work = tmp_path / "work"
  import shutil
  work.mkdir()
  shutil.copytree(tracks, work / "figures")
  monkeypatch.chdir(work)
  code, stdout, stderr = _run([], capsys)   # no results/ of the user's: the committed figures/
  assert code == 0, stderr
  assert stdout.splitlines()[0] == "collapse: reading figures/ (the committed results; results/ holds none of yours)"
  os.rename(tracks, work / "results" / "runs")  # the user's own runs beside results/collapse
  code, stdout, stderr = _run([], capsys)   # results/collapse of the first run is not a results CSV
  assert code == 0, stderr
  assert stdout.splitlines()[0] == "collapse: reading results/ (your results)"
  assert "collapse: 15 trained models at their plateau: 8 within" in stdout


def test_the_committed_results_draw(tmp_path, capsys):
  """Every committed results folder, the decomposition's level tables (pipeline A in panel b)
  included, goes through the figure (a KeyError on pipeline A's colour once stopped it)."""
  figures = Path(__file__).resolve().parent.parent / "figures"
  assert list(figures.glob("gap/*/gap_levels.csv")), "the committed decomposition runs are missing"
  code = main(["collapse", "--inputs", str(figures), "--out", str(tmp_path / "out")])
  assert code == 0, capsys.readouterr().err
  assert (tmp_path / "out" / "collapse.png").is_file()
