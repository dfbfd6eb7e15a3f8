"""A pretrained SmolLM2 as the ground truth p* of the transformer-track pipelines.

Implements the :class:`recall_theory.lm.groundtruth.GroundTruth` protocol:

* ``prompt``: int32 [P], the tokens of ``prompt_text`` (default the paper's one-word
  prompt "The", no chat template);
* ``seq_len``: T continuation tokens; p* is the distribution of the next T tokens of the
  pretrained model at temperature 1, top-p 1, no stopping (an end-of-text token is just
  a token), so sampling and likelihood describe the same distribution exactly:

    log p*(x_{P+1..P+T} | prompt) = sum_t log softmax(f(x_<t))[x_t]   (float32);

* ``sample(key, n)``: ancestral sampling through the jitted KV cache
  (:func:`recall_theory.lm.sampling.generate`);
* ``log_prob(tokens)``: one causal forward per chunk;
* ``reward`` / ``shows_target``: the exact oracle of :mod:`recall_theory.lm.hub.oracle`
  on the continuation.

Every call works in fixed chunks of ``chunk`` rows (the last one padded), so the 30-layer
model compiles once per shape, not once per request size. The weights are a jit argument.

Example::

  gt = PretrainedGroundTruth.load(PStarConfig(seq_len=16))
  x = gt.sample(jax.random.key(0), 8)          # [8, 1 + 16]
  gt.log_prob(x), gt.shows_target(x)
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from recall_theory.errors import InputError, check_int_range


@dataclasses.dataclass(frozen=True)
class PStarConfig:
  """Which pretrained model is p*, its prompt, continuation length and target.

  Attributes:
    model: ``--model`` value (name or path), see :mod:`recall_theory.lm.hub.models`.
    prompt_text: text every sequence starts with (tokenized, no chat template).
    seq_len: T, tokens sampled after the prompt.
    target: oracle name (:data:`recall_theory.lm.hub.oracle.ORACLES`).
    chunk: rows per sampling/scoring call (fixed shape).
    param_dtype: weights/compute dtype of p* ("float32" or "bfloat16").
  """
  model: str = "smollm2-135m-instruct"
  prompt_text: str = "The"
  seq_len: int = 16
  target: str = "question"
  chunk: int = 64
  param_dtype: str = "float32"

  def validate(self) -> "PStarConfig":
    check_int_range("pstar.seq_len", self.seq_len, 1, 4096)
    check_int_range("pstar.chunk", self.chunk, 1, 65536)
    if not self.prompt_text:
      raise InputError("pstar.prompt_text must not be empty")
    if self.param_dtype not in ("float32", "bfloat16"):
      raise InputError(f"pstar.param_dtype must be float32 or bfloat16, got {self.param_dtype!r}")
    return self


@functools.partial(jax.jit, static_argnames=("graphdef", "prompt_len"))
def _sequence_log_prob(graphdef, state, tokens_NxL, prompt_len):
  from recall_theory.lm.losses import sequence_log_prob
  return sequence_log_prob(nnx.merge(graphdef, state), tokens_NxL, prompt_len)


class PretrainedGroundTruth:
  """p* = a pretrained causal LM over T tokens after a fixed prompt (module docstring)."""

  def __init__(self, lm, *, prompt_ids, seq_len: int, oracle, chunk: int = 64):
    self.lm = lm
    self.prompt = jnp.asarray(prompt_ids, jnp.int32)
    if self.prompt.ndim != 1 or self.prompt.shape[0] < 1:
      raise InputError("p* prompt must be a non-empty 1-D list of token ids")
    self.seq_len = check_int_range("seq_len", seq_len, 1)
    self.vocab_size = int(lm.config.vocab_size)
    self.oracle = oracle
    self.chunk = check_int_range("chunk", chunk, 1)
    length = int(self.prompt.shape[0]) + self.seq_len
    if length > lm.config.max_seq_len:
      raise InputError(f"p* prompt ({self.prompt.shape[0]} tokens) + seq_len {self.seq_len} "
                       f"exceeds the model's context {lm.config.max_seq_len}")
    self._graphdef, self._state = nnx.split(lm.model)

  @classmethod
  def load(cls, config: PStarConfig = PStarConfig(), *, cache_dir=None) -> "PretrainedGroundTruth":
    from recall_theory.lm.hub.models import load_pretrained
    from recall_theory.lm.hub.oracle import make_oracle
    config.validate()
    lm = load_pretrained(config.model, param_dtype=config.param_dtype, cache_dir=cache_dir)
    prompt = lm.tokenizer.encode(config.prompt_text)
    return cls(lm, prompt_ids=prompt, seq_len=config.seq_len,
               oracle=make_oracle(config.target, lm.tokenizer), chunk=config.chunk)

  @property
  def prompt_len(self) -> int:
    return int(self.prompt.shape[0])

  def _chunks(self, n: int):
    return [(start, min(self.chunk, n - start)) for start in range(0, n, self.chunk)]

  def sample(self, key: jax.Array, n: int, *, bar=None) -> jax.Array:
    """n exact samples of p*: int32 [n, P + T] (prompt included).

    ``bar``: an optional :func:`recall_theory.progress.stage`, advanced by the rows of
    each finished chunk (the samples do not depend on it).
    """
    from recall_theory.lm.sampling import generate_with_state
    n = check_int_range("n", n, 1)
    prompt = jnp.broadcast_to(self.prompt, (self.chunk, self.prompt_len))
    out = []
    for i, (_, rows) in enumerate(self._chunks(n)):
      gen = generate_with_state(self._graphdef, self._state, prompt, jax.random.fold_in(key, i),
                                max_new_tokens=self.seq_len, temperature=jnp.float32(1.0),
                                top_p=jnp.float32(1.0), eos_id=None)
      out.append(jnp.concatenate([prompt, gen], axis=1)[:rows])
      if bar is not None:
        jax.block_until_ready(out[-1])
        bar.update(rows)
    return jnp.concatenate(out)

  def log_prob(self, tokens_NxL: jax.Array) -> jax.Array:
    """log p*(continuation | prompt), float32 [N]."""
    tokens = jnp.asarray(tokens_NxL, jnp.int32)
    if tokens.ndim != 2 or tokens.shape[1] != self.prompt_len + self.seq_len:
      raise InputError(f"tokens must have shape [N, {self.prompt_len + self.seq_len}], "
                       f"got {list(tokens.shape)}")
    out = []
    for start, rows in self._chunks(tokens.shape[0]):
      block = tokens[start:start + rows]
      if rows < self.chunk:
        block = jnp.concatenate([block, jnp.broadcast_to(block[:1], (self.chunk - rows,
                                                                     block.shape[1]))])
      out.append(_sequence_log_prob(self._graphdef, self._state, block, self.prompt_len)[:rows])
    return jnp.concatenate(out)

  def shows_target(self, tokens_NxL: jax.Array) -> jax.Array:
    return self.oracle.shows_target(jnp.asarray(tokens_NxL)[:, self.prompt_len:])

  def reward(self, tokens_NxL: jax.Array) -> jax.Array:
    return self.oracle.reward(jnp.asarray(tokens_NxL)[:, self.prompt_len:])

  def decode(self, tokens_NxL) -> list[str]:
    """The continuations as text (for inspection)."""
    return [self.lm.tokenizer.decode(row[self.prompt_len:], skip_special=False)
            for row in np.asarray(tokens_NxL).tolist()]
