"""`recall-theory sweep` end to end at small resolution, and its bad-input contract."""

import contextlib
import csv
import io as _io

import jax
import numpy as np
import pytest

from recall_theory import sweep
from recall_theory import theory as th
from recall_theory.cli.main import main

RESOLUTION = 12
EXPECTED_FILES = {
    "recall_sweep.csv", "recall_sweep.npz", "recall_ceiling.csv",
    "recall_phase.pdf", "recall_phase.png", "recall_phase_data.npz",
    "recall_ceiling.pdf", "recall_ceiling.png", "recall_ceiling_data.npz", "run.json",
}


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
  out = tmp_path_factory.mktemp("sweep") / "out"
  stdout = _io.StringIO()
  with contextlib.redirect_stdout(stdout):
    rc = main(["sweep", "--resolution", str(RESOLUTION), "--out", str(out)])
  return rc, out, stdout.getvalue()


def _rows(path):
  with open(path) as fh:
    return list(csv.DictReader(fh))


def test_sweep_writes_expected_files_and_nothing_else(sweep_run):
  rc, out, stdout = sweep_run
  assert rc == 0
  names = {p.name for p in out.iterdir()}
  assert names == EXPECTED_FILES
  assert not [n for n in names if n.startswith(".")]  # no temporaries or scratch arrays left behind
  for name in EXPECTED_FILES:  # one "wrote" line per file, printed by the command line, not twice
    assert stdout.count(f"{name}\n") == 1, name
  assert "non-default options: --resolution 12 --out" in stdout
  assert "cells by theory.kl_ceiling" not in stdout and "; 0 cells above their ceiling" in stdout


def test_sweep_csv_columns_rows_and_values(sweep_run):
  _, out, _ = sweep_run
  rows = _rows(out / "recall_sweep.csv")
  assert list(rows[0]) == list(sweep.CSV_COLUMNS)
  assert list(rows[0])[:8] == ["map", "regularizer", "recall", "beta", "gap", "gap_over_beta", "aligned_mass", "kl"]
  assert len(rows) == 2 * 5 * RESOLUTION * RESOLUTION
  assert {r["map"] for r in rows} == {"gap_over_beta", "beta"}
  assert {r["regularizer"] for r in rows} == {"reverse_kl", "forward_kl", "chi2_kl", "ipo", "best_of_n"}
  values = {k: np.array([float(r[k]) for r in rows]) for k in rows[0] if k not in ("map", "regularizer")}
  for k, v in values.items():
    assert np.all(np.isfinite(v)), k
  np.testing.assert_allclose(values["recall"].min(), 1e-12, rtol=1e-8)
  np.testing.assert_allclose(values["recall"].max(), 0.5, rtol=1e-8)
  np.testing.assert_array_equal(values["reference_recall"], values["recall"])
  rev = np.array([r["regularizer"] == "reverse_kl" for r in rows])
  p, gap, beta = values["recall"][rev], values["gap"][rev], values["beta"][rev]
  # the CSV keeps 9 significant digits of recall, gap and beta too; a relative input error of
  # 5e-9 moves the logit by up to 100 * 5e-9 (gap/beta <= 100), hence rtol 1e-6
  with jax.enable_x64(True):
    np.testing.assert_allclose(values["aligned_mass"][rev], np.asarray(th.aligned_mass(p, gap, beta)), rtol=1e-6)
    np.testing.assert_allclose(values["kl"][rev], np.asarray(th.aligned_kl(p, gap, beta)), rtol=1e-6,
                               atol=1e-15)
    # the law's columns: predicted = sigmoid(logit p + gap/beta) on every row (all regularizers),
    # kl_ceiling = theory.kl_ceiling(p, kl), which for every exact optimum is its own mass
    everything = values["recall"], values["gap"], values["beta"]
    np.testing.assert_allclose(values["predicted_mass"], np.asarray(th.aligned_mass(*everything)), rtol=1e-6)
    np.testing.assert_allclose(values["kl_ceiling"],
                               np.asarray(th.kl_ceiling(values["recall"], values["kl"])), rtol=1e-6)
  np.testing.assert_allclose(values["kl_ceiling"], values["aligned_mass"], rtol=1e-6)
  np.testing.assert_array_equal(values["predicted_mass"][rev], values["aligned_mass"][rev])
  # gap/beta map at beta = 1 spans 1e-2..1e2; beta map at gap = 1 spans beta 1e-3..1e3
  g_rows = np.array([r["map"] == "gap_over_beta" for r in rows])
  np.testing.assert_allclose(values["beta"][g_rows], 1.0)
  np.testing.assert_allclose([values["gap_over_beta"][g_rows].min(), values["gap_over_beta"][g_rows].max()],
                             [1e-2, 1e2], rtol=1e-8)
  np.testing.assert_allclose([values["beta"][~g_rows].min(), values["beta"][~g_rows].max()], [1e-3, 1e3],
                             rtol=1e-8)


