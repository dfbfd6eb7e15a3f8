"""Read a llama-architecture GGUF file into a :class:`LlamaCheckpoint`.

GGUF (the llama.cpp format) stores each tensor in ggml order, so the numpy view of a
matrix is already the torch layout ``W[out, in]``; quantized blocks (Q4_1, Q8_0, ...)
are expanded to float32 with ``gguf.quants.dequantize``.

llama.cpp's converter reorders the rows of the query and key projections so that its
interleaved rotary kernel (pairs ``(2j, 2j+1)``) reproduces Hugging Face's
``rotate_half`` rotary (pairs ``(j, j + Dh/2)``). Per head, with ``W`` viewed as
``[n, 2, Dh/2, D]`` (n = heads for q, kv heads for k), the converter stores
``W.swapaxes(1, 2)``, i.e. the stored row ``2j + s`` is the original row ``s*Dh/2 + j``.
:func:`unpermute_rotary_rows` applies the inverse, so the model never changes.

Metadata used: ``general.architecture`` (must be ``llama``), ``llama.*`` sizes, rope base,
RMS epsilon, and ``tokenizer.ggml.*`` (tokens, merges, token types, bos/eos ids,
pre-tokenizer name) plus ``tokenizer.chat_template``.

Reference: ggml-org/llama.cpp, convert_hf_to_gguf.py (``LlamaModel.permute``) and
gguf-py/gguf/constants.py (tensor names).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from recall_theory import progress
from recall_theory.errors import InputError
from recall_theory.lm.hub.checkpoint import (LlamaCheckpoint, TokenizerSource, check_tensors,
                                             with_context)

# Block types we expand; others (i-quants, ternary, fp4 ...) are refused by name.
SUPPORTED_TYPES = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
                   "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")

_GGUF_TO_HF_LAYER = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_GGUF_TO_HF_GLOBAL = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_BLOCK = re.compile(r"^blk\.(\d+)\.(.+)$")


def _gguf():
  try:
    import gguf
  except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise InputError("reading GGUF files needs the optional extra: "
                     "pip install 'recall-theory[smollm2]' (package 'gguf')") from err
  return gguf


def unpermute_rotary_rows(w_RxD: np.ndarray, n_heads: int) -> np.ndarray:
  """Undo llama.cpp's q/k row reordering (see the module docstring).

  ``w_RxD`` has ``R = n_heads * Dh`` rows in GGUF order; the result has the rows in
  Hugging Face order. Inverse of ``w.reshape(n, 2, Dh/2, D).swapaxes(1, 2)``.

  >>> w = np.arange(8)[:, None]                  # one head, Dh = 8
  >>> unpermute_rotary_rows(w, 1)[:, 0].tolist() # stored (0,4,1,5,2,6,3,7) order undone
  [0, 2, 4, 6, 1, 3, 5, 7]
  """
  rows = w_RxD.shape[0]
  if rows % (2 * n_heads):
    raise InputError(f"rotary rows: {rows} rows do not split into {n_heads} heads of even size")
  half = rows // n_heads // 2
  return (w_RxD.reshape(n_heads, half, 2, *w_RxD.shape[1:])
          .swapaxes(1, 2).reshape(w_RxD.shape))


def permute_rotary_rows(w_RxD: np.ndarray, n_heads: int) -> np.ndarray:
  """llama.cpp's reordering itself (HF order -> GGUF order); used to write test files."""
  rows = w_RxD.shape[0]
  half = rows // n_heads // 2
  return (w_RxD.reshape(n_heads, 2, half, *w_RxD.shape[1:])
          .swapaxes(1, 2).reshape(w_RxD.shape))


def _open(path: Path):
  gguf = _gguf()
  if not path.is_file():
    raise InputError(f"GGUF file {str(path)!r} does not exist; fetch it with "
                     "`python -m recall_theory.lm.hub.fetch`")
  with open(path, "rb") as fh:
    magic = fh.read(4)
  if magic != b"GGUF":
    raise InputError(f"{str(path)!r} is not a GGUF file (magic {magic!r}, expected b'GGUF')")
  try:
    return gguf.GGUFReader(os.fspath(path))
  except Exception as err:  # the reader raises ValueError/IndexError/struct errors
    # the reader's own words describe its array arithmetic, not the file: say what was found
    raise InputError(f"GGUF file {str(path)!r} is truncated or corrupt: its header or tensor "
                     f"table cannot be read from its {path.stat().st_size} bytes; fetch it again "
                     "with `python -m recall_theory.lm.hub.fetch`") from err


def _field(reader, key: str, default=None, *, required: bool = True):
  field = reader.fields.get(key)
  if field is None:
    if required and default is None:
      raise InputError(f"GGUF metadata key {key!r} is missing")
    return default
  return field.contents()


