"""Ground-truth languages p* with exact log-likelihoods and an exact oracle reward.

The pipelines only talk to p* through the :class:`GroundTruth` protocol, so a
pretrained model (e.g. SmolLM2 via ``recall_theory.lm.hub``) can stand in for the
synthetic language below:

* ``prompt``: int32 [P] token ids every sequence starts with (here ``[BOS]``);
* ``seq_len``: T, number of tokens generated after the prompt;
* ``vocab_size``: V (the models' vocabulary; prompt ids included);
* ``sample(key, n) -> tokens_NxL``: int32, ``L = P + T``, prompt included;
* ``log_prob(tokens_NxL) -> [N]``: log p*(x_{P+1..L} | prompt), float32, exact;
* ``reward(tokens_NxL) -> [N]``: bounded oracle reward in [0, 1];
* ``shows_target(tokens_NxL) -> [N] bool``: exact test of the target behaviour;
* optional ``target_log_prob(tokens_NxL) -> [N]``: log p*(x | target behaviour), for the
  log-likelihood version of target precision (NaN in the metrics when absent).

:class:`MarkovMixture` is a mixture of first-order Markov "styles" plus a uniform
"noise" style:

  p*(x) = sum_k w_k pi_k(x_1) prod_{t>1} A_k(x_{t-1}, x_t),

computed exactly with ``logsumexp`` over styles. Every style has peaked transition rows
(Dirichlet concentration ~0.08 over the V-1 content tokens, so each token has 2-3
likely successors); the target is one of them with a small weight ``target_weight``
(5% by default), the others share ``1 - target_weight - noise_weight``. With
``shared_start`` all styles draw the first token from one distribution, so the style
is decided at the second token, where the next-token distribution is the prior-weighted
mixture of the styles' rows: sampling at temperature tau < 1 (``p^(1/tau)``)
suppresses the rare style's tokens there, so a teacher sampled at tau loses the target.
For the default p* itself, sampled with per-token tempering (each next-token
distribution raised to 1/tau and renormalised, as :mod:`recall_theory.lm.sampling`
does), the target share is 5.0% at tau = 1, 2.3% at 0.7 and 1.5% at 0.6
(:meth:`MarkovMixture.tempered_target_share`, Monte Carlo n = 400000, Wilson 95%
half-widths <= 0.07%; checked by ``tests/lm/test_lm_groundtruth.py``).
Every row is mixed with ``leak`` of the uniform distribution, and the noise style
(weight ``noise_weight``) is uniform: p* has full support (recall is finite) and an
unstructured sequence, such as an under-trained model emits, is explained by the noise
style rather than credited to the target.

Oracle reward: the exact posterior of the target style,

  R(x) = P(k = target | x) = w_t p_t(x) / p*(x)  in [0, 1],

and ``shows_target(x)`` is the Bayes decision ``R(x) > 1/2``. Token 0 is BOS and is
never emitted after the prompt.

Example::

  gt = MarkovMixture(MarkovMixtureConfig(seed=0))
  x = gt.sample(jax.random.key(0), 4)         # [4, 1 + T]
  gt.log_prob(x), gt.reward(x), gt.shows_target(x)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from recall_theory.errors import InputError, check_int_range, check_positive

BOS_ID = 0


@runtime_checkable
class GroundTruth(Protocol):
  """What the pipelines need from p* (see the module docstring)."""
  prompt: jax.Array
  seq_len: int
  vocab_size: int

  def sample(self, key: jax.Array, n: int) -> jax.Array: ...

  def log_prob(self, tokens_NxL: jax.Array) -> jax.Array: ...

  def reward(self, tokens_NxL: jax.Array) -> jax.Array: ...

  def shows_target(self, tokens_NxL: jax.Array) -> jax.Array: ...


@dataclasses.dataclass(frozen=True)
class MarkovMixtureConfig:
  """A mixture of Markov styles with one rare, high-entropy target style.

  Attributes:
    vocab_size: V including BOS (token 0); content tokens are 1..V-1.
    seq_len: T tokens after BOS.
    n_styles: K >= 2; the last style is the target.
    target_weight: mixture weight w_t of the target style, in (0, 1).
    common_concentration: Dirichlet concentration of common-style rows (peaked if small).
    target_concentration: Dirichlet concentration of target-style rows.
    leak: share of each row mixed with the uniform distribution, in (0, 1).
    noise_weight: weight of an extra uniform "noise" style, in (0, 1 - target_weight).
    shared_start: every style uses the same first-token distribution, so the first
      token carries no style information and the style is decided by later steps.
    seed: seed of the transition matrices (p* itself is fixed by the config).
  """
  vocab_size: int = 24
  seq_len: int = 12
  n_styles: int = 4
  target_weight: float = 0.05
  common_concentration: float = 0.08
  target_concentration: float = 0.08
  leak: float = 0.01
  noise_weight: float = 0.02
  shared_start: bool = True
  seed: int = 0

  def validate(self) -> "MarkovMixtureConfig":
    check_int_range("vocab_size", self.vocab_size, 3)
    check_int_range("seq_len", self.seq_len, 1)
    check_int_range("n_styles", self.n_styles, 2)
    if not 0.0 < self.target_weight < 1.0:
      raise InputError(f"target_weight must lie in (0, 1), got {self.target_weight}")
    check_positive("common_concentration", self.common_concentration)
    check_positive("target_concentration", self.target_concentration)
    if not 0.0 < self.leak < 1.0:
      raise InputError(f"leak must lie in (0, 1), got {self.leak}")
    if not 0.0 < self.noise_weight < 1.0 - self.target_weight:
      raise InputError(f"noise_weight must lie in (0, 1 - target_weight), got {self.noise_weight}")
    return self


class MarkovMixture:
  """Exact mixture-of-Markov-styles language (see the module docstring)."""

  def __init__(self, config: MarkovMixtureConfig = MarkovMixtureConfig()):
    self.config = config.validate()
    k, v = config.n_styles, config.vocab_size - 1
    rng = np.random.default_rng(config.seed)
    alphas = np.full(k, config.common_concentration)
    alphas[-1] = config.target_concentration
    init = np.stack([rng.dirichlet(np.full(v, a)) for a in alphas])
    if config.shared_start:
      init = np.broadcast_to(init[0], init.shape)
    trans = np.stack([rng.dirichlet(np.full(v, a), size=v) for a in alphas])
    init = (1 - config.leak) * init + config.leak / v
    trans = (1 - config.leak) * trans + config.leak / v
    # The uniform "noise" style (last) explains unstructured sequences, so they get a
    # target posterior near 0 instead of 1/K.
    init = np.concatenate([init, np.full((1, v), 1 / v)])
    trans = np.concatenate([trans, np.full((1, v, v), 1 / v)])
    common = 1 - config.target_weight - config.noise_weight
    weights = np.array([common / (k - 1)] * (k - 1) + [config.target_weight, config.noise_weight])
    self.log_weights_K = jnp.asarray(np.log(weights), jnp.float32)
    self.log_init_KxV = jnp.asarray(np.log(init), jnp.float32)  # over content ids 1..V-1
    self.log_trans_KxVxV = jnp.asarray(np.log(trans), jnp.float32)
    self.target_style = k - 1
    self.prompt = jnp.array([BOS_ID], jnp.int32)
    self.seq_len = config.seq_len
    self.vocab_size = config.vocab_size

  # -- exact likelihoods ---------------------------------------------------------------
  def style_log_likelihoods(self, tokens_NxL: jax.Array) -> jax.Array:
    """log p_k(x) for every style: [N, K] (content tokens are shifted to 0..V-2)."""
    x = jnp.asarray(tokens_NxL)[:, 1:] - 1
    lp_first = self.log_init_KxV[:, x[:, 0]].T  # [N, K]
    lp_steps = self.log_trans_KxVxV[:, x[:, :-1], x[:, 1:]]  # [K, N, T-1]
    return lp_first + jnp.sum(lp_steps, axis=-1).T

  def log_prob(self, tokens_NxL: jax.Array) -> jax.Array:
    """log p*(x) = logsumexp_k (log w_k + log p_k(x)): [N]."""
    return jax.nn.logsumexp(self.log_weights_K + self.style_log_likelihoods(tokens_NxL), axis=-1)

  def target_log_prob(self, tokens_NxL: jax.Array) -> jax.Array:
    """log p*(x | target style): [N]."""
    return self.style_log_likelihoods(tokens_NxL)[:, self.target_style]

  def reward(self, tokens_NxL: jax.Array) -> jax.Array:
    """Posterior of the target style, exp(log w_t + log p_t(x) - log p*(x)) in [0, 1]: [N]."""
    joint = self.log_weights_K + self.style_log_likelihoods(tokens_NxL)
    post = jax.nn.softmax(joint, axis=-1)
    return post[:, self.target_style]

  def shows_target(self, tokens_NxL: jax.Array) -> jax.Array:
    """Bayes decision: the target style is the more probable explanation (R > 1/2)."""
    return self.reward(tokens_NxL) > 0.5

  def next_token_log_probs(self, prefix_NxL: jax.Array) -> jax.Array:
    """log p*(x_{L+1} | x_{1..L}) over the full vocabulary (BOS gets -inf): [N, V].

    The style posterior of the prefix mixes the styles' next-token rows.
    """
    prefix = jnp.asarray(prefix_NxL)
    n = prefix.shape[0]
    if prefix.shape[1] == 1:
      log_post = jnp.broadcast_to(self.log_weights_K, (n, self.log_weights_K.shape[0]))
      rows = jnp.broadcast_to(self.log_init_KxV, (n,) + self.log_init_KxV.shape)
    else:
      log_post = jax.nn.log_softmax(self.log_weights_K + self.style_log_likelihoods(prefix), -1)
      rows = jnp.moveaxis(self.log_trans_KxVxV[:, prefix[:, -1] - 1], 0, 1)  # [N, K, V-1]
    content = jax.nn.logsumexp(log_post[:, :, None] + rows, axis=1)
    return jnp.concatenate([jnp.full((n, 1), -jnp.inf), content], axis=1)

  # -- per-token tempering ---------------------------------------------------------------
  def tempered_log_prob(self, tokens_NxL: jax.Array, temperature: float) -> jax.Array:
    """log q_tau(x) of the per-token tempered process: [N].

    ``q_tau(x) = prod_t p*(x_t | x_<t)^(1/tau) / sum_v p*(v | x_<t)^(1/tau)`` -- what
    sampling p* (or a model of it) at temperature tau draws from; not ``p*^(1/tau)``
    normalised over whole sequences. Exact (O(T^2) per sequence; for tests).
    """
    check_positive("temperature", temperature)
    tokens = jnp.asarray(tokens_NxL)
    p = int(self.prompt.shape[0])
    total = jnp.zeros(tokens.shape[0])
    for t in range(p, tokens.shape[1]):
      lp = jax.nn.log_softmax(self.next_token_log_probs(tokens[:, :t]) / temperature, axis=-1)
      total = total + jnp.take_along_axis(lp, tokens[:, t:t + 1], axis=1)[:, 0]
    return total

  def tempered_sample(self, key: jax.Array, n: int, temperature: float) -> jax.Array:
    """n samples of the per-token tempered process (see :meth:`tempered_log_prob`).

    The style posterior of the prefix is carried incrementally, so each step is one
    mixture of the styles' rows: int32 [n, 1 + T]. ``temperature = 1`` samples p*.
    """
    n = check_int_range("n", n, 1)
    check_positive("temperature", temperature)
    return _sample_tempered(key, self.log_weights_K, self.log_init_KxV, self.log_trans_KxVxV,
                            jnp.float32(temperature), n=n, seq_len=self.seq_len)

  def tempered_target_share(self, key: jax.Array, temperature: float, n: int = 400_000) -> dict:
    """Share of per-token tempered samples that show the target, with a Wilson interval.

    Estimator: ``k / n`` over ``n`` samples of :meth:`tempered_sample` (the indicator
    ``R(x) > 1/2`` is exact per sample; the sequence space is too large to enumerate).
    Returns ``{"rate", "low", "high", "k", "n"}`` (Wilson 95%).
    """
    from recall_theory import stats
    n = check_int_range("n", n, 1)
    k = 0
    for i, start in enumerate(range(0, n, 50_000)):
      x = self.tempered_sample(jax.random.fold_in(key, i), min(50_000, n - start), temperature)
      k += int(jnp.sum(self.shows_target(x)))
    low, high = stats.wilson_interval(k, n)
    return {"rate": k / n, "low": float(low), "high": float(high), "k": k, "n": n}

  # -- sampling ------------------------------------------------------------------------
  def sample(self, key: jax.Array, n: int) -> jax.Array:
    """n exact samples: style ~ w, then the style's chain. int32 [n, 1 + T]."""
    n = check_int_range("n", n, 1)
    return _sample_markov(key, self.log_weights_K, self.log_init_KxV, self.log_trans_KxVxV,
                          n=n, seq_len=self.seq_len)

  def sample_styles(self, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """Like :meth:`sample` but also returns the drawn style index of each sequence."""
    n = check_int_range("n", n, 1)
    return _sample_markov(key, self.log_weights_K, self.log_init_KxV, self.log_trans_KxVxV,
                          n=n, seq_len=self.seq_len, return_styles=True)


@functools.partial(jax.jit, static_argnames=("n", "seq_len", "return_styles"))
def _sample_markov(key, log_w, log_init, log_trans, *, n, seq_len, return_styles=False):
  k_style, k_first, k_rest = jax.random.split(key, 3)
  styles = jax.random.categorical(k_style, log_w, shape=(n,))
  first = jax.random.categorical(k_first, log_init[styles])

  def step(prev, step_key):
    nxt = jax.random.categorical(step_key, log_trans[styles, prev])
    return nxt, nxt

  _, rest = jax.lax.scan(step, first, jax.random.split(k_rest, seq_len - 1))
  content = jnp.concatenate([first[:, None], rest.T], axis=1) + 1
  tokens = jnp.concatenate([jnp.full((n, 1), BOS_ID, jnp.int32), content.astype(jnp.int32)], 1)
  return (tokens, styles) if return_styles else tokens


@functools.partial(jax.jit, static_argnames=("n", "seq_len"))
def _sample_tempered(key, log_w, log_init, log_trans, temperature, *, n, seq_len):
  """Per-token tempered ancestral sampling; the carry is the joint log w_k + log p_k(prefix)."""
  keys = jax.random.split(key, seq_len)
  # First token: the prior-weighted mixture of the styles' first-token rows.
  first_lp = jax.nn.logsumexp(log_w[:, None] + log_init, axis=0)  # [V-1]
  first = jax.random.categorical(keys[0], first_lp / temperature, shape=(n,))
  joint = log_w[None, :] + log_init[:, first].T  # [n, K]

  def step(carry, step_key):
    joint, prev = carry
    log_post = jax.nn.log_softmax(joint, axis=-1)
    rows = jnp.moveaxis(log_trans[:, prev], 0, 1)  # [n, K, V-1]
    next_lp = jax.nn.logsumexp(log_post[:, :, None] + rows, axis=1)
    nxt = jax.random.categorical(step_key, next_lp / temperature, axis=-1)
    joint = joint + jnp.take_along_axis(rows, nxt[:, None, None], axis=2)[:, :, 0]
    return (joint, nxt), nxt

  _, rest = jax.lax.scan(step, (joint, first), keys[1:])
  content = jnp.concatenate([first[:, None], rest.T], axis=1) + 1
  return jnp.concatenate([jnp.full((n, 1), BOS_ID, jnp.int32), content.astype(jnp.int32)], 1)
