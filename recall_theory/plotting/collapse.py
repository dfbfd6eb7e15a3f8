"""The collapse figure: every aligned model of every track against the law's prediction.

theory.md item 12. Each results CSV of each track (``sweep``, ``mog``, ``lm``, ``smollm2``)
carries, for every aligned model, the law's columns (:mod:`recall_theory.schema`): the
reference's recall ``p_ref``, the reward gap ``Delta/beta`` of the objective actually
optimised, the predicted optimum

    predicted_mass = sigmoid(logit p_ref + Delta/beta)                 (learning trap)

and the measured ``aligned_mass``, the expected count of target samples the algorithm
trained on ``n q`` (sampling trap), and the KL ceiling ``t*(p_ref, KL paid)``. If the law
explains the experiments, the points *collapse* onto the identity line in log-odds
coordinates wherever the algorithm saw target samples, fall below it where it did not,
and never rise above their ceilings.

Pipeline (pure functions on host numpy arrays; the CLI in
:mod:`recall_theory.cli.collapse_cmd` strings them together):

1. :func:`find_result_files` -- results CSVs under the input folders (recursively);
2. :func:`load_points` -- read with :func:`recall_theory.schema.read_results` (which
   checks the columns), validate the values, drop duplicate rows of the same model;
3. :func:`classify` -- per point: clipped logits, ``logit measured - logit predicted``,
   verdict ``within`` / ``below`` / ``above`` (definitions in :func:`classify`);
4. :func:`summarize` + :func:`caption` -- the verdict in numbers, generated from the data;
5. :func:`collapse_figure` -- panel (a) measured against predicted on logit axes with the
   ceiling band, panel (b) the trap boundary ``Delta/beta = log((1-p)/p)``.

Example::

  files, skipped = find_result_files(["figures"], strict=False)
  table = classify(load_points(files))
  print(caption(summarize(table)))
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from recall_theory import schema
from recall_theory.errors import InputError
from recall_theory.plotting.ticks import padded_logit_limits, probability_ticks

# A measured mass counts as *at* its prediction when the two intervals overlap, or when the
# point values differ by at most this much in log-odds (exp(0.1): 10% in the odds).
LOGIT_TOLERANCE = 0.1
# Masses closer to 1 than this are not resolved: results CSVs carry 9 significant digits,
# so 1 - m below 1e-9 is rounding, not measurement.
UPPER_RESOLUTION = 1e-9
# Bounds of the adaptive floor for masses of exactly 0 (see :func:`logit_floor`).
FLOOR_MIN, FLOOR_MAX = 1e-30, 1e-3

# The column that marks a results CSV of the shared schema. Grid files (recall_sweep.csv:
# one row per (map, regularizer, y, recall) cell, with predicted_mass and kl_ceiling beside
# each cell but no models) carry some law columns, never the identifiers.
_SCHEMA_MARKERS = ("track",)
_NUMERIC = tuple(c for c in schema.LAW_COLUMNS if c not in ("above_ceiling", "estimator"))
_PROBABILITY = ("reference_recall", "reference_recall_low", "reference_recall_high",
                "predicted_mass", "predicted_mass_low", "predicted_mass_high",
                "aligned_mass", "aligned_mass_low", "aligned_mass_high",
                "sampler_recall", "p_no_target_sample", "kl_ceiling")
_TEXT = ("source", "track", "pipeline", "algorithm", "setting", "estimator", "plateau")
# Pipelines whose exact rows are the Gibbs tilt of their own reference: they agree with the
# law by construction (the Gibbs identity), so they check arithmetic, not the theory.
IDENTITY_PIPELINES = ("K-A", "A")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "p", "*", "d", "8", "H")


# ----------------------------------------------------------------------------- discovery

def _header(path: Path) -> list[str]:
  try:
    with open(path, newline="") as fh:
      return next(csv.reader(fh), [])
  except (OSError, UnicodeDecodeError) as err:
    raise InputError(f"--inputs: {path}: cannot read: {getattr(err, 'strerror', None) or err}") from err


OUTPUT_CSV = "collapse.csv"  # this command's own tidy table: never read back as input
GAP_LEVELS_CSV = "gap_levels.csv"  # written by `recall-theory gap`: levels, not aligned models
GAP_TERMS_CSV = "gap_decomposition.csv"


def is_results_file(path: Path) -> bool:
  """A results CSV: named ``*_results.csv`` or carrying the schema's ``track`` column.

  The collapse table itself (``collapse.csv``, written into ``figures/`` beside the inputs)
  is not one: reading it back would count every model twice.
  """
  if path.name in (OUTPUT_CSV, GAP_LEVELS_CSV, GAP_TERMS_CSV):  # read apart (load_gap_pairs)
    return False
  if path.name.endswith("_results.csv"):
    return True
  return any(c in _SCHEMA_MARKERS for c in _header(path))


def is_old_format(path: Path) -> bool:
  """A results CSV written before the law's columns existed: none of them is present."""
  header = set(_header(path))
  return not any(c in header for c in ("predicted_mass", "delta_over_beta", "kl_ceiling",
                                       "reference_recall", "expected_target_samples"))


def find_result_files(folders: Sequence[str | os.PathLike], *, strict: bool
                      ) -> tuple[list[Path], list[tuple[Path, str]]]:
  """Results CSVs under ``folders`` (searched recursively, hidden entries skipped).

  Args:
    folders: input folders, as the user typed them.
    strict: True for folders the user named (``--inputs``): an older-format file is an
      error. False for the default ``figures/``: an older-format file is skipped and
      reported (a track not yet regenerated), so the default run succeeds on what exists.

  Returns:
    ``(files, skipped)``; ``skipped`` holds ``(path, reason)`` of older-format files.

  Raises:
    InputError naming the folder when it does not exist or holds no results CSV, or
    naming the file and its missing columns (strict, older format).
  """
  files: list[Path] = []
  skipped: list[tuple[Path, str]] = []
  for folder in folders:
    root = Path(folder)
    if not root.is_dir():
      raise InputError(f"--inputs: {str(folder)!r} is not a folder")
    found = []
    for path in sorted(root.rglob("*.csv")):
      if any(part.startswith(".") for part in path.relative_to(root).parts):
        continue  # staging folders and partial files of runs in progress
      if path.is_file() and is_results_file(path):
        found.append(path)
    if not found:
      raise InputError(f"--inputs: {str(folder)!r} holds no results CSV (no *_results.csv and no CSV "
                       f"with the law's columns); run sweep/mog/lm/smollm2 with --out there first")
    for path in found:
      if is_old_format(path):
        missing = [c for c in schema.ID_COLUMNS + schema.LAW_COLUMNS if c not in _header(path)]
        reason = (f"older results format without the law's columns (missing {len(missing)}: "
                  f"{', '.join(missing)}); rerun the command that wrote it")
        if strict:
          raise InputError(f"--inputs: {path}: {reason}")
        skipped.append((path, reason))
      elif path not in files:
        files.append(path)
  if not files:
    names = ", ".join(str(f) for f in folders)
    raise InputError(f"--inputs: no results with the law's columns under {names} "
                     f"({len(skipped)} older-format file(s) skipped: "
                     f"{', '.join(str(p) for p, _ in skipped)}); rerun the tracks' commands")
  return files, skipped


# ----------------------------------------------------------------------------- loading


