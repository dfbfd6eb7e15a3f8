"""The gap between the law and a trained model, split into its causes (theory.md item 13).

Input: rows with a ``level`` column (any track; :mod:`recall_theory.lm.gap`,
:mod:`recall_theory.mog.gap`), one row per (group, pipeline, algorithm, seed, level), with the
aligned mass of that level and its interval:

=====================  ============================================================
level                  aligned mass of ...
=====================  ============================================================
``law``                the population optimum (the Gibbs tilt of the reference)
``best_in_class``      the policy's model class fitted to the tilt (its best fit)
``covering_sampler``   the algorithm trained to plateau on draws that cover the target
``as_is``              the algorithm as it is, to plateau
=====================  ============================================================

Terms, per seed, in logit units (``l(m) = log(m / (1 - m))``), each positive when it costs
target mass:

* ``learning_trap`` (K-A only) = ``l(law of A) - l(law of K-A)``: the reference's recall;
* ``representation`` = ``l(law) - l(best_in_class)``;
* ``optimisation`` = ``l(best_in_class) - l(covering_sampler)``;
* ``sampling`` = ``l(covering_sampler) - l(as_is)``;
* ``total`` = ``l(law) - l(as_is)`` (the sum of the three), and for K-A ``total_vs_A`` =
  ``l(law of A) - l(as_is of K-A)`` = learning trap + total.

Measured masses are clipped to ``[1/(2n), 1 - 1/(2n)]`` (n the evaluation samples; exact
masses to ``[1e-300, 1 - 1e-16]``) before the logit, so a level with no target sample
among its evaluation draws has a finite logit at its resolution and is flagged
(``clipped``). Each term's mean over seeds carries a paired Student-t 95% interval, the
counts of seeds on each side and the exact two-sided sign-test p; a term whose interval
contains 0 or whose mean is below :data:`RESOLUTION` is a tie.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

from recall_theory import stats
from recall_theory.stats import sign_test_p  # noqa: F401  (re-exported: part of this module's interface)

LEVELS = ("law", "best_in_class", "covering_sampler", "as_is")
TERMS = ("learning_trap", "representation", "optimisation", "sampling")
TERM_LABELS = {"learning_trap": "learning trap", "representation": "representation",
               "optimisation": "optimisation", "sampling": "sampling"}
# Terms (logit units) smaller than this are ties: the plateau rule's mass tolerance.
RESOLUTION = 0.1


def clipped_logit(mass, n_eval) -> tuple[float, bool]:
  """(logit of the mass clipped to its resolution, whether it was clipped)."""
  m = float(mass)
  n = float(n_eval) if n_eval and float(n_eval) > 0 else 0.0
  lo, hi = (0.5 / n, 1.0 - 0.5 / n) if n > 0 else (1e-300, 1.0 - 1e-16)
  clipped = not lo <= m <= hi
  m = min(max(m, lo), hi)
  return math.log(m) - math.log1p(-m), clipped


def _key(row) -> tuple:
  return (row["track"], row.get("setting", ""), row["pipeline"], row["algorithm"])


def per_seed_terms(rows: Iterable[dict]) -> list[dict]:
  """One record per (track, setting, pipeline, algorithm, seed): the four logits and the terms.

  The learning trap of K-A pairs it with the A row of the same track, setting, algorithm
  and seed (nan when there is none).
  """
  levels: dict[tuple, dict] = defaultdict(dict)
  for row in rows:
    levels[_key(row) + (int(row["seed"]),)][row["level"]] = row
  out = []
  for key, by_level in sorted(levels.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
    if any(level not in by_level for level in LEVELS):
      continue
    rec = {"track": key[0], "setting": key[1], "pipeline": key[2], "algorithm": key[3],
           "seed": key[4], "clipped": []}
    for level in LEVELS:
      value, clipped = clipped_logit(by_level[level]["aligned_mass"], by_level[level].get("n_eval", 0))
      rec[f"logit_{level}"] = value
      rec[f"mass_{level}"] = float(by_level[level]["aligned_mass"])
      rec[f"plateau_{level}"] = by_level[level].get("plateau", "")
      if clipped:
        rec["clipped"].append(level)
    rec["representation"] = rec["logit_law"] - rec["logit_best_in_class"]
    rec["optimisation"] = rec["logit_best_in_class"] - rec["logit_covering_sampler"]
    rec["sampling"] = rec["logit_covering_sampler"] - rec["logit_as_is"]
    rec["total"] = rec["logit_law"] - rec["logit_as_is"]
    out.append(rec)
  by_seed = {(r["track"], r["setting"], r["pipeline"], r["algorithm"], r["seed"]): r for r in out}
  for rec in out:
    a = by_seed.get((rec["track"], rec["setting"], "A", rec["algorithm"], rec["seed"]))
    if rec["pipeline"] == "K-A" and a is not None:
      rec["learning_trap"] = a["logit_law"] - rec["logit_law"]
      rec["total_vs_A"] = a["logit_law"] - rec["logit_as_is"]
    else:
      rec["learning_trap"] = 0.0 if rec["pipeline"] != "K-A" else math.nan
      rec["total_vs_A"] = math.nan
  return out


def summarise(values: Sequence[float]) -> dict:
  """Mean, paired t 95% interval, sign counts, sign-test p and verdict of per-seed values."""
  v = np.asarray([x for x in values if np.isfinite(x)], float)
  if v.size == 0:
    return {"n": 0, "mean": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n_positive": 0,
            "n_negative": 0, "n_tied": 0, "sign_p": math.nan, "verdict": "n/a"}
  cmp = stats.paired_comparison(v, np.zeros_like(v), resolution=RESOLUTION)
  p = cmp["sign_p"]
  verdict = {"ahead": "costs mass", "behind": "adds mass", "tie": "tie"}[cmp["verdict"]]
  if v.size < 2:  # no interval from one seed: no verdict either
    verdict = "too few seeds"
  return {"n": int(v.size), "mean": cmp["mean_diff"], "ci_low": cmp["ci_low"], "ci_high": cmp["ci_high"],
          "n_positive": cmp["n_positive"], "n_negative": cmp["n_negative"], "n_tied": cmp["n_tied"],
          "sign_p": p, "verdict": verdict}


def dominant_term(recs: Sequence[dict], entry: dict, terms: Sequence[str]) -> dict:
  """The term that costs the most mass, if it beats the runner-up.

  Among the terms that cost mass, the largest mean leads; it is *the* dominant term only
  when its per-seed lead over the next-largest term is itself resolved (paired t interval
  above 0 and mean above :data:`RESOLUTION`, as for any term). Otherwise the two are a tie
  and both are named (``dominant = "tie"``, ``dominant_tied = (first, second)``), with the
  lead's summary in ``dominant_margin``.
  """
  costing = sorted((t for t in terms if entry[t]["verdict"] == "costs mass"),
                   key=lambda t: entry[t]["mean"], reverse=True)
  if not costing:
    return {"dominant": "none", "dominant_tied": (), "dominant_margin": summarise([])}
  if len(costing) == 1:
    return {"dominant": costing[0], "dominant_tied": (), "dominant_margin": summarise([])}
  first, second = costing[:2]
  margin = summarise([r[first] - r[second] for r in recs])
  if margin["verdict"] == "costs mass":
    return {"dominant": first, "dominant_tied": (), "dominant_margin": margin}
  return {"dominant": "tie", "dominant_tied": (first, second), "dominant_margin": margin}


def dominant_label(entry: dict) -> str:
  """``optimisation``, ``none (every term a tie)`` or ``optimisation and learning trap (tied:
  the first leads by 0.06 [-0.01, 0.12] (2/5 seeds > 0.1, sign p = 0.5))``."""
  if entry["dominant"] == "tie":
    first, second = (TERM_LABELS[t] for t in entry["dominant_tied"])
    lead = describe_term(entry["dominant_margin"]).removeprefix("tie: ")
    return f"{first} and {second} (tied: the first leads by {lead})"
  return TERM_LABELS.get(entry["dominant"], "none (every term a tie)")


def decompose(rows: Iterable[dict]) -> list[dict]:
  """One record per (track, setting, pipeline, algorithm): every term's :func:`summarise`,
  the mean masses of the four levels, and the dominant term (:func:`dominant_term`)."""
  seeds = per_seed_terms(rows)
  groups: dict[tuple, list[dict]] = defaultdict(list)
  for rec in seeds:
    groups[(rec["track"], rec["setting"], rec["pipeline"], rec["algorithm"])].append(rec)
  out = []
  for key, recs in groups.items():
    entry = {"track": key[0], "setting": key[1], "pipeline": key[2], "algorithm": key[3],
             "n_seeds": len(recs), "clipped": sorted({lv for r in recs for lv in r["clipped"]}),
             "clipped_seeds": {lv: sum(lv in r["clipped"] for r in recs)
                               for lv in sorted({lv for r in recs for lv in r["clipped"]})}}
    for level in LEVELS:
      entry[f"mass_{level}"] = float(np.mean([r[f"mass_{level}"] for r in recs]))
      entry[f"logit_{level}"] = float(np.mean([r[f"logit_{level}"] for r in recs]))
      # the mass at the mean logit: the scale the terms are differences on (an arithmetic
      # mean of masses spanning decades would not order like the terms)
      entry[f"mass_at_mean_logit_{level}"] = float(1.0 / (1.0 + math.exp(-entry[f"logit_{level}"])))
      states = [r[f"plateau_{level}"] for r in recs]
      entry[f"plateau_{level}"] = f"{sum(s in ('reached', 'exact') for s in states)}/{len(states)}"
    terms = TERMS if key[2] == "K-A" else TERMS[1:]
    for term in TERMS + ("total", "total_vs_A"):
      entry[term] = summarise([r[term] for r in recs]) if term in terms + ("total", "total_vs_A") \
          else summarise([])
    entry.update(dominant_term(recs, entry, terms))
    out.append(entry)
  order = {p: i for i, p in enumerate(("K-A", "A", "K-A(teacher-ref)"))}
  return sorted(out, key=lambda e: (e["track"], e["setting"], e["algorithm"],
                                    order.get(e["pipeline"], 9), e["pipeline"]))


def _fmt(x: float) -> str:
  return f"{x:.2f}" if abs(x) < 100 else f"{x:.3g}"


def describe_term(summary: dict) -> str:
  """``2.31 [1.90, 2.72] (5/5 seeds, sign p = 0.062)`` or ``tie (...)``."""
  if summary["n"] == 0:
    return "n/a"
  if summary["verdict"] == "too few seeds":
    return f"{_fmt(summary['mean'])} (one seed: too few seeds to call)"
  sign = (f"{summary['n_positive']}/{summary['n']} seeds > {RESOLUTION:g}, "
          + stats.sign_test_note(summary["n_positive"], summary["n_negative"]).replace(
              "sign test p", "sign p"))
  body = f"{_fmt(summary['mean'])} [{_fmt(summary['ci_low'])}, {_fmt(summary['ci_high'])}]"
  return f"{body} ({sign})" if summary["verdict"] != "tie" else f"tie: {body} ({sign})"


TABLE_COLUMNS = ("track", "setting", "pipeline", "algorithm", "n_seeds",
                 "mass_law", "mass_best_in_class", "mass_covering_sampler", "mass_as_is",
                 "plateau_best_in_class", "plateau_covering_sampler", "plateau_as_is")


def table_rows(entries: Sequence[dict]) -> list[dict]:
  """Flat rows for ``gap_decomposition.csv``: masses, plateau counts and every term's summary."""
  out = []
  for e in entries:
    row = {k: e[k] for k in TABLE_COLUMNS}
    for term in TERMS + ("total", "total_vs_A"):
      s = e[term]
      for field in ("mean", "ci_low", "ci_high", "n_positive", "n_negative", "sign_p", "verdict"):
        row[f"{term}_{field}"] = s[field]
    row["dominant"] = e["dominant"] if e["dominant"] != "tie" else "tie:" + "+".join(e["dominant_tied"])
    row["clipped_levels"] = ";".join(e["clipped"])
    out.append(row)
  return out


def markdown_table(entries: Sequence[dict]) -> str:
  """The decomposition as a markdown table (generated numbers only)."""
  head = ("| track | setting | pipeline | algorithm | seeds | law | best in class | covering | as is | "
          "learning trap | representation | optimisation | sampling | dominant |")
  lines = [head, "|" + "---|" * 14]
  for e in entries:
    masses = " | ".join(f"{e[f'mass_{lv}']:.3g}" for lv in LEVELS)
    terms = " | ".join(describe_term(e[t]) if t != "learning_trap" or e["pipeline"] == "K-A" else "--"
                       for t in TERMS)
    lines.append(f"| {e['track']} | {e['setting'] or '--'} | {e['pipeline']} | {e['algorithm']} | "
                 f"{e['n_seeds']} | {masses} | {terms} | {dominant_label(e)} |")
  return "\n".join(lines)