def read_gguf(path: str | os.PathLike, *, max_seq_len: int | None = None) -> LlamaCheckpoint:
  """Read, dequantize and un-permute a llama-architecture GGUF file.

  Args:
    path: the ``.gguf`` file.
    max_seq_len: context to give the model (default: the file's trained context);
      bounds the key-value cache and the prompt + generation length.

  Returns:
    a :class:`LlamaCheckpoint` with float32 tensors under Hugging Face names.

  Raises:
    InputError: missing/truncated/corrupt file, an architecture other than ``llama``,
      an unsupported quantization type, a tokenizer whose size is not the vocabulary
      size, or any missing/mis-shaped tensor.
  """
  from recall_theory.lm.model import ModelConfig

  gguf = _gguf()
  path = Path(path)
  with progress.stage(f"read {path.name}", unit="tensors") as bar:
    reader = _open(path)
    bar.set(len(reader.tensors))  # tensors listed (their data is memory-mapped)
  src = str(path)
  arch = _field(reader, "general.architecture")
  if arch != "llama":
    raise InputError(f"{src}: architecture {arch!r} is not supported (only 'llama')")
  scaling = _field(reader, "llama.rope.scaling.type", "none", required=False)
  if scaling not in ("none", None):
    raise InputError(f"{src}: rope scaling {scaling!r} is not supported")

  n_heads = int(_field(reader, "llama.attention.head_count"))
  n_kv = int(_field(reader, "llama.attention.head_count_kv", n_heads, required=False))
  d_model = int(_field(reader, "llama.embedding_length"))
  by_name = {t.name: t for t in reader.tensors}
  if "token_embd.weight" not in by_name:
    raise InputError(f"{src}: tensor 'token_embd.weight' is missing")
  vocab = int(by_name["token_embd.weight"].shape[-1])
  declared_vocab = _field(reader, "llama.vocab_size", vocab, required=False)
  if int(declared_vocab) != vocab:
    raise InputError(f"{src}: llama.vocab_size={declared_vocab} but the embedding has "
                     f"{vocab} rows")
  head_dim = int(_field(reader, "llama.rope.dimension_count", d_model // n_heads,
                        required=False))
  trained_ctx = int(_field(reader, "llama.context_length"))
  config = ModelConfig(
      vocab_size=vocab, d_model=d_model,
      n_layers=int(_field(reader, "llama.block_count")),
      n_heads=n_heads, n_kv_heads=n_kv,
      d_ff=int(_field(reader, "llama.feed_forward_length")),
      max_seq_len=trained_ctx,
      head_dim=None if head_dim * n_heads == d_model else head_dim,
      rope_theta=float(_field(reader, "llama.rope.freq_base", 10000.0, required=False)),
      rms_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
      tie_embeddings="output.weight" not in by_name,
  ).validate()

  tensors: dict[str, np.ndarray] = {}
  with progress.stage(f"dequantise {path.name}", total=len(reader.tensors), unit="tensors") as bar:
    for t in reader.tensors:
      kind = t.tensor_type.name
      if kind not in SUPPORTED_TYPES:
        raise InputError(f"{src}: tensor {t.name!r} uses quantization type {kind}, which is not "
                         f"supported (supported: {', '.join(SUPPORTED_TYPES)})")
      expected_rows = int(np.prod([int(s) for s in t.shape[1:]], dtype=np.int64))
      try:
        w = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
      except Exception as err:
        raise InputError(f"{src}: tensor {t.name!r} ({kind}) cannot be dequantized "
                         f"(truncated or corrupt?): {err}") from err
      if w.size != expected_rows * int(t.shape[0]):
        raise InputError(f"{src}: tensor {t.name!r} is truncated ({w.size} values, expected "
                         f"{expected_rows * int(t.shape[0])})")
      tensors[_hf_name(t.name, src)] = w
      bar.update(1)
  rotary = [name for name in tensors
            if name.endswith(("self_attn.q_proj.weight", "self_attn.k_proj.weight"))]
  with progress.stage("un-permute q/k rows", total=len(rotary), unit="tensors") as bar:
    for name in rotary:
      heads = n_heads if name.endswith("q_proj.weight") else n_kv
      tensors[name] = unpermute_rotary_rows(tensors[name], heads)
      bar.update(1)
  # rope_freqs.weight etc. would have raised in _hf_name; nothing else to drop.
  check_tensors(config, tensors, src)

  tokenizer = None
  if "tokenizer.ggml.tokens" in reader.fields:
    model_kind = _field(reader, "tokenizer.ggml.model", "gpt2", required=False)
    if model_kind != "gpt2":
      raise InputError(f"{src}: tokenizer model {model_kind!r} is not supported "
                       "(only byte-level BPE, 'gpt2')")
    tokens = tuple(_field(reader, "tokenizer.ggml.tokens"))
    if len(tokens) != vocab:
      raise InputError(f"{src}: the tokenizer has {len(tokens)} tokens but the model's "
                       f"vocabulary size is {vocab}")
    tokenizer = TokenizerSource(
        tokens=tokens,
        merges=tuple(_field(reader, "tokenizer.ggml.merges", ())),
        token_types=tuple(int(x) for x in _field(reader, "tokenizer.ggml.token_type",
                                                 [1] * len(tokens), required=False)),
        pre_tokenizer=_field(reader, "tokenizer.ggml.pre", None, required=False))
  bos = _field(reader, "tokenizer.ggml.bos_token_id", None, required=False)
  eos = _field(reader, "tokenizer.ggml.eos_token_id", None, required=False)
  ckpt = LlamaCheckpoint(
      config=config, tensors=tensors, tokenizer=tokenizer,
      chat_template=_field(reader, "tokenizer.chat_template", None, required=False),
      bos_id=None if bos is None else int(bos), eos_id=None if eos is None else int(eos),
      source=src)
  return with_context(ckpt, max_seq_len)


def _hf_name(gguf_name: str, src: str) -> str:
  if gguf_name in _GGUF_TO_HF_GLOBAL:
    return _GGUF_TO_HF_GLOBAL[gguf_name]
  match = _BLOCK.match(gguf_name)
  if match and match.group(2) in _GGUF_TO_HF_LAYER:
    return f"model.layers.{int(match.group(1))}.{_GGUF_TO_HF_LAYER[match.group(2)]}"
  raise InputError(f"{src}: tensor {gguf_name!r} is not part of a plain Llama model")
