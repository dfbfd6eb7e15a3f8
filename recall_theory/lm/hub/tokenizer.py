"""The byte-level BPE tokenizer of a checkpoint, built with the ``tokenizers`` package.

From GGUF metadata (``tokenizer.ggml.*``) the tokenizer is rebuilt as Hugging Face's
SmolLM2 tokenizer.json defines it:

* model: BPE over byte-level symbols (``Ġ`` = space ...), vocabulary ``tokens`` in id
  order and ``merges`` in rank order, no unknown token (every byte is a symbol);
* pre-tokenizer: digits split one per token (``Digits(individual_digits=True)``), then
  the GPT-2 byte-level regex split (no prefix space);
* decoder: byte-level;
* special tokens: the ids GGUF marks as control (token type 3), e.g. ``<|endoftext|>``,
  ``<|im_start|>``, ``<|im_end|>``; they are matched whole in the text and never split.

GGUF names the pre-tokenizer in ``tokenizer.ggml.pre``: ``smollm`` gets the digit split,
``gpt2``/``default`` the plain GPT-2 split; other names are refused (their regexes differ).

Example::

  tok = tokenizer_from_checkpoint(read_gguf(path))
  tok.encode("The 42")      # [504, 216, 36, 34]
  tok.decode([504, 216, 36, 34])  # "The 42"
"""

from __future__ import annotations

import os
from typing import Sequence

from recall_theory.errors import InputError
from recall_theory.lm.hub.checkpoint import LlamaCheckpoint, TokenizerSource

CONTROL_TOKEN_TYPE = 3
USER_DEFINED_TOKEN_TYPE = 4
_DIGIT_SPLIT_PRE = ("smollm",)
_PLAIN_PRE = ("gpt2", "default", None)


def _tokenizers():
  try:
    import tokenizers
  except ImportError as err:  # pragma: no cover
    raise InputError("the tokenizer needs the optional extra: "
                     "pip install 'recall-theory[smollm2]' (package 'tokenizers')") from err
  return tokenizers


class Tokenizer:
  """Text <-> token ids for one checkpoint; wraps a ``tokenizers.Tokenizer``.

  Attributes:
    backend: the ``tokenizers.Tokenizer``.
    vocab_size: number of ids (equals the model's vocabulary size).
    bos_id, eos_id: ids of the begin/end tokens (None if the checkpoint has none).
    special_ids: ids of control tokens (dropped by ``decode(skip_special=True)``).
  """

  def __init__(self, backend, *, bos_id: int | None, eos_id: int | None):
    self.backend = backend
    self.vocab_size = backend.get_vocab_size(with_added_tokens=True)
    self.bos_id, self.eos_id = bos_id, eos_id
    self.special_ids = frozenset(
        i for i, tok in backend.get_added_tokens_decoder().items() if tok.special)

  def encode(self, text: str) -> list[int]:
    """Token ids of ``text`` (special-token strings inside it map to their ids)."""
    if not isinstance(text, str):
      raise InputError(f"text to encode must be a string, got {type(text).__name__}")
    return list(self.backend.encode(text, add_special_tokens=False).ids)

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    return [list(e.ids) for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

  def decode(self, ids: Sequence[int], *, skip_special: bool = True) -> str:
    ids = [int(i) for i in ids]
    bad = [i for i in ids if not 0 <= i < self.vocab_size]
    if bad:
      raise InputError(f"token id {bad[0]} is outside the vocabulary [0, {self.vocab_size})")
    return self.backend.decode(ids, skip_special_tokens=skip_special)

  def token(self, i: int) -> str:
    """The vocabulary string of id ``i`` (byte-level symbols, e.g. 'Ġthe')."""
    return self.backend.id_to_token(int(i))


def build_bpe_tokenizer(source: TokenizerSource):
  """A ``tokenizers.Tokenizer`` from a GGUF-style byte-level BPE vocabulary."""
  tk = _tokenizers()
  if source.tokens is None:
    raise InputError("tokenizer source has no vocabulary")
  if source.pre_tokenizer in _DIGIT_SPLIT_PRE:
    digits = True
  elif source.pre_tokenizer in _PLAIN_PRE:
    digits = False
  else:
    raise InputError(f"pre-tokenizer {source.pre_tokenizer!r} is not supported "
                     f"(supported: {', '.join(str(p) for p in _DIGIT_SPLIT_PRE + _PLAIN_PRE)})")
  vocab = {tok: i for i, tok in enumerate(source.tokens)}
  if len(vocab) != len(source.tokens):
    raise InputError("tokenizer vocabulary has duplicate token strings")
  merges = []
  for rank, merge in enumerate(source.merges or ()):
    parts = merge.split(" ")
    if len(parts) != 2:
      raise InputError(f"tokenizer merge #{rank} {merge!r} is not two symbols")
    merges.append((parts[0], parts[1]))
  backend = tk.Tokenizer(tk.models.BPE(vocab=vocab, merges=merges, fuse_unk=False,
                                       byte_fallback=False))
  byte_level = tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
  backend.pre_tokenizer = (tk.pre_tokenizers.Sequence(
      [tk.pre_tokenizers.Digits(individual_digits=True), byte_level]) if digits else byte_level)
  backend.decoder = tk.decoders.ByteLevel()
  types = source.token_types or (1,) * len(source.tokens)
  added = [tk.AddedToken(tok, special=(t == CONTROL_TOKEN_TYPE), normalized=False)
           for tok, t in zip(source.tokens, types)
           if t in (CONTROL_TOKEN_TYPE, USER_DEFINED_TOKEN_TYPE)]
  if added:
    backend.add_tokens(added)
  return backend


def tokenizer_from_checkpoint(ckpt: LlamaCheckpoint) -> Tokenizer:
  """Rebuild (GGUF) or load (tokenizer.json) the tokenizer; check its size.

  Raises InputError if the checkpoint carries no tokenizer or if the tokenizer's
  size differs from the model's vocabulary size.
  """
  tk = _tokenizers()
  src = ckpt.tokenizer
  if src is None:
    raise InputError(f"{ckpt.source}: the checkpoint carries no tokenizer")
  if src.tokenizer_json is not None:
    try:
      backend = tk.Tokenizer.from_str(src.tokenizer_json)
    except Exception as err:
      raise InputError(f"{ckpt.source}: tokenizer.json cannot be parsed: {err}") from err
  else:
    backend = build_bpe_tokenizer(src)
  tok = Tokenizer(backend, bos_id=ckpt.bos_id, eos_id=ckpt.eos_id)
  if tok.vocab_size != ckpt.config.vocab_size:
    raise InputError(f"{ckpt.source}: the tokenizer has {tok.vocab_size} tokens but the "
                     f"model's vocabulary size is {ckpt.config.vocab_size}")
  return tok


def tokenizer_from_file(path: str | os.PathLike, *, vocab_size: int | None = None,
                        bos_id: int | None = None, eos_id: int | None = None) -> Tokenizer:
  """Load a tokenizer.json; if ``vocab_size`` is given, require it to match."""
  tk = _tokenizers()
  try:
    backend = tk.Tokenizer.from_file(os.fspath(path))
  except Exception as err:
    raise InputError(f"tokenizer file {os.fspath(path)!r} cannot be read: {err}") from err
  tok = Tokenizer(backend, bos_id=bos_id, eos_id=eos_id)
  if vocab_size is not None and tok.vocab_size != vocab_size:
    raise InputError(f"tokenizer {os.fspath(path)!r} has {tok.vocab_size} tokens, expected "
                     f"the vocabulary size {vocab_size}")
  return tok
