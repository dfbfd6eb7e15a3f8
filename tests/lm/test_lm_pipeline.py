"""Pipelines end to end on the `test` preset: resume, checkpoints, divergence, CLI."""

import csv
import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recall_theory.cli.main import main
from recall_theory.errors import InputError, TrainingDivergedError
from recall_theory.lm import checkpoint as ckpt_lib
from recall_theory.lm import losses, pipeline, presets
from recall_theory.lm.groundtruth import MarkovMixture
from recall_theory.lm.train import DETERMINISTIC_FLAG

CONFIG = dataclasses.replace(presets.TEST, algorithms=("dpo",))
SEEDS = [0]


@pytest.fixture(scope="module")
def cli_out(tmp_path_factory):
  """One uninterrupted run through the command line; its CSV is the reference."""
  out = tmp_path_factory.mktemp("lm") / "out"
  assert main(["lm", "--preset", "test", "--seeds", "1", "--algorithms", "dpo", "--out",
               str(out), "--quiet"]) == 0
  return out


@pytest.fixture(scope="module")
def reference_rows(cli_out):
  rows = list(csv.DictReader(open(cli_out / "lm_results.csv")))
  text = {"track", "pipeline", "algorithm", "setting", "estimator", "law_reference", "sampler", "plateau"}
  for r in rows:  # the CSV holds repr(float): an exact round trip
    for k in r:
      if k == "above_ceiling":
        r[k] = r[k] == "True"
      elif k not in text:
        r[k] = int(r[k]) if k == "seed" else float(r[k])
  return rows


def test_rows_cover_every_pipeline(reference_rows):
  got = {(r["pipeline"], r["algorithm"], r["seed"]) for r in reference_rows}
  for seed in SEEDS:
    assert ("teacher", "none", seed) in got and ("student", "none", seed) in got
    for pipe in ("K-A", "A", "A-K", "K-A(teacher-ref)"):
      assert (pipe, "dpo", seed) in got
  for r in reference_rows:
    assert 0.0 <= r["reward"] <= 1.0 and 0.0 <= r["target_share"] <= 1.0
    assert r["precision"] < 0 and r["recall"] < 0 and math.isfinite(r["target_precision"])


# The killed-and-resumed run, in a fresh process with XLA's deterministic ops set in
# XLA_FLAGS before JAX starts (the only supported way on a GPU; a no-op on CPU). With "reference" it also
# runs the uninterrupted reference there. Prints the rows as JSON on its last line.
_RESUME_SCRIPT = """
import dataclasses, json, os, sys
import pytest
from recall_theory.errors import InputError
from recall_theory.lm import checkpoint as ckpt_lib, pipeline, presets
# the flag comes from the environment, read when the backend starts (no per-jit options)
assert "xla_gpu_deterministic_ops=true" in os.environ["XLA_FLAGS"]
ckpt, with_reference = sys.argv[1], sys.argv[2] == "reference"
CONFIG = dataclasses.replace(presets.TEST, algorithms=("dpo",))
SEEDS = [0]
reference = (pipeline.run_comparison(CONFIG, SEEDS, progress=False, setting="reference")
             if with_reference else None)
# killed inside the student stage, two steps after its step-5 checkpoint (the teacher
# stage is complete): the restart skips the teacher, replays student steps 6..8 and
# runs everything after
kill_at = CONFIG.teacher_train.steps + CONFIG.checkpoint_every + 2
assert kill_at < CONFIG.teacher_train.steps + CONFIG.student_train.steps
with pytest.raises(pipeline.RunInterrupted, match="student"):
  pipeline.run_comparison(CONFIG, SEEDS, checkpoint_dir=ckpt, progress=False,
                          interrupt_after=kill_at)
assert ckpt_lib.Checkpointer(ckpt).latest("teacher")["final"]
assert ckpt_lib.Checkpointer(ckpt).latest("student")["step"] == CONFIG.checkpoint_every
# a second start without --resume refuses to touch the folder
with pytest.raises(InputError, match="--resume"):
  pipeline.run_comparison(CONFIG, SEEDS, checkpoint_dir=ckpt, progress=False)
# a different configuration refuses to resume from it
with pytest.raises(InputError, match="different configuration"):
  pipeline.run_comparison(dataclasses.replace(CONFIG, tau=0.9), SEEDS, checkpoint_dir=ckpt,
                          resume=True, progress=False)
resumed = pipeline.run_comparison(CONFIG, SEEDS, checkpoint_dir=ckpt, resume=True,
                                  progress=False)
print(json.dumps({"reference": reference, "resumed": resumed}, default=float))
"""


