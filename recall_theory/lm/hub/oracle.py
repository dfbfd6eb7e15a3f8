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
``python -m recall_theory.lm.hub.oracle --samples 512 --lengths 8,16,32``.

Swappable: :class:`TokenSetOracle` takes any character set (``"!"``, ``"0123456789"``)
or an explicit token mask.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from recall_theory import progress
from recall_theory.errors import InputError

# Measured by ``python -m recall_theory.lm.hub.oracle --samples 512 --lengths 8,16,32
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


def prefix_base_rates(groundtruth, key: jax.Array, n: int, lengths: tuple[int, ...], *,
                      show_progress: bool = False) -> dict[int, tuple[int, int]]:
  """{T': (hits, n)} of the target among the first T' tokens of n p* samples.

  The first T' tokens of an autoregressive sample of length T are an exact sample of
  length T', so one run of length T gives the base rate at every T' <= T.
  ``show_progress``: a progress stage over the samples (the first chunk compiles).
  """
  for t in lengths:
    if not 1 <= t <= groundtruth.seq_len:
      raise InputError(f"prefix length {t} must lie in [1, {groundtruth.seq_len}]")
  with progress.stage(f"sample p* (T={groundtruth.seq_len})", total=n, unit="samples",
                      enabled=show_progress) as bar:
    x = np.asarray(groundtruth.sample(key, n, bar=bar))
  p = int(np.shape(groundtruth.prompt)[0])
  out = {}
  for t in lengths:
    hits = np.asarray(groundtruth.oracle.shows_target(x[:, p:p + t]))
    out[int(t)] = (int(hits.sum()), int(n))
  return out


def _parse_lengths(text: str) -> tuple[int, ...]:
  try:
    lengths = tuple(int(t) for t in text.split(","))
  except ValueError:
    lengths = ()
  if not lengths or min(lengths) < 1 or max(lengths) > 4096:
    raise InputError(f"--lengths must be a comma list of integers in [1, 4096], got {text!r}")
  return lengths


def main(argv=None) -> int:
  """``python -m recall_theory.lm.hub.oracle``: measure the target's base rate under p*.

  Progress on stderr (read, dequantise, un-permute, place weights, sample); results on
  stdout; bad input is one line naming the flag, exit code 2.
  """
  import argparse
  import sys

  from recall_theory import stats
  from recall_theory.errors import check_int_range
  from recall_theory.lm.hub.ground_truth import PStarConfig, PretrainedGroundTruth

  parser = argparse.ArgumentParser(prog="python -m recall_theory.lm.hub.oracle",
                                   description="Base rate of the target behaviour under p* "
                                               "at every prefix length listed.")
  parser.add_argument("--model", default="smollm2-135m-instruct")
  parser.add_argument("--prompt", default="The")
  parser.add_argument("--samples", type=int, default=512, help="p* samples (>= 1)")
  parser.add_argument("--lengths", default="8,16,32", help="comma list of prefix lengths T")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--chunk", type=int, default=64, help="samples per compiled call")
  parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
  args = parser.parse_args(argv)
  try:
    lengths = _parse_lengths(args.lengths)
    check_int_range("--samples", args.samples, 1, 10_000_000)
    check_int_range("--seed", args.seed, 0, 2**31 - 1)
    check_int_range("--chunk", args.chunk, 1, 65536)
    if not args.prompt:
      raise InputError("--prompt must not be empty")
    was_enabled = progress.is_enabled()
    progress.set_enabled(was_enabled and not args.quiet)
    try:
      gt = PretrainedGroundTruth.load(PStarConfig(model=args.model, prompt_text=args.prompt,
                                                  seq_len=max(lengths), chunk=args.chunk))
      rates = prefix_base_rates(gt, jax.random.key(args.seed), args.samples, lengths,
                                show_progress=not args.quiet)
    finally:
      progress.set_enabled(was_enabled)
  except InputError as err:
    print(f"{parser.prog}: error: {err}", file=sys.stderr)
    return 2
  for t, (hits, n) in rates.items():
    lo, hi = stats.wilson_interval(hits, n)
    print(f"T={t:3d}: {hits} of {n} p* samples show '{gt.oracle.name}' = {hits / n:.4f} "
          f"(95% Wilson interval {lo:.4f} to {hi:.4f})")
  return 0


if __name__ == "__main__":  # pragma: no cover
  raise SystemExit(main())
