"""The results schema every track shares, and the law's columns beside every measurement.

Each results CSV (``mog_results.csv``, ``lm_results.csv``, ``smollm2_results.csv``, the
tau sweeps) holds one row per trained or exact model with :data:`ID_COLUMNS`, the
track's own metrics and :data:`LAW_COLUMNS`, so any tool reads any track's output
(``recall-theory collapse`` reads them all).

Law columns (theory.md item 12; ``_low``/``_high`` are the interval of the value before
them, equal to it when the value is exact):

* ``reference_recall`` -- ``p_ref = pi_ref(A)`` of the reference the alignment is anchored to;
* ``delta_over_beta`` -- ``(L_A - L_{A^c}) / beta`` of the reward the objective tilts by;
* ``predicted_mass`` -- ``sigmoid(logit p_ref + delta_over_beta)``: the optimum (learning trap);
* ``aligned_mass`` -- the measured ``pi(A)`` of the aligned model;
* ``n_samples``, ``sampler_recall``, ``expected_target_samples = n q``,
  ``p_no_target_sample = (1 - q)^n`` -- the draws the algorithm trained on (sampling trap);
* ``kl`` -- ``KL(pi || pi_ref)`` actually paid; ``kl_ceiling = t*(p_ref, kl)``, the most
  target mass any policy within that KL has (theory item 4);
* ``above_ceiling`` -- the measured mass's lower end above the ceiling: impossible, a bug;
* ``estimator`` -- how the numbers were obtained (``exact ...``, ``monte-carlo n=..., wilson 95%``).
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import numpy as np

from recall_theory.errors import InputError

ID_COLUMNS = ("track", "pipeline", "algorithm", "seed", "setting")
LAW_COLUMNS = ("reference_recall", "reference_recall_low", "reference_recall_high",
               "delta_over_beta", "delta_over_beta_low", "delta_over_beta_high",
               "predicted_mass", "predicted_mass_low", "predicted_mass_high",
               "aligned_mass", "aligned_mass_low", "aligned_mass_high",
               "n_samples", "sampler_recall", "expected_target_samples", "p_no_target_sample",
               "kl", "kl_ceiling", "above_ceiling", "estimator")
TRACKS = ("theory", "mog", "lm", "smollm2")
# How far each trained model got (recall_theory.plateau): steps used and budget, how the stage
# ended, its held-out objective, the objective's optimum, the sub-optimality (distance to the
# optimum in the objective's own units, >= 0 in the population) and KL(pi || pi*) to the law's
# optimum, the common currency of every algorithm whose optimum is a Gibbs tilt.
TRAINING_COLUMNS = ("steps", "max_steps", "plateau", "objective", "objective_optimum",
                    "suboptimality", "kl_to_optimum")
# How a model's training ended (the ``plateau`` column).
PLATEAU_REACHED = "reached"      # the plateau rule held
PLATEAU_BUDGET = "budget"        # the budget ran out first: not converged
PLATEAU_FIXED = "fixed"          # a fixed-step stage without the rule (pre-training, distillation)
PLATEAU_EXACT = "exact"          # no training: a closed form or quadrature
PLATEAU_STATES = (PLATEAU_REACHED, PLATEAU_BUDGET, PLATEAU_FIXED, PLATEAU_EXACT)


def plateau_state(reached) -> str:
  """``reached``/``budget`` for a stage with the rule (True/False), ``fixed`` for None."""
  if reached is None:
    return PLATEAU_FIXED
  return PLATEAU_REACHED if reached else PLATEAU_BUDGET


def training_columns(*, steps, max_steps, plateau: str, objective=math.nan, objective_optimum=math.nan,
                     suboptimality=math.nan, kl_to_optimum=math.nan) -> dict:
  """One row's :data:`TRAINING_COLUMNS` (plain Python values)."""
  if plateau not in PLATEAU_STATES:
    raise ValueError(f"plateau must be one of {PLATEAU_STATES}, got {plateau!r}")
  return {"steps": int(steps), "max_steps": int(max_steps), "plateau": plateau,
          "objective": float(objective), "objective_optimum": float(objective_optimum),
          "suboptimality": float(suboptimality), "kl_to_optimum": float(kl_to_optimum)}
# A measured mass counts as above its ceiling only beyond this absolute slack (rounding
# of exact quadrature and of float32 model evaluations).
CEILING_TOLERANCE = 1e-6