def test_sweep_csv_equals_the_arrays_to_nine_digits(sweep_run):
  """The CSV is the .npz's numbers as text: same row order, every value within half a unit
  of its 9th significant digit."""
  _, out, _ = sweep_run
  rows = _rows(out / "recall_sweep.csv")
  with np.load(out / "recall_sweep.npz") as data:
    cols = sweep.tidy_columns({k: data[k] for k in data.files})
  assert [r["regularizer"] for r in rows] == list(cols["regularizer"])
  for key in sweep.CSV_COLUMNS[2:]:
    text = np.array([float(r[key]) for r in rows])
    np.testing.assert_allclose(text, cols[key], rtol=5.000001e-9, atol=0, err_msg=key)


def test_sweep_ceiling_csv_and_npz(sweep_run):
  _, out, _ = sweep_run
  rows = _rows(out / "recall_ceiling.csv")
  assert list(rows[0]) == ["budget", "recall", "ceiling", "ceiling_loose"]
  assert len(rows) == 3 * RESOLUTION
  assert sorted({float(r["budget"]) for r in rows}) == [0.1, 1.0, 10.0]
  with jax.enable_x64(True):
    for r in rows[::5]:
      np.testing.assert_allclose(float(r["ceiling"]), float(th.kl_ceiling(float(r["recall"]), float(r["budget"]))),
                                 rtol=1e-7)
  with np.load(out / "recall_sweep.npz") as data:
    assert data["mass_gap_over_beta"].shape == (5, RESOLUTION, RESOLUTION)
    assert data["kl_ceiling_beta"].shape == (5, RESOLUTION, RESOLUTION)
    assert data["predicted_mass_beta"].shape == (RESOLUTION, RESOLUTION)
    assert data["recall"].dtype == np.float64
    assert list(data["regularizers"]) == ["reverse_kl", "forward_kl", "chi2_kl", "ipo", "best_of_n"]
  with np.load(out / "recall_ceiling_data.npz") as data:
    assert set(data.files) == {"recall", "budgets", "ceiling", "ceiling_loose"}
  with np.load(out / "recall_phase_data.npz") as data:
    assert "mass_beta" in data.files and data["mass_beta"].shape == (5, RESOLUTION, RESOLUTION)
  for name in ("recall_phase.pdf", "recall_ceiling.pdf"):
    assert (out / name).read_bytes().startswith(b"%PDF"), name
  for name in ("recall_phase.png", "recall_ceiling.png"):
    assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_sweep_pdfs_embed_truetype_fonts(sweep_run):
  _, out, _ = sweep_run
  for name in ("recall_phase.pdf", "recall_ceiling.pdf"):
    pdf = (out / name).read_bytes()
    assert b"/FontFile2" in pdf and b"/Type3" not in pdf, name


def test_default_out_is_results_sweep():
  from recall_theory.cli.main import build_parser
  args = build_parser().parse_args(["sweep"])
  assert args.out == "results/sweep"