def load_gap_pairs(folders: Sequence[str | os.PathLike]) -> dict[str, np.ndarray]:
  """Each decomposition run's models as they are, paired with their best-in-class level.

  Reads every ``gap_levels.csv`` under ``folders`` and returns 1-D arrays ``track``,
  ``pipeline``, ``algorithm``, ``setting``, ``seed``, ``as_is`` (+ ``_low``, ``_high``),
  ``best`` (+ ``_low``, ``_high``), ``converged`` (both levels reached their plateau).
  Empty arrays when there is no such file.
  """
  keys = ("track", "pipeline", "algorithm", "setting", "seed")
  pairs: dict[tuple, dict] = {}
  for folder in folders:
    root = Path(folder)
    if not root.is_dir():
      continue
    for path in sorted(root.rglob(GAP_LEVELS_CSV)):
      if any(part.startswith(".") for part in path.relative_to(root).parts):
        continue
      try:
        with open(path, newline="") as fh:
          for line, row in enumerate(csv.DictReader(fh), start=2):
            if row.get("level") not in ("as_is", "best_in_class"):
              continue
            try:
              values = tuple(float(row[c]) for c in ("aligned_mass", "aligned_mass_low", "aligned_mass_high"))
            except (KeyError, TypeError, ValueError) as err:
              raise InputError(f"--inputs: {path}: line {line}: aligned_mass must be a number") from err
            key = (str(path),) + tuple(row.get(k, "") for k in keys)
            pairs.setdefault(key, {})[row["level"]] = (values, row.get("plateau", ""))
      except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"--inputs: {path}: cannot read: {getattr(err, 'strerror', None) or err}") from err
  complete = [(k, v) for k, v in pairs.items() if "as_is" in v and "best_in_class" in v]
  out = {name: np.asarray([k[i + 1] for k, _ in complete], dtype=str) for i, name in enumerate(keys)}
  for level, name in (("as_is", "as_is"), ("best_in_class", "best")):
    vals = np.asarray([v[level][0] for _, v in complete], dtype=float).reshape(-1, 3)
    out[name], out[f"{name}_low"], out[f"{name}_high"] = vals[:, 0], vals[:, 1], vals[:, 2]
  out["converged"] = np.asarray([v["as_is"][1] != "budget" and v["best_in_class"][1] != "budget"
                                 for _, v in complete], dtype=bool)
  return out

def _bad(path: Path, line: int, column: str, value, allowed: str) -> InputError:
  return InputError(f"--inputs: {path}: line {line}: {column} = {value!r}, must be {allowed}")


def load_points(files: Iterable[str | os.PathLike]) -> dict[str, np.ndarray]:
  """Every row of the results CSVs as one table of 1-D arrays (one entry per model).

  Columns: ``source`` (file), :data:`schema.ID_COLUMNS`, :data:`schema.LAW_COLUMNS`.
  Values are validated (probabilities in [0, 1], intervals ordered, counts >= 0; NaN
  allowed where a track has no value, e.g. SimPO's reference-free optimum). Rows that
  repeat a model already read (same identifiers and values, e.g. a tau sweep's folder and
  its summary CSV) are kept once; ``table["duplicates"]`` counts the dropped ones.

  Raises:
    InputError naming the file, the line and the column of the first bad value.
  """
  rows: list[dict] = []
  read: list[str] = []
  seen: set[tuple] = set()
  duplicates = 0
  for file in files:
    path = Path(file)
    read.append(str(path))
    try:
      records = schema.read_results(path)
    except InputError as err:
      raise InputError(f"--inputs: {err}") from err
    for index, row in enumerate(records):
      line = index + 2  # header is line 1
      if row["track"] not in schema.TRACKS:
        raise _bad(path, line, "track", row["track"], f"one of {', '.join(schema.TRACKS)}")
      for col in _NUMERIC:
        value = row[col]
        if isinstance(value, str):
          if value.strip() == "":
            row[col] = value = math.nan
          else:
            raise _bad(path, line, col, value, "a number")
        if col in _PROBABILITY and not (math.isnan(value) or 0.0 <= value <= 1.0):
          raise _bad(path, line, col, value, "in [0, 1] (or empty)")
        # kl may be a Monte-Carlo estimate (k1) and slightly negative: no sign check there.
        if col in ("n_samples", "expected_target_samples") and value < 0:
          raise _bad(path, line, col, value, ">= 0")
      for stem in ("reference_recall", "delta_over_beta", "predicted_mass", "aligned_mass"):
        low, value, high = row[f"{stem}_low"], row[stem], row[f"{stem}_high"]
        slack = 1e-9 * max(1.0, abs(value)) if math.isfinite(value) else 0.0
        if not any(math.isnan(v) for v in (low, value, high)) and not low - slack <= value <= high + slack:
          raise _bad(path, line, f"{stem}_low/{stem}/{stem}_high", (low, value, high), "ordered low <= value <= high")
      key = tuple(row[c] for c in schema.ID_COLUMNS) + tuple(
          "nan" if isinstance(row[c], float) and math.isnan(row[c]) else row[c]
          for c in ("reference_recall", "delta_over_beta", "aligned_mass", "kl"))
      if key in seen:
        duplicates += 1
        continue
      seen.add(key)
      row["source"] = str(path)
      plateau = row.get("plateau")
      row["plateau"] = plateau if isinstance(plateau, str) and plateau else "unknown"
      rows.append(row)
  table: dict[str, np.ndarray] = {}
  for col in ("source",) + schema.ID_COLUMNS + schema.LAW_COLUMNS + ("plateau",):
    values = [r[col] for r in rows]
    if col in _TEXT:
      table[col] = np.asarray(values, dtype=str)
    elif col == "above_ceiling":
      table[col] = np.asarray(values, dtype=bool)
    else:
      table[col] = np.asarray(values, dtype=float)
  table["duplicates"] = np.asarray(duplicates)
  table["files_read"] = np.asarray(read, dtype=str)
  return table


# ----------------------------------------------------------------------------- statistics

def logit_floor(*mass_arrays: np.ndarray) -> float:
  """The floor at which masses of exactly 0 (1) are drawn: a decade below the closest to 0 (1).

  ``10^(floor(log10 d) - 1)`` for the smallest positive distance ``d = min(m, 1 - m)`` of
  any mass among the arrays from 0 or 1 (NaN, 0 and 1 ignored), clamped to
  [1e-30, 1e-3] (exact MoG masses reach 1e-22), so every resolved mass stays inside
  ``[floor, 1 - floor]`` and masses
  of exactly 0 or 1 sit visibly apart.

  Example:
    >>> logit_floor(np.array([0.0, 3e-5, 0.4, 1.0]))   # closest: 3e-5 -> 1e-6
    1e-06
  """
  values = np.concatenate([np.ravel(a) for a in mass_arrays]) if mass_arrays else np.zeros(0)
  values = values[np.isfinite(values)]
  # 1 - m below UPPER_RESOLUTION is rounding in the CSV, not a mass to keep apart from 1.
  upper = 1.0 - values
  distances = np.concatenate([values, upper[upper >= UPPER_RESOLUTION]])
  positive = distances[distances > 0]
  if positive.size == 0:
    return FLOOR_MAX
  # Floating point: 1 - m is at least 2^-53; the clamp keeps the floor in float64's reach.
  exponent = math.floor(math.log10(float(positive.min()))) - 1
  return float(min(FLOOR_MAX, max(FLOOR_MIN, 10.0 ** exponent)))


