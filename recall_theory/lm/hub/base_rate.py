"""The target's base rate under p*: ``python -m recall_theory.lm.hub.base_rate``.

Samples p* (:class:`~recall_theory.lm.hub.ground_truth.PretrainedGroundTruth`) and counts the
oracle's target (:mod:`recall_theory.lm.hub.oracle`) among the first T' tokens of each sample,
for several T' at once. Kept apart from the oracles, which the ground truth itself imports.
"""

from __future__ import annotations

import jax
import numpy as np

from recall_theory import progress
from recall_theory.errors import InputError


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
  """``python -m recall_theory.lm.hub.base_rate``: measure the target's base rate under p*.

  Progress on stderr (read, dequantise, un-permute, place weights, sample); results on
  stdout; bad input is one line naming the flag, exit code 2.
  """
  import argparse
  import sys

  from recall_theory import stats
  from recall_theory.errors import check_int_range
  from recall_theory.lm.hub.ground_truth import PStarConfig, PretrainedGroundTruth

  parser = argparse.ArgumentParser(prog="python -m recall_theory.lm.hub.base_rate",
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


if __name__ == "__main__":
  import sys
  sys.exit(main())
