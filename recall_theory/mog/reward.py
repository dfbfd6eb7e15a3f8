"""Oracle rewards for the Mixture-of-Gaussians track (bounded by design, swappable).

Default: the **bump reward** ``R(x) = max_t exp(-|x - c_t|^2 / (2 s^2))`` in [0, 1], one
bump per target mode c_t, width s = 0.3.

Why this reward (the design reviewers asked to justify):

* **Bounded.** With r in [0, 1] the Gibbs optimum raises any region's density relative
  to the rest by at most e^{1/beta}. This is the regime of a learned reward model whose
  score is a probability, and it makes the set-mass law exact in the form
  logit pi*(A) = logit pi_ref(A) + D/beta with 0 <= D <= 1 (theory item 2): the
  reference's recall pi_ref(A) of the target enters additively in logit space, so the
  experiment measures the recall effect and nothing else. An unbounded reward (the
  quadratic one below) lets the tilt *translate* Gaussian components toward the target
  (mu'_k -> c as beta -> 0, see :mod:`recall_theory.mog.tilt`): a Gaussian has full
  support, so a model could reach the target by moving a distant bump, an artefact of
  Gaussian tails with no counterpart in a language model, where a reward cannot put mass
  outside what the model can generate.
* **Favours the target and only the target.** s = 0.3 lies between the mode standard
  deviation (0.158) and half the mode spacing (0.5): every point of a target mode scores
  high (E_{N_target}[R] = s^2 / (s^2 + sigma^2) = 0.78) while a neighbouring mode at
  distance 1 scores about 0.013, and a mode at distance sqrt(2) about 2e-4.
* **Smooth**, so policy gradients and the DPO Bradley-Terry labels see a graded signal;
  the maximum over targets makes a two-mode target reward either mode equally.

Swapping: any pytree with ``__call__(x_NxD) -> r_N`` works everywhere a reward is taken
(:class:`QuadraticReward` and :class:`LinearReward` also have closed-form tilts).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from recall_theory.errors import InputError, check_finite, check_positive


class BumpReward(NamedTuple):
  """R(x) = max_t exp(-|x - c_t|^2 / (2 width^2)), in [0, 1]; ``centers_TxD``, ``width``."""
  centers_TxD: jax.Array
  width: jax.Array

  def __call__(self, x_NxD: jax.Array) -> jax.Array:
    sq_NxT = jnp.sum((x_NxD[:, None, :] - self.centers_TxD[None]) ** 2, axis=-1)
    return jnp.exp(-jnp.min(sq_NxT, axis=-1) / (2.0 * self.width ** 2))


class QuadraticReward(NamedTuple):
  """r(x) = -(x - c)^T Q (x - c) / 2 (unbounded below); exact tilt: ``tilt.tilt_quadratic``."""
  center_D: jax.Array
  precision_DxD: jax.Array

  def __call__(self, x_NxD: jax.Array) -> jax.Array:
    diff = x_NxD - self.center_D
    return -0.5 * jnp.einsum("ni,ij,nj->n", diff, self.precision_DxD, diff)


class LinearReward(NamedTuple):
  """r(x) = a^T x; exact tilt: ``tilt.tilt_linear``."""
  direction_D: jax.Array

  def __call__(self, x_NxD: jax.Array) -> jax.Array:
    return x_NxD @ self.direction_D


def make_bump_reward(centers, width: float = 0.3, dtype=None) -> BumpReward:
  """Validated :class:`BumpReward` around ``centers`` (T, D)."""
  check_finite("reward centers", centers)
  check_positive("reward width", width)
  c = jnp.asarray(centers, dtype or jnp.result_type(float))
  if c.ndim != 2:
    raise InputError(f"reward centers must have shape (T, D), got {c.shape}")
  return BumpReward(c, jnp.asarray(width, c.dtype))


def make_quadratic_reward(center, precision, dtype=None) -> QuadraticReward:
  """Validated :class:`QuadraticReward`; ``precision`` must be positive definite."""
  import numpy as np
  check_finite("reward center", center)
  check_finite("reward precision", precision)
  q = np.asarray(precision, dtype=np.float64)
  if q.ndim != 2 or q.shape[0] != q.shape[1] or np.linalg.eigvalsh(0.5 * (q + q.T)).min() <= 0:
    raise InputError("reward precision must be a positive-definite (D, D) matrix")
  dtype = dtype or jnp.result_type(float)
  return QuadraticReward(jnp.asarray(center, dtype), jnp.asarray(q, dtype))