def test_killed_run_resumes_to_identical_metrics(request, tmp_path):
  import os, subprocess, sys
  # CPU runs are deterministic, so this process's CLI run is the reference; on a GPU
  # it is one only if this process started with the flag, else the subprocess runs it
  flags = os.environ.get("XLA_FLAGS", "")
  here_deterministic = jax.default_backend() == "cpu" or "xla_gpu_deterministic_ops=true" in flags
  env = {**os.environ, "XLA_FLAGS": (flags + " " + DETERMINISTIC_FLAG).strip()}
  proc = subprocess.run([sys.executable, "-c", _RESUME_SCRIPT, str(tmp_path / "ckpt"),
                         "cli" if here_deterministic else "reference"],
                        capture_output=True, text=True, env=env, timeout=900,
                        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  # the CLI fixture is built only when it is the reference (on a GPU it would be wasted)
  reference = out["reference"] or request.getfixturevalue("reference_rows")
  resumed = out["resumed"]
  assert len(resumed) == len(reference)
  # wall times differ between runs; the CLI run names its setting
  wall_clock = {"stage_seconds", "pipeline_seconds", "eval_seconds", "setting"}
  for a, b in zip(reference, resumed):
    assert a.keys() == b.keys()
    for key in a.keys() - wall_clock:  # bit-identical metrics (NaN where a metric does not apply)
      assert a[key] == b[key] or (a[key] != a[key] and b[key] != b[key]), (key, a, b)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="bit-identity in-process needs CPU")
def test_killed_rloo_stage_resumes_with_its_target_counts(tmp_path):
  """A kill inside an RLOO stage: the resumed run reports the target samples an uninterrupted
  run drew (the per-step counts travel with the checkpoint), not NaN."""
  config = dataclasses.replace(presets.TEST, algorithms=("rloo",))
  reference = pipeline.run_comparison(config, SEEDS, progress=False)
  # inside the first RLOO stage, one step after its step-2 checkpoint (plateau check)
  kill_at = config.teacher_train.steps + config.student_train.steps + 3
  with pytest.raises(pipeline.RunInterrupted, match="rloo"):
    pipeline.run_comparison(config, SEEDS, checkpoint_dir=tmp_path, progress=False,
                            interrupt_after=kill_at)
  resumed = pipeline.run_comparison(config, SEEDS, checkpoint_dir=tmp_path, resume=True,
                                    progress=False)
  drawn = [(r["pipeline"], r["target_samples_drawn"]) for r in reference
           if r["algorithm"] == "rloo" and r["pipeline"] != "A-K"]
  assert drawn and all(math.isfinite(v) for _, v in drawn)
  assert drawn == [(r["pipeline"], r["target_samples_drawn"]) for r in resumed
                   if r["algorithm"] == "rloo" and r["pipeline"] != "A-K"]
  wall_clock = {"stage_seconds", "pipeline_seconds", "eval_seconds"}
  for a, b in zip(reference, resumed):  # and every other metric bit-identical
    for key in a.keys() - wall_clock:
      assert a[key] == b[key] or (a[key] != a[key] and b[key] != b[key]), (key, a, b)


def _tiny_runner(tmp_path, every=5):
  return pipeline.Runner(checkpointer=ckpt_lib.Checkpointer(tmp_path), checkpoint_every=every,
                         progress=False)


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  gt = MarkovMixture(CONFIG.groundtruth)
  runner = _tiny_runner(tmp_path)
  mle = losses.make_mle_loss(1)

  def loss_fn(model, batch):
    loss, aux = mle(model, batch)
    return loss * batch["scale"][0], aux

  def make_batch(step, _):
    scale = jnp.full((16,), jnp.nan if step == 6 else 1.0)
    return {"tokens": gt.sample(jax.random.key(step), 16), "scale": scale}

  cfg = pipeline.StageConfig(steps=10, batch_size=16, learning_rate=1e-3)
  model = pipeline.init_model(CONFIG.teacher, 0)
  with pytest.raises(TrainingDivergedError, match=r"stage 'diverge'.*loss.*step 7"):
    runner.train("diverge", model, ("nan-test",), loss_fn, cfg, make_batch)
  meta = runner.ckpt.latest("diverge")
  assert meta["step"] == 5 and not meta["final"]
  # the kept checkpoint restores to finite parameters
  template = pipeline.init_model(CONFIG.teacher, 1)
  from recall_theory.lm.train import init_train_state, make_optimizer
  _, state = init_train_state(template, make_optimizer(1e-3, 10))
  restored = runner.ckpt.restore(meta, state)
  assert all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(restored.params))


