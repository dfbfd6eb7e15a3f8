"""The recall sweep: exact aligned target mass over (recall x gap/beta) and (recall x beta).

For a two-level reward (gap between the target set A and the rest) every regularizer
keeps the reference's proportions inside A and inside its complement, so the aligned
policy is summarised exactly by its target mass ``m`` and pays
``KL(pi || pi_ref) = kl(m || p)``. The sweep evaluates, on a log grid of the
reference's recall ``p = pi_ref(A)``:

* ``reverse_kl`` -- RLHF / DPO optimum, ``sigmoid(logit p + gap/beta)``;
* ``forward_kl`` -- ``E[r] - beta KL(pi_ref || pi)``, closed form (mass covering);
* ``chi2_kl``    -- ``E[r] - beta (KL + chi^2/2)`` (chiPO), Lambert-W tilt;
* ``ipo``        -- IPO with Bradley-Terry preferences, tau = beta;
* ``best_of_n``  -- N = exp(gap/beta): the N whose small-recall amplification
  (m ~ N p) equals the Gibbs odds ratio e^{gap/beta}; capped at the largest float.

Two maps: ``gap_over_beta`` (y = gap/beta at fixed beta) and ``beta`` (y = beta at fixed
gap). Plus the KL-budget ceiling ``kl_ceiling(p, K)`` for a few budgets K. All of it is
one jitted, vectorised call per map.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from recall_theory import errors
from recall_theory import theory as th

REGULARIZERS = ("reverse_kl", "forward_kl", "chi2_kl", "ipo", "best_of_n")
MAPS = ("gap_over_beta", "beta")


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """Grid of the recall sweep (validated by :meth:`validate`)."""
  recall_min: float = 1e-12
  recall_max: float = 0.5
  n_recall: int = 120
  ratio_min: float = 1e-2   # gap / beta, map "gap_over_beta"
  ratio_max: float = 1e2
  beta_min: float = 1e-3    # map "beta"
  beta_max: float = 1e3
  n_y: int = 120
  fixed_beta: float = 1.0   # beta of the gap_over_beta map
  fixed_gap: float = 1.0    # gap of the beta map
  budgets: tuple[float, ...] = (0.1, 1.0, 10.0)
  regularizers: tuple[str, ...] = REGULARIZERS
  dtype: str = "float64"

  def validate(self) -> "SweepConfig":
    errors.check_probability("--recall-min", self.recall_min)
    errors.check_probability("--recall-max", self.recall_max)
    if not 0 < self.recall_min < self.recall_max <= 1:
      raise errors.InputError(
          f"--recall-min/--recall-max must satisfy 0 < min < max <= 1, got {self.recall_min:g}, {self.recall_max:g}")
    if self.dtype == "float32" and self.recall_min < 1e-37:
      raise errors.InputError(f"--recall-min must be >= 1e-37 with --dtype float32, got {self.recall_min:g}")
    for name, lo, hi in (("--ratio-min/--ratio-max", self.ratio_min, self.ratio_max),
                         ("--beta-min/--beta-max", self.beta_min, self.beta_max)):
      errors.check_positive(name, lo)
      errors.check_positive(name, hi)
      if not lo < hi:
        raise errors.InputError(f"{name} must satisfy 0 < min < max, got {lo:g}, {hi:g}")
    errors.check_int_range("--resolution", self.n_recall, 2, 4000)
    errors.check_int_range("--resolution", self.n_y, 2, 4000)
    errors.check_positive("--beta", self.fixed_beta)
    errors.check_finite("--gap", self.fixed_gap)
    errors.check_nonnegative("--gap", self.fixed_gap)
    errors.check_nonnegative("--budgets", list(self.budgets))
    unknown = sorted(set(self.regularizers) - set(REGULARIZERS))
    if unknown or not self.regularizers:
      raise errors.InputError(f"--regularizers must be a non-empty subset of {list(REGULARIZERS)}, got {unknown or '[]'}")
    if self.dtype not in ("float32", "float64"):
      raise errors.InputError(f"--dtype must be float32 or float64, got {self.dtype!r}")
    return self


def aligned_mass_by_regularizer(name: str, recall, gap, beta):
  """Exact two-level target mass of regularizer ``name`` (broadcasting arrays)."""
  if name == "reverse_kl":
    return jax.nn.sigmoid(th.aligned_logit(recall, gap, beta))
  if name == "forward_kl":
    return th.forward_kl_aligned_mass(recall, gap, beta)
  if name == "chi2_kl":
    return jnp.exp(th.regularizers._chi2_two_level_log_mass(recall, gap, beta))
  if name == "ipo":
    return jax.nn.sigmoid(th.aligned_logit(recall, jax.nn.sigmoid(gap) - 0.5, beta))
  if name == "best_of_n":
    dtype = jnp.result_type(recall)
    log_n = jnp.minimum(gap / beta, 0.99 * math.log(float(jnp.finfo(dtype).max)))
    return -jnp.expm1(jnp.exp(jnp.maximum(log_n, 0.0)) * jnp.log1p(-recall))
  raise errors.InputError(f"unknown regularizer {name!r}; choose from {list(REGULARIZERS)}")


def _kl_of_mass(mass, recall):
  return th.bernoulli_kl(jnp.clip(mass, 0.0, 1.0), recall)


def _grid(recall, gap, beta, regularizers):
  masses, kls = [], []
  for name in regularizers:
    mass = aligned_mass_by_regularizer(name, recall, gap, beta)
    masses.append(mass)
    kls.append(th.aligned_kl(recall, gap, beta) if name == "reverse_kl" else _kl_of_mass(mass, recall))
  return jnp.stack(masses), jnp.stack(kls)


def compute_sweep(config: SweepConfig) -> dict[str, np.ndarray]:
  """Evaluate both maps and the ceilings; returns host arrays.

  Keys: ``recall [R]``, ``ratio [Y]`` (gap/beta), ``beta_axis [Y]``,
  ``mass_gap_over_beta / kl_gap_over_beta [G, Y, R]``, ``mass_beta / kl_beta [G, Y, R]``
  (G regularizers in ``config.regularizers`` order), ``budgets [B]``,
  ``ceiling / ceiling_loose [B, R]``, ``half_mass_ratio [R]`` (gap/beta where the
  reverse-KL optimum reaches mass 1/2: the trap boundary).
  """
  config.validate()
  ctx = jax.enable_x64(True) if config.dtype == "float64" else jax.enable_x64(False)
  with ctx:
    dtype = jnp.dtype(config.dtype)
    recall = jnp.logspace(math.log10(config.recall_min), math.log10(config.recall_max), config.n_recall, dtype=dtype)
    ratio = jnp.logspace(math.log10(config.ratio_min), math.log10(config.ratio_max), config.n_y, dtype=dtype)
    beta_axis = jnp.logspace(math.log10(config.beta_min), math.log10(config.beta_max), config.n_y, dtype=dtype)
    regs = tuple(config.regularizers)
    grid = jax.jit(_grid, static_argnums=3)
    r = recall[None, :]
    mass_a, kl_a = grid(r, ratio[:, None] * config.fixed_beta, jnp.asarray(config.fixed_beta, dtype), regs)
    mass_b, kl_b = grid(r, jnp.asarray(config.fixed_gap, dtype), beta_axis[:, None], regs)
    budgets = jnp.asarray(config.budgets, dtype)
    ceiling = th.kl_ceiling(recall[None, :], budgets[:, None])
    loose = th.kl_ceiling_loose(recall[None, :], budgets[:, None])
    half = -th.log_odds(recall)
    out = dict(recall=recall, ratio=ratio, beta_axis=beta_axis, mass_gap_over_beta=mass_a,
               kl_gap_over_beta=kl_a, mass_beta=mass_b, kl_beta=kl_b, budgets=budgets,
               ceiling=ceiling, ceiling_loose=loose, half_mass_ratio=half)
    out = {k: np.asarray(v) for k, v in out.items()}
  out["regularizers"] = np.asarray(regs)
  out["fixed_beta"] = np.asarray(config.fixed_beta)
  out["fixed_gap"] = np.asarray(config.fixed_gap)
  return out


def tidy_columns(result: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """One row per (map, regularizer, y, recall): map, regularizer, recall, beta, gap,
  gap_over_beta, aligned_mass, kl."""
  regs = list(result["regularizers"])
  recall = result["recall"]
  cols = {k: [] for k in ("map", "regularizer", "recall", "beta", "gap", "gap_over_beta", "aligned_mass", "kl")}
  for map_name in MAPS:
    mass, kl = result[f"mass_{map_name}"], result[f"kl_{map_name}"]
    n_y, n_r = mass.shape[1:]
    if map_name == "gap_over_beta":
      beta = np.full(n_y, float(result["fixed_beta"]))
      gap = result["ratio"] * beta
    else:
      beta = result["beta_axis"]
      gap = np.full(n_y, float(result["fixed_gap"]))
    for g, name in enumerate(regs):
      cols["map"].append(np.full(n_y * n_r, map_name))
      cols["regularizer"].append(np.full(n_y * n_r, name))
      cols["recall"].append(np.tile(recall, n_y))
      cols["beta"].append(np.repeat(beta, n_r))
      cols["gap"].append(np.repeat(gap, n_r))
      cols["gap_over_beta"].append(np.repeat(gap / beta, n_r))
      cols["aligned_mass"].append(mass[g].ravel())
      cols["kl"].append(kl[g].ravel())
  return {k: np.concatenate(v) for k, v in cols.items()}
