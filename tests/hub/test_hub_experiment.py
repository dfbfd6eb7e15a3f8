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
  from hub_fixtures import smollm2_weights_or_skip
  smollm2_weights_or_skip()
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


def _tiny_smoke_preset(vocab_size):
  """The smoke preset's shape at test size: tiny Llamas over the tiny GGUF's vocabulary."""
  from recall_theory.lm.groundtruth import MarkovMixtureConfig
  from recall_theory.lm.hub.experiment import SmolLM2Experiment
  from recall_theory.lm.hub.ground_truth import PStarConfig
  from recall_theory.lm.model import ModelConfig
  from recall_theory.lm.pipeline import ExperimentConfig, StageConfig

  def llama(d, ff):
    return ModelConfig(vocab_size=vocab_size, d_model=d, n_layers=1, n_heads=2, n_kv_heads=1,
                       d_ff=ff, max_seq_len=8)
  stage = StageConfig(steps=2, batch_size=8, learning_rate=3e-3)
  return SmolLM2Experiment(
      pstar=PStarConfig(model="tiny", prompt_text="the", seq_len=4, chunk=16),
      comparison=ExperimentConfig(
          groundtruth=MarkovMixtureConfig(seq_len=4), teacher=llama(16, 32), student=llama(8, 16),
          teacher_train=stage, student_train=stage, tau=0.7, distill_samples=16,
          algorithms=("dpo", "rloo"), preference_train=stage, n_pairs=12, beta=0.1,
          bt_scale=10.0, rloo_train=stage, rloo_beta=0.05, rloo_group=4, eval_samples=16,
          reference_samples=64, checkpoint_every=1000),
      seeds=2)


def test_smoke_path_writes_the_law_beside_every_aligned_model(tmp_path, monkeypatch, capsys):
  """`smollm2` on the smoke preset's path (a tiny GGUF as p*, tiny models): the results
  carry the shared id and law columns, estimated as documented, and the summary names
  the options changed."""
  pytest.importorskip("gguf", reason="the smollm2 extra (gguf) is not installed")
  pytest.importorskip("tokenizers", reason="the smollm2 extra (tokenizers) is not installed")
  import math

  from hub_fixtures import tiny_tensors, write_tiny_gguf

  from recall_theory import schema, stats
  from recall_theory.lm.hub import experiment as exp
  from recall_theory.lm.hub.gguf_file import read_gguf
  from recall_theory.lm.hub.ground_truth import PretrainedGroundTruth
  from recall_theory.lm.hub.models import from_checkpoint
  from recall_theory.lm.hub.oracle import question_oracle

  tensors = tiny_tensors(seed=3)
  tensors["model.embed_tokens.weight"] *= 3
  lm = from_checkpoint(read_gguf(write_tiny_gguf(tmp_path / "tiny.gguf", tensors)))
  gt = PretrainedGroundTruth(lm, prompt_ids=lm.tokenizer.encode("the"), seq_len=4,
                             oracle=question_oracle(lm.tokenizer), chunk=16)
  preset = _tiny_smoke_preset(gt.vocab_size)
  monkeypatch.setattr(exp, "get_preset", lambda name: preset)
  monkeypatch.setattr(exp.PretrainedGroundTruth, "load",
                      classmethod(lambda cls, config, cache_dir=None: gt))
  out = tmp_path / "o"
  assert main(["smollm2", "--seeds", "2", "--out", str(out), "--quiet"]) == 0
  printed = capsys.readouterr()
  assert "LAW VIOLATION" not in printed.err
  assert "teacher:" not in printed.err  # --quiet: no progress lines ...
  from recall_theory import progress
  assert progress.is_enabled()          # ... and it is not left switched off

  rows = schema.read_results(out / "smollm2_results.csv")  # checks every shared column
  assert {r["track"] for r in rows} == {"smollm2"}
  assert {r["setting"] for r in rows} == {"preset=smollm2-cpu-smoke;T=4;tau=0.7;target=question"}
  aligned = [r for r in rows if r["pipeline"] in exp.ALIGNMENT_REFERENCE]
  assert len(aligned) == 4 * 2 * 2
  by_reference = {}
  for r in aligned:
    p, d = r["reference_recall"], r["delta_over_beta"]
    # one estimate per (reference, algorithm): the reference is trained once
    key = (exp.ALIGNMENT_REFERENCE[r["pipeline"]], r["algorithm"])
    assert by_reference.setdefault(key, (p, d)) == (p, d)
    assert r["reference_recall_low"] <= p <= r["reference_recall_high"]
    if "bracketed" not in r["estimator"]:  # the indicator reward: c/beta, 1/rloo_beta exactly
      want = 10.0 / 0.1 if r["algorithm"] == "dpo" else 1 / 0.05
      assert (d, r["delta_over_beta_low"], r["delta_over_beta_high"]) == pytest.approx((want,) * 3)
    want_pred = 0.0 if p == 0 else 1 / (1 + math.exp(-(math.log(p / (1 - p)) + d)))
    assert r["predicted_mass"] == pytest.approx(want_pred, abs=1e-9)
    assert r["predicted_mass_low"] <= r["predicted_mass"] <= r["predicted_mass_high"]
    assert r["aligned_mass"] == pytest.approx(r["target_share"])
    assert r["aligned_mass_low"] <= r["aligned_mass"] <= r["aligned_mass_high"]
    assert r["kl"] == pytest.approx(r["kl_ref"])
    assert r["n_samples"] == (2 * 12 if r["algorithm"] == "dpo" else 2 * 8)  # pairs; steps x batch
    assert r["expected_target_samples"] == pytest.approx(r["n_samples"] * r["sampler_recall"])
    assert not r["above_ceiling"]
    assert "wilson 95%" in r["estimator"]
  for r in rows:
    if r["pipeline"] not in exp.ALIGNMENT_REFERENCE:
      assert math.isnan(r["predicted_mass"]) and r["estimator"].startswith("not aligned")
  assert schema.report_ceiling_violations(rows, where="test") == 0

  summary = (out / "smollm2_summary.md").read_text()
  assert "Options: --seeds 2 --out" in summary and "--quiet" in summary
  assert stats.SD_CAPTION in summary
  assert "The law beside each aligned model" in summary and "| K-A | DPO | 2 |" in summary
  assert "Measured masses above their KL ceiling (lower end of the interval): 0." in summary


def test_rows_become_rectangular_with_blank_text_and_nan_numbers():
  from recall_theory import schema
  from recall_theory.lm.hub.experiment import smollm2_rows
  law = {c: 0.1 for c in schema.LAW_COLUMNS}
  law.update(above_ceiling=False, estimator="x")
  rows = smollm2_rows([{"pipeline": "p*", "algorithm": "none", "seed": 0, "reward": 0.5},
                       {"pipeline": "K-A", "algorithm": "dpo", "seed": 0, "reward": 0.7,
                        "law_reference": "student", **law}], "s")
  assert set(rows[0]) == set(rows[1])
  pstar, aligned = rows
  assert pstar["law_reference"] == "" and pstar["above_ceiling"] is False
  assert all(pstar[c] != pstar[c] for c in schema.LAW_COLUMNS
             if c not in ("above_ceiling", "estimator"))  # nan
  assert pstar["estimator"].startswith("not aligned")
  assert aligned["kl"] == 0.1 and aligned["estimator"] == "x"
  assert {r["track"] for r in rows} == {"smollm2"} and {r["setting"] for r in rows} == {"s"}
