"""The decomposition's outputs: the level table, the term table, the figure and its caption.

:func:`write_gap` takes the level rows of a track (:mod:`recall_theory.lm.gap` or
:mod:`recall_theory.mog.gap`) and writes into a folder:

* ``gap_levels.csv``: one row per (setting, pipeline, algorithm, seed, level), with the
  level's aligned mass and interval and its training columns (steps, plateau);
* ``gap_decomposition.csv``: per (setting, pipeline, algorithm) every term's mean over seeds,
  its paired t 95% interval, the sign counts, the sign-test p and the verdict, and the
  dominant term;
* ``gap.{pdf,png}`` + ``gap_data.npz``: the stacked bars (:mod:`recall_theory.plotting.decomposition`);
* ``gap_caption.md``: the caption and the verdicts, every number generated from the rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from recall_theory import decomposition as dec
from recall_theory import io

LEVEL_CSV = "gap_levels.csv"
TERM_CSV = "gap_decomposition.csv"
CAPTION = "gap_caption.md"
ALGORITHM_NAMES = {"dpo": "DPO", "rloo": "RLOO", "pg": "policy gradient"}


def _levels_columns(rows: Sequence[dict]) -> dict[str, np.ndarray]:
  keys: list[str] = []
  for row in rows:
    for k in row:
      if k not in keys:
        keys.append(k)
  return {k: np.asarray([row.get(k, np.nan) for row in rows], dtype=object) for k in keys}


def _setting_phrase(setting: str) -> str:
  parts = [p for p in setting.split(";") if p and not p.startswith("target=")]
  return ", ".join(parts).replace("=", " ") if parts else ""


def verdict_sentences(entries: Sequence[dict]) -> list[str]:
  """One generated sentence per (setting, algorithm, pipeline)."""
  lines = []
  for e in entries:
    alg = ALGORITHM_NAMES.get(e["algorithm"], e["algorithm"])
    where = _setting_phrase(e["setting"])
    head = f"{e['pipeline']}, {alg}" + (f" ({where})" if where else "")
    m = {lv: e[f"mass_at_mean_logit_{lv}"] for lv in dec.LEVELS}
    masses = (f"law {m['law']:.3g}, best in class {m['best_in_class']:.3g}, covering sampler "
              f"{m['covering_sampler']:.3g}, as is {m['as_is']:.3g} (masses at the mean logit over "
              f"{e['n_seeds']} seeds)")
    if e["pipeline"] == "K-A":
      total = f"{dec.describe_term(e['total_vs_A'])} logit units below A's law"
      terms = ["learning trap " + dec.describe_term(e["learning_trap"])]
    else:
      total = f"{dec.describe_term(e['total'])} logit units below its own law"
      terms = []
    terms += [f"{dec.TERM_LABELS[t]} {dec.describe_term(e[t])}" for t in dec.TERMS[1:]]
    dominant = dec.dominant_label(e)
    plateau = (f"plateau reached: best in class {e['plateau_best_in_class']}, covering "
               f"{e['plateau_covering_sampler']}, as is {e['plateau_as_is']}")
    failed = ""
    if e.get("clipped_seeds"):
      which = ", ".join(f"{lv.replace('_', ' ')} in {k}/{e['n_seeds']} seeds"
                        for lv, k in e["clipped_seeds"].items())
      failed = (" All or none of the evaluation draws in the target (mass clipped to half a "
                f"sample) at: {which}; the terms on either side of such a level measure that "
                "level's failure, not a cause of the shortfall.")
    lines.append(f"- **{head}**: {masses}. As is, {total}; {'; '.join(terms)}. "
                 f"Largest resolved term: {dominant}. {plateau}.{failed}")
  return lines


def dominant_summary(entries: Sequence[dict]) -> list[str]:
  """Per algorithm (and setting): which term dominates K-A's shortfall, one line each."""
  out = []
  for e in entries:
    if e["pipeline"] != "K-A":
      continue
    alg = ALGORITHM_NAMES.get(e["algorithm"], e["algorithm"])
    where = _setting_phrase(e["setting"])
    name = dec.dominant_label(e)
    if e["dominant"] in dec.TERMS:
      detail = f": {dec.describe_term(e[e['dominant']])} of {dec.describe_term(e['total_vs_A'])}"
    elif e["dominant"] == "tie":
      first, second = e["dominant_tied"]
      detail = (f"; {dec.TERM_LABELS[first]} {dec.describe_term(e[first])}, {dec.TERM_LABELS[second]} "
                f"{dec.describe_term(e[second])}, of {dec.describe_term(e['total_vs_A'])}")
    else:
      detail = ""
    out.append(f"- {e['track']} {alg}{' (' + where + ')' if where else ''}: {name}{detail}")
  return out


