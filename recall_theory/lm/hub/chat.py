"""The ChatML chat template of SmolLM2-Instruct, rendered without a template engine.

SmolLM2's template (stored in GGUF ``tokenizer.chat_template`` and tokenizer_config.json)
turns messages into::

  <|im_start|>system\\n{system}<|im_end|>\\n<|im_start|>user\\n{prompt}<|im_end|>\\n
  <|im_start|>assistant\\n

and inserts a default system message when the first message is not one. This module
reads that default from the template text and renders the same string in Python, so
no Jinja engine is needed; a test renders the stored template with jinja2 and compares.
Templates that are not ChatML are refused by name.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

from recall_theory.errors import InputError

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
_DEFAULT_SYSTEM = re.compile(r"<\|im_start\|>system\n(.*?)<\|im_end\|>", re.DOTALL)
_ROLES = ("system", "user", "assistant")


def is_chatml(template: str | None) -> bool:
  return bool(template) and IM_START in template and IM_END in template


def default_system_prompt(template: str) -> str | None:
  """The system message the template adds when none is given (None if it adds none)."""
  match = _DEFAULT_SYSTEM.search(template)
  return match.group(1) if match else None


def apply_chat_template(template: str | None, messages: Sequence[Mapping[str, str]], *,
                        add_generation_prompt: bool = True) -> str:
  """Render ``messages`` ([{"role", "content"}]) with a ChatML ``template``.

  >>> t = "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'}}"
  >>> apply_chat_template(t, [{"role": "user", "content": "Hi"}])
  '<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n'
  """
  if not is_chatml(template):
    raise InputError("chat template: only ChatML templates (<|im_start|> ... <|im_end|>) are "
                     "supported; this checkpoint has "
                     + ("none" if not template else "another format"))
  if not messages:
    raise InputError("chat template: messages must not be empty")
  parts = []
  for i, message in enumerate(messages):
    role, content = message.get("role"), message.get("content")
    if role not in _ROLES or not isinstance(content, str):
      raise InputError(f"chat template: message {i} needs role in {_ROLES} and string content")
    if i == 0 and role != "system":
      system = default_system_prompt(template)
      if system is not None:
        parts.append(f"{IM_START}system\n{system}{IM_END}\n")
    parts.append(f"{IM_START}{role}\n{content}{IM_END}\n")
  if add_generation_prompt:
    parts.append(f"{IM_START}assistant\n")
  return "".join(parts)


def chat_prompt(template: str | None, prompt: str, system: str | None = None) -> str:
  """One user turn (optionally after a system message), ready for the assistant's reply."""
  messages = ([{"role": "system", "content": system}] if system is not None else [])
  messages.append({"role": "user", "content": prompt})
  return apply_chat_template(template, messages, add_generation_prompt=True)
