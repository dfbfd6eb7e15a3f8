"""The vmapped grid: 8 simulated CPU devices give the single-device results; pipeline sanity."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from recall_theory.mog.setup import MogConfig
    from recall_theory.mog.grid_run import run_grid
    from recall_theory.plateau import PlateauRule
    # a plateau rule checked at steps 5, 10, 20 (budget 20): every cell stops on its own, and the
    # sharded, single-device and chunked runs must still agree
    cfg = MogConfig(n_teacher_samples=300, n_student_samples=300, em_iters=15, pg_steps=20, pg_batch=32,
                    dpo_steps=20, dpo_pairs=64, control_steps=10, grid_n=41,
                    plateau=PlateauRule(first_check=5, objective_tolerance=1e-2))
    kw = dict(seeds=[0, 1, 2], betas=[0.05, 1.0])
    sharded = run_grid(cfg, devices=jax.devices(), **kw)
    single = run_grid(cfg, devices=jax.devices()[:1], **kw)
    chunked = run_grid(cfg, devices=jax.devices()[:1], chunk_size=5, **kw)
    np.savez(sys.argv[1], sharded=sharded.metrics, single=single.metrics, chunked=chunked.metrics,
             student_mass=sharded.student_target_mass, teacher_mass=sharded.teacher_target_mass,
             steps_sharded=sharded.trained_steps, steps_single=single.trained_steps,
             steps_chunked=chunked.trained_steps)
    print(json.dumps({"devices": jax.device_count()}))
""")


@pytest.fixture(scope="module")
def grid_runs(tmp_path_factory):
  out = tmp_path_factory.mktemp("grid") / "runs.npz"
  env = dict(os.environ)
  # The device count must be fixed before jax starts, hence the subprocess; level 0 keeps compiling short.
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
  env["JAX_PLATFORMS"] = "cpu"
  proc = subprocess.run([sys.executable, "-c", SCRIPT, str(out)], env=env, capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  info = json.loads(proc.stdout.strip().splitlines()[-1])
  return info, dict(np.load(out))


def test_eight_devices_equal_one_device(grid_runs):
  info, runs = grid_runs
  assert info["devices"] == 8
  assert runs["sharded"].shape == (3, 2, 2, 5, 3, 8)  # seed, beta, student, pipeline (with A), algorithm, metric
  assert np.isfinite(runs["sharded"]).all()
  np.testing.assert_allclose(runs["sharded"], runs["single"], rtol=1e-6, atol=1e-9)


def test_lax_map_chunks_equal_one_vmap(grid_runs):
  _, runs = grid_runs
  np.testing.assert_allclose(runs["chunked"], runs["single"], rtol=1e-6, atol=1e-9)


def test_every_cell_stops_on_its_own_and_the_same_everywhere(grid_runs):
  _, runs = grid_runs
  np.testing.assert_array_equal(runs["steps_sharded"], runs["steps_single"])
  np.testing.assert_array_equal(runs["steps_chunked"], runs["steps_single"])
  assert set(np.unique(runs["steps_single"])) <= {10, 20}   # the rule compares 5 -> 10, then 10 -> 20
  assert len(np.unique(runs["steps_single"])) == 2          # some cells stopped early, others did not


def test_students_drop_the_target_and_exact_pipelines_order(grid_runs):
  from recall_theory.mog.metrics import METRICS
  from recall_theory.mog.setup import ALGORITHMS, PIPELINES
  _, runs = grid_runs
  m = runs["sharded"]
  tm = METRICS.index("target_mass")
  ex = ALGORITHMS.index("exact")
  assert (runs["teacher_mass"] > 0.05).all()  # the teacher covers the target
  assert (runs["student_mass"] < 1e-2).all()  # both students drop it
  assert (runs["student_mass"][:, :, 1] < 1e-12).all()  # the 3-mode one keeps no mode near it
  ka, ak = PIPELINES.index("K-A"), PIPELINES.index("A-K")
  # K-A cannot lift the 3-mode student's target (logit p + D/beta << 0 at both betas); A-K can.
  assert (m[:, :, 1, ka, ex, tm] < 1e-6).all()
  assert (m[:, 0, 1, ak, ex, tm] > 0.5).all()
  # Masses are probabilities, KL to the reference is non-negative.
  assert (m[..., tm] >= -1e-9).all() and (m[..., tm] <= 1 + 1e-9).all()
  assert (m[..., METRICS.index("kl_to_reference")] >= -1e-6).all()


@pytest.mark.parametrize("chunk_size", [0, -3, 2.5, True])
def test_bad_chunk_size_names_the_argument_and_range(chunk_size):
  """Refused before anything is built or compiled: the message names chunk_size and its range."""
  from recall_theory.errors import InputError
  from recall_theory.mog.grid_run import run_grid
  from recall_theory.mog.setup import MogConfig
  with pytest.raises(InputError, match=r"chunk_size must be an integer in \[1, inf\]"):
    run_grid(MogConfig(), seeds=[0], betas=[1.0], chunk_size=chunk_size)


def test_cli_chunk_size_message_gives_the_range(tmp_path, capsys):
  from recall_theory.cli.main import main
  assert main(["mog", "--chunk-size", "0", "--out", str(tmp_path / "never")]) == 2
  err = capsys.readouterr().err.strip()
  assert "--chunk-size must be an integer in [1, 1000000], got 0" in err and len(err.splitlines()) == 1, err
