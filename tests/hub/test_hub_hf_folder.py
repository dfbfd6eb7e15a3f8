"""Hugging Face folder reader/writer and the transfer into the Flax model (tiny models)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("safetensors", reason="the smollm2 extra (safetensors) is not installed")
pytest.importorskip("gguf", reason="the smollm2 extra (gguf) is not installed")
pytest.importorskip("tokenizers", reason="the smollm2 extra (tokenizers) is not installed")

from hub_fixtures import tiny_tensors  # noqa: E402
from recall_theory.errors import InputError  # noqa: E402
from recall_theory.lm.hub.checkpoint import to_transformer  # noqa: E402
from recall_theory.lm.hub.gguf_file import read_gguf  # noqa: E402
from recall_theory.lm.hub.hf_folder import read_hf_folder, write_hf_folder  # noqa: E402
from recall_theory.lm.hub.tokenizer import tokenizer_from_checkpoint  # noqa: E402


def test_gguf_to_hf_folder_round_trip_keeps_tensors_tokenizer_and_logits(tiny_gguf, tmp_path):
  import jax.numpy as jnp
  path, _ = tiny_gguf
  ckpt = read_gguf(path)
  tok = tokenizer_from_checkpoint(ckpt)
  folder = write_hf_folder(ckpt, tmp_path / "hf", tokenizer=tok)
  back = read_hf_folder(folder)
  assert back.config == ckpt.config
  for name, arr in ckpt.tensors.items():
    np.testing.assert_array_equal(back.tensors[name], arr)
  tok2 = tokenizer_from_checkpoint(back)
  assert tok2.encode("the this 42<|im_end|>") == tok.encode("the this 42<|im_end|>")
  assert back.chat_template == ckpt.chat_template and back.eos_id == 2
  ids = jnp.asarray([tok.encode("the this is")])
  np.testing.assert_allclose(to_transformer(back)(ids)[0], to_transformer(ckpt)(ids)[0],
                             rtol=0, atol=0)


def _folder(tmp_path, tensors, cfg_extra=None, dtype="float32"):
  import jax.numpy as jnp
  from safetensors.flax import save_file
  from hub_fixtures import TINY
  v = tensors["model.embed_tokens.weight"].shape[0]
  cfg = {"model_type": "llama", "vocab_size": v, "hidden_size": TINY["d_model"],
         "num_hidden_layers": TINY["n_layers"], "num_attention_heads": TINY["n_heads"],
         "num_key_value_heads": TINY["n_kv_heads"], "intermediate_size": TINY["d_ff"],
         "max_position_embeddings": 64, "rope_theta": 1e5, "rms_norm_eps": 1e-5,
         "tie_word_embeddings": "lm_head.weight" not in tensors}
  cfg.update(cfg_extra or {})
  folder = tmp_path / "hf"
  folder.mkdir()
  (folder / "config.json").write_text(json.dumps(cfg))
  save_file({k: jnp.asarray(a, dtype) for k, a in tensors.items()},
            str(folder / "model.safetensors"))
  return folder


def test_bfloat16_safetensors_load_without_torch(tmp_path):
  tensors = tiny_tensors(seed=3, tied=False)
  ckpt = read_hf_folder(_folder(tmp_path, tensors, dtype="bfloat16"))
  assert not ckpt.config.tie_embeddings and ckpt.config.rope_theta == 1e5
  for name, arr in tensors.items():
    np.testing.assert_allclose(ckpt.tensors[name], arr, rtol=2 ** -7, atol=1e-6)


def test_tied_export_with_a_stored_head_loads(tmp_path):
  tensors = tiny_tensors(seed=4)
  tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"]
  ckpt = read_hf_folder(_folder(tmp_path, tensors, {"tie_word_embeddings": True}))
  assert ckpt.config.tie_embeddings and "lm_head.weight" not in ckpt.tensors


def test_bad_folders_are_named(tmp_path):
  with pytest.raises(InputError, match="does not exist"):
    read_hf_folder(tmp_path / "nope")
  (tmp_path / "empty").mkdir()
  with pytest.raises(InputError, match="has no config.json"):
    read_hf_folder(tmp_path / "empty")
  folder = _folder(tmp_path, tiny_tensors(), {"model_type": "mistral"})
  with pytest.raises(InputError, match="model_type 'mistral' is not supported"):
    read_hf_folder(folder)


def test_missing_and_misshaped_tensors_are_named(tmp_path):
  tensors = tiny_tensors(seed=5)
  tensors["model.norm.weight"] = tensors["model.norm.weight"][:-1]
  with pytest.raises(InputError, match=r"'model\.norm\.weight' has shape \[31\], expected \[32\]"):
    read_hf_folder(_folder(tmp_path, tensors))


def test_corrupt_safetensors_is_reported(tmp_path):
  folder = _folder(tmp_path, tiny_tensors(seed=6))
  data = (folder / "model.safetensors").read_bytes()
  (folder / "model.safetensors").write_bytes(data[: len(data) // 3])
  with pytest.raises(InputError, match="truncated or corrupt"):
    read_hf_folder(folder)


def test_tokenizer_json_of_wrong_size_is_refused(tiny_gguf, tmp_path):
  path, _ = tiny_gguf
  ckpt = read_gguf(path)
  folder = write_hf_folder(ckpt, tmp_path / "hf", tokenizer=tokenizer_from_checkpoint(ckpt))
  cfg = json.loads((folder / "config.json").read_text())
  big = ckpt._replace(config=ckpt.config.__class__(**{**ckpt.config.__dict__,
                                                       "vocab_size": cfg["vocab_size"] + 1}))
  with pytest.raises(InputError, match="tokenizer has 263 tokens but the model's vocabulary "
                                       "size is 264"):
    tokenizer_from_checkpoint(big._replace(tokenizer=read_hf_folder(folder).tokenizer))


def test_load_pretrained_from_a_folder_generates_like_the_gguf(tiny_gguf, tmp_path):
  import jax
  import jax.numpy as jnp
  from recall_theory.lm.hub.models import load_pretrained
  from recall_theory.lm.sampling import generate
  path, _ = tiny_gguf
  ckpt = read_gguf(path)
  folder = write_hf_folder(ckpt, tmp_path / "hf", tokenizer=tokenizer_from_checkpoint(ckpt))
  from_gguf = load_pretrained(str(path), max_seq_len=32)
  from_folder = load_pretrained(str(folder), max_seq_len=32)
  assert from_folder.config == from_gguf.config and from_folder.load_seconds > 0
  prompt = jnp.asarray([from_gguf.tokenizer.encode(from_gguf.chat("the"))[-8:]])
  outs = [generate(lm.model, prompt, jax.random.key(0), max_new_tokens=6, temperature=0.0)
          for lm in (from_gguf, from_folder)]
  np.testing.assert_array_equal(outs[0], outs[1])
  assert from_folder.chat("hi").endswith("<|im_start|>assistant\n")
