"""``recall-theory mog --taus``: the student's recall of the target against the KD temperature tau.

For each sharpening temperature tau of the KD recipe and each beta (exact, deterministic; the
teacher is p*, see :func:`recall_theory.mog.sweep.tau_sweep`) the run writes

* ``mog_taus.csv``: one row per (tau, beta, pipeline K-A / A-K / A) with the shared ids and the
  law's columns (p_ref, Delta/beta, the predicted optimum, the measured mass, KL and its ceiling);
* ``mog_taus.{pdf,png}`` + ``mog_taus_data.npz``: K-A's and A-K's aligned mass against the
  student's recall, one panel per beta, each K-A point ringed by its own law prediction
  sigmoid(logit p + Delta/beta) and the trap boundaries p = sigmoid(-Delta/beta) of the taus;
* ``mog_taus_notes.md``: where K-A leaves the trap, measured and predicted (generated).

Example::

  recall-theory mog --taus 0.02,0.05,0.1,0.2,0.5,1 --out figures/mog/taus
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from recall_theory import io, schema
from recall_theory.mog.setup import MogConfig


def _escape_text(taus, recall, mass, delta) -> str:
  """Where K-A's mass reaches 1/2 (measured) and where the law puts the boundary (predicted)."""
  escaped = [f"{t:g}" for t, m in zip(taus, mass) if m >= 0.5]
  boundary = 1.0 / (1.0 + np.exp(delta))  # logit p + Delta/beta = 0
  predicted = [f"{t:g}" for t, p, b in zip(taus, recall, boundary) if p >= b]
  return (f"K-A mass >= 1/2 at tau = {', '.join(escaped) if escaped else 'none'}; the law "
          f"(student recall >= sigmoid(-Delta/beta), boundary {boundary.min():.3g} to {boundary.max():.3g}) "
          f"predicts tau = {', '.join(predicted) if predicted else 'none'}")


def notes(taus, betas, results: dict, config: MogConfig, options: dict | None) -> str:
  """Generated notes: per student, its recall per tau and, per beta, measured vs predicted escape."""
  from recall_theory.options import describe_options
  lines = ["# The recall sweep over the KD temperature tau (generated from this run's numbers)", "",
           f"options: {describe_options(dict(options or {}))}; target {config.target!r}; exact (teacher p*, "
           "exact KD by EM on the grid, Gibbs tilts, no sampling). Escape means target mass >= 1/2.", ""]
  for student, res in results.items():
    lines += [f"## {student} student", "",
              "Exact recall of the target per tau: "
              + ", ".join(f"tau {t:g}: {p:.3g}" for t, p in zip(taus, res["student_target_mass"][:, 0])) + ".", ""]
    for b, beta in enumerate(betas):
      lines.append(f"* beta {beta:g}: " + _escape_text(taus, res["student_target_mass"][:, b],
                                                       res["ka_target_mass"][:, b], res["ka_delta_over_beta"][:, b])
                   + f"; A-K mass {res['ak_target_mass'][:, b].min():.3g} to {res['ak_target_mass'][:, b].max():.3g}"
                   + f"; aligned teacher {res['aligned_teacher_target_mass'][0, b]:.3g}.")
    lines.append("")
  return "\n".join(lines)


def run_tau_sweep(out_dir, config: MogConfig, taus: Sequence[float], betas: Sequence[float], *,
                  dtype=None, options: dict | None = None) -> list[Path]:
  """Run :func:`~recall_theory.mog.sweep.tau_sweep` for every student; write CSV, figure, data, notes."""
  import jax.numpy as jnp

  from recall_theory import progress
  from recall_theory.mog.figures import plot_taus
  from recall_theory.mog.sweep import tau_columns, tau_sweep

  out = Path(out_dir)
  taus = np.asarray(taus, dtype=np.float64)
  betas = np.asarray(betas, dtype=np.float64)
  results = {}
  with progress.stage("mog tau sweep", total=len(config.students), unit="students") as bar:
    for student in config.students:
      results[student] = tau_sweep(config, taus, betas, student=student, dtype=dtype or jnp.float64)
      bar.update(1)
  parts = [tau_columns(taus, betas, res, config, student) for student, res in results.items()]
  cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  schema.report_ceiling_violations(cols, where="mog --taus")
  paths = [io.write_columns_csv(out / "mog_taus.csv", cols)]
  paths += plot_taus(out, taus, betas, results)
  paths.append(io.write_text(out / "mog_taus_notes.md", notes(taus, betas, results, config, options)))
  return paths