def test_mismatched_and_corrupt_checkpoints(tmp_path):
  gt = MarkovMixture(CONFIG.groundtruth)
  runner = _tiny_runner(tmp_path)
  cfg = CONFIG.teacher_train  # the pipeline's teacher stage: its compiled step is reused

  def make_batch(step, _):
    return {"tokens": gt.sample(jax.random.key(step), 16)}

  runner.train("stage", pipeline.init_model(CONFIG.teacher, 0), ("mle", 1),
               losses.make_mle_loss(1), cfg, make_batch)
  bigger = dataclasses.replace(CONFIG.teacher, d_model=48)
  with pytest.raises(InputError, match="does not match the model"):
    runner.train("stage", pipeline.init_model(bigger, 0), ("mle", 1), losses.make_mle_loss(1), cfg,
                 make_batch)
  # damage the array files but keep the metadata: a clear error, nothing rewritten
  meta = runner.ckpt.latest("stage")
  for f in (tmp_path / "stage" / f"step_{cfg.steps:08d}").rglob("*"):
    if f.is_file() and f.suffix != ".json":
      f.write_bytes(b"garbage")
  with pytest.raises(InputError, match="corrupt or unreadable"):
    runner.train("stage", pipeline.init_model(CONFIG.teacher, 0), ("mle", 1),
                 losses.make_mle_loss(1), cfg, make_batch)
  assert runner.ckpt.latest("stage")["step"] == meta["step"]


def test_cli_writes_results_table_and_figure(cli_out, reference_rows):
  assert {r["pipeline"] for r in reference_rows} >= {"K-A", "A-K", "K-A(teacher-ref)", "teacher"}
  assert len(reference_rows) == 6
  for name in ("lm_summary.md", "lm_comparison.pdf", "lm_comparison.png",
               "lm_comparison_data.npz", "lm_config.json"):
    assert (cli_out / name).exists(), name
  assert "| A-K | DPO | 1 |" in (cli_out / "lm_summary.md").read_text()
  assert json.loads((cli_out / "lm_config.json").read_text())["seeds"] == [0]


@pytest.mark.parametrize("argv, word", [
    (["--preset", "huge"], "--preset"),
    (["--seeds", "a,b"], "--seeds"),
    (["--algorithms", "ppo"], "--algorithms"),
    (["--resume"], "--resume needs --checkpoint-dir"),
    (["--n-devices", "64"], "--n-devices"),
])
def test_cli_bad_input_writes_nothing(tmp_path, capsys, argv, word):
  out = tmp_path / "never"
  code = main(["lm", "--out", str(out), "--quiet"] + argv)
  assert code == 2
  assert word in capsys.readouterr().err
  assert not (out / "lm_results.csv").exists()


def test_bad_sizes_name_the_problem():
  with pytest.raises(InputError, match="max_seq_len"):
    dataclasses.replace(CONFIG, teacher=dataclasses.replace(CONFIG.teacher, max_seq_len=4)
                        ).validate()
  with pytest.raises(InputError, match="n_kv_heads"):
    dataclasses.replace(CONFIG, student=dataclasses.replace(CONFIG.student, n_kv_heads=3)
                        ).validate()


@pytest.mark.parametrize("name", ["cpu-tiny", "gpu", "test"])
def test_presets_are_consistent(name):
  presets.get_preset(name).validate()


def test_unknown_preset():
  with pytest.raises(InputError, match="--preset must be one of"):
    presets.get_preset("huge")