@pytest.mark.parametrize("args,needle", [
    (["--beta", "0"], "--beta"),
    (["--recall-min", "2"], "--recall-min"),
    (["--recall-min", "1e-3", "--recall-max", "1e-4"], "--recall-min/--recall-max"),
    (["--regularizers", "foo"], "--regularizers"),
    (["--resolution", "1"], "--resolution"),
    (["--resolution", "10001"], "--resolution"),
    (["--gap", "-1"], "--gap"),
    (["--budgets", "1,-2"], "--budgets"),
    (["--budgets", ""], "--budgets"),
    (["--dtype", "float32", "--recall-min", "1e-40"], "--recall-min"),
    (["--beta-min", "10", "--beta-max", "1"], "--beta-min/--beta-max"),
    (["--beta-min", "5", "--beta-max", "1"], "got 5, 1"),
    (["--out", ""], "--out"),
    (["--out", "  "], "--out"),
    # options of the other model are errors naming the flag, not silently ignored
    (["--betas", "1,2"], "--betas applies only to --model mog"),
    # subnormal recall: rejected with the smallest normal number of the dtype
    (["--recall-min", "1e-320"], "must lie in [2.2250738585072014e-308, 1) (from the smallest normal float64), got 1e-320"),
    (["--dtype", "float32", "--recall-min", "1e-39"], "1.1754943508222875e-38"),
])
def test_sweep_bad_input_one_line_exit_2_no_files(tmp_path, capsys, args, needle):
  out = tmp_path / "out"
  argv = ["sweep", "--resolution", "4", "--out", str(out), *args]
  rc = main(argv)
  captured = capsys.readouterr()
  assert rc == 2
  lines = captured.err.strip().splitlines()
  assert len(lines) == 1, captured.err
  assert lines[0].startswith("recall-theory sweep: error: --")
  assert needle in lines[0]
  assert "wrote" not in captured.out
  assert list(tmp_path.iterdir()) == []  # nothing written: no folder, no lock, no staging


@pytest.mark.parametrize("args,needle", [
    (["--regularizers", "foo"], "--regularizers does not apply to --model mog"),
    (["--budgets=-1"], "--budgets does not apply"),
    (["--beta", "2", "--gap", "3"], "--beta, --gap do not apply"),
    (["--ratio-min", "1"], "--ratio-min does not apply"),
    (["--beta-min", "5", "--beta-max", "1"], "--beta-min, --beta-max do not apply"),
    (["--no-figures"], "--no-figures does not apply"),
    (["--resolution", "1"], "--resolution must be an integer in [2, 10000], got 1"),
    (["--resolution", "10001"], "--resolution"),
    (["--recall-min", "0.5", "--recall-max", "0.1"], "--recall-min/--recall-max"),
    (["--recall-max", "1"], "--recall-max must lie in (0, 1), got 1.0"),
    (["--recall-min", "-1"], "--recall-min must lie in [2.2250738585072014e-308, 1)"),
    (["--recall-min", "1e-320"], "--recall-min must lie in [2.2250738585072014e-308, 1)"),
    (["--betas", "0.1,-1"], "--betas must be > 0"),
    (["--betas", ""], "--betas must list at least one beta"),
])
def test_sweep_mog_errors_name_the_flag_typed(tmp_path, capsys, args, needle):
  out = tmp_path / "out"
  rc = main(["sweep", "--model", "mog", "--out", str(out), *args])
  captured = capsys.readouterr()
  assert rc == 2
  lines = captured.err.strip().splitlines()
  assert len(lines) == 1, captured.err
  assert needle in lines[0], lines[0]
  for internal in ("n_weights", "weight_min", "weight_max", "dpo_pairs", "tau", "n_devices", "fsdp"):
    assert internal not in lines[0]
  assert list(tmp_path.iterdir()) == []


def test_sweep_refuses_grid_that_does_not_fit_in_memory(tmp_path, capsys, monkeypatch):
  monkeypatch.setattr(sweep, "available_memory_bytes", lambda: 100 * 2 ** 20)
  out = tmp_path / "out"
  assert main(["sweep", "--resolution", "4", "--out", str(out)]) == 2
  line, = capsys.readouterr().err.strip().splitlines()
  assert "--resolution 4: needs about" in line and "GiB of memory, 0.10 GiB available" in line
  assert list(tmp_path.iterdir()) == []