def clip_mass(mass: np.ndarray, floor: float) -> np.ndarray:
  """Masses clipped to ``[floor, 1 - max(floor, UPPER_RESOLUTION)]`` (NaN stays NaN)."""
  return np.clip(np.asarray(mass, float), floor, 1.0 - max(floor, UPPER_RESOLUTION))


def logit(mass: np.ndarray) -> np.ndarray:
  """``log(m / (1 - m))`` elementwise (callers clip first)."""
  mass = np.asarray(mass, float)
  return np.log(mass) - np.log1p(-mass)


def classify(table: dict[str, np.ndarray], floor: float | None = None) -> dict[str, np.ndarray]:
  """Add the per-point verdict columns to ``table`` (a copy) and keep only comparable rows.

  A row is a *point* when both its measured and predicted mass are finite (rows of
  algorithms without a Gibbs optimum, e.g. SimPO, and teacher/student rows without a
  prediction are counted in ``table["no_prediction"]`` per track/algorithm and dropped).

  Added columns (shape (N,)):
    ``logit_measured``, ``logit_predicted`` -- logits of the masses clipped by
      :func:`clip_mass` (``clipped``: either was clipped);
    ``logit_gap = logit_measured - logit_predicted`` (point values);
    ``logit_separation``: the gap between the intervals' near ends, ``logit aligned_high -
      logit predicted_low`` (< 0) below, ``logit aligned_low - logit predicted_high`` (> 0)
      above, 0 within: the least distance both intervals allow (a Monte-Carlo mass of
      exactly 0 has a point logit set by the floor, its interval's upper end does not);
    ``verdict``: ``within`` if the intervals ``[aligned_low, aligned_high]`` and
      ``[predicted_low, predicted_high]`` overlap or ``|logit_gap| <= LOGIT_TOLERANCE``;
      otherwise ``below`` (gap < 0) or ``above`` (gap > 0);
    ``over_ceiling``: the writer's ``above_ceiling`` flag, or ``aligned_low > kl_ceiling
      + schema.CEILING_TOLERANCE`` recomputed here (both must be False);
    ``in_trap``: ``Delta/beta < log((1 - p_ref)/p_ref)``, i.e. predicted optimum < 1/2;
    ``role``: ``identity`` for an exact Gibbs tilt of its own reference (K-A and A with the
      exact algorithm: at the law by construction), ``distilled`` for A-K rows (a
      distillation after alignment, outside the law), ``trained`` otherwise;
    ``scored``: a trained model whose training reached its plateau (or an exact projection):
      only these are compared with the law. A run stopped by its budget, trained for a fixed
      number of steps, or from a results file without the ``plateau`` column is not known to
      have converged.
  The scalar ``floor`` is stored as ``table["floor"]``.
  """
  finite = np.isfinite(table["aligned_mass"]) & np.isfinite(table["predicted_mass"])
  dropped: dict[str, int] = {}
  for track, algorithm in zip(table["track"][~finite], table["algorithm"][~finite]):
    dropped[f"{track}/{algorithm}"] = dropped.get(f"{track}/{algorithm}", 0) + 1
  per_row = ("source",) + schema.ID_COLUMNS + schema.LAW_COLUMNS + ("plateau",)
  out = {k: v[finite] for k, v in table.items() if k in per_row}
  if "plateau" not in out:
    out["plateau"] = np.full(out["track"].shape, "unknown")
  # exact Gibbs tilts of their own reference, and every closed form of the theory track
  exact_tilt = ((out["algorithm"] == "exact") & np.isin(out["pipeline"], IDENTITY_PIPELINES)) | (
      out["track"] == "theory")
  distilled = np.char.startswith(out["pipeline"].astype(str), "A-K")
  out["role"] = np.where(exact_tilt, "identity", np.where(distilled, "distilled", "trained")).astype(str)
  out["scored"] = (out["role"] == "trained") & np.isin(out["plateau"], (schema.PLATEAU_REACHED,
                                                                          schema.PLATEAU_EXACT))
  out["duplicates"] = table.get("duplicates", np.asarray(0))
  out["files_read"] = table.get("files_read", np.asarray(sorted(set(table["source"].tolist())), dtype=str))
  out["no_prediction"] = np.asarray(sorted(dropped.items()), dtype=str).reshape(-1, 2)
  masses = [out[c] for c in ("aligned_mass", "aligned_mass_low", "aligned_mass_high", "predicted_mass",
                             "predicted_mass_low", "predicted_mass_high", "kl_ceiling")]
  floor = logit_floor(*masses) if floor is None else float(floor)
  measured, predicted = clip_mass(out["aligned_mass"], floor), clip_mass(out["predicted_mass"], floor)
  out["clipped"] = (measured != out["aligned_mass"]) | (predicted != out["predicted_mass"])
  out["logit_measured"], out["logit_predicted"] = logit(measured), logit(predicted)
  gap = out["logit_measured"] - out["logit_predicted"]
  out["logit_gap"] = gap
  overlap = (out["aligned_mass_low"] <= out["predicted_mass_high"]) & (
      out["aligned_mass_high"] >= out["predicted_mass_low"])
  within = overlap | (np.abs(gap) <= LOGIT_TOLERANCE)
  out["verdict"] = np.where(within, "within", np.where(gap < 0, "below", "above")).astype(str)
  clipped_logit = lambda m: logit(clip_mass(m, floor))  # noqa: E731
  below_sep = clipped_logit(out["aligned_mass_high"]) - clipped_logit(out["predicted_mass_low"])
  above_sep = clipped_logit(out["aligned_mass_low"]) - clipped_logit(out["predicted_mass_high"])
  out["logit_separation"] = np.where(out["verdict"] == "below", np.minimum(below_sep, 0.0),
                                     np.where(out["verdict"] == "above", np.maximum(above_sep, 0.0), 0.0))
  known = np.isfinite(out["kl_ceiling"])
  recomputed = known & (out["aligned_mass_low"] > np.where(known, out["kl_ceiling"], np.inf)
                        + schema.CEILING_TOLERANCE)
  out["over_ceiling"] = out["above_ceiling"] | recomputed
  with np.errstate(divide="ignore"):
    boundary = np.log1p(-out["reference_recall"]) - np.log(out["reference_recall"])
  out["in_trap"] = out["delta_over_beta"] < boundary
  out["floor"] = np.asarray(floor)
  return out


def _median(values: np.ndarray) -> float:
  values = np.asarray(values, float)
  values = values[np.isfinite(values)]
  return float(np.median(values)) if values.size else math.nan


