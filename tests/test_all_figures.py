"""Every figure the package makes, drawn by its real figure function and checked for layout.

Each case calls the function the command calls, with the data of the default run (redrawn
from the committed ``figures/**/_data.npz`` and results CSVs, or recomputed where that is
cheap), and fails with the problems :func:`recall_theory.plotting.figure_check.check_figure`
finds: overlapping texts, text off the canvas or out of its axes, garbled tick labels,
legends over data or missing artists, bands out of range, cut markers, hidden curves.
Figures saved by their function are checked just before they are written
(``checking_saved_figures``), so the check sees exactly what ``save_figure`` saves.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from recall_theory.plotting.figure_check import assert_figure_ok, check_figure, checking_saved_figures
from recall_theory.replot import REPLOTTERS

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "figures"


@pytest.fixture(autouse=True)
def no_figure_files(monkeypatch):
  """Check without writing PDF/PNG (most of the time of a save): the check runs before the write."""
  from matplotlib.figure import Figure
  monkeypatch.setattr(Figure, "savefig", lambda self, *args, **kwargs: None)


def _committed(relative: str) -> Path:
  path = FIGURES / relative
  if not path.exists():
    pytest.skip(f"{relative} is not in figures/ (regenerate it with `recall-theory reproduce`)")
  return path


def _npz(relative: str) -> dict[str, np.ndarray]:
  with np.load(_committed(relative)) as data:
    return {key: data[key] for key in data.files}


def _assert_saved_ok(found: dict[str, list[str]], expected_names: set[str]) -> None:
  assert set(found) == expected_names, f"saved figures {sorted(found)}, expected {sorted(expected_names)}"
  problems = [f"figure {name!r}:\n  " + "\n  ".join(found[name]) for name in sorted(found) if found[name]]
  assert not problems, "layout problems:\n" + "\n".join(problems)


# --- theory sweep (recall_theory/plotting/phase.py) -----------------------------------------

@pytest.fixture(scope="module")
def sweep_figures():
  """The sweep command's figures at its default grid (one jitted call per map)."""
  from recall_theory.plotting.phase import phase_figures
  from recall_theory.sweep import SweepConfig, compute_sweep
  return phase_figures(compute_sweep(SweepConfig()))


@pytest.mark.parametrize("name", ["recall_phase", "recall_ceiling"])
def test_sweep_figure(sweep_figures, name):
  assert_figure_ok(sweep_figures[name], name)


# --- Mixture of Gaussians (recall_theory/mog/figures.py) ------------------------------------

def _mog_log_densities(data: dict[str, np.ndarray], students: list[str]) -> dict[str, np.ndarray]:
  """Undo the key spelling of mog_densities_data.npz: 'aligned_K_A_teacher_ref' -> 'aligned:K-A(teacher-ref)'."""
  from recall_theory.mog.setup import PIPELINES
  saved = {"teacher": "teacher"}
  saved.update({f"student:{s}": f"student_{s}".replace("-", "_") for s in students})
  saved.update({f"aligned:{p}": "aligned_" + p.replace("(", "_").replace(")", "").replace("-", "_")
                for p in PIPELINES})
  return {key: data[spelled] for key, spelled in saved.items()}


def test_mog_densities(tmp_path):
  from recall_theory.mog import figures
  data = _npz("mog/mog_densities_data.npz")
  students = ["4-mode", "3-mode"]
  with checking_saved_figures() as found:
    figures.plot_densities(tmp_path, data["axis"], _mog_log_densities(data, students), data["log_truth"],
                           data["target_means"], float(data["beta"]), students)
  _assert_saved_ok(found, {"mog_densities"})


# The default run's grid, and the shape of a `mog --quick` run (2 seeds, 3 betas from 0.03 to 3)
# cut from it: the default run's first 2 seeds at betas 0.032, 0.32, 3.2.
GRIDS = {"default": (slice(None), slice(None)), "quick": (slice(0, 2), slice(1, None, 2))}


def _metrics(student: str, grid: str) -> tuple[np.ndarray, np.ndarray]:
  """(betas [B], metrics [S, B, P, A, M]) of the default run's figure data, cut to ``grid``."""
  data = _npz(f"mog/mog_metrics_{student}_data.npz")
  seeds, betas = GRIDS[grid]
  return data["betas"][betas], data["metrics"][seeds, betas]


@pytest.mark.parametrize("grid", sorted(GRIDS))
@pytest.mark.parametrize("student", ["4-mode", "3-mode"])
def test_mog_metrics(tmp_path, student, grid):
  from recall_theory.mog import figures
  betas, metrics = _metrics(student, grid)
  with checking_saved_figures() as found:
    figures.plot_metrics(tmp_path, betas, metrics, student)
  _assert_saved_ok(found, {f"mog_metrics_{student}"})


@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_mog_tradeoff(tmp_path, grid):
  from recall_theory.mog import figures
  betas, metrics = _metrics("4-mode", grid)  # the tradeoff figure draws the first student
  with checking_saved_figures() as found:
    figures.plot_tradeoff(tmp_path, betas, metrics, "4-mode")
  _assert_saved_ok(found, {"mog_tradeoff"})