def test_sweep_refuses_grid_that_does_not_fit_on_disk(tmp_path, capsys):
  # resolution 10000: 1e9 CSV rows (~170 GB), more than this disk holds; refused before computing
  config = sweep.SweepConfig(n_recall=10_000, n_y=10_000)
  if sweep.disk_bytes_estimate(config) <= sweep.free_disk_bytes(tmp_path):  # pragma: no cover
    pytest.skip("this disk could hold the resolution-10000 sweep")
  out = tmp_path / "out"
  assert main(["sweep", "--resolution", "10000", "--no-figures", "--out", str(out)]) == 2
  line, = capsys.readouterr().err.strip().splitlines()
  assert "--resolution 10000: writes about" in line and "GiB free on the disk of --out" in line
  assert list(tmp_path.iterdir()) == []


def test_memory_estimate_does_not_grow_with_resolution():
  small = sweep.estimate_memory_bytes(sweep.SweepConfig(n_recall=1000, n_y=1000))
  large = sweep.estimate_memory_bytes(sweep.SweepConfig(n_recall=10_000, n_y=10_000))
  assert large < 1.05 * small < 2 * 2 ** 30  # blocks of ~2^20 cells whatever the resolution


def test_sweep_out_below_regular_file(tmp_path, capsys):
  blocker = tmp_path / "file.txt"
  blocker.write_text("not a folder")
  rc = main(["sweep", "--resolution", "4", "--out", str(blocker / "out")])
  captured = capsys.readouterr()
  assert rc == 2
  lines = captured.err.strip().splitlines()
  assert len(lines) == 1 and "--out" in lines[0], captured.err
  assert blocker.read_text() == "not a folder"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


@pytest.mark.parametrize("args", [["sweep", "--bogus"], ["sweep", "--budgets", "a,b"], ["sweep", "--dtype", "half"],
                                  ["nonsense"]])
def test_argparse_errors_one_line_exit_2(tmp_path, capsys, args):
  with pytest.raises(SystemExit) as exc:
    main([*args, "--out", str(tmp_path / "out")])
  assert exc.value.code == 2
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 1 and "error" in lines[0], lines
  assert not (tmp_path / "out").exists()


def test_sweep_no_figures_float32_subset(tmp_path, capsys):
  out = tmp_path / "data_only"
  rc = main(["sweep", "--resolution", "4", "--no-figures", "--dtype", "float32", "--regularizers", "reverse_kl,ipo",
             "--budgets", "0.5", "--out", str(out)])
  assert rc == 0
  assert {p.name for p in out.iterdir()} == {"recall_sweep.csv", "recall_sweep.npz", "recall_ceiling.csv", "run.json"}
  rows = _rows(out / "recall_sweep.csv")
  assert len(rows) == 2 * 2 * 4 * 4
  assert {r["regularizer"] for r in rows} == {"reverse_kl", "ipo"}
  for key in sweep.CSV_COLUMNS[2:]:
    assert all(np.isfinite(float(r[key])) for r in rows), key
  with np.load(out / "recall_sweep.npz") as data:
    assert data["mass_beta"].dtype == np.float32
  assert len(_rows(out / "recall_ceiling.csv")) == 4
  assert "computed 2 regularizers x 2 maps x 4 x 4 cells" in capsys.readouterr().out


def test_sweep_model_mog_lands_its_files_in_out(tmp_path, capsys):
  """--model mog end to end on the smallest grid: the files land in --out (not in a staging folder)."""
  out = tmp_path / "mog"
  assert main(["sweep", "--model", "mog", "--resolution", "2", "--betas", "1", "--out", str(out)]) == 0
  names = {p.name for p in out.iterdir()}
  assert {"mog_recall_sweep.csv", "mog_recall_sweep.png", "run.json"} <= names
  assert sorted(p.name for p in tmp_path.iterdir()) == ["mog"]  # no staging folder or lock left over
  assert "staging" not in capsys.readouterr().out


def test_captions_from_the_saved_figure_data(sweep_run):
  """The README's captions come from the figure data files; every number in them is the data's."""
  from recall_theory.plotting.phase import ceiling_caption, phase_caption, trapped_share
  _, out, _ = sweep_run
  with np.load(out / "recall_phase_data.npz") as data:
    text = phase_caption(data)
    shares = trapped_share(data)
  assert f"({RESOLUTION} log-spaced points)" in text and "every point drawn" in text
  assert "from 1e-12 to 0.5" in text and "gap/beta from 0.01 to 100 at beta = 1" in text
  assert f"reverse KL (RLHF, DPO) {100 * shares[('gap_over_beta', 'reverse_kl')]:.0f}%" in text
  assert "log10 pi*(A) = -9, -6, -3" in text
  with np.load(out / "recall_ceiling_data.npz") as data:
    text = ceiling_caption(data)
    assert f"K = 0.1: {data['ceiling'][0, 0]:.3g}" in text


