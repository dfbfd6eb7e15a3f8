"""The law's columns, sample sd, generated notes and verdicts, the command line and the tau sweep."""


import numpy as np
import pytest

from recall_theory import schema, stats
from recall_theory.cli.main import main
from recall_theory.mog import report
from recall_theory.mog.grid_run import GridResult
from recall_theory.mog.metrics import METRICS
from recall_theory.mog.setup import ALGORITHMS, RESULT_PIPELINES, MogConfig


def _fake_result(ak_minus_ka: np.ndarray, seeds: int = 4) -> GridResult:
  """A GridResult with controlled target masses: K-A 0.1 (+ noise), A-K = K-A + ak_minus_ka (per seed, beta)."""
  rng = np.random.default_rng(0)
  betas = np.array([0.1, 1.0])
  shape = (seeds, len(betas), 1, len(RESULT_PIPELINES), len(ALGORITHMS), len(METRICS))
  metrics = rng.uniform(0.2, 0.3, shape)
  tm = METRICS.index("target_mass")
  ka, ak = RESULT_PIPELINES.index("K-A"), RESULT_PIPELINES.index("A-K")
  metrics[..., ka, :, tm] = 0.1 + 1e-4 * rng.standard_normal((seeds, len(betas), 1, len(ALGORITHMS)))
  metrics[..., ak, :, tm] = metrics[..., ka, :, tm] + ak_minus_ka[:, :, None, None]
  metrics[..., METRICS.index("kl_to_reference")] = 5.0  # a generous budget: no ceiling is near
  ones = np.ones((seeds, len(betas), 1))
  return GridResult(np.arange(seeds), betas, ("4-mode",), metrics, 1e-4 * ones, 0.12 * ones, None,
                    np.zeros(3), 2.0 * ones, 3.0 * ones, 1e-12)


def test_summary_uses_the_sample_sd():
  res = _fake_result(np.zeros((4, 2)))
  cols = report.summary_columns(res, MogConfig())
  values = res.metrics[:, 0, 0, 0, 0, METRICS.index("reward")]
  assert cols["reward_sd"][0] == pytest.approx(np.std(values, ddof=1), rel=1e-12)
  assert cols["reward_sd"][0] != pytest.approx(np.std(values, ddof=0), rel=1e-6)
  assert stats.SD_CAPTION in report.summary_text(res, MogConfig())


def test_verdicts_call_small_differences_ties_and_carry_sign_counts():
  # beta 0.1: A-K ahead by 0.3 on every seed; beta 1.0: differences of 1e-5 that change sign per seed.
  diff = np.array([[0.3, 1e-5], [0.31, -1e-5], [0.29, 2e-5], [0.3, -2e-5]])
  res = _fake_result(diff)
  lines = report.verdict_lines(res)
  exact = [l for l in lines if "beta" in l][:2]
  assert "A-K ahead of K-A" in exact[0] and "4 of 4 seeds higher" in exact[0] and "[" in exact[0]
  assert "tie" in exact[1] and "resolution 0.001" in exact[1]
  counts = report.verdict_counts(res)[("4-mode", "exact")]
  assert counts == {"ahead": 1, "behind": 0, "tie": 1}


def test_notes_are_free_of_the_unsupported_sentences():
  res = _fake_result(np.zeros((4, 2)))
  text = report.notes_text(res, MogConfig(target="two"), {"--target": "two", "--betas": "0.1,1"})
  for phrase in ("at equal target mass", "At equal target mass", "largest spread", "both give zero mass",
                 "lift the target only at small beta", "sampling trap"):
    assert phrase not in text
  assert "two-target run" in text and "--target two" in text and "--betas 0.1,1" in text
  assert stats.SD_CAPTION in text