def summarize(table: dict[str, np.ndarray]) -> dict:
  """The verdict in numbers (plain Python values), per track/algorithm and overall.

  Keys: ``n``, ``within``, ``below``, ``above``, ``median_shortfall`` (median of
  ``-logit_separation`` over the points below: the least shortfall their intervals allow;
  NaN if none), ``max_shortfall``, ``median_point_shortfall`` (median of
  ``logit_predicted - logit_measured`` over the same points), ``over_ceiling``, ``ceiling_unknown``, ``clipped``, ``floor``,
  ``per_track`` ({track: n}), ``groups`` (list of per track/pipeline/algorithm dicts with the same
  counts plus ``median_expected_samples``), ``median_expected_below`` /
  ``median_expected_within`` (median expected target-sample count of the trained
  points -- n_samples > 0 -- in each class), ``duplicates``, ``no_prediction``.
  """
  verdict = table["verdict"]
  shortfall = -table["logit_separation"]
  point_shortfall = -table["logit_gap"]
  below = verdict == "below"
  sampled = table["n_samples"] > 0

  def counts(mask: np.ndarray) -> dict:
    return {
        "n": int(mask.sum()), "within": int((mask & (verdict == "within")).sum()),
        "below": int((mask & below).sum()), "above": int((mask & (verdict == "above")).sum()),
        "median_shortfall": _median(shortfall[mask & below]),
        "max_shortfall": float(shortfall[mask & below].max()) if (mask & below).any() else math.nan,
        "median_point_shortfall": _median(point_shortfall[mask & below]),
        "over_ceiling": int((mask & table["over_ceiling"]).sum()),
        "ceiling_unknown": int((mask & ~np.isfinite(table["kl_ceiling"])).sum()),
        "in_trap": int((mask & table["in_trap"]).sum()),
        "exact": int((mask & ~sampled).sum()),
        "median_expected_samples": _median(table["expected_target_samples"][mask & sampled]),
    }

  scored = table["scored"]
  summary = counts(scored)
  order = {t: i for i, t in enumerate(schema.TRACKS)}
  triples = sorted(set(zip(table["track"][scored].tolist(), table["pipeline"][scored].tolist(),
                           table["algorithm"][scored].tolist())),
                   key=lambda k: (order.get(k[0], 99), k[2], k[1]))
  summary["groups"] = [{"track": t, "pipeline": pl, "algorithm": a,
                        **counts(scored & (table["track"] == t) & (table["pipeline"] == pl)
                                 & (table["algorithm"] == a))}
                       for t, pl, a in triples]
  identity = table["role"] == "identity"
  summary["identity"] = {"n": int(identity.sum()),
                         "within": int((identity & (verdict == "within")).sum()),
                         "max_abs_gap": float(np.max(np.abs(table["logit_gap"][identity])))
                         if identity.any() else math.nan}
  budget = (table["role"] == "trained") & ~table["scored"]
  summary["budget"] = int(budget.sum())
  summary["budget_groups"] = sorted(
      {(t, pl, a): int((budget & (table["track"] == t) & (table["pipeline"] == pl)
                        & (table["algorithm"] == a)).sum())
       for t, pl, a in zip(table["track"][budget].tolist(), table["pipeline"][budget].tolist(),
                           table["algorithm"][budget].tolist())}.items())
  summary["kept"] = kept_fractions(table)
  summary["per_track"] = {t: int((scored & (table["track"] == t)).sum()) for t in schema.TRACKS
                          if (scored & (table["track"] == t)).any()}
  summary["clipped"] = int((scored & table["clipped"]).sum())
  summary["floor"] = float(table["floor"])
  summary["median_expected_below"] = _median(table["expected_target_samples"][scored & below & sampled])
  summary["median_expected_within"] = _median(
      table["expected_target_samples"][scored & (verdict == "within") & sampled])
  starved = scored & sampled & (table["expected_target_samples"] < 1.0)
  fed = scored & sampled & (table["expected_target_samples"] >= 1.0)
  summary["starved"], summary["starved_below"] = int(starved.sum()), int((starved & below).sum())
  summary["fed"], summary["fed_below"] = int(fed.sum()), int((fed & below).sum())
  summary["below_colour_range"] = int((scored & sampled
                                       & (table["expected_target_samples"] < 10.0 ** COLOUR_MIN)).sum())
  summary["zero_expected"] = int((scored & sampled & (table["expected_target_samples"] <= 0)).sum())
  summary["over_ceiling_all"] = int(table["over_ceiling"].sum())
  summary["duplicates"] = int(table.get("duplicates", 0))
  summary["no_prediction"] = [(str(k), int(v)) for k, v in table.get("no_prediction", [])]
  summary["sources"] = sorted(set(table.get("files_read", table["source"]).tolist()))
  return summary


def kept_fractions(table: dict[str, np.ndarray]) -> list[dict]:
  """What each distilled student keeps of its aligned teacher's mass: ``mass(A-K) / mass(A)``.

  An A-K row is paired with the A row of the same file, track, algorithm, seed and setting
  (the aligned teacher it distils). Returns per (track, pipeline, algorithm): the number of
  pairs and the median and quartiles of the ratio.
  """
  if not all(c in table for c in ("seed", "setting", "source")):
    return []
  teacher = {}
  for i in np.flatnonzero(table["pipeline"] == "A"):
    teacher[(table["source"][i], table["track"][i], table["algorithm"][i], float(table["seed"][i]),
             table["setting"][i])] = float(table["aligned_mass"][i])
  ratios: dict[tuple, list[float]] = {}
  for i in np.flatnonzero(table["role"] == "distilled"):
    key = (table["source"][i], table["track"][i], table["algorithm"][i], float(table["seed"][i]),
           table["setting"][i])
    a = teacher.get(key)
    if a is not None and a > 0:
      ratios.setdefault((str(table["track"][i]), str(table["pipeline"][i]), str(table["algorithm"][i])),
                        []).append(float(table["aligned_mass"][i]) / a)
  order = {t: k for k, t in enumerate(schema.TRACKS)}
  out = []
  for (track, pipeline, algorithm), values in sorted(ratios.items(),
                                                     key=lambda kv: (order.get(kv[0][0], 99), kv[0][2], kv[0][1])):
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    out.append({"track": track, "pipeline": pipeline, "algorithm": algorithm, "n": len(values),
                "median": float(q50), "q25": float(q25), "q75": float(q75)})
  return out


def _fmt_count(x: float) -> str:
  return "n/a" if not math.isfinite(x) else f"{x:.3g}"


def _fmt_floor(floor: float) -> str:
  return f"1e{int(round(math.log10(floor)))}"


def _plural(count: int, one: str, many: str) -> str:
  return f"{count} {one if count == 1 else many}"


def verdict_lines(summary: dict) -> list[str]:
  """The verdict printed on stdout: one line overall, one per track/algorithm, the ceiling."""
  lines = [f"collapse: {summary['n']} trained models at their plateau: {summary['within']} within their interval of the "
           f"prediction (or |logit gap| <= {LOGIT_TOLERANCE:g}), {summary['below']} below "
           f"(by a median of {_fmt_count(summary['median_shortfall'])} logit units between the intervals, max "
           f"{_fmt_count(summary['max_shortfall'])}; {_fmt_count(summary['median_point_shortfall'])} between "
           f"the point values), {summary['above']} above"]
  for g in summary["groups"]:
    lines.append(f"  {g['track']:>8s} {g['pipeline']:<17s} {g['algorithm']:<10s} n={g['n']:<5d} within={g['within']:<5d} "
                 f"below={g['below']:<5d} above={g['above']:<4d} median shortfall="
                 f"{_fmt_count(g['median_shortfall'])} logit; median expected target samples "
                 f"{_fmt_count(g['median_expected_samples'])}")
  lines.append(f"collapse: sampling trap: {summary['starved_below']} of {summary['starved']} trained models "
               f"expecting < 1 target sample fall below; {summary['fed_below']} of {summary['fed']} "
               f"expecting >= 1 do")
  lines.append(f"collapse: not scored: {summary['budget']} trained models not known to have converged; "
               f"{summary['identity']['n']} exact tilts (identity: {summary['identity']['within']} at "
               f"the law); {sum(k['n'] for k in summary['kept'])} distilled A-K students")
  over = summary["over_ceiling_all"]
  lines.append(f"collapse: {over} above their KL ceiling" + (
      "" if over == 0 else " -- LAW VIOLATION: a measured mass above the most any policy within its KL "
                           "can reach is a bug in that track's measurement or training"))
  return lines


