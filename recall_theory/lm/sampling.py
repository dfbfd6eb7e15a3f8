"""Autoregressive sampling: greedy, temperature and top-p, with a key-value cache.

Two paths produce the same tokens from the same key:

* :func:`generate` (default ``use_cache=True``): one forward over the prompt fills the
  cache, then each new token costs one single-token forward (``O(L)`` per step);
* ``use_cache=False``: every step recomputes the full causal forward over a fixed
  ``[B, P + N]`` buffer and reads the logits at the last filled position
  (``O(L^2)`` per step); the baseline for the benchmark and the cache-equals-full test.

The model's weights travel as a jit ARGUMENT: the public functions ``nnx.split`` the
model into (graphdef, state) and call a ``jax.jit`` function with the graphdef static
and the state traced, so weights are never baked in as constants and one compilation
serves every model of the same architecture.

Token choice at temperature ``t`` and nucleus ``top_p``: logits are divided by ``t``,
tokens outside the smallest set whose probability reaches ``top_p`` (sorted by
probability, the most likely always kept) are removed, and one token is drawn;
``t == 0`` is greedy (argmax). After an ``eos_id`` a sequence keeps emitting
``eos_id``.

Example::

  tokens_BxN = generate(model, prompt_BxP, jax.random.key(0), max_new_tokens=16,
                        temperature=0.8, top_p=0.95)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from recall_theory.errors import InputError, check_nonnegative, check_probability
from recall_theory.lm.model import Transformer, init_cache

_STATIC = ("graphdef", "max_new_tokens", "eos_id")


def filter_logits(logits_BxV: jax.Array, temperature, top_p) -> jax.Array:
  """Tempered log-probabilities with tokens outside the top-p nucleus set to -inf.

  Greedy (temperature 0) keeps only the argmax. Returns float32 [B, V] log-probs
  (normalised over the kept tokens).
  """
  logits = logits_BxV.astype(jnp.float32)
  temperature = jnp.asarray(temperature, jnp.float32)
  safe_t = jnp.where(temperature > 0, temperature, 1.0)
  log_p = jax.nn.log_softmax(logits / safe_t, axis=-1)
  sorted_lp = jnp.sort(log_p, axis=-1)[..., ::-1]
  cum_before = jnp.cumsum(jnp.exp(sorted_lp), axis=-1) - jnp.exp(sorted_lp)
  # Keep a token when the mass strictly above it is still short of top_p.
  keep_sorted = cum_before < top_p
  keep_sorted = keep_sorted.at[..., 0].set(True)
  threshold = jnp.min(jnp.where(keep_sorted, sorted_lp, jnp.inf), axis=-1, keepdims=True)
  keep = log_p >= threshold
  greedy = log_p >= jnp.max(log_p, axis=-1, keepdims=True)
  keep = jnp.where(temperature > 0, keep, greedy)
  masked = jnp.where(keep, log_p, -jnp.inf)
  return jax.nn.log_softmax(masked, axis=-1)


def _choose(key, logits_BxV, temperature, top_p):
  log_p = filter_logits(logits_BxV, temperature, top_p)
  sampled = jax.random.categorical(key, log_p, axis=-1)
  greedy = jnp.argmax(logits_BxV, axis=-1)
  return jnp.where(temperature > 0, sampled, greedy).astype(jnp.int32)


def _finish(tok_B, done_B, eos_id):
  if eos_id is None:
    return tok_B, done_B
  tok_B = jnp.where(done_B, eos_id, tok_B)
  return tok_B, done_B | (tok_B == eos_id)


def _generate_cached_impl(graphdef, state, prompt_BxP, key, temperature, top_p, *, max_new_tokens,
                     eos_id):
  model = nnx.merge(graphdef, state)
  b, p = prompt_BxP.shape
  cache = init_cache(model.config, b, p + max_new_tokens)
  logits, cache = model(prompt_BxP, cache=cache)
  keys = jax.random.split(key, max_new_tokens)
  tok = _choose(keys[0], logits[:, -1], temperature, top_p)
  tok, done = _finish(tok, jnp.zeros((b,), bool), eos_id)

  def step(carry, step_key):
    cache, tok, done = carry
    logits, cache = model(tok[:, None], cache=cache)
    nxt = _choose(step_key, logits[:, -1], temperature, top_p)
    nxt, done = _finish(nxt, done, eos_id)
    return (cache, nxt, done), nxt

  _, rest = jax.lax.scan(step, (cache, tok, done), keys[1:])
  return jnp.concatenate([tok[:, None], rest.T], axis=1)


def _generate_recompute_impl(graphdef, state, prompt_BxP, key, temperature, top_p, *, max_new_tokens,
                        eos_id):
  model = nnx.merge(graphdef, state)
  b, p = prompt_BxP.shape
  buffer = jnp.concatenate([prompt_BxP, jnp.zeros((b, max_new_tokens), prompt_BxP.dtype)], axis=1)
  keys = jax.random.split(key, max_new_tokens)

  def step(carry, inputs):
    buffer, done = carry
    t, step_key = inputs
    logits, _ = model(buffer)  # causal: slots after p + t do not affect position p + t - 1
    last = jax.lax.dynamic_index_in_dim(logits, p + t - 1, axis=1, keepdims=False)
    nxt = _choose(step_key, last, temperature, top_p)
    nxt, done = _finish(nxt, done, eos_id)
    buffer = jax.lax.dynamic_update_slice(buffer, nxt[:, None].astype(buffer.dtype), (0, p + t))
    return (buffer, done), None

  (buffer, _), _ = jax.lax.scan(step, (buffer, jnp.zeros((b,), bool)),
                                (jnp.arange(max_new_tokens), keys))
  return buffer[:, p:].astype(jnp.int32)


@functools.cache
def _sampler(use_cache: bool):
  """The compiled sampler. Deterministic mode reaches it through XLA_FLAGS only (set before
  JAX starts, :func:`recall_theory.lm.train.enable_deterministic`): per-compilation options
  are not supported by a running GPU backend (see there)."""
  fn = _generate_cached_impl if use_cache else _generate_recompute_impl
  return jax.jit(fn, static_argnames=_STATIC)


def check_generation(model: Transformer, prompt_BxP, max_new_tokens: int) -> None:
  """InputError unless the prompt is [B, P>=1] and P + max_new_tokens <= max_seq_len."""
  shape = jnp.shape(prompt_BxP)
  if len(shape) != 2 or shape[1] < 1 or shape[0] < 1:
    raise InputError(f"prompt must have shape [batch, length>=1], got {list(shape)}")
  if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
    raise InputError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
  total = shape[1] + max_new_tokens
  if total > model.config.max_seq_len:
    raise InputError(f"prompt length {shape[1]} + max_new_tokens {max_new_tokens} = {total} "
                     f"exceeds max_seq_len={model.config.max_seq_len}")


def generate(model: Transformer, prompt_BxP: jax.Array, key: jax.Array, *, max_new_tokens: int,
             temperature: float = 1.0, top_p: float = 1.0, eos_id: int | None = None,
             use_cache: bool = True) -> jax.Array:
  """Sample ``max_new_tokens`` continuations of ``prompt_BxP``; returns int32 [B, N].

  Args:
    model: the transformer (split into graphdef + state; weights are a jit argument).
    prompt_BxP: int token ids, every row the same length P >= 1.
    key: PRNG key.
    max_new_tokens: N; P + N must not exceed ``model.config.max_seq_len``.
    temperature: >= 0; 0 is greedy.
    top_p: nucleus mass in (0, 1].
    eos_id: optional end-of-sequence id; rows that emitted it keep emitting it.
    use_cache: False recomputes the full prefix every step (benchmark baseline).
  """
  check_generation(model, prompt_BxP, max_new_tokens)
  check_nonnegative("temperature", temperature)
  check_probability("top_p", top_p)
  if not top_p > 0:
    raise InputError("top_p must lie in (0, 1], got 0")
  if eos_id is not None and not 0 <= int(eos_id) < model.config.vocab_size:
    raise InputError(f"eos_id must lie in [0, {model.config.vocab_size - 1}], got {eos_id}")
  graphdef, state = nnx.split(model)
  fn = _sampler(use_cache)
  return fn(graphdef, state, jnp.asarray(prompt_BxP, jnp.int32), key,
            jnp.float32(temperature), jnp.float32(top_p), max_new_tokens=max_new_tokens,
            eos_id=None if eos_id is None else int(eos_id))


def generate_with_state(graphdef, state, prompt_BxP, key, *, max_new_tokens: int,
                        temperature=1.0, top_p=1.0, eos_id: int | None = None,
                        use_cache: bool = True) -> jax.Array:
  """:func:`generate` for callers that already hold (graphdef, state), e.g. inside jit."""
  fn = _sampler(use_cache)
  return fn(graphdef, state, prompt_BxP, key, temperature, top_p,
            max_new_tokens=max_new_tokens, eos_id=eos_id)