def test_mog_phase(tmp_path):
  from recall_theory.mog import figures
  data = _npz("mog/mog_phase_data.npz")
  phase = {key: data[key] for key in data if key not in ("betas", "recalls")}
  with checking_saved_figures() as found:
    figures.plot_phase(tmp_path, data["betas"], data["recalls"], phase, "3-mode")
  _assert_saved_ok(found, {"mog_phase"})


def test_mog_recall_sweep(tmp_path):
  from recall_theory.mog import figures
  data = _npz("mog/mog_recall_sweep_data.npz")
  res = {key: data[key] for key in data if key not in ("weights", "betas")}
  with checking_saved_figures() as found:
    figures.plot_recall_sweep(tmp_path, data["weights"], data["betas"], res)
  _assert_saved_ok(found, {"mog_recall_sweep"})


def test_mog_taus(tmp_path):
  """``mog --taus``: aligned mass against the student's recall over the KD temperature."""
  from recall_theory.mog import figures
  data = _npz("mog/taus/mog_taus_data.npz")
  students = [str(s) for s in data["students"]]
  results = {s: {key.rsplit("__", 1)[0]: value for key, value in data.items() if key.endswith(f"__{s}")}
             for s in students}
  with checking_saved_figures() as found:
    figures.plot_taus(tmp_path, data["taus"], data["betas"], results)
  _assert_saved_ok(found, {"mog_taus"})


def test_mog_phase_trained(tmp_path):
  """``mog --phase-map``: the trained phase map, redrawn from its committed CSV by the command's code."""
  from recall_theory import schema
  from recall_theory.mog import figures, trained_phase
  rows = schema.read_results(_committed("mog/phase_trained/mog_phase_trained.csv"))
  with checking_saved_figures() as found:
    figures.plot_trained_phase(tmp_path, trained_phase.figure_data(rows))
  _assert_saved_ok(found, {"mog_phase_trained"})


# --- transformer track and SmolLM2 (recall_theory/lm/report.py) -----------------------------

@pytest.mark.parametrize("folder", ["lm", "lm/all_algorithms"])
def test_lm_comparison(tmp_path, folder):
  from recall_theory.lm import report
  rows = report.load_rows(_committed(f"{folder}/lm_results.csv"))
  with checking_saved_figures() as found:
    report.plot_comparison(rows, tmp_path)
  _assert_saved_ok(found, {"lm_comparison"})


def test_lm_tau_sweep(tmp_path):
  """``lm --taus``: K-A / A-K share against the student's recall, with the law (lm/tau_sweep.py)."""
  from recall_theory.lm import report, tau_sweep
  rows = report.load_rows(_committed("lm/taus/lm_tau_sweep.csv"))
  with checking_saved_figures() as found:
    tau_sweep.plot_tau_sweep(rows, tmp_path)
  _assert_saved_ok(found, {"lm_tau_sweep"})


def _ladder_panels(xscale: str) -> list[dict]:
  """Panels of the compute-matched figure as the lm (linear PFLOPs) and mog (log samples) runs build them:
  2 algorithms, 3 seeds, a ladder of 4 budgets; K-A's share rises with its budget toward A-K's."""
  rng = np.random.default_rng(0)
  ladder = [1.0, 2.0, 4.0, 8.0]
  base, step, low = (12.0, 1.5, 1e-3) if xscale == "linear" else (2e4, 3e4, 1e-9)
  panels = []
  for key in ("dpo", "rloo"):
    cost_SxL = base + step * np.array(ladder)[None, :] * rng.uniform(0.95, 1.05, (3, 1))
    share_SxL = np.clip(low * np.geomspace(1, 50, 4)[None, :] * rng.uniform(0.5, 2.0, (3, 4)), 0, 1)
    panel = {"key": key, "title": key.upper(), "scales_L": ladder, "ka_cost_SxL": cost_SxL,
             "ka_share_SxL": share_SxL, "ak_cost_S": base + step * rng.uniform(0.9, 1.1, 3),
             "ak_share_S": rng.uniform(0.3, 0.6, 3), "ctrl_cost_S": base + step * rng.uniform(0.9, 1.1, 3),
             "ctrl_share_S": rng.uniform(0.01, 0.05, 3), "floor": low / 10}
    if xscale == "log":
      panel.update(xscale="log", ka_limit=float(share_SxL.max() * 3))
    panels.append(panel)
  return panels


# Open at the 02:00 deadline of issue 10 (owner: compute_match.plot_ladder, commit 678c12b): strict, so
# the fix turns these into failures that ask for the mark to go.
LADDER_DEFECTS = pytest.mark.xfail(strict=True, reason=(
    "plot_ladder: fig.legend(loc='lower center', bbox_to_anchor=(0.5, -0.08/nrows)) puts the legend "
    "~20 px below the figure (off canvas; use loc='outside lower center'), and the budget labels "
    "('1x', '4x', '16x', ...) are crossed by the per-seed K-A lines (label on a line)"))


