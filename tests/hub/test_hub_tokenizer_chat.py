"""Byte-level BPE tokenizer rebuilt from GGUF metadata, and the ChatML template."""

from __future__ import annotations

import pytest

pytest.importorskip("tokenizers", reason="the smollm2 extra (tokenizers) is not installed")

from hub_fixtures import CHATML, TINY_MERGES, tiny_vocab  # noqa: E402
from recall_theory.errors import InputError  # noqa: E402
from recall_theory.lm.hub.chat import (apply_chat_template, chat_prompt,  # noqa: E402
                                       default_system_prompt)
from recall_theory.lm.hub.checkpoint import TokenizerSource  # noqa: E402
from recall_theory.lm.hub.tokenizer import Tokenizer, build_bpe_tokenizer  # noqa: E402


def _tiny(pre="smollm") -> Tokenizer:
  tokens, types = tiny_vocab()
  src = TokenizerSource(tokens=tuple(tokens), merges=TINY_MERGES, token_types=tuple(types),
                        pre_tokenizer=pre)
  return Tokenizer(build_bpe_tokenizer(src), bos_id=1, eos_id=2)


def test_merges_apply_in_rank_order_and_round_trip():
  tok = _tiny()
  tokens, _ = tiny_vocab()
  ids = tok.encode("the this")
  # "the" -> t,h,e -> t + "he" ("h e" merge); " this" -> "Ġt" + "h" + "is"
  assert [tokens[i] for i in ids] == ["t", "he", "Ġt", "h", "is"]
  assert [tokens[i] for i in tok.encode(" the")] == ["Ġthe"]
  for text in ["the this", "Grüße, 世界! 12+7=19\n\ttabs", "  two  spaces"]:
    assert tok.decode(tok.encode(text)) == text


def test_digits_are_split_one_per_token_only_for_the_smollm_pre_tokenizer():
  tokens, _ = tiny_vocab()
  smol, plain = _tiny("smollm"), _tiny("gpt2")
  # 7 ids either way (no digit merges), but the pre-token boundaries differ: check via
  # the backend's pre-tokenizer output.
  assert [p for p, _ in smol.backend.pre_tokenizer.pre_tokenize_str("a 2026")] == \
      ["a", "Ġ", "2", "0", "2", "6"]
  assert [p for p, _ in plain.backend.pre_tokenizer.pre_tokenize_str("a 2026")] == \
      ["a", "Ġ2026"]
  assert [tokens[i] for i in smol.encode("x42")] == ["x", "4", "2"]


def test_special_tokens_are_matched_whole_and_skipped_on_decode():
  tok = _tiny()
  ids = tok.encode("<|im_start|>user\nhi<|im_end|>")
  assert ids[0] == 1 and ids[-1] == 2
  assert tok.special_ids == {0, 1, 2}
  assert tok.decode(ids) == "user\nhi"
  assert tok.decode(ids, skip_special=False) == "<|im_start|>user\nhi<|im_end|>"
  with pytest.raises(InputError, match="outside the vocabulary"):
    tok.decode([10_000])


def test_unknown_pre_tokenizer_is_refused():
  with pytest.raises(InputError, match="pre-tokenizer 'llama-bpe' is not supported"):
    _tiny("llama-bpe")


def test_chatml_rendering_by_hand():
  text = chat_prompt(CHATML, "What is 2+2?")
  assert text == ("<|im_start|>system\nYou are tiny.<|im_end|>\n"
                  "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")
  assert default_system_prompt(CHATML) == "You are tiny."
  own = chat_prompt(CHATML, "Hi", system="Be brief.")
  assert own.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi")


def test_chatml_rendering_equals_the_jinja_template():
  jinja2 = pytest.importorskip("jinja2", reason="jinja2 (independent renderer) not installed")
  template = jinja2.Environment().from_string(CHATML)
  cases = [
      [{"role": "user", "content": "What is the capital of France?"}],
      [{"role": "system", "content": "S"}, {"role": "user", "content": "a"},
       {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}],
  ]
  for messages in cases:
    for gen in (True, False):
      assert apply_chat_template(CHATML, messages, add_generation_prompt=gen) == \
          template.render(messages=messages, add_generation_prompt=gen)


def test_non_chatml_template_and_bad_messages_are_refused():
  with pytest.raises(InputError, match="only ChatML"):
    apply_chat_template("[INST] {{ messages }} [/INST]", [{"role": "user", "content": "x"}])
  with pytest.raises(InputError, match="message 0 needs role"):
    apply_chat_template(CHATML, [{"role": "robot", "content": "x"}])