def caption(summary: dict, *, skipped: Sequence[tuple[Path, str]] = (), options: str = "defaults") -> str:
  """The figure's caption in Markdown, every number from ``summary``."""
  per_track = ", ".join(f"{n} {t}" for t, n in summary["per_track"].items())
  floor = _fmt_floor(summary["floor"])
  upper = max(summary["floor"], UPPER_RESOLUTION)
  identity = summary["identity"]
  gap_pairs = summary.get("gap_pairs", 0)
  parts = [
      f"**Trained models against the law.** (a) Measured target mass pi(A) of each trained model "
      f"whose alignment reached its plateau, against the law's optimum sigmoid(logit p_ref + "
      f"Delta/beta), both on log-odds axes; {summary['n']} models ({per_track}). Marker: track and "
      f"algorithm; colour: log10 of the expected number of target samples n q among the draws the "
      f"algorithm trained on (hollow: an exact projection, no samples"
      f"{'; below 1e' + str(int(COLOUR_MIN)) + ' at the arrow of the colour bar' if summary['below_colour_range'] else ''}); "
      f"grey crosses: {summary['budget']} trained models not known to have converged (stopped by "
      f"their budget before the plateau rule held, or trained for a fixed number of steps; not scored), drawn "
      f"on top of the markers, like the ceiling's dashes; markers of several algorithms at one point are "
      f"drawn side by side, {SIDE_BY_SIDE_PT:g} pt apart. Grey bars join each prediction to the KL ceiling "
      f"t*(p_ref, KL paid) (dash): no policy within that KL has more target mass. Whiskers: intervals "
      f"where the estimate is not exact. (b) The same algorithms as they are against the best their "
      f"model class reaches (the class fitted to the exact tilt, `recall-theory gap`): "
      + (f"{gap_pairs} models, {summary.get('gap_converged', 0)} of them with both levels at their "
         f"plateau (the others as grey crosses, on top); colour: the pipeline." if gap_pairs
         else "no decomposition run among the inputs.")
      + f" (c) The trap boundary Delta/beta = log((1 - p)/p); below it (shaded) the optimum keeps "
      f"pi(A) < 1/2; {summary['in_trap']} of the {summary['n']} scored runs lie inside it; grey line: "
      f"Delta/beta = 0.",
      f"**Not drawn.** The {identity['n']} exact Gibbs tilts (K-A and A, exact) are the identity the "
      f"law is built on, not a test of it: {identity['within']} of {identity['n']} sit at their "
      f"prediction (largest |logit gap| {_fmt_count(identity['max_abs_gap'])}). A-K students are a "
      f"distillation after alignment, outside the law; what they keep of their aligned teacher's "
      f"mass, mass(A-K)/mass(A) per seed (median [quartiles]): "
      + ("; ".join(f"{k['track']} {k['pipeline']} {k['algorithm']}: {k['median']:.3g} "
                   f"[{k['q25']:.3g}, {k['q75']:.3g}] (n = {k['n']})" for k in summary["kept"])
         or "none") + ".",
      f"**Verdict.** {summary['within']} of {summary['n']} scored models sit within their interval of the "
      f"prediction (intervals overlap, or |logit measured - logit predicted| <= {LOGIT_TOLERANCE:g}); "
      f"{summary['below']} fall below it, by a median of {_fmt_count(summary['median_shortfall'])} "
      f"logit units between the near ends of the two intervals (max {_fmt_count(summary['max_shortfall'])}; "
      f"median between the point values {_fmt_count(summary['median_point_shortfall'])}); {summary['above']} "
      f"{'lies' if summary['above'] == 1 else 'lie'} above it. "
      f"Median expected target samples of the trained models below the line: "
      f"{_fmt_count(summary['median_expected_below'])}; within: "
      f"{_fmt_count(summary['median_expected_within'])}. Of the trained models expecting fewer than one "
      f"target sample, {summary['starved_below']} of {summary['starved']} fall below; of those expecting "
      f"at least one, {summary['fed_below']} of {summary['fed']}. "
      + ("No model (of any role) lies above its KL ceiling."
         if summary["over_ceiling_all"] == 0 else
         f"**LAW VIOLATION: {_plural(summary['over_ceiling_all'], 'model lies', 'models lie')} above "
         f"the KL ceiling** (a bug in the "
         f"measurement or the training of those runs).")
      + (f" {_plural(summary['ceiling_unknown'], 'model has', 'models have')} no KL recorded (no ceiling)."
         if summary["ceiling_unknown"] else ""),
      f"**Axes.** Masses are clipped to [{floor}, 1 - {_fmt_floor(upper)}] on the logit axes "
      f"({_plural(summary['clipped'], 'model', 'models')} clipped; the verdict uses the same clipped "
      + (f"logits): a mass of exactly 0 is drawn at the floor {floor}, a decade below the mass closest "
         f"to 0 or 1, " if summary["floor"] > FLOOR_MIN else
         f"logits): masses below {floor} (exact zeros and exact masses smaller than that) are drawn at "
         f"{floor}, ")
      + (f"a mass of exactly 1 at 1 - {floor}." if upper == summary["floor"] else
         f"a mass within {_fmt_floor(upper)} of 1 at 1 - {_fmt_floor(upper)} (results CSVs carry 9 "
         f"significant digits, so 1 - m below {_fmt_floor(upper)} is not resolved)."),
  ]
  table = ["| track | pipeline | algorithm | models | within | below | above | median shortfall (logit, between intervals) | "
           "median expected target samples |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
  for g in summary["groups"]:
    table.append(f"| {g['track']} | {g['pipeline']} | {g['algorithm']} | {g['n']} | {g['within']} | {g['below']} | "
                 f"{g['above']} | {_fmt_count(g['median_shortfall'])} | "
                 f"{'exact' if g['exact'] == g['n'] else _fmt_count(g['median_expected_samples'])} |")
  notes = [f"Sources: {', '.join(summary['sources'])}."]
  if summary["no_prediction"]:
    notes.append("Rows without a prediction (no Gibbs optimum or no aligned model), not drawn: "
                 + ", ".join(f"{k}: {v}" for k, v in summary["no_prediction"]) + ".")
  if summary["zero_expected"]:
    notes.append(f"{_plural(summary['zero_expected'], 'trained model', 'trained models')} with an expected "
                 f"target-sample count of 0 (a sampler without target mass) drawn at the bottom of the "
                 f"colour scale.")
  if summary["duplicates"]:
    notes.append(f"{summary['duplicates']} rows repeating a model already read were counted once.")
  for path, reason in skipped:
    notes.append(f"Skipped {path}: {reason}.")
  notes.append(f"Options: {options}.")
  return "\n\n".join(parts + ["\n".join(table), " ".join(notes)]) + "\n"


# ----------------------------------------------------------------------------- figure

def _style_keys(table: dict[str, np.ndarray]) -> list[tuple[str, str]]:
  order = {t: i for i, t in enumerate(schema.TRACKS)}
  return sorted(set(zip(table["track"].tolist(), table["algorithm"].tolist())),
                key=lambda p: (order.get(p[0], 99), p[1]))


SPARSE_TRACK = 300  # tracks with at most this many runs are drawn larger and on top
# cividis, not viridis: no colour of the expected-samples scale is a pipeline's (viridis' teal is
# K-A(teacher-ref)'s, the colour panel (b) gives it)
COLOUR_MAP = "cividis"
CROSS_COLOUR = "0.45"
ZERO_GAP_COLOUR = "0.6"
COLOUR_MIN = -3.0  # log10 n q: below one target sample in a thousand runs, all look alike


def _colour_values(table: dict[str, np.ndarray]) -> tuple[np.ndarray, float, float]:
  """log10 expected target samples (NaN for exact tilts) and the colour range.

  The range is cut at ``COLOUR_MIN`` below (the bar's arrow): the sampling trap turns on
  around n q = 1, so the colours resolve that region, not 1e-22 against 1e-20.
  """
  expected = table["expected_target_samples"]
  sampled = table["n_samples"] > 0
  with np.errstate(divide="ignore"):
    value = np.where(sampled, np.log10(np.where(expected > 0, expected, np.nan)), np.nan)
  finite = value[np.isfinite(value)]
  low, high = (math.floor(finite.min()), math.ceil(finite.max())) if finite.size else (0.0, 1.0)
  low, high = max(low, COLOUR_MIN), max(high, 1.0)
  if high <= low:
    low, high = low - 1, high + 1
  # Sampled runs whose sampler never has target mass (n q = 0) sit at the bottom of the scale.
  value = np.where(sampled & ~np.isfinite(value), -np.inf, value)
  return value, float(low), float(high)


SIDE_BY_SIDE_PT = 4.0  # markers of several groups at one point are drawn this far apart


def side_by_side(xs: np.ndarray, ys: np.ndarray, group: np.ndarray, step_pt: float = SIDE_BY_SIDE_PT,
                 scale=np.log10, yscale=lambda v: v, bins: int = 300) -> np.ndarray:
  """Per point, a horizontal offset in points: 0, except where points of several groups share
  one place (chained within 1/``bins`` of the data's range of each other, each axis in its ``scale``):
  the first group stays there and the others follow ``step_pt`` apart toward the middle of the
  x range, so that no group's marker hides another's and none is pushed out of the frame."""
  xs, ys = np.asarray(xs, float), np.asarray(ys, float)
  offsets = np.zeros(len(xs))
  with np.errstate(divide="ignore", invalid="ignore"):
    u, v = scale(xs), yscale(ys)
  finite = np.isfinite(u) & np.isfinite(v)
  if not finite.any():
    return offsets
  from scipy.spatial import cKDTree

  cell = lambda w: max(float(np.ptp(w[finite])), 1e-12) / bins  # noqa: E731
  cu, cv = cell(u), cell(v)
  middle = 0.5 * (np.min(u[finite]) + np.max(u[finite]))
  index = np.nonzero(finite)[0]
  # one place: points chained within a cell of each other (union-find over the close pairs)
  parent = list(range(len(index)))

  def root(k: int) -> int:
    while parent[k] != k:
      parent[k] = parent[parent[k]]
      k = parent[k]
    return k

  for a, b in cKDTree(np.column_stack([u[index] / cu, v[index] / cv])).query_pairs(1.0):
    parent[root(a)] = root(b)
  places: dict[int, dict[int, list[int]]] = {}
  for k, i in enumerate(index):
    places.setdefault(root(k), {}).setdefault(int(group[i]), []).append(int(i))
  for groups in places.values():
    if len(groups) > 1:
      first = groups[min(groups)][0]
      toward = -1.0 if u[first] > middle else 1.0
      for k, g in enumerate(sorted(groups)):
        offsets[groups[g]] = toward * k * step_pt
  return offsets


def _interval_whiskers(ax, x, y, x_low, x_high, y_low, y_high, rasterized):
  from matplotlib.collections import LineCollection
  segments = []
  for xi, yi, a, b, c, d in zip(x, y, x_low, x_high, y_low, y_high):
    if np.isfinite(c) and np.isfinite(d) and d > c:
      segments.append([(xi, c), (xi, d)])
    if np.isfinite(a) and np.isfinite(b) and b > a:
      segments.append([(a, yi), (b, yi)])
  if segments:
    # light: a Monte-Carlo zero's interval spans many decades of a logit axis
    ax.add_collection(LineCollection(segments, colors="0.45", linewidths=0.45, alpha=0.7, zorder=2,
                                     rasterized=rasterized))


def collapse_figure(table: dict[str, np.ndarray], gap_pairs: dict[str, np.ndarray] | None = None):
  """Draw the three panels from a :func:`classify` table; returns ``(figure, data)``.

  (a) the scored trained models (and, as grey crosses, those stopped by their budget)
  against the law; (b) the decomposition runs' models as they are against their best in
  class (``gap_pairs`` from :func:`load_gap_pairs`); (c) the trap boundary. Exact tilts and
  distilled students are not drawn (the caption counts them). ``data`` holds every array
  the figure is drawn from (numeric or fixed-width strings, no pickled objects), for
  ``save_figure``'s ``NAME_data.npz``.
  """
  import matplotlib.pyplot as plt
  from matplotlib.collections import LineCollection
  from matplotlib.lines import Line2D
  from matplotlib.legend_handler import HandlerTuple
  from matplotlib.patches import Patch
  from matplotlib import colors as mcolors

  from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator
  from matplotlib.transforms import ScaledTranslation

  from recall_theory.plotting.style import PIPELINE_COLORS, TEXT_WIDTH, paper_style

  full = table
  budget = (full["role"] == "trained") & ~full["scored"]
  table = {k: (v[full["scored"]] if isinstance(v, np.ndarray) and v.shape == full["scored"].shape else v)
           for k, v in full.items()}
  floor = float(table["floor"])
  clip = lambda m: clip_mass(m, floor)  # noqa: E731
  x, y = clip(table["predicted_mass"]), clip(table["aligned_mass"])
  x_budget, y_budget = clip(full["predicted_mass"][budget]), clip(full["aligned_mass"][budget])
  x_low, x_high = clip(table["predicted_mass_low"]), clip(table["predicted_mass_high"])
  y_low, y_high = clip(table["aligned_mass_low"]), clip(table["aligned_mass_high"])
  ceiling = clip(table["kl_ceiling"])
  p_ref = np.clip(table["reference_recall"], floor, 1.0)
  p_low, p_high = np.clip(table["reference_recall_low"], floor, 1.0), np.clip(
      table["reference_recall_high"], floor, 1.0)
  gap, gap_low, gap_high = table["delta_over_beta"], table["delta_over_beta_low"], table["delta_over_beta_high"]
  colour_value, c_low, c_high = _colour_values(table)
  exact = ~(table["n_samples"] > 0)
  keys = _style_keys(table)
  marker_of = {k: MARKERS[i % len(MARKERS)] for i, k in enumerate(keys)}
  rasterized = x.size > 2000  # a dense grid (the theory sweep) as an image inside the vector PDF
  size = 8.0 if x.size > 2000 else 18.0
  cmap = plt.get_cmap(COLOUR_MAP)
  norm = mcolors.Normalize(vmin=c_low, vmax=c_high)

  pairs = gap_pairs if gap_pairs is not None and len(gap_pairs.get("as_is", ())) else None
  with paper_style():
    fig, (ax_a, ax_g, ax_b) = plt.subplots(1, 3, figsize=(TEXT_WIDTH, 2.9), layout="constrained")
    ax_a.set_xscale("logit")
    ax_a.set_yscale("logit")
    lo = min(np.nanmin(np.concatenate([x, y, x_low, y_low, x_budget, y_budget])), 0.4)
    hi = max(np.nanmax(np.concatenate([x, y, x_high, y_high, x_budget, y_budget])), 0.6)
    lo_lim, hi_lim = padded_logit_limits(lo, hi)  # markers at the ends stay whole
    line = np.array([lo_lim, hi_lim])
    ax_a.plot(line, line, color="0.2", lw=0.8, ls="--", zorder=1)
    # Ceiling band: from each prediction (on the identity line) up to its KL ceiling.
    known = np.isfinite(ceiling)
    segments = [[(xi, xi), (xi, ci)] for xi, ci in zip(x[known], ceiling[known])]
    ax_a.add_collection(LineCollection(segments, colors="0.8", linewidths=1.6, alpha=0.45, zorder=0,
                                       rasterized=rasterized))
    # the ceiling's dash on top of the markers: where a model sits at its ceiling both show
    ax_a.scatter(x[known], ceiling[known], marker="_", s=size * 1.2, color="0.45", linewidths=0.8, alpha=0.7,
                 zorder=4.2, rasterized=rasterized)
    _interval_whiskers(ax_a, x, y, x_low, x_high, y_low, y_high, rasterized)
    _interval_whiskers(ax_b, p_ref, gap, p_low, p_high, gap_low, gap_high, rasterized)
    group_of = np.array([keys.index(k) for k in zip(table["track"].tolist(), table["algorithm"].tolist())])
    logit_scale = lambda v: np.log(v) - np.log1p(-v)  # noqa: E731  (panel (a): logit axes)
    beside_a = side_by_side(x, y, group_of, scale=logit_scale, yscale=logit_scale)
    beside_b = side_by_side(p_ref, gap, group_of)
    for key in keys:
      mask = (table["track"] == key[0]) & (table["algorithm"] == key[1])
      # A track with few runs (the transformers) is drawn larger and on top of a dense one
      # (thousands of exact MoG cells), so it stays visible.
      sparse = int((table["track"] == key[0]).sum()) <= SPARSE_TRACK
      group_size, group_z = (max(size, 18.0), 3.5) if sparse else (size, 3.0)
      for ax, xs, ys, offset in ((ax_a, x, y, beside_a), (ax_b, p_ref, gap, beside_b)):
        for shift in np.unique(offset[mask]):  # markers of several groups on one point: side by side
          at = mask & (offset == shift)
          moved = ax.transData + ScaledTranslation(shift / 72.0, 0.0, fig.dpi_scale_trans)
          filled = at & ~exact
          if filled.any():
            ax.scatter(xs[filled], ys[filled], c=colour_value[filled], cmap=cmap, norm=norm,
                       marker=marker_of[key], s=group_size, edgecolors="0.15", linewidths=0.4,
                       zorder=group_z, rasterized=rasterized, transform=moved)
          hollow = at & exact
          if hollow.any():
            ax.scatter(xs[hollow], ys[hollow], facecolors="none", edgecolors="0.1", marker=marker_of[key],
                       s=group_size, linewidths=0.6, zorder=group_z, rasterized=rasterized, transform=moved)
    if budget.any():  # not converged: drawn, not scored; on top (a cross covers little of a marker)
      ax_a.scatter(x_budget, y_budget, marker="x", s=size, color=CROSS_COLOUR, linewidths=0.5, alpha=0.6,
                   zorder=4.1, rasterized=rasterized)  # light: the markers under them show through
    bad = table["over_ceiling"]
    if bad.any():  # impossible points, ringed in red so nobody misses them
      ax_a.scatter(x[bad], y[bad], facecolors="none", edgecolors="red", s=size * 4, linewidths=1.0,
                   zorder=4)
    ax_a.set_xlim(lo_lim, hi_lim)
    ax_a.set_ylim(lo_lim, hi_lim)
    # "1-10^-k" labels are wide: fewer of them along x than along y.
    for axis, max_ticks in ((ax_a.xaxis, 4), (ax_a.yaxis, 7)):
      ticks, labels = probability_ticks(lo_lim, hi_lim, max_ticks)
      axis.set_major_locator(FixedLocator(ticks))
      axis.set_major_formatter(FixedFormatter(labels))
      axis.set_minor_locator(NullLocator())
    ax_a.set_xlabel(r"law $\sigma(\mathrm{logit}\,p_{ref} + \Delta/\beta)$")
    ax_a.set_ylabel(r"measured aligned mass $\pi(A)$")
    ax_a.set_title("(a) trained against the law", loc="left")

    # (b) the decomposition runs: as they are against the best in class.
    ax_g.set_xscale("logit")
    ax_g.set_yscale("logit")
    ax_g.set_title("(b) against the best in class", loc="left")
    ax_g.set_xlabel(r"best in class $\pi_{class}(A)$")
    ax_g.set_ylabel(r"as is $\pi(A)$")
    if pairs is not None:
      gx, gy = clip(pairs["best"]), clip(pairs["as_is"])
      g_lo, g_hi = padded_logit_limits(min(float(np.nanmin(np.concatenate([gx, gy]))), 0.4),
                                       max(float(np.nanmax(np.concatenate([gx, gy]))), 0.6))
      ax_g.plot([g_lo, g_hi], [g_lo, g_hi], color="0.2", lw=0.8, ls="--", zorder=1)
      _interval_whiskers(ax_g, gx, gy, clip(pairs["best_low"]), clip(pairs["best_high"]),
                         clip(pairs["as_is_low"]), clip(pairs["as_is_high"]), False)
      gap_keys = sorted(set(zip(pairs["track"].tolist(), pairs["algorithm"].tolist())))
      for key in gap_keys:
        mask = (pairs["track"] == key[0]) & (pairs["algorithm"] == key[1])
        marker = marker_of.get(key, MARKERS[(len(keys) + gap_keys.index(key)) % len(MARKERS)])
        for pipeline in ("K-A", "A", "K-A(teacher-ref)"):
          m = mask & (pairs["pipeline"] == pipeline) & pairs["converged"]
          if m.any():
            ax_g.scatter(gx[m], gy[m], marker=marker, s=18.0, zorder=3,
                         color=PIPELINE_COLORS.get(pipeline, "0.5"), edgecolors="0.15", linewidths=0.4)
      loose = ~pairs["converged"]   # either level stopped by its budget: drawn, not converged,
      if loose.any():               # on top of the coloured markers it would otherwise hide under
        ax_g.scatter(gx[loose], gy[loose], marker="x", s=18.0, color=CROSS_COLOUR, linewidths=0.6, zorder=4.1)
      ax_g.set_xlim(g_lo, g_hi)
      ax_g.set_ylim(g_lo, g_hi)
      for axis in (ax_g.xaxis, ax_g.yaxis):
        ticks, labels = probability_ticks(g_lo, g_hi, 4)
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_major_formatter(FixedFormatter(labels))
        axis.set_minor_locator(NullLocator())
    else:
      ax_g.text(0.5, 0.5, "no decomposition run\namong the inputs", ha="center", va="center",
                transform=ax_g.transAxes, color="0.4")
      ax_g.set_xticks([])
      ax_g.set_yticks([])

    # (c) the trap boundary in the (p_ref, Delta/beta) plane.
    ax_b.set_xscale("log")
    finite_p = p_ref[np.isfinite(p_ref) & np.isfinite(gap)]
    p_min = min(float(np.nanmin(finite_p)) if finite_p.size else 1e-3, 1e-3) / 3.0
    p_max = 0.9
    p_grid = np.logspace(math.log10(p_min), math.log10(p_max), 400)
    boundary = np.log1p(-p_grid) - np.log(p_grid)
    finite_gap = np.concatenate([gap[np.isfinite(gap)], gap_low[np.isfinite(gap_low)],
                                 gap_high[np.isfinite(gap_high)], boundary])
    g_low = min(float(finite_gap.min()), 0.0)
    g_high = float(finite_gap.max())
    symlog = g_high > 100  # reward gaps over decades: linear near 0, logarithmic beyond
    if symlog:  # margins in the axis' own units: a factor above, a linear step below
      g_low, g_high = g_low - 0.5, g_high * 1.6
    else:
      span = g_high - g_low
      g_low, g_high = g_low - 0.05 * span, g_high + 0.05 * span
    ax_b.fill_between(p_grid, np.full_like(p_grid, g_low), boundary, color="#D55E00", alpha=0.12,
                      lw=0, zorder=0)
    ax_b.plot(p_grid, boundary, color="#D55E00", lw=1.0, zorder=4)  # on top of dense runs
    ax_b.axhline(0.0, color=ZERO_GAP_COLOUR, lw=0.5, zorder=0)
    ax_b.set_xlim(p_min, p_max)
    if symlog:
      ax_b.set_yscale("symlog", linthresh=1.0)
    ax_b.set_ylim(g_low, g_high)
    ax_b.set_xlabel(r"reference recall $p_{ref} = \pi_{ref}(A)$")
    ax_b.set_ylabel(r"reward gap $\Delta/\beta$")
    ax_b.set_title("(c) the trap boundary", loc="left")

    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    bar = fig.colorbar(sm, ax=[ax_a, ax_g, ax_b], location="right", shrink=0.9, pad=0.01,
                       extend="min" if (colour_value[~exact] < c_low).any() else "neither")
    bar.set_label("expected target samples\n" + r"$\log_{10}\,n\,q$")

    def group_handle(key):
      only_exact = bool(exact[(table["track"] == key[0]) & (table["algorithm"] == key[1])].all())
      return Line2D([], [], ls="none", marker=marker_of[key], markerfacecolor="none" if only_exact else "0.6",
                    markeredgecolor="0.1", markersize=4.5, label=f"{key[0]} {key[1]}")

    handles = [group_handle(k) for k in keys]
    handles += [
        Line2D([], [], ls="none", marker="o", markerfacecolor="none", markeredgecolor="0.1",
               markersize=4.5, label="exact (no samples)"),
        Line2D([], [], ls="none", marker="x", color=CROSS_COLOUR, markersize=4.5, label="not converged"),
    ]
    if pairs is not None:
      handles += [Line2D([], [], ls="none", marker="o", markerfacecolor=PIPELINE_COLORS[p],
                         markeredgecolor="0.15", markersize=4.5, label=f"(b) {p}")
                  for p in ("K-A", "A", "K-A(teacher-ref)")]
    handles += [
        Line2D([], [], color="0.2", ls="--", lw=0.8, label="measured = predicted"),
        (Line2D([], [], color="0.8", lw=1.6, alpha=0.45),
         Line2D([], [], ls="none", marker="_", color="0.45", markersize=6)),
        Line2D([], [], color="#D55E00", lw=1.0, label=r"$\Delta/\beta = \log\frac{1-p}{p}$"),
        Patch(facecolor="#D55E00", alpha=0.12, label="trap: optimum < 1/2"),
        Line2D([], [], color=ZERO_GAP_COLOUR, lw=0.5, label=r"(c) $\Delta/\beta = 0$"),
    ]
    labels = [h.get_label() for h in handles[:-4]] + ["KL ceiling"] \
        + [h.get_label() for h in handles[-3:]]
    fig.legend(handles, labels, handler_map={tuple: HandlerTuple(ndivide=None)}, loc="outside lower center",
               ncol=min(5, len(handles)), handletextpad=0.3, columnspacing=1.0)

  data = {
      "predicted_mass": table["predicted_mass"], "predicted_mass_low": table["predicted_mass_low"],
      "predicted_mass_high": table["predicted_mass_high"], "aligned_mass": table["aligned_mass"],
      "aligned_mass_low": table["aligned_mass_low"], "aligned_mass_high": table["aligned_mass_high"],
      "kl_ceiling": table["kl_ceiling"], "kl": table["kl"],
      "reference_recall": table["reference_recall"], "reference_recall_low": table["reference_recall_low"],
      "reference_recall_high": table["reference_recall_high"],
      "delta_over_beta": table["delta_over_beta"], "delta_over_beta_low": table["delta_over_beta_low"],
      "delta_over_beta_high": table["delta_over_beta_high"],
      "expected_target_samples": table["expected_target_samples"], "n_samples": table["n_samples"],
      "log10_expected_target_samples": colour_value, "logit_measured": table["logit_measured"],
      "logit_predicted": table["logit_predicted"], "verdict": table["verdict"],
      "over_ceiling": table["over_ceiling"], "track": table["track"], "algorithm": table["algorithm"],
      "pipeline": table["pipeline"], "setting": table["setting"], "seed": table["seed"],
      "floor": np.asarray(floor), "boundary_p": p_grid, "boundary_delta_over_beta": boundary,
      "logit_tolerance": np.asarray(LOGIT_TOLERANCE),
      "budget_predicted_mass": full["predicted_mass"][budget], "budget_aligned_mass": full["aligned_mass"][budget],
  }
  if pairs is not None:
    data.update({f"gap_{k}": v for k, v in pairs.items()})
  return fig, data


# ----------------------------------------------------------------------------- tidy output

CSV_COLUMNS = (("source",) + schema.ID_COLUMNS + (
    "reference_recall", "reference_recall_low", "reference_recall_high",
    "delta_over_beta", "delta_over_beta_low", "delta_over_beta_high",
    "predicted_mass", "predicted_mass_low", "predicted_mass_high",
    "aligned_mass", "aligned_mass_low", "aligned_mass_high",
    "n_samples", "sampler_recall", "expected_target_samples", "p_no_target_sample",
    "kl", "kl_ceiling", "estimator",
    "logit_predicted", "logit_measured", "logit_gap", "logit_separation", "clipped", "verdict", "in_trap", "over_ceiling",
    "plateau", "role", "scored"))


def tidy_columns(table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The points as equal-length columns for ``collapse.csv`` (one row per aligned model)."""
  return {c: table[c] for c in CSV_COLUMNS}
