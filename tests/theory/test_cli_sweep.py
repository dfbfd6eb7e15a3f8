"""`recall-theory sweep` end to end at small resolution, and its bad-input contract."""

import csv

import jax
import numpy as np
import pytest

from recall_theory import theory as th
from recall_theory.cli.main import main

RESOLUTION = 12
EXPECTED_FILES = {
    "recall_sweep.csv", "recall_sweep.npz", "recall_ceiling.csv",
    "recall_phase.pdf", "recall_phase.png", "recall_phase_data.npz",
    "recall_ceiling.pdf", "recall_ceiling.png", "recall_ceiling_data.npz",
}


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
  out = tmp_path_factory.mktemp("sweep") / "out"
  import contextlib
  import io as _io
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
  assert not [n for n in names if n.startswith(".")]  # no temporaries left behind
  for name in EXPECTED_FILES:
    assert f"wrote {out / name}" in stdout


def test_sweep_csv_columns_rows_and_values(sweep_run):
  _, out, _ = sweep_run
  rows = _rows(out / "recall_sweep.csv")
  assert list(rows[0]) == ["map", "regularizer", "recall", "beta", "gap", "gap_over_beta", "aligned_mass", "kl"]
  assert len(rows) == 2 * 5 * RESOLUTION * RESOLUTION
  assert {r["map"] for r in rows} == {"gap_over_beta", "beta"}
  assert {r["regularizer"] for r in rows} == {"reverse_kl", "forward_kl", "chi2_kl", "ipo", "best_of_n"}
  values = {k: np.array([float(r[k]) for r in rows]) for k in rows[0] if k not in ("map", "regularizer")}
  for k, v in values.items():
    assert np.all(np.isfinite(v)), k
  np.testing.assert_allclose(values["recall"].min(), 1e-12, rtol=1e-8)
  np.testing.assert_allclose(values["recall"].max(), 0.5, rtol=1e-8)
  rev = np.array([r["regularizer"] == "reverse_kl" for r in rows])
  p, gap, beta = values["recall"][rev], values["gap"][rev], values["beta"][rev]
  # the CSV keeps 9 significant digits of recall, gap and beta too; a relative input error of
  # 5e-9 moves the logit by up to 100 * 5e-9 (gap/beta <= 100), hence rtol 1e-6
  with jax.enable_x64(True):
    np.testing.assert_allclose(values["aligned_mass"][rev], np.asarray(th.aligned_mass(p, gap, beta)), rtol=1e-6)
    np.testing.assert_allclose(values["kl"][rev], np.asarray(th.aligned_kl(p, gap, beta)), rtol=1e-6,
                               atol=1e-15)
  # gap/beta map at beta = 1 spans 1e-2..1e2; beta map at gap = 1 spans beta 1e-3..1e3
  g_rows = np.array([r["map"] == "gap_over_beta" for r in rows])
  np.testing.assert_allclose(values["beta"][g_rows], 1.0)
  np.testing.assert_allclose([values["gap_over_beta"][g_rows].min(), values["gap_over_beta"][g_rows].max()],
                             [1e-2, 1e2], rtol=1e-8)
  np.testing.assert_allclose([values["beta"][~g_rows].min(), values["beta"][~g_rows].max()], [1e-3, 1e3],
                             rtol=1e-8)


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
    assert data["recall"].dtype == np.float64
    assert list(data["regularizers"]) == ["reverse_kl", "forward_kl", "chi2_kl", "ipo", "best_of_n"]
  with np.load(out / "recall_ceiling_data.npz") as data:
    assert set(data.files) == {"recall", "budgets", "ceiling", "ceiling_loose"}
  with np.load(out / "recall_phase_data.npz") as data:
    assert "mass_beta" in data.files
  for name in ("recall_phase.pdf", "recall_ceiling.pdf"):
    assert (out / name).read_bytes().startswith(b"%PDF"), name
  for name in ("recall_phase.png", "recall_ceiling.png"):
    assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_sweep_pdfs_embed_truetype_fonts(sweep_run):
  _, out, _ = sweep_run
  for name in ("recall_phase.pdf", "recall_ceiling.pdf"):
    pdf = (out / name).read_bytes()
    assert b"/FontFile2" in pdf and b"/Type3" not in pdf, name


@pytest.mark.parametrize("args", [
    ["--beta", "0"],
    ["--recall-min", "2"],
    ["--recall-min", "1e-3", "--recall-max", "1e-4"],
    ["--regularizers", "foo"],
    ["--resolution", "1"],
    ["--gap", "-1"],
    ["--budgets", "1,-2"],
    ["--dtype", "float32", "--recall-min", "1e-40"],
    ["--beta-min", "10", "--beta-max", "1"],
])
def test_sweep_bad_input_one_line_exit_2_no_files(tmp_path, capsys, args):
  out = tmp_path / "out"
  rc = main(["sweep", "--resolution", "4", *args, "--out", str(out)])
  captured = capsys.readouterr()
  assert rc == 2
  lines = captured.err.strip().splitlines()
  assert len(lines) == 1, captured.err
  assert lines[0].startswith("recall-theory sweep: error: --")
  assert not out.exists() or not any(out.iterdir())


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
  assert {p.name for p in out.iterdir()} == {"recall_sweep.csv", "recall_sweep.npz", "recall_ceiling.csv"}
  rows = _rows(out / "recall_sweep.csv")
  assert len(rows) == 2 * 2 * 4 * 4
  assert {r["regularizer"] for r in rows} == {"reverse_kl", "ipo"}
  assert all(np.isfinite(float(r["aligned_mass"])) and np.isfinite(float(r["kl"])) for r in rows)
  with np.load(out / "recall_sweep.npz") as data:
    assert data["mass_beta"].dtype == np.float32
  assert len(_rows(out / "recall_ceiling.csv")) == 4
  assert "computed 2 regularizers x 2 maps x 4 x 4 cells" in capsys.readouterr().out


def test_sweep_empty_budgets_is_bad_input(tmp_path, capsys):
  out = tmp_path / "out"
  assert main(["sweep", "--budgets", "", "--out", str(out)]) == 2
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 1 and "--budgets" in lines[0]
  assert not out.exists()
