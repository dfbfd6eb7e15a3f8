"""Redraw committed figures from the data saved beside them, without rerunning anything.

Every figure of the package is saved with the arrays that drew it (``NAME_data.npz``) and
most beside a results CSV. When only the drawing changes, :func:`replot` redraws a
figure from those files with the figure function its command calls, so the picture is
what the command would draw from the same results. Each :data:`REPLOTTERS` entry names
the figure's folder (relative to the figures root) and the function that reads that
folder and draws into an output folder.

``recall-theory replot`` (:mod:`recall_theory.cli.replot_cmd`) runs it as one command-line
run: files are staged, moved in on success, and each folder's ``run.json`` records the
``replot`` run as the maker of the figure files it rewrote (their sha256 and size), while
the results the figures were drawn from stay recorded under the runs that computed them.

Example::

  replot(["mog_taus", "lm_compute"])                   # in place
  replot(list(REPLOTTERS), out=Path("/tmp/preview"))   # every figure, elsewhere
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

FIGURES = Path(__file__).resolve().parents[1] / "figures"


def _npz(path: Path) -> dict[str, np.ndarray]:
  with np.load(path) as data:
    return {key: data[key] for key in data.files}


def _text_column(csv_path: Path, column: str) -> list[str]:
  with open(csv_path, newline="") as fh:
    return [row[column] for row in csv.DictReader(fh)]


# --- Mixture of Gaussians -------------------------------------------------------------------

def _mog_students(folder: Path) -> list[str]:
  """The students of a mog run, in the run's order (the densities' saved keys keep it)."""
  keys = _npz(folder / "mog_densities_data.npz")
  return [k[len("student_"):].replace("_", "-") for k in keys if k.startswith("student_")]


def _mog_log_densities(data: dict[str, np.ndarray], students: Sequence[str]) -> dict[str, np.ndarray]:
  """Undo the key spelling of mog_densities_data.npz: 'aligned_K_A_teacher_ref' -> 'aligned:K-A(teacher-ref)'."""
  from recall_theory.mog.setup import PIPELINES
  saved = {"teacher": "teacher"}
  saved.update({f"student:{s}": f"student_{s}".replace("-", "_") for s in students})
  saved.update({f"aligned:{p}": "aligned_" + p.replace("(", "_").replace(")", "").replace("-", "_")
                for p in PIPELINES})
  return {key: data[spelled] for key, spelled in saved.items()}


def mog_densities(folder: Path, out: Path) -> list[Path]:
  from recall_theory.mog import figures
  data = _npz(folder / "mog_densities_data.npz")
  students = _mog_students(folder)
  return figures.plot_densities(out, data["axis"], _mog_log_densities(data, students), data["log_truth"],
                                data["target_means"], float(data["beta"]), students)


def mog_metrics(folder: Path, out: Path) -> list[Path]:
  from recall_theory.mog import figures
  written = []
  for student in _mog_students(folder):
    data = _npz(folder / f"mog_metrics_{student}_data.npz")
    written += figures.plot_metrics(out, data["betas"], data["metrics"], student)
  return written


def mog_tradeoff(folder: Path, out: Path) -> list[Path]:
  """The tradeoff figure draws the run's first student (``run_mog``: ``res.students[0]``)."""
  from recall_theory.mog import figures
  student = _mog_students(folder)[0]
  data = _npz(folder / f"mog_metrics_{student}_data.npz")
  return figures.plot_tradeoff(out, data["betas"], data["metrics"], student)


def mog_phase(folder: Path, out: Path) -> list[Path]:
  from recall_theory.mog import figures
  from recall_theory.mog.report import phase_student
  data = _npz(folder / "mog_phase_data.npz")
  phase = {key: data[key] for key in ("ak_target_mass", "ka_target_mass", "gap", "reference_recall")}
  student = str(data["student"]) if "student" in data else phase_student(_mog_students(folder))
  return figures.plot_phase(out, data["betas"], data["recalls"], phase, student)


def mog_recall_sweep(folder: Path, out: Path) -> list[Path]:
  """Its student is named in every row's setting (``student=4-mode;...``) of the CSV."""
  from recall_theory.mog import figures
  data = _npz(folder / "mog_recall_sweep_data.npz")
  settings = _text_column(folder / "mog_recall_sweep.csv", "setting")
  students = {part.split("=", 1)[1] for s in settings for part in s.split(";") if part.startswith("student=")}
  if len(students) != 1:
    raise ValueError(f"{folder / 'mog_recall_sweep.csv'}: expected one student, found {sorted(students)}")
  res = {key: value for key, value in data.items() if key not in ("weights", "betas", "student")}
  return figures.plot_recall_sweep(out, data["weights"], data["betas"], res, students.pop())


def mog_taus(folder: Path, out: Path) -> list[Path]:
  from recall_theory.mog import figures
  data = _npz(folder / "mog_taus_data.npz")
  students = [str(s) for s in data["students"]]
  results = {s: {key.rsplit("__", 1)[0]: value for key, value in data.items() if key.endswith(f"__{s}")}
             for s in students}
  return figures.plot_taus(out, data["taus"], data["betas"], results)


