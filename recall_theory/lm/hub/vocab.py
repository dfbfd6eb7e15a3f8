"""A vocabulary restricted to the tokens p* uses, plus one token standing for all others.

Small teacher and student models of a real p* (SmolLM2, V = 49152) would spend most of their
parameters on the embedding rows of tokens p* never emits after the prompt. Here the models
speak a small vocabulary: the ``K`` distinct tokens of a pool of p*'s own samples, sorted by
id, plus one **other** token (index ``K``) standing for every token
outside the pool. The mapping is a pair of arrays:

    to_small[v] = k   if full token v is the k-th kept token, else K (other)     [V]
    to_full[k]  = the full id of kept token k, for k < K                       [K]

A model's sample in the small vocabulary maps back to p*'s vocabulary token by token, except the
other token, which has no single full token: a sequence that contains it cannot be scored by
p* and counts as **unscorable** (its rate is reported beside every precision).

Example::

  >>> import numpy as np
  >>> vocab = RestrictedVocab.from_pool(np.array([[5, 9, 5], [2, 9, 9]]), full_size=12)
  >>> vocab.kept.tolist(), vocab.size, vocab.other
  ([2, 5, 9], 4, 3)
  >>> vocab.to_small_ids(np.array([[9, 7, 2]])).tolist()
  [[2, 3, 0]]
  >>> vocab.scorable(np.array([[2, 3, 0], [0, 1, 2]])).tolist()
  [False, True]
"""

from __future__ import annotations

import dataclasses

import numpy as np

from recall_theory.errors import InputError


@dataclasses.dataclass(frozen=True)
class RestrictedVocab:
  """The kept full-vocabulary ids (sorted) and the size of the full vocabulary."""
  kept: np.ndarray          # int [K], sorted distinct full ids
  full_size: int

  @classmethod
  def from_pool(cls, tokens_NxT, *, full_size: int) -> "RestrictedVocab":
    """Keep every distinct token of the pool (p*'s samples, prompt excluded)."""
    tokens = np.asarray(tokens_NxT)
    if tokens.size == 0:
      raise InputError("the sample pool is empty: no tokens to keep")
    if not np.issubdtype(tokens.dtype, np.integer):
      raise InputError(f"tokens must be integers, got dtype {tokens.dtype}")
    if tokens.min() < 0 or tokens.max() >= full_size:
      raise InputError(f"tokens must lie in [0, {full_size}), got {tokens.min()}..{tokens.max()}")
    return cls(np.unique(tokens).astype(np.int64), int(full_size))

  @property
  def other(self) -> int:
    """The index of the token standing for every token outside the pool."""
    return int(self.kept.size)

  @property
  def size(self) -> int:
    """Vocabulary size of the small models: kept tokens plus the other token."""
    return int(self.kept.size) + 1

  def to_small_table(self) -> np.ndarray:
    """``to_small[v]`` for every full id ``v`` (int32 [V]); the other token for unkept ids."""
    table = np.full(self.full_size, self.other, np.int32)
    table[self.kept] = np.arange(self.kept.size, dtype=np.int32)
    return table

  def to_small_ids(self, tokens_full) -> np.ndarray:
    """Full-vocabulary tokens (any shape) in the small vocabulary."""
    return self.to_small_table()[np.asarray(tokens_full)]

  def scorable(self, tokens_small_NxT) -> np.ndarray:
    """bool [N]: the sequence has no other token, so p* can score it."""
    return ~np.any(np.asarray(tokens_small_NxT) == self.other, axis=-1)

  def to_full_ids(self, tokens_small_NxT) -> np.ndarray:
    """Small-vocabulary tokens back in p*'s vocabulary; ValueError on the other token (check
    :meth:`scorable` first: such a sequence has no full-vocabulary reading)."""
    tokens = np.asarray(tokens_small_NxT)
    if np.any(tokens == self.other):
      raise ValueError("a sequence holds the other token: it cannot be mapped back (unscorable)")
    return self.kept[tokens]

  def describe(self) -> str:
    """One line for summaries: sizes and what the other token stands for."""
    return (f"restricted vocabulary: {self.kept.size} tokens of p*'s {self.full_size} (every token "
            f"in the sample pool) plus token {self.other} standing for the other "
            f"{self.full_size - self.kept.size}")
