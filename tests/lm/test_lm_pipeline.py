"""Pipelines end to end on the `test` preset: resume, checkpoints, divergence, CLI."""

import csv
import dataclasses
import json
import math
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from recall_theory.cli.main import main
from recall_theory.errors import InputError, TrainingDivergedError
from recall_theory.lm import checkpoint as ckpt_lib
from recall_theory.lm import losses, pipeline, presets
from recall_theory.lm.groundtruth import MarkovMixture
from recall_theory.lm.model import Transformer
from recall_theory.lm.train import enable_deterministic

# The resume test needs bit-identical reruns: on GPUs that takes XLA's deterministic ops
# (no-op on CPU). Called at import, so the reference run compiles with it too.
enable_deterministic()

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
  for r in rows:  # the CSV holds repr(float): an exact round trip
    for k in r:
      if k not in ("pipeline", "algorithm"):
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


def test_killed_run_resumes_to_identical_metrics(reference_rows, tmp_path):
  ckpt = tmp_path / "ckpt"
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
  other = dataclasses.replace(CONFIG, tau=0.9)
  with pytest.raises(InputError, match="different configuration"):
    pipeline.run_comparison(other, SEEDS, checkpoint_dir=ckpt, resume=True, progress=False)
  resumed = pipeline.run_comparison(CONFIG, SEEDS, checkpoint_dir=ckpt, resume=True,
                                    progress=False)
  assert len(resumed) == len(reference_rows)
  for a, b in zip(reference_rows, resumed):
    assert a.keys() == b.keys()
    for key in a:  # bit-identical metrics (NaN where a metric does not apply)
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
  assert "| A-K | dpo | 1 |" in (cli_out / "lm_summary.md").read_text()
  assert json.loads((cli_out / "lm_config.json").read_text())["seeds"] == [0]


@pytest.mark.parametrize("argv, word", [
    (["--preset", "huge"], "--preset"),
    (["--seeds", "a,b"], "--seeds"),
    (["--algorithms", "ppo"], "--algorithms"),
    (["--resume"], "--resume needs --checkpoint-dir"),
    (["--n-devices", "64"], "n_devices"),
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
  """The claim on the cpu-tiny preset (about 2.5 minutes on 2 cores)."""
  rows = pipeline.run_comparison(presets.CPU_TINY, [0, 1, 2], progress=False)
  for alg in presets.CPU_TINY.algorithms:
    def mean(pipe, metric):
      return np.mean([r[metric] for r in rows if r["pipeline"] == pipe and r["algorithm"] == alg])
    for metric in ("reward", "target_share", "target_precision"):
      assert mean("A-K", metric) > mean("K-A", metric), (alg, metric)