def caption(entries: Sequence[dict], *, track: str, description: str, elapsed: float | None,
            options: str) -> str:
  """The generated caption of ``gap.png`` with the per-group verdicts."""
  seeds = sorted({e["n_seeds"] for e in entries})
  head = (f"**Where the shortfall comes from ({track}).** Stacked bars: the terms of each trained "
          f"pipeline's shortfall, in logit units, means over {', '.join(map(str, seeds))} seeds "
          "(learning trap = logit law(A) - logit law(K-A), K-A only; representation = law - best "
          "in class; optimisation = best in class - covering sampler; sampling = covering sampler "
          "- as is; positive terms cost target mass). Terms that cost mass stack above 0 and those that "
          "add mass below it, so a bar's top is not its total: the black diamond is, with its paired t "
          "95% interval (K-A: against A's law; A and K-A(teacher-ref): against their own law). "
          f"{description} Every level is trained to its plateau (recall_theory.plateau) or its "
          "budget; the counts say how many seeds reached the plateau. A term whose interval "
          f"contains 0 or whose mean is below {dec.RESOLUTION:g} logit is a tie; sign p is the "
          "exact two-sided sign test over the seeds whose term lies beyond that resolution (the "
          "counts say how many lie above it). The largest resolved term is named only where its "
          "per-seed lead over the next one is resolved the same way; otherwise both are named, "
          "tied. Segments: filled, a resolved term; hollow (outlined in the term's colour), a tie; "
          "hatched //// , a term next to a level that fell short of its plateau in at least one seed "
          "(the verdicts give the counts); hatched xxxx, a term next to a level whose evaluation draws "
          "were all or none in the target in at least one seed. Segments too thin to read carry their "
          "value beside the bar.")
  clipped = sorted({lv for e in entries for lv in e["clipped"]})
  failed = [f"{e['pipeline']}, {ALGORITHM_NAMES.get(e['algorithm'], e['algorithm'])}"
            + (f" ({_setting_phrase(e['setting'])})" if _setting_phrase(e["setting"]) else "")
            + f": {', '.join(lv.replace('_', ' ') for lv in e['clipped'])}"
            for e in entries if e["clipped"]]
  note = (f" Levels with no target sample (or only target samples) among their evaluation draws were "
          f"clipped to half a sample before the logit: {', '.join(clipped)}; the terms next to them "
          f"(hatched xxxx) measure that level's failure, not a cause of the shortfall -- "
          f"{'; '.join(failed)}." if clipped else "")
  return "\n\n".join([head + note, "**Verdicts.**", "\n".join(verdict_sentences(entries)),
                      "**Dominant term of K-A's shortfall.**", "\n".join(dominant_summary(entries)),
                      (f"Wall time {elapsed:.0f} s. " if elapsed is not None else "")
                      + f"Options: {options}."]) + "\n"


_TEXT_COLUMNS = ("track", "pipeline", "algorithm", "setting", "level", "plateau")
_NUMBER_COLUMNS = ("seed", "aligned_mass", "n_eval")


def read_levels(path: Path) -> list[dict]:
  """The rows of a ``gap_levels.csv`` as :func:`write_gap` takes them (numbers parsed, empty
  cells NaN). Raises InputError naming the file when it is not a level table."""
  import csv
  import math

  from recall_theory.errors import InputError
  try:
    with open(path, newline="", encoding="utf-8") as fh:
      table = list(csv.DictReader(fh))
  except (OSError, UnicodeDecodeError) as err:
    raise InputError(f"--from-levels: cannot read {str(path)!r} ({err})") from err
  need = {"track", "pipeline", "algorithm", "seed", "level", "aligned_mass", "n_eval", "plateau"}
  if not table or not need <= set(table[0]):
    raise InputError(f"--from-levels: {str(path)!r} is not a {LEVEL_CSV} (it needs the columns "
                     f"{', '.join(sorted(need))})")
  rows = []
  for line, raw in enumerate(table, start=2):
    if None in raw or None in raw.values():
      raise InputError(f"--from-levels: {str(path)!r} line {line} does not have the header's fields")
    row = {}
    for key, text in raw.items():
      if key in _TEXT_COLUMNS:
        row[key] = text
      elif text == "":
        row[key] = math.nan
      else:
        try:
          row[key] = int(text)
        except ValueError:
          try:
            row[key] = float(text)
          except ValueError as err:
            if key in _NUMBER_COLUMNS:
              raise InputError(f"--from-levels: {str(path)!r} line {line}: {key} = {text!r} is "
                               "not a number") from err
            row[key] = text          # a track's own id column (e.g. the MoG student)
    rows.append(row)
  return rows


def write_gap(out: Path, rows: Sequence[dict], *, track: str, description: str, elapsed: float | None,
              options: str, levels_text: str | None = None) -> list[Path]:
  """Write the level table, the term table, the figure and the caption into ``out``.

  ``levels_text``: the level table as an earlier run wrote it (``--from-levels``), copied as
  it is rather than rewritten from the parsed rows; ``elapsed`` is then None and
  ``description`` says which run the levels come from.
  """
  from recall_theory.plotting.decomposition import decomposition_figure
  from recall_theory.plotting.style import save_figure

  entries = dec.decompose(rows)
  paths = [io.write_text(out / LEVEL_CSV, levels_text) if levels_text is not None
           else io.write_columns_csv(out / LEVEL_CSV, _levels_columns(rows))]
  table = dec.table_rows(entries)
  paths.append(io.write_columns_csv(out / TERM_CSV, _levels_columns(table)))
  fig, data = decomposition_figure(entries)
  paths += save_figure(fig, out, "gap", data=data)
  text = caption(entries, track=track, description=description, elapsed=elapsed, options=options)
  paths.append(io.write_text(out / CAPTION, text))
  return paths