def ceiling_tolerance(dtype=np.float64) -> float:
  """How far a mass computed in ``dtype`` may sit above its KL ceiling by rounding alone.

  The ceiling ``t*(p, K)`` is computed from the KL paid, and near ``K = 0`` it grows like
  ``p + sqrt(2 p (1 - p) K)``: a KL error ``dK`` moves it by up to ``sqrt(dK / 2)``
  (``p (1 - p) <= 1/4``). A KL summed from O(1) terms carries ``dK ~ 16 eps``, so the
  check allows ``max(CEILING_TOLERANCE, sqrt(8 eps))``: 1e-6 in float64 (where
  ``sqrt(8 eps) = 4.2e-8``), 9.8e-4 in float32 (a float32 sweep's cells lie up to about
  3e-7 above a ceiling computed from their rounded KL, 1.2e-4 before the sweep's ceiling
  used the series about t = p).
  """
  eps = float(np.finfo(np.dtype(dtype)).eps)
  return max(CEILING_TOLERANCE, float(np.sqrt(8.0 * eps)))


def _interval(value: np.ndarray, interval, name: str) -> tuple[np.ndarray, np.ndarray]:
  if interval is None:
    return value, value
  low, high = (np.broadcast_to(np.asarray(v, dtype=float), value.shape) for v in interval)
  if np.any(low > value + 1e-12 * np.abs(value)) or np.any(high < value - 1e-12 * np.abs(value)):
    raise ValueError(f"{name}_interval must contain {name}")
  return low, high


def law_columns(*, reference_recall, delta_over_beta, aligned_mass, kl, n_samples,
                sampler_recall=None, reference_recall_interval=None,
                delta_over_beta_interval=None, aligned_mass_interval=None,
                estimator: str = "exact") -> dict[str, np.ndarray]:
  """The law's columns for a batch of aligned models (numpy in, 1-D numpy out).

  Args:
    reference_recall: ``p_ref`` per model, in [0, 1].
    delta_over_beta: ``(L_A - L_{A^c})/beta`` per model (may be +-inf).
    aligned_mass: measured ``pi(A)`` per model.
    kl: ``KL(pi || pi_ref)`` paid per model, >= 0 (nan when unknown: ceiling nan).
    n_samples: sampler draws the algorithm trained on (0 for an exact tilt).
    sampler_recall: target mass of the sampler of those draws (default: ``p_ref``).
    *_interval: ``(low, high)`` of the estimate, or None when exact.
    estimator: names how the numbers were obtained.

  Returns:
    ``{name: array}`` for every name in :data:`LAW_COLUMNS`, broadcast to one length.
  """
  from recall_theory import theory as th
  from recall_theory.theory import law

  arrays = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=float)) for v in (
      reference_recall, delta_over_beta, aligned_mass, kl, n_samples,
      reference_recall if sampler_recall is None else sampler_recall)))
  p, d, m, kl_paid, n, q = (a.ravel().copy() for a in arrays)
  p_low, p_high = (a.ravel() for a in _interval(arrays[0], reference_recall_interval, "reference_recall"))
  d_low, d_high = (a.ravel() for a in _interval(arrays[1], delta_over_beta_interval, "delta_over_beta"))
  m_low, m_high = (a.ravel() for a in _interval(arrays[2], aligned_mass_interval, "aligned_mass"))
  def prediction(recall, ratio):
    # NaN where a row has no prediction (no Gibbs optimum, e.g. SimPO, or an unknown input):
    # the law itself refuses NaN inputs by name
    out = np.full(recall.shape, np.nan)
    has = ~(np.isnan(recall) | np.isnan(ratio))
    if has.any():
      out[has] = np.asarray(law.predicted_mass(recall[has], ratio[has]))
    return out

  with th.float64():
    predicted = prediction(p, d)
    # The prediction is increasing in both p_ref and Delta/beta: its interval is the corners'.
    predicted_low = prediction(p_low, d_low)
    predicted_high = prediction(p_high, d_high)
    known = np.isfinite(kl_paid)
    ceiling = np.full(p.shape, np.nan)
    if known.any():
      ceiling[known] = np.asarray(th.kl_ceiling(p_high[known], np.maximum(kl_paid[known], 0.0)))
    expected = np.asarray(law.expected_target_samples(q, n))
    p_none = np.asarray(law.prob_no_target_sample(q, n))
  above = known & (m_low > ceiling + CEILING_TOLERANCE)
  return {
      "reference_recall": p, "reference_recall_low": p_low, "reference_recall_high": p_high,
      "delta_over_beta": d, "delta_over_beta_low": d_low, "delta_over_beta_high": d_high,
      "predicted_mass": predicted, "predicted_mass_low": predicted_low,
      "predicted_mass_high": predicted_high,
      "aligned_mass": m, "aligned_mass_low": m_low, "aligned_mass_high": m_high,
      "n_samples": n, "sampler_recall": q, "expected_target_samples": expected,
      "p_no_target_sample": p_none, "kl": kl_paid, "kl_ceiling": ceiling,
      "above_ceiling": above, "estimator": np.full(p.shape, estimator, dtype=object),
  }


