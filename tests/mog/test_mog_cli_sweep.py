"""The mog command's argument checks, the recall sweep, and (slow) the quick end-to-end run."""


import numpy as np
import pytest

from recall_theory.cli.main import main
from recall_theory.errors import InputError
from recall_theory.mog.setup import MogConfig


@pytest.mark.parametrize("argv, needle", [
    (["--seeds", "0"], "--seeds"),
    (["--betas", "0.1,-1"], "--betas"),
    (["--betas", "a,b"], "--betas"),
    (["--beta-min", "1", "--beta-max", "0.1"], "--beta-max"),
    (["--label-noise", "0.6"], "--label-noise"),
    (["--dpo-pairs", "3"], "--dpo-pairs"),
])
def test_bad_arguments_exit_2_and_write_nothing(tmp_path, capsys, argv, needle):
  out = tmp_path / "never"
  assert main(["mog", "--out", str(out), *argv]) == 2
  err = capsys.readouterr().err
  assert needle in err and len(err.strip().splitlines()) == 1
  assert not out.exists()


def test_config_rejects_students_that_cannot_fit():
  with pytest.raises(InputError, match="number of modes of student '4-mode'"):
    MogConfig(mode_means=((-1., -1.), (0., -1.), (1., 1.))).validate()
  with pytest.raises(InputError, match="mode_weights"):
    MogConfig(mode_weights=(0.5,) * 8).validate()
  with pytest.raises(InputError, match="target"):
    MogConfig(target="three").validate()


def test_sweep_argument_errors(tmp_path):
  from recall_theory.mog.sweep import run_recall_sweep
  with pytest.raises(InputError, match="weight_min < weight_max"):
    run_recall_sweep(tmp_path, weight_min=0.5, weight_max=0.1)
  with pytest.raises(InputError, match="beta must be > 0"):
    run_recall_sweep(tmp_path, betas=(0.1, 0.0))
  with pytest.raises(InputError, match="dtype"):
    run_recall_sweep(tmp_path, dtype="float16")
  assert not list(tmp_path.iterdir())


def test_recall_sweep_writes_exact_monotone_curves(tmp_path):
  from recall_theory.mog.sweep import run_recall_sweep
  paths = run_recall_sweep(tmp_path, n_weights=4, betas=(0.1, 1.0))
  names = sorted(p.name for p in paths)
  assert names == ["mog_recall_sweep.csv", "mog_recall_sweep.pdf", "mog_recall_sweep.png",
                   "mog_recall_sweep_caption.md", "mog_recall_sweep_data.npz"]
  from recall_theory import schema
  all_rows = schema.read_results(tmp_path / "mog_recall_sweep.csv")  # the law's columns are there
  assert len(all_rows) == 8 * 3  # weights x betas x pipelines (K-A, A-K, A)
  assert not any(r["above_ceiling"] for r in all_rows)
  for r in all_rows:
    if r["pipeline"] in ("K-A", "A"):  # exact tilts: the law's optimum
      assert r["aligned_mass"] == pytest.approx(r["predicted_mass"], rel=1e-6, abs=1e-300)
  rows = [r for r in all_rows if r["pipeline"] == "K-A"]
  get = lambda key, beta: np.array([float(r[key]) for r in rows if float(r["beta"]) == beta])
  for beta in (0.1, 1.0):
    ak, ka = get("ak_target_mass", beta), get("ka_target_mass", beta)
    assert np.all(np.diff(ak) >= -1e-9)  # more teacher recall never hurts A-K
    # Where the student has dropped the target (its recall is only a neighbour's tail), aligning
    # it (K-A) reaches no more target mass than aligning the full teacher (set-mass law, item 2).
    dropped = get("student_target_mass", beta) < 1e-3
    assert dropped[:2].all()
    assert np.all(ka[dropped] <= get("aligned_teacher_target_mass", beta)[dropped] + 1e-9)
  # At weight 1e-8 the student has dropped the target; at beta = 0.1 alignment cannot bring it back.
  assert get("student_target_mass", 0.1)[0] < 1e-3
  assert get("ka_target_mass", 0.1)[0] < 0.05


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path):
  from recall_theory import schema
  assert main(["mog", "--quick", "--out", str(tmp_path)]) == 0
  rows = schema.read_results(tmp_path / "mog_results.csv")  # the law's columns are all there
  assert len(rows) == 5 * 3 * 2 * 3 * 2  # pipelines (with A) x algorithms x students x betas x seeds
  assert schema.report_ceiling_violations(rows, where="mog --quick") == 0
  for name in ("mog_densities", "mog_metrics_4-mode", "mog_phase", "mog_tradeoff"):
    assert (tmp_path / f"{name}.png").exists() and (tmp_path / f"{name}_data.npz").exists()


def test_beta_must_be_positive_everywhere():
  import jax.numpy as jnp
  from recall_theory.mog import mixture as mx
  from recall_theory.mog import quadrature as qd
  from recall_theory.mog.tilt import tilt_linear
  q = mx.make_mixture([1.0], [[0.0, 0.0]], 0.1)
  with pytest.raises(InputError, match="beta must be > 0"):
    tilt_linear(q, jnp.ones(2), 0.0)
  grid = qd.make_grid(-1, 1, 16)
  with pytest.raises(InputError, match="beta must be > 0"):
    qd.tilt_on_grid(jnp.zeros(256), jnp.zeros(256), -1.0, grid)


def test_two_mode_target_landscape():
  import jax.numpy as jnp
  from recall_theory.mog.grid_run import build_problem
  pb = build_problem(MogConfig(target="two", grid_n=40), jnp.float32)
  cell = float(jnp.exp(pb.grid.log_cell_area))
  # Two corner Voronoi cells, each [0.5, 2.5] x [0.5, 2.5] inside the [-2.5, 2.5]^2 box: area 2 x 4.
  area = float(pb.land.target_G.sum()) * cell
  assert abs(area - 8.0) < 1e-9
  r = pb.reward(jnp.array([[1.0, 1.0], [-1.0, 1.0], [0.0, -1.0]]))
  assert np.allclose(np.asarray(r[:2]), 1.0) and float(r[2]) < 1e-4
