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
gap). Beside each cell, the law's columns (:mod:`recall_theory.schema`):
``predicted_mass = sigmoid(logit p + gap/beta)`` (the reverse-KL law, the same for every
regularizer), the KL paid and ``kl_ceiling = t*(p, kl)``, the most target mass any policy
within that KL can have (theory item 4; every regularizer's optimum sits on it). Plus the
KL-budget ceiling ``kl_ceiling(p, K)`` for a few budgets K.

Bounded memory: the grid is evaluated in blocks of at most ``chunk_cells`` cells, one
jitted program per regularizer (compiled once: every block has the same shape), and
:func:`stream_sweep` streams each block to the CSV (text formatted by XLA,
:mod:`recall_theory.textformat`, hashed as it is written) and into its place in the ``.npz``.
Peak memory depends on ``chunk_cells``, not on the resolution
(:func:`estimate_memory_bytes`); :func:`compute_sweep` is the in-memory variant for
small grids and tests.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import math
import os
import shutil
from pathlib import Path
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from recall_theory import errors
from recall_theory import io
from recall_theory import schema
from recall_theory import textformat
from recall_theory import theory as th
from recall_theory.theory import law

REGULARIZERS = ("reverse_kl", "forward_kl", "chi2_kl", "ipo", "best_of_n")
MAPS = ("gap_over_beta", "beta")
CSV_COLUMNS = ("map", "regularizer", "recall", "beta", "gap", "gap_over_beta", "aligned_mass", "kl",
               "reference_recall", "predicted_mass", "kl_ceiling")
MAX_RESOLUTION = 10_000
DEFAULT_CHUNK_CELLS = 1 << 17  # 131072 cells: blocks small enough for the allocator to reuse their memory
# Peak resident memory = BASE + BYTES_PER_CHUNK_CELL x cells per block, fitted above the peaks
# measured (VmHWM, `recall-theory sweep --no-figures`): 0.65 GB with blocks of 2^17 cells and
# 1.25 GB with 2^20 at resolution 1000 (experiments/bench_theory.py --cli reports it per resolution);
# with the .npz written in place and the next block dispatched ahead: 0.49 GiB at resolution 1000
# and 0.59 GiB at 4000 (24.5 GB CSV + 4.1 GB .npz), blocks of 2^17 cells.
# Blocks alive at once, at most three: the next one computed by XLA (dispatched ahead), this
# one formatted (XLA's temporaries: chi^2 solve, Newton ceiling, text digits; its text, ~150
# bytes per row) and the previous one's text being written by the writer thread.
BYTES_PER_CHUNK_CELL = 800
BASE_MEMORY_BYTES = 600 * 2 ** 20  # python, jax, numpy, the compiled programs
CSV_BYTES_PER_ROW_MAX = 25 + 9 * 16  # prefix + 9 numbers with separators, 3-digit exponents
_FALLBACK_CELLS = 4096
_NEWTON_STEPS = 6  # cap: from the regularizer's own mass 1-3 steps reach float precision; the rest bisect


def check_recall_range(recall_min: float, recall_max: float, dtype: str, *, max_inclusive: bool) -> None:
  """One message per flag with the whole allowed range: ``--recall-min`` in [smallest normal
  of ``dtype``, --recall-max), ``--recall-max`` up to 1 (inclusive or not). Subnormal recall
  is refused: log-space formulas lose every digit there."""
  tiny = float(np.finfo(dtype).tiny)
  top = "1]" if max_inclusive else "1)"
  if not tiny <= recall_min < 1:  # NaN fails here too
    raise errors.InputError(f"--recall-min must lie in [{tiny!r}, 1) (from the smallest normal {dtype}), "
                            f"got {recall_min!r}")
  if not (0 < recall_max <= 1 if max_inclusive else 0 < recall_max < 1):
    raise errors.InputError(f"--recall-max must lie in (0, {top}, got {recall_max!r}")
  if not recall_min < recall_max:
    raise errors.InputError(f"--recall-min/--recall-max must satisfy min < max, got {recall_min:g}, {recall_max:g}")


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
  chunk_cells: int = DEFAULT_CHUNK_CELLS  # cells per evaluated block (memory bound)

  def validate(self) -> "SweepConfig":
    if self.dtype not in ("float32", "float64"):
      raise errors.InputError(f"--dtype must be float32 or float64, got {self.dtype!r}")
    check_recall_range(self.recall_min, self.recall_max, self.dtype, max_inclusive=True)
    for name, lo, hi in (("--ratio-min/--ratio-max", self.ratio_min, self.ratio_max),
                         ("--beta-min/--beta-max", self.beta_min, self.beta_max)):
      errors.check_positive(name, lo)
      errors.check_positive(name, hi)
      if not lo < hi:
        raise errors.InputError(f"{name} must satisfy 0 < min < max, got {lo:g}, {hi:g}")
    for flag, value in (("--ratio-min", self.ratio_min), ("--ratio-max", self.ratio_max),
                        ("--beta-min", self.beta_min), ("--beta-max", self.beta_max)):
      errors.check_representable(flag, value, self.dtype)
    errors.check_int_range("--resolution", self.n_recall, 2, MAX_RESOLUTION)
    errors.check_int_range("--resolution", self.n_y, 2, MAX_RESOLUTION)
    errors.check_positive("--beta", self.fixed_beta)
    errors.check_representable("--beta", self.fixed_beta, self.dtype)
    errors.check_finite("--gap", self.fixed_gap)
    errors.check_nonnegative("--gap", self.fixed_gap)
    errors.check_representable("--gap", self.fixed_gap, self.dtype)
    self._check_grids()
    if not self.budgets:
      raise errors.InputError("--budgets must list at least one budget")
    errors.check_nonnegative("--budgets", list(self.budgets))
    errors.check_representable("--budgets", list(self.budgets), self.dtype)
    errors.check_distinct("--budgets", self.budgets)
    unknown = sorted(set(self.regularizers) - set(REGULARIZERS))
    if unknown or not self.regularizers:
      raise errors.InputError(f"--regularizers must be a non-empty subset of {list(REGULARIZERS)}, got {unknown or '[]'}")
    errors.check_distinct("--regularizers", self.regularizers)
    errors.check_int_range("chunk_cells", self.chunk_cells, 1)
    return self

  def _check_grids(self) -> None:
    """The grids' derived cells in the dtype's normal numbers: gap = (gap/beta) x --beta on
    one map, gap/beta = --gap / beta on the other; outside, a cell is inf, NaN or flushed to 0."""
    tiny, huge = float(np.finfo(self.dtype).tiny), float(np.finfo(self.dtype).max)
    beta, gap = self.fixed_beta, self.fixed_gap
    if self.ratio_max * beta > huge:
      raise errors.InputError(f"--ratio-max {self.ratio_max:g} times --beta {beta:g} exceeds the largest "
                              f"{self.dtype} ({huge:g}): --ratio-max must be <= {huge / beta:g} with this --beta")
    if self.ratio_min * beta < tiny:
      raise errors.InputError(f"--ratio-min {self.ratio_min:g} times --beta {beta:g} is below the smallest normal "
                              f"{self.dtype} ({tiny:g}): --ratio-min must be >= {tiny / beta:g} with this --beta")
    if gap / self.beta_min > huge:
      raise errors.InputError(f"--gap {gap:g} over --beta-min {self.beta_min:g} exceeds the largest {self.dtype} "
                              f"({huge:g}): --gap must be <= {huge * self.beta_min:g} with this --beta-min")
    if 0 < gap / self.beta_max < tiny:
      raise errors.InputError(f"--gap {gap:g} over --beta-max {self.beta_max:g} is below the smallest normal "
                              f"{self.dtype} ({tiny:g}): --gap must be 0 or >= {tiny * self.beta_max:g} with this "
                              f"--beta-max")

  @property
  def rows_per_chunk(self) -> int:
    """y rows per evaluated block: every block is ``[rows_per_chunk, n_recall]``."""
    return max(1, min(self.n_y, self.chunk_cells // self.n_recall))


# ------------------------------------------------------------------------------ the math
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


def kl_ceiling_from(recall, kl, start):
  """``t*(p, K) = max{t >= p : kl(t || p) <= K}`` by safeguarded Newton from ``start``.

  The same quantity as :func:`recall_theory.theory.kl_ceiling` (which bisects 120 times
  from scratch) and the same kernel: both solve for the lift ``s = logit t - logit p >= 0``
  with ``g(s) = kl(t || p) - K`` from ``theory.two_level._lifted_kl`` (the series about
  ``t = p`` for small lifts: ``t - p`` from ``expm1(s)`` and kl without the cancellation of
  its two logarithms, so a small KL at tiny p keeps its digits), and
  ``g'(s) = s t (1 - t)``. From a start near the answer (the regularizer's own mass,
  which lies on the ceiling of its own KL) a few steps reach float precision. Steps
  leaving the bracket ``[0, logit(1 - eps) - logit p]`` are replaced by bisection.

  Returns ``(ceiling, converged)``; the caller recomputes unconverged cells with
  ``theory.kl_ceiling``. Shapes broadcast; float dtype of ``recall``.
  """
  dtype = jnp.result_type(recall, kl)
  p, budget = jnp.broadcast_arrays(jnp.asarray(recall, dtype), jnp.asarray(kl, dtype))
  eps, tiny = jnp.finfo(dtype).eps, jnp.finfo(dtype).tiny
  one_below = jnp.asarray(1.0, dtype) - eps
  log_p, log1m_p = jnp.log(p), jnp.log1p(-p)
  safe_p = jnp.clip(p, tiny, one_below)
  s_top = jnp.maximum(th.two_level._log_odds(one_below) - th.two_level._log_odds(safe_p), 0.0)

  def lifted(s):  # (t, kl(t || p)): theory.kl_ceiling's kernel
    return th.two_level._lifted_kl(safe_p, s, log_p, log1m_p)

  # the start's lift from the ratio t/p (not logit t - logit p: two logits of size |log p|
  # would leave an absolute error ~|log p| eps, all of a small lift's digits at p = 1e-300)
  t0 = jnp.clip(jnp.asarray(start, dtype), safe_p, one_below)
  s = jnp.clip(jnp.log(t0 / safe_p) - (jnp.log1p(-t0) - jnp.log1p(-safe_p)), 0.0, s_top)
  below = lifted(s)[1] <= budget
  lo, hi = jnp.where(below, s, 0.0), jnp.where(below, s_top, s)

  def done(s, t, lo, hi, moved):
    # the last step moved t by a few ulp of t (dt / t = ds (1 - t)): where the curve is flat
    # the noise of kl itself moves s further, but not t; or the bracket closed
    return (moved * (1 - t) <= 64 * eps) | (hi - lo <= 64 * eps * jnp.maximum(1.0, s))

  def step(state):
    i, lo, hi, s, t, moved = state
    t_s, kl_s = lifted(s)
    value = kl_s - budget
    lo, hi = jnp.where(value <= 0, s, lo), jnp.where(value <= 0, hi, s)
    slope = s * t_s * (1 - t_s)
    newton = s - value / jnp.where(slope > 0, slope, 1.0)
    inside = (slope > 0) & (newton >= lo) & (newton <= hi)
    new_s = jnp.where(inside, newton, 0.5 * (lo + hi))
    finished = done(s, t_s, lo, hi, moved)  # converged cells stay where they are
    return (i + 1, lo, hi, jnp.where(finished, s, new_s), t_s,
            jnp.where(finished, moved, jnp.abs(new_s - s)))

  def unfinished(state):
    i, lo, hi, s, t, moved = state
    return (i < _NEWTON_STEPS) & ~jnp.all(done(s, t, lo, hi, moved))

  state = (0, lo, hi, s, lifted(s)[0], jnp.full_like(s, jnp.inf))
  _, lo, hi, s, _, moved = jax.lax.while_loop(unfinished, step, state)
  ceiling = jnp.maximum(lifted(s)[0], p)  # t* >= p; rounding aside (as theory.kl_ceiling)
  converged = done(s, ceiling, lo, hi, moved)
  # the exact ends, as theory.kl_ceiling: K >= -log p reaches 1, K = 0 stays at p, p = 0 reaches nothing
  ceiling = jnp.where(budget >= -log_p, 1.0, ceiling)
  ceiling = jnp.where(budget <= 0, p, jnp.where(p <= 0, 0.0, ceiling))
  converged = converged | (budget >= -log_p) | (budget <= 0) | (p <= 0)
  return ceiling, converged


@functools.partial(jax.jit, static_argnums=0)
def _mass_and_kl(name: str, recall_R, gap_Y, beta_Y):
  p, gap, beta = recall_R[None, :], gap_Y[:, None], beta_Y[:, None]
  mass = aligned_mass_by_regularizer(name, p, gap, beta)
  kl = th.aligned_kl(p, gap, beta) if name == "reverse_kl" else _kl_of_mass(mass, p)
  return mass, kl


@jax.jit
def _law_block(recall_R, gap_Y, beta_Y, mass_YxR, kl_YxR):
  p = recall_R[None, :]
  predicted = law.predicted_mass(p, gap_Y[:, None] / beta_Y[:, None])
  ceiling, converged = kl_ceiling_from(p, kl_YxR, mass_YxR)
  return jnp.stack([mass_YxR, kl_YxR, jnp.broadcast_to(predicted, mass_YxR.shape), ceiling]), converged


def cell_block(name: str, recall_R, gap_Y, beta_Y):
  """One block of the grid for regularizer ``name``: every law column of every cell.

  Args: ``recall_R [R]``, ``gap_Y [Y]``, ``beta_Y [Y]`` (one y row per gap/beta pair).
  Returns ``values [4, Y, R]`` = (aligned_mass, kl, predicted_mass, kl_ceiling) and
  ``converged [Y, R]`` (the Newton ceiling; see :func:`kl_ceiling_from`). One small
  program per regularizer, one shared program for the law's columns.
  """
  mass, kl = _mass_and_kl(name, recall_R, gap_Y, beta_Y)
  return _law_block(recall_R, gap_Y, beta_Y, mass, kl)


# ---------------------------------------------------------------------------- the grid
def axes(config: SweepConfig) -> dict[str, np.ndarray]:
  """``recall [R]``, ``ratio [Y]`` (gap/beta), ``beta_axis [Y]``: log grids in ``config.dtype``."""
  log = lambda lo, hi, n: np.logspace(math.log10(lo), math.log10(hi), n).astype(config.dtype)
  recall = log(config.recall_min, config.recall_max, config.n_recall)
  # logspace's end points carry the rounding of 10**log10(x): pin them to the requested values
  recall[[0, -1]] = np.asarray([config.recall_min, config.recall_max], config.dtype)
  ratio = log(config.ratio_min, config.ratio_max, config.n_y)
  beta_axis = log(config.beta_min, config.beta_max, config.n_y)
  return dict(recall=recall, ratio=ratio, beta_axis=beta_axis)


def map_rows(config: SweepConfig, map_name: str, grid: dict) -> tuple[np.ndarray, np.ndarray]:
  """``(gap [Y], beta [Y])`` of each y row of a map."""
  if map_name == "gap_over_beta":
    beta = np.full(config.n_y, config.fixed_beta, config.dtype)
    return (grid["ratio"] * beta).astype(config.dtype), beta
  return np.full(config.n_y, config.fixed_gap, config.dtype), grid["beta_axis"]


@dataclasses.dataclass
class Block:
  """One evaluated block: map, regularizer index, y rows ``[y0, y1)`` and host arrays."""
  map_name: str
  reg_index: int
  y0: int
  y1: int
  gap: np.ndarray        # [rows]
  beta: np.ndarray       # [rows]
  values: jax.Array      # [4, rows_per_chunk, R] on device (rows past y1 - y0 are padding)
  bisection_fallbacks: int = 0  # cells whose Newton ceiling did not converge (recomputed)

  @property
  def rows(self) -> int:
    return self.y1 - self.y0


def _dtype_context(dtype: str):
  return jax.enable_x64(dtype == "float64")


def iter_blocks(config: SweepConfig, grid: dict) -> Iterator[Block]:
  """Evaluate the grid block by block, in CSV row order (map, regularizer, y, recall).

  Every block has shape ``[rows_per_chunk, R]`` (the last one of a map padded by
  repeating its last row), so each regularizer compiles once. Unconverged Newton
  ceilings are recomputed with ``theory.kl_ceiling``. The next block is dispatched before
  this one is handed out (JAX dispatches asynchronously), so XLA computes it while the
  caller formats this one (with the writer's block, three alive at most). Call inside the
  dtype's x64 context.
  """
  rows = config.rows_per_chunk
  recall = jnp.asarray(grid["recall"])
  tasks = []  # (map, regularizer index, name, y0, y1, gap [Y], beta [Y]) in CSV order
  for map_name in MAPS:
    gap_all, beta_all = map_rows(config, map_name, grid)
    for g, name in enumerate(config.regularizers):
      tasks += [(map_name, g, name, y0, min(config.n_y, y0 + rows), gap_all, beta_all)
                for y0 in range(0, config.n_y, rows)]

  def dispatch(task):
    _, _, name, y0, y1, gap_all, beta_all = task
    pad = np.arange(y0, y0 + rows).clip(max=y1 - 1)
    return cell_block(name, recall, jnp.asarray(gap_all[pad]), jnp.asarray(beta_all[pad]))

  ahead = dispatch(tasks[0])
  for i, (map_name, g, _, y0, y1, gap_all, beta_all) in enumerate(tasks):
    values, converged = ahead
    if i + 1 < len(tasks):
      ahead = dispatch(tasks[i + 1])
    fallbacks = int(np.count_nonzero(~np.asarray(converged)[:y1 - y0]))
    if fallbacks:
      values = _fix_unconverged(values, converged, recall)
    yield Block(map_name, g, y0, y1, gap_all[y0:y1], beta_all[y0:y1], values, fallbacks)


def _fix_unconverged(values, converged, recall):
  """Recompute the ceiling of unconverged cells with the bisection of theory.kl_ceiling."""
  host = np.array(values)
  bad = ~np.asarray(converged)
  p = np.broadcast_to(np.asarray(recall)[None, :], bad.shape)[bad]
  kl = host[1][bad]
  ceiling = np.empty_like(kl)
  for start in range(0, p.size, _FALLBACK_CELLS):  # fixed-size pieces: one compilation
    piece = slice(start, min(p.size, start + _FALLBACK_CELLS))
    pad = np.arange(_FALLBACK_CELLS).clip(max=piece.stop - piece.start - 1)
    # theory.kl_ceiling's jitted core: its argument checks (host-side, ~3 ms a call) hold by
    # construction here (recall from the validated grid, kl computed), and cost ~0.5 s a run
    ceiling[piece] = np.asarray(th.ceiling._ceiling(jnp.asarray(p[piece][pad]), jnp.asarray(kl[piece][pad]))
                                )[:piece.stop - piece.start]
  host[3][bad] = ceiling
  return jnp.asarray(host)


def ceilings(config: SweepConfig, recall: np.ndarray) -> dict[str, np.ndarray]:
  """``budgets [B]``, ``ceiling / ceiling_loose [B, R]``, ``half_mass_ratio [R]``."""
  budgets = jnp.asarray(config.budgets, config.dtype)
  r = jnp.asarray(recall)
  out = dict(budgets=budgets, ceiling=th.kl_ceiling(r[None, :], budgets[:, None]),
             ceiling_loose=th.kl_ceiling_loose(r[None, :], budgets[:, None]),
             half_mass_ratio=-th.log_odds(r))
  return {k: np.asarray(v) for k, v in out.items()}


def _scalars(config: SweepConfig) -> dict[str, np.ndarray]:
  return dict(regularizers=np.asarray(config.regularizers), fixed_beta=np.asarray(config.fixed_beta),
              fixed_gap=np.asarray(config.fixed_gap))


def array_shapes(config: SweepConfig) -> dict[str, tuple[int, ...]]:
  """The per-cell arrays of the result: ``mass/kl/kl_ceiling_{map} [G, Y, R]``, ``predicted_mass_{map} [Y, R]``."""
  g, y, r = len(config.regularizers), config.n_y, config.n_recall
  shapes = {}
  for map_name in MAPS:
    for key in ("mass", "kl", "kl_ceiling"):
      shapes[f"{key}_{map_name}"] = (g, y, r)
    shapes[f"predicted_mass_{map_name}"] = (y, r)
  return shapes


def _store_block(arrays: dict, block: Block, values: np.ndarray) -> None:
  sl = slice(block.y0, block.y1)
  m, g = block.map_name, block.reg_index
  arrays[f"mass_{m}"][g, sl] = values[0, :block.rows]
  arrays[f"kl_{m}"][g, sl] = values[1, :block.rows]
  if g == 0:
    arrays[f"predicted_mass_{m}"][sl] = values[2, :block.rows]
  arrays[f"kl_ceiling_{m}"][g, sl] = values[3, :block.rows]


def _stream_block(npz: io.NpzWriter, block: Block, values: np.ndarray) -> None:
  """Append one block's rows to the ``.npz`` members (blocks arrive in (map, regularizer,
  y) order, so each member ``[G, Y, R]`` / ``[Y, R]`` is written front to back)."""
  m, rows = block.map_name, block.rows
  npz.write(f"mass_{m}", values[0, :rows])
  npz.write(f"kl_{m}", values[1, :rows])
  if block.reg_index == 0:
    npz.write(f"predicted_mass_{m}", values[2, :rows])
  npz.write(f"kl_ceiling_{m}", values[3, :rows])


def compute_sweep(config: SweepConfig) -> dict[str, np.ndarray]:
  """Evaluate both maps and the ceilings in memory; returns host arrays.

  Keys: ``recall [R]``, ``ratio [Y]`` (gap/beta), ``beta_axis [Y]``,
  ``mass_{map} / kl_{map} / kl_ceiling_{map} [G, Y, R]`` and ``predicted_mass_{map} [Y, R]``
  for map in (gap_over_beta, beta) (G regularizers in ``config.regularizers`` order),
  ``budgets [B]``, ``ceiling / ceiling_loose [B, R]``, ``half_mass_ratio [R]`` (gap/beta
  where the reverse-KL optimum reaches mass 1/2: the trap boundary). Memory grows with
  the grid (about 60 bytes per cell); :func:`stream_sweep` streams large grids to disk.
  """
  config.validate()
  with _dtype_context(config.dtype):
    grid = axes(config)
    arrays = {k: np.empty(s, config.dtype) for k, s in array_shapes(config).items()}
    for block in iter_blocks(config, grid):
      _store_block(arrays, block, np.asarray(block.values))
    out = {**grid, **arrays, **ceilings(config, grid["recall"])}
  out.update(_scalars(config))
  return out


# -------------------------------------------------------------------- streaming to disk
def csv_bytes_estimate(config: SweepConfig) -> int:
  """Upper bound on the size of recall_sweep.csv."""
  return 2 * len(config.regularizers) * config.n_y * config.n_recall * CSV_BYTES_PER_ROW_MAX


def npz_bytes_estimate(config: SweepConfig) -> int:
  itemsize = np.dtype(config.dtype).itemsize
  return sum(math.prod(s) for s in array_shapes(config).values()) * itemsize


def disk_bytes_estimate(config: SweepConfig) -> int:
  """Disk the run needs at its peak: the CSV and the .npz (its arrays are written in place)."""
  return csv_bytes_estimate(config) + npz_bytes_estimate(config)


def estimate_memory_bytes(config: SweepConfig, figure_points: int = 0) -> int:
  """Peak resident memory of :func:`stream_sweep` and its figures: independent of the
  resolution beyond the block size (the per-cell arrays go to files by ``pwrite``, the
  figures read a subsampled grid of at most ``figure_points`` per axis)."""
  cells = config.rows_per_chunk * config.n_recall
  figure = 2 * 3 * len(config.regularizers) * figure_points ** 2 * 8
  axes_bytes = 8 * (config.n_recall * (8 + len(config.budgets) * 2) + 4 * config.n_y)
  return BASE_MEMORY_BYTES + BYTES_PER_CHUNK_CELL * cells + figure + axes_bytes


def available_memory_bytes() -> int:
  """MemAvailable of /proc/meminfo (physical memory where that is not readable)."""
  try:
    with open("/proc/meminfo") as fh:
      for line in fh:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:  # pragma: no cover - not Linux
    pass
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def free_disk_bytes(path: str | os.PathLike) -> int:
  """Free bytes on the file system that holds ``path`` (or its nearest existing parent)."""
  folder = Path(os.path.abspath(path))
  while not folder.exists() and folder != folder.parent:
    folder = folder.parent
  return shutil.disk_usage(folder).free


def check_resources(config: SweepConfig, out: str | os.PathLike, figure_points: int = 0) -> None:
  """Refuse up front (InputError, one line: estimate and limit) a grid that cannot finish."""
  need, have = estimate_memory_bytes(config, figure_points), available_memory_bytes()
  if need > have:
    raise errors.InputError(f"--resolution {config.n_recall}: needs about {need / 2**30:.2f} GiB of memory, "
                            f"{have / 2**30:.2f} GiB available")
  need, have = disk_bytes_estimate(config), free_disk_bytes(out)
  if need > have:
    raise errors.InputError(f"--resolution {config.n_recall}: writes about {need / 2**30:.1f} GiB, "
                            f"{have / 2**30:.1f} GiB free on the disk of --out")


@functools.partial(jax.jit, static_argnames=("layout",))
def _format_block(values_CxYxR, recall_R, rows_BxY, layout):
  """Text of one block without the (map, regularizer) prefix: ``uint8 [Y, R, width]``.

  Row: recall, beta, gap, gap_over_beta, aligned_mass, kl, reference_recall,
  predicted_mass, kl_ceiling. ``layout`` = (exp_digits, signed) of the recall, y-row and
  cell groups.
  """
  (x_exp, x_sign), (y_exp, y_sign), (c_exp, c_sign) = layout
  _, n_y, n_r = values_CxYxR.shape
  x = textformat.format_scientific(recall_R, exp_digits=x_exp, signed=x_sign)          # [R, w]
  y = textformat.format_scientific(rows_BxY, exp_digits=y_exp, signed=y_sign)          # [3, Y, w]
  c = textformat.format_scientific(values_CxYxR, exp_digits=c_exp, signed=c_sign)      # [4, Y, R, w]
  sep = lambda ch: jnp.full((n_y, n_r, 1), ord(ch), jnp.uint8)
  xb = jnp.broadcast_to(x[None], (n_y, n_r, x.shape[-1]))
  yb = [jnp.broadcast_to(y[i][:, None], (n_y, n_r, y.shape[-1])) for i in range(3)]
  parts = [xb, sep(","), yb[0], sep(","), yb[1], sep(","), yb[2], sep(","), c[0], sep(","), c[1], sep(","),
           xb, sep(","), c[2], sep(","), c[3], sep("\n")]
  return jnp.concatenate(parts, axis=-1)


@jax.jit
def _flags(values_CxYxR, recall_R, rows_BxY):
  return jnp.stack([textformat.block_flags(recall_R), textformat.block_flags(rows_BxY),
                    textformat.block_flags(values_CxYxR)])


def block_text(block: Block, recall: np.ndarray, regularizer: str) -> np.ndarray:
  """The CSV rows of one block as ``uint8 [rows * R, width]`` (or ``[n_bytes]`` for blocks
  with non-finite values, formatted by Python)."""
  return assemble_text(*block_text_parts(block, recall, regularizer))


def block_text_parts(block: Block, recall: np.ndarray, regularizer: str) -> tuple[bytes, np.ndarray]:
  """``(prefix, body)``: the row prefix ``map,regularizer,`` and the rest of each row,
  ``uint8 [rows * R, width]`` (or, for a block with non-finite values, the whole text as
  ``uint8 [n_bytes]`` by Python, with an empty prefix). :func:`assemble_text` joins them."""
  rows = block.values.shape[1]
  pad = np.arange(rows).clip(max=block.rows - 1)
  y_rows = np.stack([block.beta[pad], block.gap[pad], (block.gap / block.beta)[pad]])
  prefix = f"{block.map_name},{regularizer},".encode()
  with jax.enable_x64(True):  # the digits need float64 arithmetic, whatever the sweep's dtype
    flags = np.asarray(_flags(block.values, recall, y_rows))
    if not flags[:, 0].all():
      return b"", np.frombuffer(_python_text(block, recall, y_rows, prefix).encode(), np.uint8)
    layout = tuple((3 if big else 2, bool(signed)) for _, big, signed in flags)
    body = np.asarray(_format_block(block.values, recall, y_rows, layout))[:block.rows]
  return prefix, body.reshape(block.rows * np.size(recall), -1)


def assemble_text(prefix: bytes, body: np.ndarray) -> np.ndarray:
  """Rows ``prefix + body[i]`` as one ``uint8 [rows, len(prefix) + width]`` array."""
  if not prefix:
    return body
  text = np.empty((body.shape[0], len(prefix) + body.shape[1]), np.uint8)
  text[:, :len(prefix)] = np.frombuffer(prefix, np.uint8)
  text[:, len(prefix):] = body
  return text


def _python_text(block: Block, recall: np.ndarray, y_rows: np.ndarray, prefix: bytes) -> str:
  """Slow path for blocks holding NaN/inf: ``'%.8e'`` per value (inf/nan spelled out)."""
  fmt = textformat.format_with_python
  values = np.asarray(block.values)[:, :block.rows]
  xs, ys, cells = fmt(recall), fmt(y_rows[:, :block.rows]), fmt(values)
  lines = []
  for j in range(block.rows):
    for i in range(recall.size):
      row = [xs[i], ys[0, j], ys[1, j], ys[2, j], cells[0, j, i], cells[1, j, i], xs[i], cells[2, j, i],
             cells[3, j, i]]
      lines.append(prefix.decode() + ",".join(row) + "\n")
  return "".join(lines)


@dataclasses.dataclass
class SweepFiles:
  """What :func:`stream_sweep` wrote: the paths, the result (per-cell arrays as read-only
  memory maps of the ``.npz``, valid inside the ``with`` block), the count of cells whose ceiling the
  Newton solve left to ``theory.kl_ceiling``'s bisection (informative), and the count of
  cells whose aligned mass lies above its KL ceiling (must be zero: a bug otherwise)."""
  paths: list[Path]
  result: dict[str, np.ndarray]
  bisection_fallbacks: int
  above_ceiling: int


@contextlib.contextmanager
def stream_sweep(config: SweepConfig, out: str | os.PathLike,
                 on_block: Callable[[Block], None] | None = None) -> Iterator[SweepFiles]:
  """Evaluate the grid block by block and stream it to ``out``; yields :class:`SweepFiles`.

  Writes ``recall_sweep.csv`` (:data:`CSV_COLUMNS`, one row per map, regularizer, y and
  recall, in that order; 9 significant digits, fixed width), ``recall_sweep.npz`` (the
  arrays of :func:`compute_sweep`) and ``recall_ceiling.csv``, each whole or not at all.
  Each block goes to both files as it is computed: its CSV rows appended (and hashed for
  run.json, :class:`~recall_theory.io.HashingWriter`), its arrays written in place inside
  the ``.npz`` (:class:`~recall_theory.io.NpzWriter`: every member's offset is known up
  front). The per-cell arrays of the result are read-only memory maps of the ``.npz``,
  valid inside the ``with`` block, so figures and summaries read a subsampled grid of any
  size without loading it. ``on_block`` is called after each block (progress).

  Example::

    with stream_sweep(SweepConfig(n_recall=1000, n_y=1000), "results/sweep") as files:
      coarse = subsample(files.result, 400)
  """
  config.validate()
  out = Path(out)
  shapes = array_shapes(config)
  with _dtype_context(config.dtype):
    grid = axes(config)
    ceiling = ceilings(config, grid["recall"])
    members = {**grid, **{k: io.StreamedArray(s, config.dtype) for k, s in shapes.items()}, **ceiling,
               **_scalars(config)}
    recall_dev = jnp.asarray(grid["recall"])
    counts = dict(fallbacks=0, above=0)
    tolerance = schema.ceiling_tolerance(config.dtype)
    with io.atomic_path(out / "recall_sweep.npz") as npz_tmp:
      npz = io.NpzWriter(npz_tmp, members)
      try:
        # the CSV's sha256 is computed as it is written (run.json needs no second read of it)
        with io.atomic_path(out / "recall_sweep.csv") as tmp, io.HashingWriter(tmp) as fh, \
            concurrent.futures.ThreadPoolExecutor(max_workers=1) as writer:
          fh.write((",".join(CSV_COLUMNS) + "\n").encode())

          def write(block: Block, prefix: bytes, body: np.ndarray, values: np.ndarray) -> None:
            fh.write(assemble_text(prefix, body))
            _stream_block(npz, block, values)

          pending = None
          for block in iter_blocks(config, grid):
            # XLA computes and formats this block while the writer thread joins the previous
            # one's rows and puts them on disk; with the next block dispatched ahead, at most three
            # are alive (the memory bound, BYTES_PER_CHUNK_CELL).
            prefix, body = block_text_parts(block, recall_dev, config.regularizers[block.reg_index])
            values = np.asarray(block.values)
            counts["fallbacks"] += block.bisection_fallbacks
            counts["above"] += int(np.sum(values[0, :block.rows] > values[3, :block.rows] + tolerance))
            if pending is not None:
              pending.result()
            pending = writer.submit(write, block, prefix, body, values)
            if on_block is not None:
              on_block(block)
          if pending is not None:
            pending.result()
        npz.finish()
      finally:
        npz.close()
  # the .npz is hashed for run.json while the rest of the run (ceiling CSV, summary,
  # figures) goes on; joined before this context exits
  npz_hash = concurrent.futures.ThreadPoolExecutor(max_workers=1)
  try:  # joined on every path, errors of the lines below included
    npz_hash.submit(io.hash_and_remember, out / "recall_sweep.npz")
    budgets, recall = ceiling["budgets"], grid["recall"]
    paths = [out / "recall_sweep.csv", out / "recall_sweep.npz"]
    paths.append(io.write_columns_csv(out / "recall_ceiling.csv", {
        "budget": budgets.repeat(recall.size), "recall": np.tile(recall, budgets.size),
        "ceiling": ceiling["ceiling"].ravel(), "ceiling_loose": ceiling["ceiling_loose"].ravel()}))
    readonly = {k: np.memmap(out / "recall_sweep.npz", np.dtype(config.dtype), "r", npz.data_offset[k], s)
                for k, s in shapes.items()}
    yield SweepFiles(paths=paths, result={**grid, **readonly, **ceiling, **_scalars(config)},
                     bisection_fallbacks=counts["fallbacks"], above_ceiling=counts["above"])
  finally:
    npz_hash.shutdown(wait=True)


def subsample(result: dict, max_points: int) -> dict[str, np.ndarray]:
  """A coarse view of a sweep result for figures: at most ``max_points`` per axis.

  Keeps the first and last grid point of each axis (indices ``round(linspace)``), so the
  figure spans the same ranges; adds ``recall_index [r]`` and ``y_index [y]``.
  """
  def pick(n):
    return np.unique(np.round(np.linspace(0, n - 1, min(n, max_points))).astype(int))
  ri, yi = pick(result["recall"].size), pick(result["ratio"].size)
  out = {}
  for key, value in result.items():
    value = np.asarray(value) if np.ndim(value) == 0 or key in ("regularizers", "budgets") else value
    if key in ("recall", "half_mass_ratio"):
      out[key] = np.asarray(value[ri])
    elif key in ("ratio", "beta_axis"):
      out[key] = np.asarray(value[yi])
    elif key in ("ceiling", "ceiling_loose"):
      out[key] = np.asarray(value[:, ri])
    elif key.startswith("predicted_mass_"):
      out[key] = np.asarray(value[yi][:, ri])
    elif key.startswith(("mass_", "kl_")):
      out[key] = np.asarray(value[:, yi][:, :, ri])
    else:
      out[key] = np.asarray(value)
  out["recall_index"], out["y_index"] = ri, yi
  return out


def tidy_columns(result: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The CSV's rows as columns (:data:`CSV_COLUMNS`; small grids, tests): one row per
  (map, regularizer, y, recall)."""
  regs = list(result["regularizers"])
  recall = result["recall"]
  cols = {k: [] for k in CSV_COLUMNS}
  for map_name in MAPS:
    mass = result[f"mass_{map_name}"]
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
      cols["reference_recall"].append(np.tile(recall, n_y))
      cols["beta"].append(np.repeat(beta, n_r))
      cols["gap"].append(np.repeat(gap, n_r))
      cols["gap_over_beta"].append(np.repeat(gap / beta, n_r))
      cols["aligned_mass"].append(mass[g].ravel())
      cols["kl"].append(result[f"kl_{map_name}"][g].ravel())
      cols["predicted_mass"].append(result[f"predicted_mass_{map_name}"].ravel())
      cols["kl_ceiling"].append(result[f"kl_ceiling_{map_name}"][g].ravel())
  return {k: np.concatenate(v) for k, v in cols.items()}
