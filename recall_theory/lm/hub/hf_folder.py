"""Read (and write) a local Hugging Face Llama folder: config.json, safetensors, tokenizer.

This is how SmolLM2-360M and -1.7B (or any ``LlamaForCausalLM`` checkpoint) get into the
Flax model when a user has them on disk; nothing is downloaded. Files read:

* ``config.json``: ``model_type`` must be ``llama``; sizes ``vocab_size``, ``hidden_size``,
  ``num_hidden_layers``, ``num_attention_heads``, ``num_key_value_heads``,
  ``intermediate_size``, ``max_position_embeddings``, ``rope_theta``, ``rms_norm_eps``,
  ``tie_word_embeddings``, optional ``head_dim``; ``rope_scaling`` must be null;
* ``model.safetensors`` or the shards listed in ``model.safetensors.index.json``
  (float32/float16/bfloat16; read with the ``flax`` framework of ``safetensors`` so
  bfloat16 needs no torch), cast to float32;
* ``tokenizer.json`` and, if present, ``tokenizer_config.json`` (``chat_template``) and
  ``generation_config.json`` (bos/eos ids).

:func:`write_hf_folder` writes a checkpoint back out in the same form (float32), which a
test uses to hand the GGUF-converted tensors to PyTorch ``transformers``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from recall_theory import progress
from recall_theory.errors import InputError
from recall_theory.lm.hub.checkpoint import (LlamaCheckpoint, TokenizerSource, check_tensors,
                                             with_context)

_DROPPED_SUFFIXES = ("rotary_emb.inv_freq",)  # buffers some exports still carry


def _read_json(path: Path) -> dict:
  try:
    return json.loads(path.read_text())
  except json.JSONDecodeError as err:
    raise InputError(f"{str(path)!r} is not valid JSON: {err}") from err


def config_from_hf(cfg: dict, source: str):
  """ModelConfig from a Hugging Face Llama config.json dictionary."""
  from recall_theory.lm.model import ModelConfig

  model_type = cfg.get("model_type")
  if model_type != "llama":
    raise InputError(f"{source}: model_type {model_type!r} is not supported (only 'llama')")
  if cfg.get("rope_scaling") not in (None, {}):
    raise InputError(f"{source}: rope_scaling {cfg['rope_scaling']!r} is not supported")
  if cfg.get("hidden_act", "silu") != "silu":
    raise InputError(f"{source}: hidden_act {cfg['hidden_act']!r} is not supported (only silu)")
  for flag in ("attention_bias", "mlp_bias"):
    if cfg.get(flag):
      raise InputError(f"{source}: {flag}=true is not supported")
  try:
    heads = int(cfg["num_attention_heads"])
    d_model = int(cfg["hidden_size"])
    head_dim = cfg.get("head_dim")
    return ModelConfig(
        vocab_size=int(cfg["vocab_size"]), d_model=d_model,
        n_layers=int(cfg["num_hidden_layers"]), n_heads=heads,
        n_kv_heads=int(cfg.get("num_key_value_heads") or heads),
        d_ff=int(cfg["intermediate_size"]),
        max_seq_len=int(cfg.get("max_position_embeddings", 2048)),
        head_dim=None if head_dim is None or int(head_dim) * heads == d_model else int(head_dim),
        rope_theta=float(cfg.get("rope_theta", 10000.0)),
        rms_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
    ).validate()
  except KeyError as err:
    raise InputError(f"{source}: config.json lacks {err.args[0]!r}") from err


def _safetensor_files(folder: Path) -> list[Path]:
  index = folder / "model.safetensors.index.json"
  if index.is_file():
    shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
    files = [folder / s for s in shards]
  else:
    files = sorted(folder.glob("*.safetensors"))
  if not files:
    raise InputError(f"{str(folder)!r} has no .safetensors weights")
  for f in files:
    if not f.is_file():
      raise InputError(f"safetensors shard {str(f)!r} is missing")
  return files


def _load_safetensors(files: list[Path]) -> dict[str, np.ndarray]:
  try:
    from safetensors import safe_open
  except ImportError as err:  # pragma: no cover
    raise InputError("reading safetensors needs the optional extra: "
                     "pip install 'recall-theory[smollm2]'") from err
  tensors: dict[str, np.ndarray] = {}
  with progress.stage("read safetensors", total=len(files), unit="files") as bar:
    for f in files:
      try:
        with safe_open(os.fspath(f), framework="flax") as fh:
          for name in fh.keys():
            if name.endswith(_DROPPED_SUFFIXES):
              continue
            tensors[name] = np.asarray(fh.get_tensor(name), dtype=np.float32)
      except InputError:
        raise
      except Exception as err:
        raise InputError(f"safetensors file {str(f)!r} is truncated or corrupt: {err}") from err
      bar.update(1)
  return tensors


def read_hf_folder(folder: str | os.PathLike, *,
                   max_seq_len: int | None = None) -> LlamaCheckpoint:
  """Read a local Hugging Face Llama folder into a :class:`LlamaCheckpoint`.

  Raises InputError for a missing folder/config/weights, a non-Llama model, missing or
  mis-shaped tensors, or corrupt files.
  """
  folder = Path(folder)
  src = str(folder)
  if not folder.is_dir():
    raise InputError(f"model folder {src!r} does not exist")
  if not (folder / "config.json").is_file():
    raise InputError(f"model folder {src!r} has no config.json")
  cfg = _read_json(folder / "config.json")
  config = config_from_hf(cfg, src)
  tensors = _load_safetensors(_safetensor_files(folder))
  if config.tie_embeddings:
    tensors.pop("lm_head.weight", None)  # some tied exports store the head as well
  check_tensors(config, tensors, src)

  tokenizer = None
  if (folder / "tokenizer.json").is_file():
    tokenizer = TokenizerSource(tokenizer_json=(folder / "tokenizer.json").read_text())
  chat_template = None
  if (folder / "tokenizer_config.json").is_file():
    chat_template = _read_json(folder / "tokenizer_config.json").get("chat_template")
  gen = (_read_json(folder / "generation_config.json")
         if (folder / "generation_config.json").is_file() else {})
  bos = gen.get("bos_token_id", cfg.get("bos_token_id"))
  eos = gen.get("eos_token_id", cfg.get("eos_token_id"))
  if isinstance(eos, list):
    eos = eos[0] if eos else None
  ckpt = LlamaCheckpoint(config=config, tensors=tensors, tokenizer=tokenizer,
                         chat_template=chat_template,
                         bos_id=None if bos is None else int(bos),
                         eos_id=None if eos is None else int(eos), source=src)
  return with_context(ckpt, max_seq_len)


def hf_config_dict(ckpt: LlamaCheckpoint) -> dict:
  """A Hugging Face LlamaConfig dictionary describing ``ckpt.config``."""
  c = ckpt.config
  return {
      "architectures": ["LlamaForCausalLM"], "model_type": "llama",
      "vocab_size": c.vocab_size, "hidden_size": c.d_model,
      "num_hidden_layers": c.n_layers, "num_attention_heads": c.n_heads,
      "num_key_value_heads": c.n_kv_heads, "intermediate_size": c.d_ff,
      "head_dim": c.resolved_head_dim, "max_position_embeddings": c.max_seq_len,
      "rope_theta": c.rope_theta, "rms_norm_eps": c.rms_eps,
      "tie_word_embeddings": c.tie_embeddings, "hidden_act": "silu",
      "attention_bias": False, "mlp_bias": False, "rope_scaling": None,
      "bos_token_id": ckpt.bos_id, "eos_token_id": ckpt.eos_id,
      "torch_dtype": "float32",
  }


def write_hf_folder(ckpt: LlamaCheckpoint, folder: str | os.PathLike, tokenizer=None) -> Path:
  """Write ``ckpt`` as config.json + model.safetensors (+ tokenizer files), float32."""
  from safetensors.numpy import save_file

  from recall_theory.io import write_json, write_text, atomic_path

  folder = Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  write_json(folder / "config.json", hf_config_dict(ckpt))
  with atomic_path(folder / "model.safetensors") as tmp:
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in ckpt.tensors.items()},
              os.fspath(tmp))
  if tokenizer is not None:
    write_text(folder / "tokenizer.json", tokenizer.backend.to_str())
  if ckpt.chat_template is not None:
    write_json(folder / "tokenizer_config.json", {"chat_template": ckpt.chat_template})
  write_json(folder / "generation_config.json",
             {"bos_token_id": ckpt.bos_id, "eos_token_id": ckpt.eos_id})
  return folder
