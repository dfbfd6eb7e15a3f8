"""The MoG gap levels: the covering proposal's draws and density, and a small run."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recall_theory.mog import gap
from recall_theory.mog.mixture import log_prob, make_mixture
from recall_theory.mog.quadrature import make_grid
from recall_theory.mog.setup import MogConfig


@pytest.fixture(scope="module")
def setting():
  with jax.enable_x64(True):
    grid = make_grid(-2.5, 2.5, 51, jnp.float64)
    ref = make_mixture([0.9, 0.1], [[-1.0, -1.0], [0.8, 0.7]], [0.04, 0.05], dtype=jnp.float64)
    target_G = ((grid.points_GxD[:, 0] > 0.5) & (grid.points_GxD[:, 1] > 0.5)).astype(jnp.float64)
    yield grid, ref, target_G


def test_proposal_density_integrates_to_one(setting):
  grid, ref, target_G = setting
  with jax.enable_x64(True):
    proposal = gap.covering_proposal(ref, grid, target_G, 0.5)
    # a fine grid that subdivides every coarse cell: the cell part integrates exactly, the
    # reference part to the midpoint rule's accuracy
    fine = make_grid(-2.5, 2.5, 51 * 11, jnp.float64)
    mass = float(jnp.sum(jnp.exp(gap.log_proposal_density(fine.points_GxD, proposal, grid)
                                 + fine.log_cell_area)))
  assert mass == pytest.approx(1.0, abs=1e-9)


def test_proposal_draws_follow_its_density(setting):
  grid, ref, target_G = setting
  with jax.enable_x64(True):
    proposal = gap.covering_proposal(ref, grid, target_G, 0.5)
    x = np.asarray(gap.sample_proposal(jax.random.PRNGKey(0), proposal, grid, 200_000))
    # half of the draws come from the reference restricted to the target's cells
    in_target_cells = (x[:, 0] > 0.5 - 0.05) & (x[:, 1] > 0.5 - 0.05)
    share = in_target_cells.mean()
    from recall_theory.mog.region import mixture_region_mass
    from recall_theory.mog.setup import target_region
    region = target_region(MogConfig())             # the box x > 1/2, y > 1/2
    ref_mass = float(mixture_region_mass(ref, region))
    # the reference's own share of the box, plus the restricted half (tolerance: a half-cell strip)
    assert share == pytest.approx(0.5 + 0.5 * ref_mass, abs=0.02)
    # density at a target cell's centre: half the reference plus half the cell's m_c / h^2
    c = int(jnp.argmax(proposal.log_cell_mass_G))
    centre = grid.points_GxD[c][None]
    log_q = float(gap.log_proposal_density(centre, proposal, grid)[0])
    expected = np.logaddexp(np.log(0.5) + float(log_prob(ref, centre)[0]),
                            np.log(0.5) + float(proposal.log_cell_mass_G[c] - grid.log_cell_area))
  assert log_q == pytest.approx(expected, abs=1e-12)


def test_small_mog_gap_run_has_every_level():
  from recall_theory import decomposition as dec
  config = dataclasses.replace(MogConfig(), students=("4-mode",), n_teacher_samples=500,
                               n_student_samples=500, em_iters=20, pg_steps=200, dpo_steps=200,
                               pg_batch=64, dpo_pairs=128, grid_n=41, control_steps=10,
                               plateau=dataclasses.replace(MogConfig().plateau, first_check=50))
  with jax.enable_x64(True):
    rows = gap.run_gap(config, [0, 1], [0.3])
  assert len(rows) == 2 * 2 * 3 * 4                 # seeds x algorithms x pipelines x levels
  law = {(r["pipeline"], r["algorithm"], r["seed"]): r["aligned_mass"] for r in rows if r["level"] == "law"}
  # A and the control share the teacher's tilt; PG and DPO share the law
  assert law[("A", "pg", 0)] == law[("K-A(teacher-ref)", "pg", 0)] == law[("A", "dpo", 0)]
  for r in rows:
    assert 0.0 <= r["aligned_mass"] <= 1.0
    assert r["plateau"] in ("exact", "reached", "budget")
  entries = dec.decompose(rows)
  assert len(entries) == 2 * 3
  assert all(e["n_seeds"] == 2 for e in entries)
