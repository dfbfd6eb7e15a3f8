"""Exact masses of the target region A: bivariate normal orthants and an edge-aligned quadrature.

The target region A is the Voronoi cell (or union of cells) of the target mode(s) of p*. For
the default ground truth (modes on {-1, 0, 1}^2 minus the centre) every cell is an
axis-aligned box with infinite sides, e.g. A = {x > 1/2, y > 1/2} for the mode (1, 1); a
:class:`TargetRegion` holds such boxes ``lo_RxD < x < hi_RxD`` (entries may be +-inf).

Two exact routes, each free of the midpoint rule's boundary bias (assigning each grid cell
to A by its centre moves the boundary by up to half a cell, which biased small masses low
by up to 94%):

* **Gaussian mixtures**: q(A) = sum_k w_k P_k(box), and the mass of a Gaussian on an
  orthant is a bivariate normal upper-orthant probability,
  P(s1 X1 > a1, s2 X2 > a2) = bvn_upper((a1 - s1 mu1)/sigma1, (a2 - s2 mu2)/sigma2, s1 s2 rho),
  computed by Genz's method (:func:`bvn_upper`; Genz 2004, Stat. Comput. 14:251, the
  Drezner-Wesolowsky integral  Phi(-h)Phi(-k) + (1/2pi) int_0^{asin rho}
  exp(-(h^2 + k^2 - 2hk sin t) / (2 cos^2 t)) dt  with 20-point Gauss-Legendre, and the
  |rho| >= 0.925 expansion). Absolute error ~1e-15; tail masses keep their relative accuracy
  because Phi(-h) Phi(-k) is computed from erfc (tested to 1e-9 relative at 1e-20 masses; with
  a negative correlation the integral cancels part of the product, ~1e-8 relative at 1e-28).
* **Tilted densities** pi(x) = ref(x) e^{r(x)/beta} / Z (no closed form for the bump reward):
  a tensor Gauss-Legendre rule (:func:`make_region_rule`) whose panel edges lie on every
  finite side of A, so each node is inside or outside A with no cell straddling the
  boundary, and whose panels are graded geometrically toward the boundaries and the reward's
  peaks (the tilt's width shrinks like s sqrt(beta)). I_S = int_S ref e^{r/beta} is summed over
  the nodes in S in log space; pi(A) = I_A / (I_A + I_{A^c}) and the law's soft-max values
  L_S = beta log(I_S / ref(S)) follow. ``tests/mog/test_mog_region.py`` refines the rule and
  shows the masses converge (and equal the orthant formula when beta -> infinity).

Example::

  region = target_region(MogConfig())                  # one box: (0.5, 0.5) .. (inf, inf)
  mixture_region_mass(student, region)                 # exact student recall of the target
  rule = make_region_rule(region, centers=[[1., 1.]])
  log_ia, log_iac = tilt_log_integrals(log_prob(student, rule.points_QxD), reward_Q, beta, rule)
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr

from recall_theory.errors import InputError
from recall_theory.mog.mixture import Mixture

# 20-point Gauss-Legendre on [-1, 1]: the positive nodes and their weights (Genz's table).
_GL20_X = (0.9931285991850949, 0.9639719272779138, 0.9122344282513259, 0.8391169718222188,
           0.7463319064601508, 0.6360536807265150, 0.5108670019508271, 0.3737060887154196,
           0.2277858511416451, 0.07652652113349733)
_GL20_W = (0.01761400713915212, 0.04060142980038694, 0.06267204833410906, 0.08327674157670475,
           0.1019301198172404, 0.1181945319615184, 0.1316886384491766, 0.1420961093183821,
           0.1491729864726037, 0.1527533871307259)


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class TargetRegion:
  """A union of disjoint axis-aligned boxes ``lo < x < hi`` (+-inf allowed).

  Static (hashable tuples, no array leaves): the box bounds decide the structure of the
  orthant formula, so a :class:`~recall_theory.mog.pipelines.Problem` holding a region can be
  passed through ``jit`` and ``vmap`` unchanged.
  """
  lo: tuple
  hi: tuple

  @property
  def lo_RxD(self) -> np.ndarray:
    return np.asarray(self.lo, dtype=np.float64)

  @property
  def hi_RxD(self) -> np.ndarray:
    return np.asarray(self.hi, dtype=np.float64)


def voronoi_box(target_D, others_MxD) -> tuple[np.ndarray, np.ndarray]:
  """The Voronoi cell of ``target_D`` among ``others_MxD`` as an axis-aligned box (lo, hi).

  Each other mode m gives the half-plane 2 (m - t) . x < |m|^2 - |t|^2. Axis-aligned ones set
  the box; every other one must hold on the whole box (its maximum over the box, sum_i of
  g_i hi_i or g_i lo_i by sign, at most the bound). Raises InputError otherwise: exact masses
  are implemented for box-shaped cells (every cell of the default grid of modes is one).
  """
  t = np.asarray(target_D, dtype=np.float64)
  d = t.shape[0]
  lo, hi = np.full(d, -np.inf), np.full(d, np.inf)
  rest = []
  for m in np.asarray(others_MxD, dtype=np.float64):
    g, h = m - t, 0.5 * (m @ m - t @ t)
    nonzero = np.flatnonzero(np.abs(g) > 1e-12)
    if nonzero.size == 1:
      i = int(nonzero[0])
      if g[i] > 0:
        hi[i] = min(hi[i], h / g[i])
      else:
        lo[i] = max(lo[i], h / g[i])
    elif nonzero.size > 1:
      rest.append((g, h))
  for g, h in rest:
    with np.errstate(invalid="ignore"):
      top = np.sum(np.where(g > 0, g * hi, np.where(g < 0, g * lo, 0.0)))
    if not top <= h + 1e-9:
      raise InputError(f"the Voronoi cell of the target mode {tuple(t)} is not an axis-aligned box; "
                       "exact target masses need box-shaped cells (mode_means on a rectangular grid)")
  return lo, hi


def make_target_region(mode_means_KxD, target_mask_K) -> TargetRegion:
  """The target region (Voronoi cells of the masked modes) as boxes; InputError if not boxes."""
  means = np.asarray(mode_means_KxD, dtype=np.float64)
  mask = np.asarray(target_mask_K, bool)
  if means.shape[1] != 2:
    raise InputError(f"exact target masses are implemented in 2-D, got mode_means of dimension {means.shape[1]}")
  boxes = [voronoi_box(means[i], np.delete(means, i, axis=0)) for i in np.flatnonzero(mask)]
  return TargetRegion(tuple(tuple(float(v) for v in b[0]) for b in boxes),
                      tuple(tuple(float(v) for v in b[1]) for b in boxes))


def bvn_upper(h: jax.Array, k: jax.Array, rho: jax.Array) -> jax.Array:
  """P(Z1 > h, Z2 > k) for a standard bivariate normal with correlation ``rho`` (finite h, k).

  Genz's ``bvnu`` (Genz 2004), vectorised: both branches are evaluated and selected with
  ``where`` (the unused one on safe arguments), so it traces once and vmaps. Broadcasts its
  arguments; float64 gives ~1e-15 absolute accuracy.

  Example: ``bvn_upper(0., 0., 0.5) = 1/4 + asin(0.5)/(2 pi) = 1/3``.
  """
  h, k, rho = jnp.broadcast_arrays(*(jnp.asarray(v) for v in (h, k, rho)))
  dtype = jnp.result_type(h.dtype, float)
  h, k, rho = h.astype(dtype), k.astype(dtype), rho.astype(dtype)
  xg = jnp.asarray(_GL20_X, dtype)
  wg = jnp.asarray(_GL20_W, dtype)
  x = jnp.concatenate([1.0 - xg, 1.0 + xg])  # nodes on [0, 2]
  w = jnp.concatenate([wg, wg])
  two_pi = 2.0 * math.pi
  hk = h * k

  # |rho| < 0.925: Phi(-h)Phi(-k) + (asin rho / 4 pi) int_{-1}^{1} exp((hk sin - hs)/cos^2).
  small = jnp.abs(rho) < 0.925
  rho_s = jnp.where(small, rho, 0.0)
  asr = jnp.arcsin(rho_s) / 2.0
  sn = jnp.sin(asr[..., None] * x)
  hs = (h * h + k * k) / 2.0
  integral = jnp.sum(jnp.exp((sn * hk[..., None] - hs[..., None]) / (1.0 - sn ** 2)) * w, axis=-1)
  p_small = integral * asr / two_pi + ndtr(-h) * ndtr(-k)

  # |rho| >= 0.925: Genz's expansion around rho = +-1 (flip k for negative rho).
  rho_l = jnp.where(small, 0.95, rho)
  k_l = jnp.where(rho_l < 0, -k, k)
  hk_l = jnp.where(rho_l < 0, -hk, hk)
  below_one = jnp.abs(rho_l) < 1.0
  as_ = jnp.where(below_one, 1.0 - rho_l ** 2, 0.5)
  a = jnp.sqrt(as_)
  bs = (h - k_l) ** 2
  asr_l = -(bs / as_ + hk_l) / 2.0
  c = (4.0 - hk_l) / 8.0
  d = (12.0 - hk_l) / 80.0
  bvn = jnp.where(asr_l > -100.0,
                  a * jnp.exp(jnp.maximum(asr_l, -100.0)) * (1.0 - c * (bs - as_) * (1.0 - d * bs) / 3.0
                                                             + c * d * as_ ** 2), 0.0)
  b = jnp.sqrt(bs)
  sp = math.sqrt(two_pi) * ndtr(-b / a)
  bvn = bvn - jnp.where(hk_l > -100.0,
                        jnp.exp(-jnp.maximum(hk_l, -100.0) / 2.0) * sp * b * (1.0 - c * bs * (1.0 - d * bs) / 3.0),
                        0.0)
  half_a = a / 2.0
  xs = (half_a[..., None] * x) ** 2
  asr_x = -(bs[..., None] / xs + hk_l[..., None]) / 2.0
  keep = asr_x > -100.0
  sp_x = 1.0 + c[..., None] * xs * (1.0 + 5.0 * d[..., None] * xs)
  rs = jnp.sqrt(1.0 - xs)
  ep = jnp.exp(-(hk_l[..., None] / 2.0) * xs / (1.0 + rs) ** 2) / rs
  t = jnp.sum(jnp.where(keep, jnp.exp(jnp.maximum(asr_x, -100.0)) * (sp_x - ep), 0.0) * w, axis=-1)
  bvn = jnp.where(below_one, (half_a * t - bvn) / two_pi, 0.0)
  lower_band = jnp.where(h < 0, ndtr(k_l) - ndtr(h), ndtr(-h) - ndtr(-k_l))
  p_large = jnp.where(rho_l > 0, bvn + ndtr(-jnp.maximum(h, k_l)),
                      jnp.where(h >= k_l, -bvn, lower_band - bvn))
  return jnp.clip(jnp.where(small, p_small, p_large), 0.0, 1.0)


def _axis_terms(lo: float, hi: float) -> list[tuple[float, float, float]]:
  """(sign of the term, orientation s, threshold a) with P(lo < X < hi) = sum sign P(s X > a)."""
  if np.isfinite(lo) and np.isfinite(hi):
    return [(1.0, 1.0, lo), (-1.0, 1.0, hi)]
  if np.isfinite(lo):
    return [(1.0, 1.0, lo)]
  if np.isfinite(hi):
    return [(1.0, -1.0, -hi)]
  return [(1.0, 0.0, 0.0)]  # orientation 0: the axis is unconstrained


def gaussian_box_mass(means_KxD: jax.Array, covs_KxDxD: jax.Array, lo_D, hi_D) -> jax.Array:
  """P_k(lo < X < hi) for 2-D Gaussians N(mu_k, S_k), shape (K,); box bounds are host floats."""
  sd_KxD = jnp.sqrt(jnp.diagonal(covs_KxDxD, axis1=-2, axis2=-1))
  rho_K = covs_KxDxD[..., 0, 1] / (sd_KxD[..., 0] * sd_KxD[..., 1])
  total = jnp.zeros(means_KxD.shape[:-1], means_KxD.dtype)
  for sign_x, sx, ax in _axis_terms(float(lo_D[0]), float(hi_D[0])):
    for sign_y, sy, ay in _axis_terms(float(lo_D[1]), float(hi_D[1])):
      zx = (ax - sx * means_KxD[..., 0]) / sd_KxD[..., 0]
      zy = (ay - sy * means_KxD[..., 1]) / sd_KxD[..., 1]
      if sx == 0.0 and sy == 0.0:
        term = jnp.ones_like(zx)
      elif sx == 0.0:
        term = ndtr(-zy)
      elif sy == 0.0:
        term = ndtr(-zx)
      else:
        term = bvn_upper(zx, zy, sx * sy * rho_K)
      total = total + sign_x * sign_y * term
  return jnp.clip(total, 0.0, 1.0)


def mixture_region_mass(mixture: Mixture, region: TargetRegion) -> jax.Array:
  """q(A) = sum_k w_k sum_boxes P_k(box) for a 2-D Gaussian mixture (exact; vmappable).

  Clipped to [0, 1]: a model with all its mass in A sums to 1 plus a rounding error (seen:
  1.0000000000000002), which is no probability and which readers of the results refuse.
  """
  per_k = sum(gaussian_box_mass(mixture.means_KxD, mixture.covs_KxDxD, lo, hi)
              for lo, hi in zip(region.lo_RxD, region.hi_RxD))
  return jnp.clip(jnp.sum(jnp.exp(mixture.log_weights_K) * per_k), 0.0, 1.0)


class RegionRule(NamedTuple):
  """Quadrature nodes ``points_QxD``, log weights ``log_weights_Q``, and ``in_region_Q`` (exact 0/1)."""
  points_QxD: jax.Array
  log_weights_Q: jax.Array
  in_region_Q: jax.Array


def graded_breakpoints(lo: float, hi: float, specials: Sequence[float], finest: float,
                       coarsest: float) -> np.ndarray:
  """Panel edges on [lo, hi]: every special point is an edge; panels grow by 2x away from each
  special point, from ``finest`` up to ``coarsest`` (the largest panel)."""
  pts = sorted({float(lo), float(hi), *(float(s) for s in specials if lo < s < hi)})
  edges = [pts[0]]
  for a, b in zip(pts[:-1], pts[1:]):
    inner = [a, b]
    width = finest
    while width < (b - a) / 2 and width <= coarsest:
      inner += [a + width, b - width]
      width *= 2
    inner = sorted(set(inner))
    filled = [inner[0]]
    for u, v in zip(inner[:-1], inner[1:]):
      n = max(1, int(math.ceil((v - u) / coarsest - 1e-9)))
      filled += list(u + (v - u) * np.arange(1, n + 1) / n)
    edges += filled[1:]
  return np.asarray(edges)


def make_region_rule(region: TargetRegion, centers, *, lo: float = -3.0, hi: float = 3.0,
                     finest: float = 0.01, coarsest: float = 0.3, order: int = 6,
                     dtype=None) -> RegionRule:
  """Tensor Gauss-Legendre rule on [lo, hi]^2 with panel edges on A's sides and graded panels.

  Special points per axis: A's finite sides (so no panel straddles the boundary) and the
  reward centres (the tilt's peak). ``order`` nodes per panel; the defaults give ~290 nodes
  per axis. Refine (smaller ``finest``/``coarsest``, larger ``order``) to check convergence.
  """
  centers = np.asarray(centers, dtype=np.float64).reshape(-1, 2)
  x_gl, w_gl = np.polynomial.legendre.leggauss(order)
  axes, log_w = [], []
  for d in range(2):
    specials = [v for v in np.concatenate([region.lo_RxD[:, d], region.hi_RxD[:, d]]) if np.isfinite(v)]
    specials += list(centers[:, d])
    e = graded_breakpoints(lo, hi, specials, finest, coarsest)
    mid, half = (e[1:] + e[:-1]) / 2, (e[1:] - e[:-1]) / 2
    axes.append((mid[:, None] + half[:, None] * x_gl[None]).ravel())
    log_w.append(np.log((half[:, None] * w_gl[None]).ravel()))
  xx, yy = np.meshgrid(axes[0], axes[1], indexing="xy")
  wx, wy = np.meshgrid(log_w[0], log_w[1], indexing="xy")
  pts = np.stack([xx.ravel(), yy.ravel()], -1)
  inside = np.zeros(len(pts), bool)
  for blo, bhi in zip(region.lo_RxD, region.hi_RxD):
    inside |= np.all((pts > blo) & (pts < bhi), axis=-1)
  dtype = dtype or jnp.result_type(float)
  return RegionRule(jnp.asarray(pts, dtype), jnp.asarray((wx + wy).ravel(), dtype), jnp.asarray(inside))


def tilt_log_integrals(log_ref_Q: jax.Array, reward_Q: jax.Array, beta,
                       rule: RegionRule) -> tuple[jax.Array, jax.Array]:
  """(log I_A, log I_{A^c}) with I_S = int_S ref(x) e^{r(x)/beta} dx, by the region rule.

  The tilted mass is sigmoid(log I_A - log I_Ac); the law's soft-max gap is
  Delta/beta = [log I_A - log ref(A)] - [log I_Ac - log ref(A^c)].
  """
  log_f_Q = log_ref_Q + reward_Q / beta + rule.log_weights_Q
  neg = jnp.asarray(-jnp.inf, log_f_Q.dtype)
  log_ia = jax.nn.logsumexp(jnp.where(rule.in_region_Q, log_f_Q, neg))
  log_iac = jax.nn.logsumexp(jnp.where(rule.in_region_Q, neg, log_f_Q))
  return log_ia, log_iac


# phi(v) = v e^v - expm1(v) = sum_{n >= 2} (n - 1) v^n / n!: the coefficients of v^2, v^3, ...
# up to v^19 (truncation below 1e-17 relative for |v| < 1/2), highest first for polyval.
_PHI_SERIES = tuple((n - 1) / math.factorial(n) for n in range(19, 1, -1))
_PHI_SERIES_RADIUS = 0.5


def tilt_kl(log_ref_Q: jax.Array, reward_Q: jax.Array, beta, rule: RegionRule) -> jax.Array:
  """KL(pi || ref) of the Gibbs tilt pi = ref e^{r/beta} / Z, by the region rule, as a sum of
  non-negative terms (so a tiny KL keeps its relative precision).

  Exact where the midpoint grid is not (a tilt narrower than a grid cell at small beta).

  On the rule (nodes x_Q, weights w_Q) the reference has mass ``M = sum_Q w_Q ref(x_Q)``,
  which is not 1: the rule ends at its box and integrates each Gaussian only to its own
  resolution (the default rule falls short of 1 by parts in 1e9). The tilt is compared with
  the reference *normalised on the rule*, rho_Q = w_Q ref(x_Q)/M, as the tilt
  pi_Q = w_Q ref(x_Q) e^{u_Q}/Z (u = r/beta, Z = sum_Q w_Q ref(x_Q) e^{u_Q}) is:

      KL = sum_Q pi_Q log(pi_Q/rho_Q) = E_pi[u] - L,   L = log(Z/M) = log Z - log M.

  Leaving out log M (the form E_pi[u] - log Z) adds -log M (of the order of 1e-9) to every
  KL, which swamped the KL of a tilt that barely moves the reference (1e-12 and below).

  E_pi[u] - L is also a difference of two numbers much larger than the KL when the tilt is
  weak (both ~ E_ref[u], the KL ~ Var_ref(u)/2), so it is summed instead as

      KL = sum_Q rho_Q phi(v_Q),   v_Q = u_Q - L,   phi(v) = v e^v - expm1(v) >= 0,

  the same sum (pi_Q = rho_Q e^{v_Q} and sum_Q pi_Q = sum_Q rho_Q = 1, so
  sum_Q rho_Q (v e^v - e^v + 1) = E_pi[u] - L), with every term non-negative.
  phi(v) = v^2/2 + v^3/3 + v^4/8 + ... = sum_{n >= 2} (n - 1) v^n/n! is taken from that
  series (to v^19) for |v| < 1/2, and as pi_Q (v_Q - 1) + rho_Q (pi_Q, rho_Q in log space:
  e^v never overflows) elsewhere, where the cancellation costs at most a factor ~21 in the
  term's relative precision (at v = -1/2: (1 + e^{-1/2} 3/2) / phi(-1/2)). The sum is
  stationary in L (d/dL sum_Q rho_Q phi(u_Q - L) = -sum_Q pi_Q v_Q = -KL at the exact L,
  second derivative 1 + KL), so a rounding error delta in L (log Z and log M from two
  log-sum-exps, delta a few ulp of their largest term) moves it by -delta KL + delta^2/2
  only: relative error ~ delta + delta^2/(2 KL), below 1e-5 for any KL above 1e-25 in float64.

  Args:
    log_ref_Q: ``[Q]`` reference log-density at the rule's nodes (``-inf`` allowed).
    reward_Q: ``[Q]`` reward at the nodes.
    beta: coefficient, > 0 (a scalar; vmappable).
    rule: the :class:`RegionRule` (its weights are used; its region split is not).

  Returns:
    The scalar KL(pi || ref / M) >= 0.
  """
  log_wref_Q = log_ref_Q + rule.log_weights_Q
  log_m = jax.nn.logsumexp(log_wref_Q)
  u_Q = reward_Q / beta
  log_f_Q = log_wref_Q + u_Q
  log_z = jax.nn.logsumexp(log_f_Q)
  v_Q = u_Q - (log_z - log_m)
  rho_Q = jnp.exp(log_wref_Q - log_m)
  pi_Q = jnp.exp(log_f_Q - log_z)
  small = jnp.abs(v_Q) < _PHI_SERIES_RADIUS
  v_small = jnp.where(small, v_Q, 0.0)
  series = v_small * v_small * jnp.polyval(jnp.asarray(_PHI_SERIES, v_Q.dtype), v_small)
  terms = jnp.where(small, rho_Q * series, pi_Q * (v_Q - 1.0) + rho_Q)
  return jnp.sum(terms)


def tilted_mass(log_ia: jax.Array, log_iac: jax.Array) -> jax.Array:
  """pi(A) = I_A / (I_A + I_Ac) = sigmoid(log I_A - log I_Ac)."""
  return jax.nn.sigmoid(log_ia - log_iac)
