"""Model names or paths -> a loaded Flax SmolLM2 with its tokenizer and chat template.

Accepted ``--model`` values:

* ``smollm2-135m-instruct``: the GGUF fetched by ``python -m recall_theory.lm.hub.fetch``
  (sha256-checked; a clear error says how to fetch it when missing);
* ``smollm2-360m-instruct``, ``smollm2-1.7b-instruct``, ``smollm2-360m``,
  ``smollm2-1.7b``: a Hugging Face folder of that name (``SmolLM2-360M-Instruct`` ...)
  under the cache folder; nothing is downloaded, a user places it there;
* a path to a ``.gguf`` file or to a Hugging Face folder.

Example::

  lm = load_pretrained("smollm2-135m-instruct", max_seq_len=512)
  ids = lm.tokenizer.encode(lm.chat("What is the capital of France?"))
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, NamedTuple

from recall_theory.errors import InputError

_HF_FOLDERS = {
    "smollm2-360m": "SmolLM2-360M",
    "smollm2-360m-instruct": "SmolLM2-360M-Instruct",
    "smollm2-1.7b": "SmolLM2-1.7B",
    "smollm2-1.7b-instruct": "SmolLM2-1.7B-Instruct",
}
GGUF_MODELS = ("smollm2-135m-instruct",)
MODEL_NAMES = GGUF_MODELS + tuple(_HF_FOLDERS)


class PretrainedLM(NamedTuple):
  """A loaded checkpoint: the nnx ``Transformer``, its tokenizer, and metadata."""
  model: Any                 # recall_theory.lm.model.Transformer
  tokenizer: Any             # recall_theory.lm.hub.tokenizer.Tokenizer
  chat_template: str | None
  eos_id: int | None
  source: str
  load_seconds: float

  @property
  def config(self):
    return self.model.config

  def chat(self, prompt: str, system: str | None = None) -> str:
    """The chat-formatted text of one user turn (ChatML), ready for the reply."""
    from recall_theory.lm.hub.chat import chat_prompt
    return chat_prompt(self.chat_template, prompt, system)


def resolve(name_or_path: str, cache_dir: str | os.PathLike | None = None) -> Path:
  """The file or folder a ``--model`` value refers to (InputError if absent)."""
  from recall_theory.lm.hub.fetch import default_cache_dir, smollm2_135m_path

  key = str(name_or_path).strip().lower()
  if key == "smollm2-135m-instruct":
    return smollm2_135m_path(cache_dir)
  if key in _HF_FOLDERS:
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    folder = root / _HF_FOLDERS[key]
    if not folder.is_dir():
      raise InputError(f"--model {name_or_path}: no Hugging Face folder at {str(folder)!r}; "
                       "place a local copy (config.json, *.safetensors, tokenizer.json) "
                       "there or pass its path")
    return folder
  path = Path(name_or_path).expanduser()
  if path.exists():
    return path
  raise InputError(f"--model {name_or_path!r} is neither a known name "
                   f"({', '.join(MODEL_NAMES)}) nor an existing .gguf file or folder")


def read_checkpoint(name_or_path: str, *, max_seq_len: int | None = None,
                    cache_dir: str | os.PathLike | None = None):
  """The :class:`LlamaCheckpoint` behind a ``--model`` value."""
  from recall_theory.lm.hub.gguf_file import read_gguf
  from recall_theory.lm.hub.hf_folder import read_hf_folder

  path = resolve(name_or_path, cache_dir)
  if path.is_dir():
    return read_hf_folder(path, max_seq_len=max_seq_len)
  return read_gguf(path, max_seq_len=max_seq_len)


def load_pretrained(name_or_path: str, *, max_seq_len: int | None = None,
                    param_dtype: str = "float32", dtype: str | None = None,
                    cache_dir: str | os.PathLike | None = None) -> PretrainedLM:
  """Read, convert and place a checkpoint on the default device; time it.

  Args:
    name_or_path: see the module docstring.
    max_seq_len: context of the loaded model (default: the checkpoint's; 8192 for
      SmolLM2). It bounds prompt + generated tokens and the cache.
    param_dtype, dtype: weight storage / compute dtype ("float32", "bfloat16", ...).
  """
  start = time.perf_counter()
  ckpt = read_checkpoint(name_or_path, max_seq_len=max_seq_len, cache_dir=cache_dir)
  return from_checkpoint(ckpt, param_dtype=param_dtype, dtype=dtype, start=start)


def from_checkpoint(ckpt, *, param_dtype: str = "float32", dtype: str | None = None,
                    start: float | None = None) -> PretrainedLM:
  """A :class:`PretrainedLM` from an already-read :class:`LlamaCheckpoint`."""
  import jax

  from recall_theory.lm.hub.checkpoint import to_transformer
  from recall_theory.lm.hub.tokenizer import tokenizer_from_checkpoint

  start = time.perf_counter() if start is None else start
  tokenizer = tokenizer_from_checkpoint(ckpt)
  model = to_transformer(ckpt, param_dtype=param_dtype, dtype=dtype)
  jax.block_until_ready(model.embed.embedding.get_value())
  return PretrainedLM(model=model, tokenizer=tokenizer, chat_template=ckpt.chat_template,
                      eos_id=ckpt.eos_id, source=ckpt.source,
                      load_seconds=time.perf_counter() - start)
