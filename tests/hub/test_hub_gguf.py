"""GGUF reader: q/k un-permutation, dequantization, config, and bad files (tiny files)."""

from __future__ import annotations

import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="the smollm2 extra (gguf) is not installed")

from hub_fixtures import TINY, tiny_tensors, write_tiny_gguf  # noqa: E402
from recall_theory.errors import InputError  # noqa: E402
from recall_theory.lm.hub.gguf_file import (permute_rotary_rows, read_gguf,  # noqa: E402
                                            unpermute_rotary_rows)


def test_unpermute_inverts_llama_cpp_permutation_by_hand():
  # One head, Dh = 8: llama.cpp stores rows (0,4,1,5,2,6,3,7) of the HF matrix.
  w_hf = np.arange(8)[:, None]
  stored = permute_rotary_rows(w_hf, 1)
  assert stored[:, 0].tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
  np.testing.assert_array_equal(unpermute_rotary_rows(stored, 1), w_hf)
  w = np.random.default_rng(0).normal(size=(3 * 16, 5))
  np.testing.assert_array_equal(unpermute_rotary_rows(permute_rotary_rows(w, 3), 3), w)


def _rope_interleaved(x_N, pos, theta):
  """llama.cpp's default rotary: pairs (2j, 2j+1) rotated by pos * theta^(-2j/Dh)."""
  dh = x_N.shape[0]
  out = x_N.copy()
  for j in range(dh // 2):
    a = pos * theta ** (-2 * j / dh)
    x0, x1 = x_N[2 * j], x_N[2 * j + 1]
    out[2 * j], out[2 * j + 1] = x0 * np.cos(a) - x1 * np.sin(a), x0 * np.sin(a) + x1 * np.cos(a)
  return out


def _rope_rotate_half(x_N, pos, theta):
  """Hugging Face rotate_half: pairs (j, j + Dh/2)."""
  dh = x_N.shape[0]
  out = x_N.copy()
  for j in range(dh // 2):
    a = pos * theta ** (-2 * j / dh)
    x0, x1 = x_N[j], x_N[j + dh // 2]
    out[j], out[j + dh // 2] = x0 * np.cos(a) - x1 * np.sin(a), x0 * np.sin(a) + x1 * np.cos(a)
  return out


def test_unpermuted_rows_make_rotate_half_equal_llama_cpp_rotary():
  # Attention scores of llama.cpp (interleaved rotary on stored rows) must equal those
  # of the HF layout (rotate_half on un-permuted rows): an independent route.
  rng = np.random.default_rng(1)
  dh, theta = 16, 1e5
  q_stored, k_stored = rng.normal(size=dh), rng.normal(size=dh)
  for pq, pk in [(0, 0), (5, 2), (37, 11)]:
    ggml = _rope_interleaved(q_stored, pq, theta) @ _rope_interleaved(k_stored, pk, theta)
    q_hf = unpermute_rotary_rows(q_stored[:, None], 1)[:, 0]
    k_hf = unpermute_rotary_rows(k_stored[:, None], 1)[:, 0]
    hf = _rope_rotate_half(q_hf, pq, theta) @ _rope_rotate_half(k_hf, pk, theta)
    np.testing.assert_allclose(hf, ggml, rtol=1e-12)
    # and the rotated vectors themselves are the same up to the row order
    np.testing.assert_allclose(_rope_rotate_half(q_hf, pq, theta),
                               unpermute_rotary_rows(_rope_interleaved(q_stored, pq, theta)[:, None],
                                                     1)[:, 0], rtol=1e-12)


def test_f32_gguf_round_trips_exactly(tiny_gguf):
  path, tensors = tiny_gguf
  ckpt = read_gguf(path)
  c = ckpt.config
  assert (c.d_model, c.n_layers, c.n_heads, c.n_kv_heads, c.d_ff, c.max_seq_len) == (
      TINY["d_model"], TINY["n_layers"], TINY["n_heads"], TINY["n_kv_heads"], TINY["d_ff"],
      TINY["ctx"])
  assert c.tie_embeddings and c.vocab_size == tensors["model.embed_tokens.weight"].shape[0]
  assert (ckpt.bos_id, ckpt.eos_id) == (1, 2)
  assert set(ckpt.tensors) == set(tensors)
  for name, arr in tensors.items():
    np.testing.assert_array_equal(ckpt.tensors[name], arr, err_msg=name)


@pytest.mark.parametrize("qtype,tol", [("Q8_0", 0.01), ("Q4_1", 0.12)])
def test_quantized_gguf_dequantizes_close_to_the_original(tmp_path, qtype, tol):
  tensors = tiny_tensors(seed=2, tied=False)
  path = write_tiny_gguf(tmp_path / "q.gguf", tensors,
                         qtype=getattr(gguf.GGMLQuantizationType, qtype))
  ckpt = read_gguf(path)
  assert not ckpt.config.tie_embeddings
  for name, arr in tensors.items():
    err = np.abs(ckpt.tensors[name] - arr).max() / np.abs(arr).max()
    assert err < tol, (name, err)
  # a wrong un-permutation would move whole rows: errors of order 1, not of quantization
  q = ckpt.tensors["model.layers.0.self_attn.q_proj.weight"]
  assert np.abs(q - tensors["model.layers.0.self_attn.q_proj.weight"]).max() < 0.2


def test_max_seq_len_override_and_its_range(tiny_gguf):
  path, _ = tiny_gguf
  assert read_gguf(path, max_seq_len=16).config.max_seq_len == 16
  with pytest.raises(InputError, match="max_seq_len"):
    read_gguf(path, max_seq_len=TINY["ctx"] + 1)


def test_other_architecture_is_refused(tmp_path):
  path = write_tiny_gguf(tmp_path / "gpt2.gguf", tiny_tensors(), arch="gpt2")
  with pytest.raises(InputError, match="architecture 'gpt2' is not supported"):
    read_gguf(path)


def test_unsupported_quantization_type_is_named(tmp_path):
  tensors = tiny_tensors()
  bad = np.zeros((TINY["d_model"],), np.int8)
  path = write_tiny_gguf(tmp_path / "i8.gguf", tensors, drop=("model.norm.weight",),
                         extra=("output_norm.weight", bad))
  with pytest.raises(InputError, match="'output_norm.weight' uses quantization type I8"):
    read_gguf(path)


def test_truncated_file_is_reported(tiny_gguf, tmp_path):
  path, _ = tiny_gguf
  data = path.read_bytes()
  for cut in (len(data) // 2, 200, len(data) - 7):
    bad = tmp_path / f"cut{cut}.gguf"
    bad.write_bytes(data[:cut])
    with pytest.raises(InputError, match="truncated or corrupt"):
      read_gguf(bad)


def test_not_a_gguf_and_missing_file(tmp_path):
  junk = tmp_path / "junk.gguf"
  junk.write_bytes(b"PK\x03\x04" + bytes(100))
  with pytest.raises(InputError, match="not a GGUF file"):
    read_gguf(junk)
  with pytest.raises(InputError, match="does not exist"):
    read_gguf(tmp_path / "absent.gguf")


def test_missing_tensor_is_named(tmp_path):
  path = write_tiny_gguf(tmp_path / "m.gguf", tiny_tensors(),
                         drop=("model.layers.1.mlp.up_proj.weight",))
  with pytest.raises(InputError, match=r"model\.layers\.1\.mlp\.up_proj\.weight.*missing"):
    read_gguf(path)


def test_tokenizer_of_wrong_size_is_refused(tmp_path):
  from hub_fixtures import tiny_vocab
  tokens, types = tiny_vocab()
  path = write_tiny_gguf(tmp_path / "v.gguf", tiny_tensors(), tokens=tokens[:-1],
                         types=types[:-1])
  with pytest.raises(InputError, match="tokenizer has 262 tokens but the model.s vocabulary "
                                       "size is 263"):
    read_gguf(path)


def test_generate_command_shows_every_load_stage_and_decodes_like_the_library(tiny_gguf, capsys):
  """`generate` on a GGUF path: one progress line per stage on stderr (off a terminal),
  and the same text as sampling.generate with the same key (the ahead-of-time compile
  stage does not change what is decoded)."""
  import jax
  import jax.numpy as jnp

  from recall_theory.cli.main import main
  from recall_theory.lm.hub.models import load_pretrained
  from recall_theory.lm.sampling import generate
  path, _ = tiny_gguf
  argv = ["generate", "--model", str(path), "--prompt", "the", "--raw", "--max-new-tokens", "5",
          "--temperature", "1.0", "--num-samples", "2", "--seed", "3"]
  assert main(argv) == 0
  out, err = capsys.readouterr()
  for stage in ("read tiny.gguf", "dequantise tiny.gguf", "un-permute q/k rows: 4/4",
                "place weights (float32): 20/20", "compile sampler: 1/1",
                "decode (at most 5 tokens x 2): 10/10 tokens"):
    assert stage in err, stage
  lm = load_pretrained(str(path))
  ids = generate(lm.model, jnp.tile(jnp.asarray([lm.tokenizer.encode("the")]), (2, 1)),
                 jax.random.key(3), max_new_tokens=5, temperature=1.0, eos_id=lm.eos_id)
  want = ""
  for row in jax.device_get(ids).tolist():
    if lm.eos_id in row:
      row = row[:row.index(lm.eos_id)]
    want += "---\n" + lm.tokenizer.decode(row) + "\n"
  assert out == want
