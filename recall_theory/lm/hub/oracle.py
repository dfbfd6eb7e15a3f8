"""Exact oracle of a rare behaviour of p*'s text: "the continuation asks a question".

Target behaviour (our design): the T generated tokens, decoded, contain a question mark
``?``. It is an exact, deterministic function of the text, evaluated on token ids with a
lookup table:

  shows_target(x) = OR_t  mask[x_t],   mask[i] = ("?" in the byte string of token i),
  R(x) = 1[shows_target(x)]  in {0, 1}.

Why on ids and still exact: the byte-level BPE maps every byte to one symbol and
printable ASCII to itself, so a token's symbol string contains ``?`` exactly when its
bytes contain 0x3F; in UTF-8 the byte 0x3F never occurs inside a multi-byte character,
so the decoded text of a sequence contains ``?`` exactly when one of its tokens does.
The check runs on device (a gather and an ``any``), no decoding.

Base rate under p* = SmolLM2-135M-Instruct with the one-word prompt "The" at
temperature 1 (measured, :data:`BASE_RATES`; 512 samples, 95% Wilson intervals):
0.78% [0.30, 1.99] of 8-token, 1.56% [0.79, 3.05] of 16-token and 3.1% [1.9, 5.0] of
32-token continuations: rare, as the paper's target must be. Re-measure with
``python -m recall_theory.lm.hub.base_rate --samples 512 --lengths 8,16,32``.

Swappable: :class:`TokenSetOracle` takes any character set (``"!"``, ``"0123456789"``)
or an explicit token mask.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from recall_theory.errors import InputError

# Measured by ``python -m recall_theory.lm.hub.base_rate --samples 512 --lengths 8,16,32
# --seed 0`` (prompt "The", the "?" oracle, SmolLM2-135M-Instruct GGUF, CPU float32):
# {T: (hits, samples)}.
BASE_RATES: dict[int, tuple[int, int]] = {8: (4, 512), 16: (8, 512), 32: (16, 512)}


class TokenSetOracle(NamedTuple):
  """``shows_target``: some continuation token is in the set; reward = the indicator."""
  name: str
  description: str
  mask_V: jax.Array          # bool [V]

  def shows_target(self, continuation_NxT: jax.Array) -> jax.Array:
    """bool [N]: the continuation contains a token of the set."""
    return jnp.any(self.mask_V[jnp.asarray(continuation_NxT)], axis=-1)

  def reward(self, continuation_NxT: jax.Array) -> jax.Array:
    """float32 [N] in {0, 1}."""
    return self.shows_target(continuation_NxT).astype(jnp.float32)


def character_mask(tokenizer, chars: str) -> np.ndarray:
  """bool [V]: tokens whose byte-level symbol string contains one of the ASCII ``chars``.

  Special (added) tokens count by their literal content.
  """
  if not chars or any(ord(c) > 127 or not c.isprintable() or c == " " for c in chars):
    raise InputError(f"oracle characters must be printable ASCII without space, got {chars!r}")
  vocab = tokenizer.backend.get_vocab(with_added_tokens=True)
  mask = np.zeros(tokenizer.vocab_size, bool)
  for token, i in vocab.items():
    if any(c in token for c in chars):
      mask[i] = True
  return mask


def question_oracle(tokenizer) -> TokenSetOracle:
  """The default target: the continuation contains a question mark."""
  return TokenSetOracle(
      name="question", description="the continuation contains a question mark '?'",
      mask_V=jnp.asarray(character_mask(tokenizer, "?")))


ORACLES = {"question": question_oracle}


def make_oracle(name: str, tokenizer) -> TokenSetOracle:
  if name not in ORACLES:
    raise InputError(f"target must be one of {sorted(ORACLES)}, got {name!r}")
  return ORACLES[name](tokenizer)
