"""Metrics of a model q from exact densities (quadrature on the grid; no sampling noise).

With p* the ground truth, A the target region (Voronoi cell(s) of the target mode(s)),
p*_A the ground truth restricted to its target modes (renormalised), R the oracle reward:

* ``reward``            E_q[R]
* ``target_mass``       q(A), the model's recall of the desirable behaviour
* ``target_precision``  E_q[log p*_A(x)]  (precision taken against the target modes)
* ``precision``         E_q[log p*(x)]    (overall precision, earlier paper's definition)
* ``recall``            E_{p*}[log q(x)]  (overall recall)
* ``support_precision`` q({p* >= d}),  ``support_recall``  p*({q >= d})  (threshold d)
* ``kl_to_reference``   KL(q || pi_ref) with pi_ref the reference of the pipeline's alignment step

Overall recall rewards spreading mass over *all* of p*'s modes; alignment by design
concentrates mass on the target, so a model that failed to align can score a higher
recall than one that succeeded (see :mod:`recall_theory.mog.pipelines`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from recall_theory.mog.quadrature import Grid, expect, kl_on_grid, log_normalize

METRICS = ("reward", "target_mass", "target_precision", "precision", "recall",
           "support_precision", "support_recall", "kl_to_reference")


class Landscape(NamedTuple):
  """Grid quantities shared by every metric: reward, target indicator, log p*, log p*_A (all (G,))."""
  reward_G: jax.Array
  target_G: jax.Array
  log_truth_G: jax.Array
  log_truth_target_G: jax.Array


def metrics_on_grid(log_q_G: jax.Array, log_ref_G: jax.Array, land: Landscape, grid: Grid,
                    support_threshold) -> jax.Array:
  """All metrics of ``METRICS`` for a log-density on the grid, shape (len(METRICS),).

  ``log_q_G`` is renormalised on the grid first: a no-op (to quadrature error, < 1e-9 when the
  density's finest scale exceeds the grid spacing) for resolved densities, and a guarantee that
  masses never exceed one when a very small beta makes a component narrower than a cell.
  """
  log_q_G = log_normalize(log_q_G, grid)[0]
  log_d = jnp.log(jnp.asarray(support_threshold, log_q_G.dtype))
  truth_mass_G = jnp.exp(land.log_truth_G + grid.log_cell_area)
  return jnp.stack([
      expect(log_q_G, land.reward_G, grid),
      expect(log_q_G, land.target_G, grid),
      expect(log_q_G, land.log_truth_target_G, grid),
      expect(log_q_G, land.log_truth_G, grid),
      jnp.sum(truth_mass_G * log_q_G),
      expect(log_q_G, (land.log_truth_G >= log_d).astype(log_q_G.dtype), grid),
      jnp.sum(truth_mass_G * (log_q_G >= log_d)),
      kl_on_grid(log_q_G, log_ref_G, grid),
  ])
