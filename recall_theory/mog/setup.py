"""The Mixture-of-Gaussians set-up: ground truth, target, student variants, the run's knobs.

Definitions used throughout the track (the formal ones reviewers asked for):

* **Ground truth** p*: 8 isotropic Gaussian modes at the non-centre points of {-1, 0, 1}^2,
  covariance 0.025 I, equal weights (all configurable).
* **Desirable behaviour / target** A: the Voronoi cell(s) of the target mode(s) of p* (the
  points closer to a target mode than to any other mode). Default one mode at (1, 1);
  ``target="two"`` adds (-1, 1).
* **Distributional recall of the target** of a model q: its mass q(A). The *reference's
  recall* pi_ref(A) is what bounds alignment (theory item 2).
* **The trap**: with p = pi_ref(A) ~ 0, KL-regularised alignment leaves pi*(A) < 1/2 unless
  D/beta >= log((1 - p)/p), D the reward gap (theory item 2); p = 0 gives pi*(A) = 0 always.
* **Teacher** p': an 8-component mixture fitted by EM to samples of p* (high recall).
* **Students** p'': mixtures of 4 and 3 components distilled (forward KL, EM) from samples of
  the teacher sharpened by the KD recipe (:mod:`recall_theory.mog.distill`). The 4-mode
  student keeps (-1,-1), (0,-1), (1,-1), (1,0) (a kept mode next to the target: recall of
  the target ~1e-4); the 3-mode one keeps the bottom row (nearest kept mode at distance 2:
  recall ~1e-20). Both drop the target(s).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from recall_theory.errors import InputError, check_int_range, check_positive, check_probability, check_finite
from recall_theory.mog.mixture import Mixture, make_mixture
from recall_theory.plateau import PlateauRule

GRID_MODES = ((-1., -1.), (0., -1.), (1., -1.), (-1., 0.), (1., 0.), (-1., 1.), (0., 1.), (1., 1.))
TARGETS = {"one": ((1., 1.),), "two": ((1., 1.), (-1., 1.))}
STUDENT_KEEPS = {
    "4-mode": ((-1., -1.), (0., -1.), (1., -1.), (1., 0.)),
    "3-mode": ((-1., -1.), (0., -1.), (1., -1.)),
}
PIPELINES = ("K-A", "A-K", "K-A(teacher-ref)", "A-K(tau)")
# "A": the aligned teacher (A-K's first step), recorded so that every aligned model carries the law.
ALIGNED_TEACHER = "A"
RESULT_PIPELINES = PIPELINES + (ALIGNED_TEACHER,)
ALGORITHMS = ("exact", "pg", "dpo")


@dataclasses.dataclass(frozen=True)
class MogConfig:
  """Every knob of the track; :meth:`validate` raises InputError naming a bad one."""
  mode_means: tuple = GRID_MODES
  mode_variance: float = 0.025
  mode_weights: tuple | None = None  # None: equal weights
  target: str = "one"
  students: tuple = ("4-mode", "3-mode")
  reward_width: float = 0.3
  n_teacher_samples: int = 2000
  n_student_samples: int = 2000
  em_iters: int = 40
  kd_temperature: float = 0.05  # tau of the KD recipe (gamma = 1/tau = 20)
  kd_recovery_temperature: float = 0.5  # tau of A-K(tau), the recall-recovery variant
  selection_margin: float = 0.5  # log-weight margin of the KD profile against dropped modes
  pg_steps: int = 3200  # the budget of a run trained to its plateau (the exact count without a rule)
  pg_batch: int = 256
  pg_lr: float = 0.02
  dpo_steps: int = 3200
  dpo_lr: float = 0.02
  # DPO's pair budget: with 1024 pairs full-batch DPO overfits them and its mass drifts along
  # directions the held-out loss does not see (no plateau); 4096 pin it down
  dpo_pairs: int = 4096
  label_noise: float = 0.0
  # When a trained run has converged (recall_theory.plateau); None: exactly pg_steps/dpo_steps steps.
  plateau: PlateauRule | None = PlateauRule(first_check=100, objective_tolerance=1e-3)
  control_steps: int = 80  # exact K-A(teacher-ref): reverse-KL steps in the student family
  control_lr: float = 0.05
  grid_n: int = 101
  grid_lo: float = -2.5
  grid_hi: float = 2.5
  support_threshold: float = 1e-3

  def validate(self) -> "MogConfig":
    means = np.asarray(self.mode_means, dtype=np.float64)
    check_finite("mode_means", means)
    if means.ndim != 2 or means.shape[1] != 2:
      raise InputError(f"mode_means must have shape (K, 2), got {means.shape}")
    check_positive("mode_variance", self.mode_variance)
    if self.mode_weights is not None:
      w = np.asarray(self.mode_weights, dtype=np.float64)
      check_probability("mode_weights", w)
      if w.shape != (means.shape[0],) or abs(w.sum() - 1) > 1e-6:
        raise InputError(f"mode_weights must be {means.shape[0]} probabilities summing to 1, "
                         f"got sum {w.sum():.6g}")
    if self.target not in TARGETS:
      raise InputError(f"target must be one of {sorted(TARGETS)}, got {self.target!r}")
    if not self.students:
      raise InputError("students must name at least one student variant")
    n_modes = means.shape[0]
    for name in self.students:
      if name not in STUDENT_KEEPS:
        raise InputError(f"students: unknown variant {name!r}; choose from {sorted(STUDENT_KEEPS)}")
      check_int_range(f"number of modes of student {name!r}", len(STUDENT_KEEPS[name]), 1, n_modes - 1)
    for name in ("reward_width", "kd_temperature", "kd_recovery_temperature", "pg_lr", "dpo_lr", "control_lr",
                 "support_threshold"):
      check_positive(name, getattr(self, name))
    if self.selection_margin < 0:
      raise InputError(f"selection_margin must be >= 0, got {self.selection_margin}")
    check_probability("label_noise", self.label_noise)
    if self.label_noise >= 0.5:
      raise InputError(f"label_noise must be < 0.5 (labels would carry no signal), got {self.label_noise}")
    for name in ("n_teacher_samples", "n_student_samples", "pg_batch", "dpo_pairs"):
      check_int_range(name, getattr(self, name), 16)
    for name in ("em_iters", "pg_steps", "dpo_steps", "control_steps"):
      check_int_range(name, getattr(self, name), 1)
    if self.plateau is not None:
      self.plateau.validate("plateau")
      for name in ("pg_steps", "dpo_steps"):
        if self.plateau.first_check > getattr(self, name):
          raise InputError(f"plateau.first_check={self.plateau.first_check} exceeds the budget "
                           f"{name}={getattr(self, name)}")
    check_int_range("grid_n", self.grid_n, 16, 2048)
    if not self.grid_hi > self.grid_lo:
      raise InputError("grid_hi must exceed grid_lo")
    target_region(self)  # exact target masses need box-shaped Voronoi cells: fail here, named
    return self

  @property
  def n_modes(self) -> int:
    return len(self.mode_means)

  @property
  def max_student_components(self) -> int:
    return max(len(STUDENT_KEEPS[s]) for s in self.students)


def ground_truth(config: MogConfig, dtype=None) -> Mixture:
  """p*: the configured mixture (default 8 equal modes, covariance 0.025 I)."""
  k = config.n_modes
  w = np.full(k, 1.0 / k) if config.mode_weights is None else np.asarray(config.mode_weights)
  return make_mixture(w, config.mode_means, np.full(k, config.mode_variance), dtype=dtype, name="p*")


def target_region(config: MogConfig):
  """The target region A (Voronoi cell(s) of the target mode(s)) as boxes, for exact masses."""
  from recall_theory.mog.region import make_target_region
  return make_target_region(config.mode_means, target_mask(config))


def target_mask(config: MogConfig) -> np.ndarray:
  """Boolean (K,) mask of the target modes of p*."""
  means = np.asarray(config.mode_means)
  targets = np.asarray(TARGETS[config.target])
  mask = np.zeros(len(means), bool)
  for t in targets:
    d = np.linalg.norm(means - t, axis=1)
    if d.min() > 1e-9:
      raise InputError(f"target {tuple(t)} is not a mode of p* (mode_means)")
    mask[int(d.argmin())] = True
  return mask


class StudentTable(NamedTuple):
  """Per student variant: log selection profile over p*'s modes (S, K) and active components (S, K).

  Students are padded to the teacher's K components (the extra ones masked, weight exactly 0)
  so that teacher and student runs share one array shape and can be vmapped together.
  """
  log_profile_SxK: jax.Array
  active_SxC: jax.Array


def student_table(config: MogConfig, dtype=None) -> StudentTable:
  """The KD recipe's selection profile and the component mask of each student variant."""
  means = np.asarray(config.mode_means)
  tmask = target_mask(config)
  kmax = len(means)  # students share the teacher's array shape; extra components are masked
  profiles, actives = [], []
  for name in config.students:
    keep = np.zeros(len(means), bool)
    for m in STUDENT_KEEPS[name]:
      d = np.linalg.norm(means - np.asarray(m), axis=1)
      if d.min() > 1e-9:
        raise InputError(f"student {name!r} keeps {m}, which is not a mode of p*")
      keep[int(d.argmin())] = True
    if (keep & tmask).any():
      raise InputError(f"student {name!r} keeps a target mode; students must drop the target")
    profiles.append(np.where(keep, 0.0, -config.selection_margin))
    actives.append(np.arange(kmax) < keep.sum())
  dtype = dtype or jnp.result_type(float)
  return StudentTable(jnp.asarray(np.stack(profiles), dtype), jnp.asarray(np.stack(actives)))