def law_rows(cols: dict[str, np.ndarray]) -> list[dict]:
  """Split :func:`law_columns` output into one dict per model (plain Python values)."""
  n = len(cols["reference_recall"])
  return [{k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in cols.items()}
          for i in range(n)]


def report_ceiling_violations(cols, where: str, stream=None) -> int:
  """Print one loud line per model whose measured mass lies above its KL ceiling.

  ``cols`` is :func:`law_columns` output or a list of row dicts. Returns the count, so a
  caller (and the tests on the presets) can assert that it is zero.
  """
  rows = law_rows(cols) if isinstance(cols, dict) else list(cols)
  stream = sys.stderr if stream is None else stream
  count = 0
  for i, row in enumerate(rows):
    if _truthy(row.get("above_ceiling")):
      count += 1
      label = " ".join(f"{k}={row[k]}" for k in ID_COLUMNS if k in row) or f"row {i}"
      stream.write(f"LAW VIOLATION ({where}): {label}: measured mass {row['aligned_mass_low']:.6g} "
                   f"(lower end) above the KL ceiling {row['kl_ceiling']:.6g} at KL {row['kl']:.6g}; "
                   f"this is a bug in the measurement or the training\n")
  if count:
    stream.flush()
  return count


def _truthy(value) -> bool:
  if isinstance(value, str):
    return value.strip().lower() in ("true", "1", "yes")
  return bool(value) and not (isinstance(value, float) and math.isnan(value))


_TEXT_COLUMNS = {"track", "pipeline", "algorithm", "setting", "estimator", "above_ceiling", "plateau"}


def _check_row_length(path, reader, raw: dict, width: int) -> None:
  """A truncated (or overlong) row: csv fills missing fields with None, extra ones under
  the key None; either is a damaged file, not a row of values."""
  if None in raw or any(v is None for v in raw.values()):
    n = width - sum(v is None for k, v in raw.items() if k is not None) + len(raw.get(None) or [])
    raise InputError(f"{path}: line {reader.line_num} has {n} fields, the header has {width} "
                     f"(a truncated or damaged row); rewrite it with the command that wrote it")


def read_results(path) -> list[dict]:
  """Read a results CSV, checking the shared columns; numbers parsed as floats.

  Raises :class:`InputError` naming the file and every missing column (older formats
  lack the law columns), or saying that it has no rows.
  """
  path = Path(path)
  try:
    with open(path, newline="") as fh:
      reader = csv.DictReader(fh)
      header = reader.fieldnames or []
      missing = [c for c in ID_COLUMNS + LAW_COLUMNS if c not in header]
      if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} "
                         f"(an older results format? rerun the command that wrote it)")
      rows = []
      for raw in reader:
        _check_row_length(path, reader, raw, len(header))
        row = {}
        for k, v in raw.items():
          if k in _TEXT_COLUMNS or k is None:
            row[k] = v
          else:
            try:
              row[k] = float(v)
            except (TypeError, ValueError):
              row[k] = v
        row["above_ceiling"] = _truthy(row.get("above_ceiling"))
        rows.append(row)
  except OSError as err:
    raise InputError(f"{path}: cannot read: {err.strerror}") from err
  except UnicodeDecodeError as err:  # a results CSV is UTF-8 text throughout, not only its header
    raise InputError(f"{path}: not UTF-8 text (it holds the byte 0x{err.object[err.start]:02x}); "
                     f"rewrite it with the command that wrote it") from err
  except csv.Error as err:
    raise InputError(f"{path}: not a readable CSV: {err}") from err
  if not rows:
    raise InputError(f"{path}: no result rows")
  return rows