def test_law_columns_of_every_aligned_model():
  res = _fake_result(np.zeros((4, 2)))
  config = MogConfig()
  cols = report.results_columns(res, config)
  n = res.metrics[..., 0].size
  for name in schema.ID_COLUMNS + schema.LAW_COLUMNS:
    assert len(cols[name]) == n, name
  assert set(cols["pipeline"]) == set(RESULT_PIPELINES)
  ka = cols["pipeline"] == "K-A"
  np.testing.assert_allclose(cols["reference_recall"][ka], 1e-4)
  np.testing.assert_allclose(cols["reference_recall"][~ka], 0.12)
  np.testing.assert_allclose(cols["delta_over_beta"][ka], 2.0)
  p = cols["reference_recall"]
  np.testing.assert_allclose(cols["predicted_mass"], 1 / (1 + (1 - p) / p * np.exp(-cols["delta_over_beta"])))
  n_by = {"exact": 0, "pg": config.pg_steps * config.pg_batch, "dpo": 2 * config.dpo_pairs}
  for algo, count in n_by.items():
    np.testing.assert_array_equal(cols["n_samples"][cols["algorithm"] == algo], count)
  # PG of the control samples on-policy from the student: its sampler recall is the student's.
  ctl_pg = (cols["pipeline"] == "K-A(teacher-ref)") & (cols["algorithm"] == "pg")
  np.testing.assert_allclose(cols["sampler_recall"][ctl_pg], 1e-4)
  assert schema.report_ceiling_violations({k: cols[k] for k in schema.ID_COLUMNS + schema.LAW_COLUMNS}, "test") == 0


@pytest.mark.parametrize("argv, needle", [
    (["--betas", ""], "--betas"),
    (["--betas", " , "], "--betas"),
    (["--betas", "1", "--beta-min", "5", "--beta-max", "1"], "--beta-max"),
    (["--betas", "1", "--beta-min", "0.5"], "--beta-min"),
    (["--betas", "nan"], "--betas"),
    (["--beta-min", "inf"], "--beta-min"),
    (["--dpo-pairs", "3"], "--dpo-pairs"),
    (["--label-noise", "nan"], "--label-noise"),
    (["--chunk-size", "0"], "--chunk-size"),
    (["--chunk-size", "-4"], "--chunk-size"),
    (["--chunk-size", "1000001"], "--chunk-size"),
    (["--taus", ""], "--taus"),
    (["--taus", "0.1,0"], "--taus"),
    (["--taus", "-1"], "--taus"),
    (["--taus", "nan"], "--taus"),
    (["--taus", "inf"], "--taus"),
    (["--taus", "a"], "--taus"),
    (["--taus", "0.1", "--seeds", "2"], "--seeds"),
])
def test_bad_arguments_name_the_flag(tmp_path, capsys, argv, needle):
  out = tmp_path / "never"
  assert main(["mog", "--out", str(out), *argv]) == 2
  err = capsys.readouterr().err
  assert needle in err and len(err.strip().splitlines()) == 1, err
  assert not out.exists()


def test_tau_sweep_recall_rises_with_tau_and_sits_on_the_law(tmp_path):
  assert main(["mog", "--taus", "0.05,0.5", "--betas", "0.1,1", "--out", str(tmp_path)]) == 0
  rows = schema.read_results(tmp_path / "mog_taus.csv")
  ka = [r for r in rows if r["pipeline"] == "K-A"]
  assert len(ka) == 2 * 2 * 2  # students x taus x betas
  for student in ("4-mode", "3-mode"):
    recall = {r["tau"]: r["reference_recall"] for r in ka if r["student"] == student}
    assert recall[0.05] < recall[0.5]  # a softer KD temperature keeps more of the target
  for r in ka:  # the exact tilt is the law's optimum
    assert r["aligned_mass"] == pytest.approx(r["predicted_mass"], rel=1e-6, abs=1e-300)
  assert not any(r["above_ceiling"] for r in rows)
  assert (tmp_path / "mog_taus.png").exists() and (tmp_path / "mog_taus_data.npz").exists()
  notes = (tmp_path / "mog_taus_notes.md").read_text()
  assert "--taus 0.05,0.5" in notes and "predicts tau" in notes


def test_committed_default_run_has_the_law_and_no_run_above_its_ceiling():
  from pathlib import Path
  path = Path(__file__).resolve().parents[2] / "figures" / "mog" / "mog_results.csv"
  if not path.exists():
    pytest.skip("figures/mog/mog_results.csv is not committed")
  rows = schema.read_results(path)  # raises when a law column is missing
  assert schema.report_ceiling_violations(rows, where="figures/mog") == 0
  assert {r["pipeline"] for r in rows} == set(RESULT_PIPELINES)
  exact_tilts = [r for r in rows if r["algorithm"] == "exact" and r["pipeline"] in ("K-A", "A")]
  for r in exact_tilts:
    assert r["aligned_mass"] == pytest.approx(r["predicted_mass"], rel=1e-6, abs=1e-12)