def _saved_result(out):
  with np.load(out / "recall_sweep.npz") as data:
    return {k: data[k] for k in data.files}


def test_phase_caption_counts_the_computed_grid_of_a_subsampled_view(sweep_run):
  from recall_theory.plotting.phase import phase_caption
  text = phase_caption(sweep.subsample(_saved_result(sweep_run[1]), 4))
  assert f"({RESOLUTION} log-spaced points)" in text
  assert f"({RESOLUTION} points each; drawn from 4 x 4 of the points)" in text


def test_figures_are_byte_reproducible(tmp_path, sweep_run):
  """Two drawings of the same sweep give byte-identical PDFs and PNGs (no dates in metadata)."""
  from recall_theory.plotting import save_figure
  from recall_theory.plotting.phase import phase_figures
  result = _saved_result(sweep_run[1])
  for run in ("a", "b"):
    (tmp_path / run).mkdir()
    for name, fig in phase_figures(result).items():
      save_figure(fig, tmp_path / run, name, data={"recall": result["recall"]})
  for name in ("recall_phase.pdf", "recall_phase.png", "recall_ceiling.pdf", "recall_ceiling.png"):
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_sweep_manifest_hashes_without_reading_the_large_files_again(tmp_path, monkeypatch, capsys):
  import hashlib
  import json
  from pathlib import Path
  from recall_theory import io
  hashed_by_reading, real = [], io._sha256
  monkeypatch.setattr(io, "_sha256", lambda path: hashed_by_reading.append(Path(path).name) or real(path))
  out = tmp_path / "o"
  assert main(["sweep", "--resolution", "9", "--no-figures", "--budgets", "1", "--out", str(out)]) == 0
  files = json.loads((out / "run.json").read_text())["runs"]["sweep"]["files"]
  assert set(files) == {"recall_sweep.csv", "recall_sweep.npz", "recall_ceiling.csv"}
  for name, described in files.items():
    data = (out / name).read_bytes()
    assert described == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
  assert "recall_sweep.csv" not in hashed_by_reading       # hashed as it was written
  assert hashed_by_reading.count("recall_sweep.npz") == 1  # once, while the run went on


def test_float32_sweep_reports_no_ceiling_violation_from_rounding(tmp_path, capsys):
  """A float32 mass may sit above the ceiling of its rounded KL (up to ~1.2e-4 with the
  two-log Newton ceiling; ~3e-7 since the sweep solves the lift with the series about t = p):
  the check's tolerance follows the dtype (sqrt(8 eps)), so the run reports no LAW VIOLATION,
  and the float32 text formatting casts no float64 constant (no overflow warning)."""
  import warnings

  from recall_theory import schema

  assert schema.ceiling_tolerance(np.float64) == schema.CEILING_TOLERANCE
  assert schema.ceiling_tolerance(np.float32) == pytest.approx(np.sqrt(8 * np.finfo(np.float32).eps))
  out = tmp_path / "f32"
  with warnings.catch_warnings():
    warnings.simplefilter("error", RuntimeWarning)
    rc = main(["sweep", "--resolution", "300", "--no-figures", "--dtype", "float32", "--out", str(out)])
  text = capsys.readouterr()
  assert rc == 0
  assert "LAW VIOLATION" not in text.out + text.err
  assert "0 cells above their ceiling" in text.out
  with np.load(out / "recall_sweep.npz") as data:
    gaps = [data[f"mass_{m}"] - data[f"kl_ceiling_{m}"] for m in ("gap_over_beta", "beta")]
  worst = max(float(g.max()) for g in gaps)
  # the rounding is real (a few float32 ulp) and far inside the float32 tolerance
  assert 0 < worst < schema.ceiling_tolerance(np.float32) / 4