@pytest.mark.slow
def test_cpu_tiny_shows_align_before_distill():
  """The claim on the cpu-tiny preset (155 s measured on 2 shared, loaded cores)."""
  rows = pipeline.run_comparison(presets.CPU_TINY, [0, 1, 2], progress=False)
  for alg in presets.CPU_TINY.algorithms:
    def mean(pipe, metric):
      return np.mean([r[metric] for r in rows if r["pipeline"] == pipe and r["algorithm"] == alg])
    for metric in ("reward", "target_share", "target_precision"):
      assert mean("A-K", metric) > mean("K-A", metric), (alg, metric)


# -- the law beside every aligned model (issue 8) -------------------------------------------
def test_results_carry_the_law_and_never_exceed_the_ceiling(cli_out, reference_rows, capsys):
  from recall_theory import schema
  rows = schema.read_results(cli_out / "lm_results.csv")  # every shared column is present
  aligned = [r for r in rows if r["algorithm"] != "none"]
  assert {r["pipeline"] for r in aligned} == {"K-A", "A", "A-K", "K-A(teacher-ref)"}
  for r in aligned:
    assert r["track"] == "lm" and r["setting"] == "preset=test;tau=0.6"
    for name in ("reference_recall", "delta_over_beta", "predicted_mass", "kl_ceiling",
                 "aligned_mass"):
      assert math.isfinite(r[name]), (name, r)
    assert r["reference_recall_low"] <= r["reference_recall"] <= r["reference_recall_high"]
    assert r["predicted_mass_low"] <= r["predicted_mass"] <= r["predicted_mass_high"]
    assert r["n_samples"] == 2 * CONFIG.n_pairs  # DPO: two reference samples per pair
    assert r["expected_target_samples"] == pytest.approx(r["n_samples"] * r["sampler_recall"])
    assert r["aligned_mass"] == pytest.approx(r["target_share"])
    assert not r["above_ceiling"]
  assert schema.report_ceiling_violations(rows, where="test") == 0
  assert "LAW VIOLATION" not in capsys.readouterr().err
  summary = (cli_out / "lm_summary.md").read_text()
  from recall_theory import stats
  assert stats.SD_CAPTION in summary and "predicted mass" in summary
  assert "Non-default options: --preset test --seeds 1 --algorithms dpo" in summary


def test_ceiling_violation_is_reported_loudly(capsys):
  from recall_theory import schema
  book = pipeline.LawBook(CONFIG, MarkovMixture(CONFIG.groundtruth))
  book.samples["ref"] = {"reward": np.r_[np.full(10, 0.9), np.zeros(990)],
                         "in_target": np.r_[np.ones(10, bool), np.zeros(990, bool)]}
  # measured mass 0.9 of 1000 samples at KL 0.01 against a reference with p = 1%: impossible
  row = pipeline.law_row(book, algorithm="rloo", reference="ref", sampler="ref",
                         draws={"samples": 64, "target": 1, "complete": True},
                         measured={"target_share": 0.9, "kl_ref": 0.01}, n_eval=1000)
  assert row["above_ceiling"]
  assert schema.report_ceiling_violations([row], where="test") == 1
  assert "LAW VIOLATION (test)" in capsys.readouterr().err


def test_simpo_is_reference_free_in_rows():
  config = dataclasses.replace(presets.TEST, algorithms=("simpo",))
  rows = pipeline.run_comparison(config, [0], progress=False)
  pipes = {r["pipeline"] for r in rows if r["algorithm"] == "simpo"}
  assert pipes == {"K-A", "A", "A-K"}  # no teacher-reference control for reference-free SimPO
  for r in rows:
    if r["algorithm"] == "simpo":
      assert math.isnan(r["predicted_mass"]) and math.isnan(r["delta_over_beta"])
      assert math.isfinite(r["kl_ceiling"]) and not r["above_ceiling"]
      assert "reference-free" in r["estimator"]


# -- the recall sweep over tau -----------------------------------------------------------------
@pytest.mark.parametrize("taus", ["", "0", "-0.5", "nan", "inf", "a,b", "0.5,0.5", ",,"])
def test_bad_taus_one_line_exit_2(tmp_path, capsys, taus):
  out = tmp_path / "never"
  code = main(["lm", "--preset", "test", "--taus", taus, "--out", str(out), "--quiet"])
  err = capsys.readouterr().err
  assert code == 2 and "--taus" in err and len(err.strip().splitlines()) == 1, err
  assert not out.exists() or not any(out.iterdir())


