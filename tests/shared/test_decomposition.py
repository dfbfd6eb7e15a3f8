"""The gap decomposition: logits, terms, the learning trap's pairing, sign tests, verdicts."""

import math

import numpy as np
import pytest

from recall_theory import decomposition as dec


def _logit(m):
  return math.log(m) - math.log1p(-m)


def _rows(seed, law, best, cover, as_is, *, pipeline="K-A", algorithm="dpo", n_eval=1000, setting="s"):
  out = []
  for level, mass in zip(dec.LEVELS, (law, best, cover, as_is)):
    out.append({"track": "lm", "setting": setting, "pipeline": pipeline, "algorithm": algorithm,
                "seed": seed, "level": level, "aligned_mass": mass,
                "n_eval": 0 if level == "law" else n_eval, "plateau": "exact" if level == "law" else "reached"})
  return out


def test_sign_test_p_exact_values():
  assert dec.sign_test_p(5, 0) == pytest.approx(2 / 32)
  assert dec.sign_test_p(4, 1) == pytest.approx(2 * 6 / 32)
  assert dec.sign_test_p(3, 3) == 1.0
  assert dec.sign_test_p(0, 0) == 1.0
  assert dec.sign_test_p(10, 0) == pytest.approx(2 / 1024)


def test_clipped_logit_at_half_a_sample():
  value, clipped = dec.clipped_logit(0.0, 1000)
  assert clipped and value == pytest.approx(_logit(0.0005))
  value, clipped = dec.clipped_logit(0.25, 1000)
  assert not clipped and value == pytest.approx(_logit(0.25))
  value, clipped = dec.clipped_logit(1e-30, 0)      # exact masses keep their logit
  assert not clipped and value == pytest.approx(_logit(1e-30))


def test_terms_telescope_and_the_trap_pairs_with_A():
  rows = []
  for seed in range(3):
    rows += _rows(seed, 0.3, 0.2, 0.1, 0.01)
    rows += _rows(seed, 0.8, 0.7, 0.6, 0.5, pipeline="A")
  recs = {(r["pipeline"], r["seed"]): r for r in dec.per_seed_terms(rows)}
  ka = recs[("K-A", 0)]
  assert ka["representation"] == pytest.approx(_logit(0.3) - _logit(0.2))
  assert ka["optimisation"] == pytest.approx(_logit(0.2) - _logit(0.1))
  assert ka["sampling"] == pytest.approx(_logit(0.1) - _logit(0.01))
  assert ka["learning_trap"] == pytest.approx(_logit(0.8) - _logit(0.3))
  assert ka["total_vs_A"] == pytest.approx(ka["learning_trap"] + ka["representation"]
                                           + ka["optimisation"] + ka["sampling"])
  assert recs[("A", 1)]["learning_trap"] == 0.0


def test_decompose_names_the_dominant_term_and_calls_ties():
  rows = []
  rng = np.random.default_rng(0)
  for seed in range(5):
    # sampling costs ~3 logits on every seed; representation is noise around 0
    noise = rng.normal(scale=0.05)
    rows += _rows(seed, 0.3, 0.3 / (1 + noise), 0.28, 0.02)
    rows += _rows(seed, 0.8, 0.8, 0.8, 0.8, pipeline="A")
  entries = {e["pipeline"]: e for e in dec.decompose(rows)}
  ka = entries["K-A"]
  assert ka["n_seeds"] == 5
  assert ka["dominant"] == "sampling"
  assert ka["sampling"]["verdict"] == "costs mass"
  assert ka["sampling"]["n_positive"] == 5 and ka["sampling"]["sign_p"] == pytest.approx(2 / 32)
  assert ka["representation"]["verdict"] == "tie"
  assert entries["A"]["dominant"] == "none"
  assert entries["A"]["learning_trap"]["n"] == 0     # no trap term outside K-A


def test_incomplete_groups_are_left_out():
  rows = _rows(0, 0.3, 0.2, 0.1, 0.05)[:-1]          # no as_is level
  assert dec.per_seed_terms(rows) == []


