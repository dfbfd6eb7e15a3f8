"""The real-p* experiment: presets, the ``smollm2`` command, and the smoke run (slow)."""

from __future__ import annotations

import csv

import pytest

from recall_theory.cli.main import main


def test_presets_are_consistent():
  pytest.importorskip("flax")
  from recall_theory.errors import InputError
  from recall_theory.lm.hub.experiment import PRESET_NAMES, SMOLLM2_VOCAB, get_preset
  for name in PRESET_NAMES:
    exp = get_preset(name)
    exp.pstar.validate()
    exp.comparison.validate()
    for model in (exp.comparison.teacher, exp.comparison.student):
      assert model.vocab_size == SMOLLM2_VOCAB
      assert model.max_seq_len >= 1 + exp.pstar.seq_len
    assert exp.comparison.student.param_count() < exp.comparison.teacher.param_count()
    assert set(exp.comparison.algorithms) == {"dpo", "rloo"}
  with pytest.raises(InputError, match="--preset must be one of"):
    get_preset("smollm2-tpu")


def test_smollm2_command_rejects_bad_flags_before_loading(tmp_path, capsys):
  assert main(["smollm2", "--preset", "big", "--out", str(tmp_path / "o")]) == 2
  assert "--preset must be one of" in capsys.readouterr().err
  assert main(["smollm2", "--algorithms", "ppo", "--out", str(tmp_path / "o")]) == 2
  assert "--algorithms" in capsys.readouterr().err
  assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_smoke_preset_runs_every_stage_end_to_end(tmp_path, capsys):
  pytest.importorskip("gguf", reason="the smollm2 extra is not installed")
  from recall_theory.errors import InputError
  from recall_theory.lm.hub.fetch import fetch_smollm2_135m
  try:
    fetch_smollm2_135m()
  except InputError as err:
    pytest.skip(f"SmolLM2 weights unavailable: {err}")
  out = tmp_path / "smoke"
  assert main(["smollm2", "--preset", "smollm2-cpu-smoke", "--out", str(out), "--quiet"]) == 0
  rows = list(csv.DictReader(open(out / "smollm2_results.csv")))
  seen = {(r["pipeline"], r["algorithm"]) for r in rows}
  for pipe in ("K-A", "A", "A-K", "K-A(teacher-ref)"):
    for alg in ("dpo", "rloo"):
      assert (pipe, alg) in seen
  assert {("p*", "none"), ("teacher", "none"), ("student", "none")} <= seen
  assert {r["seed"] for r in rows} == {"0", "1"}
  pstar = [r for r in rows if r["pipeline"] == "p*"]
  # p* scores itself: precision = recall = E[log p*]/T, finite and far above a small model's
  assert all(float(r["precision"]) == float(r["recall"]) for r in pstar)
  student = [r for r in rows if r["pipeline"] == "student"]
  assert min(float(r["recall"]) for r in pstar) > max(float(r["recall"]) for r in student)
  for name in ("smollm2_summary.md", "smollm2_comparison.png", "smollm2_comparison.pdf",
               "smollm2_comparison_data.npz", "smollm2_config.json"):
    assert (out / name).is_file(), name
  assert "base rate under p*" in (out / "smollm2_summary.md").read_text()
