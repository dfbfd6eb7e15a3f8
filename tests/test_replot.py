"""`recall-theory replot` redraws a committed figure from its saved data, as one recorded run."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from recall_theory.cli.main import main

FIGURES = Path(__file__).resolve().parents[1] / "figures"


def test_replot_redraws_in_place_and_records_the_figure_files(tmp_path, capsys):
  source = FIGURES / "lm" / "taus"
  if not (source / "lm_tau_sweep.csv").exists():
    pytest.skip("figures/lm/taus is not committed")
  figures = tmp_path / "figures"
  shutil.copytree(source, figures / "lm" / "taus")
  assert main(["replot", "lm_tau_sweep", "--figures", str(figures)]) == 0
  runs = json.loads((figures / "lm" / "taus" / "run.json").read_text())["runs"]
  files = runs["replot"]["files"]
  assert set(files) == {"lm_tau_sweep.pdf", "lm_tau_sweep.png", "lm_tau_sweep_data.npz"}
  for name, described in files.items():
    data = (figures / "lm" / "taus" / name).read_bytes()
    assert described == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
  # the results the figure was drawn from stay the computing run's
  assert "lm_tau_sweep.csv" in runs["lm"]["files"] and "lm_tau_sweep.png" not in runs["lm"]["files"]


def test_replot_refuses_an_unknown_figure_in_one_line(tmp_path, capsys):
  assert main(["replot", "no_such_figure", "--out", str(tmp_path)]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "unknown figure(s) no_such_figure" in err