def test_table_and_markdown_carry_every_term():
  rows = []
  for seed in range(2):
    rows += _rows(seed, 0.3, 0.2, 0.1, 0.01)
    rows += _rows(seed, 0.8, 0.7, 0.6, 0.5, pipeline="A")
  entries = dec.decompose(rows)
  table = dec.table_rows(entries)
  assert {"sampling_mean", "sampling_sign_p", "learning_trap_verdict", "dominant"} <= set(table[0])
  text = dec.markdown_table(entries)
  assert "| lm | s | K-A | dpo | 2 |" in text


def test_one_seed_gives_no_verdict():
  rows = _rows(0, 0.3, 0.2, 0.1, 0.01) + _rows(0, 0.8, 0.7, 0.6, 0.5, pipeline="A")
  ka = next(e for e in dec.decompose(rows) if e["pipeline"] == "K-A")
  assert ka["sampling"]["verdict"] == "too few seeds" and ka["dominant"] == "none"
  assert "too few seeds to call" in dec.describe_term(ka["sampling"])


def test_two_terms_of_the_same_size_are_a_tie_not_a_dominant_term():
  """Optimisation and sampling each cost about 2.3 logits on every seed (their lead over each
  other is noise): neither dominates; both are named as tied. A clear lead is named alone."""
  rng = np.random.default_rng(1)
  close, clear = [], []
  for seed in range(5):
    jitter = rng.normal(scale=0.05)
    best = 0.3
    cover = 1 / (1 + math.exp(-(_logit(best) - 2.3 - jitter)))
    as_is = 1 / (1 + math.exp(-(_logit(cover) - 2.3 + jitter)))
    close += _rows(seed, 0.3, best, cover, as_is)
    clear += _rows(seed, 0.3, best, cover, 1 / (1 + math.exp(-(_logit(cover) - 5.0 + jitter))))
    for rows in (close, clear):
      rows += _rows(seed, 0.8, 0.8, 0.8, 0.8, pipeline="A")
  ka = next(e for e in dec.decompose(close) if e["pipeline"] == "K-A")
  assert ka["optimisation"]["verdict"] == ka["sampling"]["verdict"] == "costs mass"
  assert ka["dominant"] == "tie" and set(ka["dominant_tied"]) == {"optimisation", "sampling"}
  assert dec.dominant_label(ka).startswith(("optimisation and sampling (tied", "sampling and optimisation (tied"))
  assert dec.table_rows([ka])[0]["dominant"].startswith("tie:")
  ka = next(e for e in dec.decompose(clear) if e["pipeline"] == "K-A")
  assert ka["dominant"] == "sampling" and ka["dominant_margin"]["verdict"] == "costs mass"


def test_a_level_without_target_samples_is_flagged_in_its_verdict():
  """A level whose evaluation draws hold no target sample (mass 0, clipped to half a sample):
  the verdict says so and that the terms beside it measure the failure."""
  from recall_theory import gap_report
  rows = []
  for seed in range(3):
    rows += _rows(seed, 0.3, 0.2, 0.1, 0.05)
    rows += _rows(seed, 0.8, 0.7, 0.0 if seed < 2 else 0.6, 0.5, pipeline="A")
  entries = dec.decompose(rows)
  a = next(e for e in entries if e["pipeline"] == "A")
  assert a["clipped_seeds"] == {"covering_sampler": 2}
  text = "\n".join(gap_report.verdict_sentences(entries))
  assert "(mass clipped to half a sample) at: covering sampler in 2/3 seeds" in text
  assert text.count("All or none of the evaluation draws") == 1


def test_read_levels_keeps_a_tracks_own_text_columns_and_refuses_a_non_number(tmp_path):
  from recall_theory import gap_report
  from recall_theory.errors import InputError
  path = tmp_path / "gap_levels.csv"
  head = "track,pipeline,algorithm,seed,setting,student,level,aligned_mass,n_eval,plateau\n"
  path.write_text(head + "mog,K-A,pg,0,beta=0.3,4-mode,law,0.25,0,exact\n")
  (row,) = gap_report.read_levels(path)
  assert row["student"] == "4-mode" and row["seed"] == 0 and row["aligned_mass"] == 0.25
  path.write_text(head + "mog,K-A,pg,0,beta=0.3,4-mode,law,lots,0,exact\n")
  with pytest.raises(InputError, match="aligned_mass = 'lots' is not a number"):
    gap_report.read_levels(path)