def voronoi_target_indicator(points_GxD: jax.Array, mode_means_KxD: jax.Array,
                             target_K: jax.Array) -> jax.Array:
  """1.0 where the nearest mode of p* is a target mode (the target region A), else 0.0."""
  sq = jnp.sum((points_GxD[:, None, :] - mode_means_KxD[None]) ** 2, axis=-1)
  return target_K[jnp.argmin(sq, axis=-1)].astype(points_GxD.dtype)


# The betas the track resolves (both ends run and checked against the KL ceiling). Far below,
# r/beta is so large that the exact tilt's log-sum-exp over the quadrature grid loses every
# digit (beta = 1e-305 gave masses of 1 at a KL of 1, "above" the ceiling); far above, the tilt
# equals its reference to float64.
BETA_RANGE = (1e-4, 1e4)


def check_beta_range(flag: str, values) -> None:
  """InputError naming ``flag`` when a beta lies outside :data:`BETA_RANGE`."""
  low, high = BETA_RANGE
  for v in np.atleast_1d(np.asarray(values, dtype=np.float64)):
    if not low <= v <= high:
      raise InputError(f"{flag} must lie in [{low:g}, {high:g}] (outside it the quadrature grid "
                       f"does not resolve the exact tilt), got {v:g}")


def parse_betas(values: Sequence[float]) -> np.ndarray:
  """Validated, sorted array of beta values (each in :data:`BETA_RANGE`); also accepts a
  comma-separated string."""
  if isinstance(values, str):
    values = [v for v in values.split(",") if v.strip()]
  try:
    arr = np.asarray(values, dtype=np.float64).ravel()
  except (TypeError, ValueError) as err:
    raise InputError(f"betas must be numbers, got {values!r}") from err
  if arr.size == 0:
    raise InputError("betas must contain at least one value")
  check_positive("beta", arr)
  check_beta_range("beta", arr)
  return np.sort(arr)
