"""`recall-theory mog --match-compute`: validation, cost accounting and a tiny run."""


import numpy as np
import pytest

from recall_theory.cli import main as cli_main
from recall_theory.mog import compute_match as cm
from recall_theory.mog.setup import MogConfig

TINY = MogConfig(students=("4-mode",), n_teacher_samples=256, n_student_samples=256, em_iters=6,
                 pg_steps=4, pg_batch=32, dpo_steps=4, dpo_pairs=32, control_steps=4, grid_n=33, plateau=None)


def _one_line(capsys):
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1, err
  return err[0]


@pytest.mark.parametrize("argv, flag", [
    (["--ladder", "1,-4"], "--ladder"),
    (["--ladder", "4,2"], "--ladder"),
    (["--ladder", "1,inf"], "--ladder"),
    (["--betas", "0.1,0.3"], "--betas"),
    (["--quick"], "--quick"),
    (["--time-limit", "0"], "--time-limit"),
    (["--ladder", "1,4,16,64,256,1024", "--time-limit", "60"], "--time-limit 60"),
])
def test_cli_refuses_before_anything(argv, flag, capsys, tmp_path):
  rc = cli_main.main(["mog", "--match-compute", *argv, "--out", str(tmp_path / "o")])
  assert rc == 2
  assert flag in _one_line(capsys)
  assert not (tmp_path / "o").exists()


def test_ladder_without_match_compute_is_refused(capsys, tmp_path):
  assert cli_main.main(["mog", "--ladder", "1,2", "--out", str(tmp_path / "o")]) == 2
  assert "--match-compute" in _one_line(capsys)


def test_scaled_budgets():
  c = cm.fixed_budget(MogConfig())
  assert c.plateau is None and c.pg_steps == c.dpo_steps == cm.BASE_STEPS
  assert cm.scaled(c, "pg", 4).pg_steps == 4 * c.pg_steps
  assert cm.scaled(c, "pg", 4).pg_batch == c.pg_batch
  assert cm.scaled(c, "dpo", 4).dpo_pairs == 4 * c.dpo_pairs
  assert cm.scaled(c, "dpo", 4).dpo_steps == c.dpo_steps
  assert cm.alignment_budget(c, "pg") == (c.pg_steps * c.pg_batch, 2 * c.pg_steps)
  assert cm.alignment_budget(c, "dpo") == (2 * c.dpo_pairs, c.dpo_steps)
  assert cm.estimate_seconds(c, (1, 4, 16, 64), 4) <= cm.DEFAULT_TIME_LIMIT_S
  assert cm.estimate_seconds(c, (1, 4), 4) < cm.estimate_seconds(c, (1, 4, 16), 4)


def test_tiny_run_counts_samples_and_steps(tmp_path):
  rows = cm.run_match_compute(TINY, (1.0, 2.0), [0], 0.1, progress=False)
  ka = {(r["algorithm"], r["ladder_scale"]): r for r in rows if r["pipeline"] == "K-A"}
  fits = TINY.n_teacher_samples + TINY.n_student_samples
  for alg in cm.ALGORITHMS:
    n1, s1 = cm.alignment_budget(TINY, alg)
    assert ka[(alg, 1.0)]["n_samples"] == n1
    assert ka[(alg, 2.0)]["n_samples"] == 2 * n1
    assert ka[(alg, 1.0)]["pipeline_samples_drawn"] == fits + n1
    assert ka[(alg, 2.0)]["pipeline_steps"] == 2 * TINY.em_iters + cm.alignment_budget(
        cm.scaled(TINY, alg, 2.0), alg)[1]
    ak = next(r for r in rows if r["pipeline"] == "A-K" and r["algorithm"] == alg)
    assert ak["pipeline_samples_drawn"] == TINY.n_teacher_samples + n1 + TINY.n_student_samples
    assert ak["pipeline_stages"] == "teacher+A+A-K distillation"
  for r in rows:
    assert 0.0 <= r["target_mass"] <= 1.0
    assert not r["above_ceiling"]
  # the aligned model's law row: K-A is anchored to the student, A-K to the teacher
  student = next(r for r in rows if r["pipeline"] == "student")
  assert ka[("pg", 1.0)]["reference_recall"] == pytest.approx(student["target_mass"])
  text = cm.write_outputs(rows, tmp_path, ladder=(1.0, 2.0), beta=0.1, seeds=[0], elapsed=1.0,
                          estimate=1.0, time_limit=10.0, options="defaults", config=TINY)
  for name in ("mog_compute.csv", "mog_compute.png", "mog_compute.pdf", "mog_compute_data.npz",
               "mog_compute_notes.md"):
    assert (tmp_path / name).exists()
  assert "p_teacher/p_student" in text
  data = np.load(tmp_path / "mog_compute_data.npz")
  assert data["4-mode__pg__K-A__share_SxL"].shape == (1, 2)