def mog_compute(folder: Path, out: Path) -> list[Path]:
  """Ladder, beta and students as the rows of ``mog_compute.csv`` record them."""
  from recall_theory import schema
  from recall_theory.mog import compute_match
  rows = schema.read_results(folder / "mog_compute.csv")
  ladder = sorted({float(r["ladder_scale"]) for r in rows if r["pipeline"] == "K-A"})
  betas = sorted({float(r["beta"]) for r in rows if r["pipeline"] == "K-A"})
  students = list(dict.fromkeys(str(r["student"]) for r in rows))
  if len(betas) != 1:
    raise ValueError(f"{folder / 'mog_compute.csv'}: expected one beta, found {betas}")
  return compute_match.plot_compute(rows, out, ladder=ladder, beta=betas[0], students=students)


# --- transformer track and SmolLM2 ----------------------------------------------------------

def lm_comparison(folder: Path, out: Path) -> list[Path]:
  from recall_theory.lm import report
  return report.plot_comparison(report.load_rows(folder / "lm_results.csv"), out)


def smollm2_comparison(folder: Path, out: Path) -> list[Path]:
  from recall_theory.lm import report
  return report.plot_comparison(report.load_rows(folder / "smollm2_results.csv"), out,
                                name="smollm2_comparison", metrics=report.SMOLLM2_METRICS)


def lm_tau_sweep(folder: Path, out: Path) -> list[Path]:
  from recall_theory.lm import report, tau_sweep
  return tau_sweep.plot_tau_sweep(report.load_rows(folder / "lm_tau_sweep.csv"), out)


def lm_compute(folder: Path, out: Path) -> list[Path]:
  """Ladder from the run's ``lm_config.json``; algorithms from the CSV's K-A rows."""
  from recall_theory.lm import compute_match, report
  rows = report.load_rows(folder / "lm_compute.csv")
  config = json.loads((folder / "lm_config.json").read_text())
  algorithms = sorted({r["algorithm"] for r in rows if r["pipeline"] == "K-A"})
  return compute_match.plot_compute(rows, out, ladder=config["ladder"], algorithms=algorithms)


# --- theory sweep ---------------------------------------------------------------------------

def sweep_figures(folder: Path, out: Path) -> list[Path]:
  """``recall_phase`` and ``recall_ceiling`` from the coarse view the sweep command saved."""
  from recall_theory.plotting import save_figure
  from recall_theory.plotting.phase import phase_figures
  saved = {name: _npz(folder / f"{name}_data.npz") for name in ("recall_phase", "recall_ceiling")}
  written = []
  for name, fig in phase_figures({**saved["recall_phase"], **saved["recall_ceiling"]}).items():
    written += save_figure(fig, out, name, data=saved[name])
  return written


# name -> (folder under the figures root, redraw function)
REPLOTTERS: dict[str, tuple[str, Callable[[Path, Path], list[Path]]]] = {
    "sweep": (".", sweep_figures),
    "mog_densities": ("mog", mog_densities),
    "mog_metrics": ("mog", mog_metrics),
    "mog_tradeoff": ("mog", mog_tradeoff),
    "mog_phase": ("mog", mog_phase),
    "mog_recall_sweep": ("mog", mog_recall_sweep),
    "mog_taus": ("mog/taus", mog_taus),
    "mog_compute": ("mog/compute", mog_compute),
    "lm_comparison": ("lm", lm_comparison),
    "lm_comparison_all_algorithms": ("lm/all_algorithms", lm_comparison),
    "lm_comparison_gpu": ("lm/gpu", lm_comparison),
    "lm_tau_sweep": ("lm/taus", lm_tau_sweep),
    "lm_compute": ("lm/compute", lm_compute),
    "smollm2_comparison": ("smollm2", smollm2_comparison),
    "smollm2_comparison_gpu": ("smollm2/gpu", smollm2_comparison),
}


def replot(names: Sequence[str], figures: Path = FIGURES, out: Path | None = None) -> list[Path]:
  """Redraw ``names`` (keys of :data:`REPLOTTERS`) from the folders under ``figures`` into the
  same folders under ``out`` (default: ``figures``, in place); returns the written paths.

  Output folders come from :func:`recall_theory.io.prepare_output_dir`: inside a
  command-line run (``recall-theory replot``) they are staged and recorded in ``run.json``.
  """
  from recall_theory import io
  from recall_theory.errors import InputError

  unknown = sorted(set(names) - set(REPLOTTERS))
  if unknown:
    raise InputError(f"unknown figure(s) {', '.join(unknown)}; choose from {', '.join(REPLOTTERS)}")
  root = Path(figures) if out is None else Path(out)
  written = []
  for name in names:
    folder, draw = REPLOTTERS[name]
    written += draw(Path(figures) / folder, io.prepare_output_dir(root / folder))
  return written