def test_tau_sweep_cli_writes_csv_figure_and_repeats_the_comparison(tmp_path, reference_rows):
  from recall_theory import schema
  out = tmp_path / "taus"
  assert main(["lm", "--preset", "test", "--seeds", "1", "--algorithms", "dpo", "--taus",
               "1.0,0.6", "--out", str(out), "--quiet"]) == 0
  for name in ("lm_tau_sweep.csv", "lm_tau_summary.md", "lm_tau_sweep.pdf", "lm_tau_sweep.png",
               "lm_tau_sweep_data.npz", "lm_config.json"):
    assert (out / name).exists(), name
  rows = schema.read_results(out / "lm_tau_sweep.csv")
  ka = [r for r in rows if r["pipeline"] == "K-A"]
  assert sorted(r["tau"] for r in ka) == [0.6, 1.0]
  assert {r["setting"] for r in ka} == {"preset=test;tau=0.6", "preset=test;tau=1"}
  for r in ka:  # K-A is anchored to the student of its tau
    assert r["reference_recall"] == r["student_recall"]
    assert r["law_reference"] == f"student@tau={r['tau']:g}"
  assert not any(r["above_ceiling"] for r in rows)
  # common random numbers: the column at the comparison's tau (0.6) is the comparison
  for pipe in ("K-A", "A-K", "A"):
    swept = next(r for r in rows if r["pipeline"] == pipe and (pipe == "A" or r["tau"] == 0.6))
    ref = next(r for r in reference_rows if r["pipeline"] == pipe and r["algorithm"] == "dpo")
    for key in ("target_share", "recall", "precision", "kl_ref", "predicted_mass"):
      assert swept[key] == ref[key], (pipe, key)
  text = (out / "lm_tau_summary.md").read_text()
  assert "K-A leaves the trap" in text and "--taus 1.0,0.6" in text


def test_trap_exit_interpolates_in_log_odds():
  from recall_theory.lm.tau_sweep import trap_exit
  assert trap_exit([0.5, 1.0], [0.25, 0.75]) == {"status": "crosses", "tau": 0.75}
  assert trap_exit([0.5, 1.0], [0.1, 0.2])["status"] == "never"
  assert trap_exit([0.5, 1.0], [0.6, 0.9]) == {"status": "always", "tau": 0.5}
  # first crossing wins; logit(0.1) = -2.197, logit(0.9) = +2.197 -> midpoint
  assert trap_exit([0.3, 0.6, 0.9], [0.01, 0.1, 0.9])["tau"] == pytest.approx(0.75)


def test_rows_carry_each_pipelines_cost(reference_rows):
  """Per-pipeline totals are the sums of their stages (issue 11): K-A = teacher + student + K-A."""
  from recall_theory.lm import cost
  by = {r["pipeline"]: r for r in reference_rows if r["seed"] == 0}
  teacher, student, ka = by["teacher"], by["student"], by["K-A"]
  for key in ("steps", "samples_drawn", "train_flops", "sampling_flops", "reference_flops"):
    assert ka[f"pipeline_{key}"] == pytest.approx(
        teacher[f"stage_{key}"] + student[f"stage_{key}"] + ka[f"stage_{key}"]), key
  assert by["A-K"]["pipeline_steps"] == (CONFIG.teacher_train.steps + CONFIG.preference_train.steps
                                         + CONFIG.student_train.steps)
  # DPO: 2 samples per pair drawn from the reference (KV cache), each scored by it once
  length, p = 1 + CONFIG.groundtruth.seq_len, 1
  assert ka["stage_samples_drawn"] == 2 * CONFIG.n_pairs
  assert ka["stage_sampling_flops"] == pytest.approx(
      cost.sampling_flops(CONFIG.student, 2 * CONFIG.n_pairs, p, length - p))
  assert ka["stage_reference_flops"] == pytest.approx(
      cost.reference_flops(CONFIG.student, 2 * CONFIG.n_pairs, length - 1))
  assert ka["stage_train_flops"] == pytest.approx(
      2 * CONFIG.preference_train.steps * CONFIG.preference_train.batch_size * (length - 1)
      * cost.train_flops_per_token(CONFIG.student, length - 1))
  for r in reference_rows:
    assert r["pipeline_flops"] == pytest.approx(
        r["pipeline_train_flops"] + r["pipeline_sampling_flops"] + r["pipeline_reference_flops"])