@pytest.mark.parametrize("track, xscale", [("lm", "linear"), ("mog", "log")])
def test_compute_ladder(tmp_path, track, xscale):
  """``lm/mog --match-compute``: target share against the pipeline's cost over K-A's budget ladder."""
  compute_match = pytest.importorskip("recall_theory.lm.compute_match")
  with checking_saved_figures() as found:
    compute_match.plot_ladder(_ladder_panels(xscale), tmp_path, f"{track}_compute",
                              xlabel="total PFLOPs of the pipeline" if track == "lm"
                              else "samples drawn by the whole pipeline",
                              ylabel="aligned target share", caption_note="synthetic ladder")
  _assert_saved_ok(found, {f"{track}_compute"})


def test_lm_compute_committed(tmp_path):
  """The committed ``lm --match-compute`` run (figures/lm/compute), redrawn by the command's own writer."""
  import json
  from recall_theory.lm import compute_match, report
  rows = report.load_rows(_committed("lm/compute/lm_compute.csv"))
  config = json.loads(_committed("lm/compute/lm_config.json").read_text())
  with checking_saved_figures() as found:
    compute_match.write_outputs(rows, tmp_path, ladder=config["ladder"], preset=config["preset"],
                                seeds=config["seeds"], elapsed=config["wall_seconds"],
                                estimate=config["estimated_seconds"], time_limit=config["time_limit_s"],
                                options="defaults", algorithms=sorted({r["algorithm"] for r in rows
                                                                       if r["pipeline"] == "K-A"}))
  _assert_saved_ok(found, {"lm_compute"})


@pytest.mark.parametrize("name, folder", [(name, folder) for name, (folder, _) in REPLOTTERS.items()])
def test_every_replotted_figure(tmp_path, name, folder):
  """Every figure `recall-theory replot` redraws from the committed data passes the check."""
  from recall_theory import replot
  if not (FIGURES / folder).is_dir():
    pytest.skip(f"figures/{folder} is not committed")
  with checking_saved_figures() as found:
    replot.REPLOTTERS[name][1](FIGURES / folder, tmp_path)
  problems = [f"figure {k!r}:\n  " + "\n  ".join(v) for k, v in sorted(found.items()) if v]
  assert found and not problems, "layout problems:\n" + "\n".join(problems)


def test_smollm2_comparison(tmp_path):
  """The smollm2 command's figure: no target-precision panel (p* has no closed-form conditional).

  Drawn from the committed SmolLM2 results when they exist, else from the transformer
  track's results (same columns, same algorithms): the layout is what is checked.
  """
  from recall_theory.lm import report
  smollm2 = FIGURES / "smollm2" / "smollm2_results.csv"
  rows = report.load_rows(smollm2 if smollm2.exists() else _committed("lm/lm_results.csv"))
  with checking_saved_figures() as found:
    report.plot_comparison(rows, tmp_path, name="smollm2_comparison", metrics=report.SMOLLM2_METRICS)
  _assert_saved_ok(found, {"smollm2_comparison"})


# --- gap decomposition (recall_theory/plotting/decomposition.py) ----------------------------

@pytest.mark.parametrize("track", ["lm", "mog"])
def test_gap_figure(track):
  """``recall-theory gap``'s stacked bars, from the committed level table of each track."""
  from recall_theory import decomposition, gap_report
  from recall_theory.plotting.decomposition import decomposition_figure
  rows = gap_report.read_levels(_committed(f"gap/{track}/gap_levels.csv"))
  fig, data = decomposition_figure(decomposition.decompose(rows))
  assert_figure_ok(fig, f"gap/{track}")
  # every tie is drawn hollow, and the marks the caption explains are in the data
  assert data["term_tie"].shape == data["term_mean"].shape


# --- collapse (recall_theory/plotting/collapse.py) ------------------------------------------

def test_collapse_figure():
  """The collapse command's default figure: every results CSV under figures/ against the law."""
  if importlib.util.find_spec("recall_theory.plotting.collapse") is None:
    pytest.skip("recall_theory/plotting/collapse.py does not exist")
  from recall_theory.errors import InputError
  from recall_theory.plotting import collapse
  try:
    files, _ = collapse.find_result_files([FIGURES], strict=False)
  except InputError as err:  # no committed results carry the law's columns yet
    pytest.skip(f"no collapse input in figures/: {err}")
  fig, _ = collapse.collapse_figure(collapse.classify(collapse.load_points(files)))
  assert_figure_ok(fig, "collapse")


def test_harness_sees_problems():
  """The check used above does fail: a figure with two labels on top of each other."""
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(3, 2))
  ax.set_xlabel("beta = 3")
  ax.text(0.5, 0.5, "beta = 3", transform=ax.transAxes)
  ax.text(0.5, 0.5, "beta = 10", transform=ax.transAxes)
  assert any(p.startswith("overlap:") for p in check_figure(fig))
  plt.close(fig)
