"""A Llama checkpoint in one neutral form, and its transfer into the Flax model.

Every reader (GGUF file, Hugging Face folder) returns a :class:`LlamaCheckpoint`:
the model sizes as a :class:`~recall_theory.lm.model.ModelConfig` and the weights as
float32 numpy arrays under their Hugging Face ``LlamaForCausalLM`` names in torch layout
(``W[out, in]``)::

  model.embed_tokens.weight                     [V, D]
  model.layers.{i}.input_layernorm.weight       [D]
  model.layers.{i}.self_attn.q_proj.weight      [H*Dh, D]   (rotate_half row order)
  model.layers.{i}.self_attn.k_proj.weight      [KV*Dh, D]
  model.layers.{i}.self_attn.v_proj.weight      [KV*Dh, D]
  model.layers.{i}.self_attn.o_proj.weight      [D, H*Dh]
  model.layers.{i}.post_attention_layernorm.weight  [D]
  model.layers.{i}.mlp.{gate,up}_proj.weight    [F, D]
  model.layers.{i}.mlp.down_proj.weight         [D, F]
  model.norm.weight                             [D]
  lm_head.weight                                [V, D]   (only when not tied)

One neutral form keeps the readers independent of the model's parameter layout and lets
a test hand the very same tensors to PyTorch ``transformers`` (``load_state_dict``).
:func:`to_transformer` writes them into ``recall_theory.lm.model.Transformer``
(kernels are ``[in, out]``, so each matrix goes in transposed).

Example::

  ckpt = read_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")
  model = to_transformer(ckpt)                  # nnx module, weights on device
  logits, _ = model(jnp.array([[1, 9690]]))
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, NamedTuple

import numpy as np

from recall_theory import progress
from recall_theory.errors import InputError


class TokenizerSource(NamedTuple):
  """What is needed to rebuild the tokenizer of a checkpoint.

  Either ``tokenizer_json`` (text of a Hugging Face tokenizer.json) or a byte-level BPE
  vocabulary (``tokens`` in id order, ``merges`` as "a b" strings, ``token_types`` with
  3 = control/special as in GGUF).
  """
  tokens: tuple[str, ...] | None = None
  merges: tuple[str, ...] | None = None
  token_types: tuple[int, ...] | None = None
  pre_tokenizer: str | None = None
  tokenizer_json: str | None = None


class LlamaCheckpoint(NamedTuple):
  """Sizes, weights (HF names, torch layout, float32), tokenizer and chat metadata."""
  config: Any                                  # recall_theory.lm.model.ModelConfig
  tensors: Mapping[str, np.ndarray]
  tokenizer: TokenizerSource | None
  chat_template: str | None
  bos_id: int | None
  eos_id: int | None
  source: str                                  # file or folder it came from


def hf_tensor_shapes(config) -> dict[str, tuple[int, ...]]:
  """Expected HF name -> torch-layout shape for ``config`` (a ModelConfig)."""
  d, f, v = config.d_model, config.d_ff, config.vocab_size
  dh = config.resolved_head_dim
  q, kv = config.n_heads * dh, config.n_kv_heads * dh
  shapes = {"model.embed_tokens.weight": (v, d), "model.norm.weight": (d,)}
  for i in range(config.n_layers):
    p = f"model.layers.{i}."
    shapes.update({
        p + "input_layernorm.weight": (d,),
        p + "self_attn.q_proj.weight": (q, d),
        p + "self_attn.k_proj.weight": (kv, d),
        p + "self_attn.v_proj.weight": (kv, d),
        p + "self_attn.o_proj.weight": (d, q),
        p + "post_attention_layernorm.weight": (d,),
        p + "mlp.gate_proj.weight": (f, d),
        p + "mlp.up_proj.weight": (f, d),
        p + "mlp.down_proj.weight": (d, f),
    })
  if not config.tie_embeddings:
    shapes["lm_head.weight"] = (v, d)
  return shapes


def check_tensors(config, tensors: Mapping[str, np.ndarray], source: str) -> None:
  """Raise InputError naming the first missing, unexpected or mis-shaped tensor."""
  expected = hf_tensor_shapes(config)
  for name, shape in expected.items():
    if name not in tensors:
      raise InputError(f"{source}: tensor {name!r} is missing (expected shape {list(shape)})")
    if tuple(tensors[name].shape) != shape:
      raise InputError(f"{source}: tensor {name!r} has shape {list(tensors[name].shape)}, "
                       f"expected {list(shape)} from the model config")
    if not np.isfinite(tensors[name]).all():
      raise InputError(f"{source}: tensor {name!r} has non-finite values (corrupt file?)")
  extra = sorted(set(tensors) - set(expected))
  if extra:
    raise InputError(f"{source}: unexpected tensor {extra[0]!r} for a Llama model "
                     f"({len(extra)} unexpected in all)")


def with_context(ckpt: LlamaCheckpoint, max_seq_len: int | None) -> LlamaCheckpoint:
  """The same checkpoint with the model's context (and cache bound) set to max_seq_len.

  Rotary positions need no table, so a shorter context only bounds the key-value cache.
  """
  if max_seq_len is None:
    return ckpt
  from recall_theory.errors import check_int_range
  trained = ckpt.config.max_seq_len
  n = check_int_range("max_seq_len", max_seq_len, 1, trained)
  return ckpt._replace(config=dataclasses.replace(ckpt.config, max_seq_len=n))


def to_transformer(ckpt: LlamaCheckpoint, *, param_dtype: str = "float32",
                   dtype: str | None = None):
  """Build ``recall_theory.lm.model.Transformer`` holding the checkpoint's weights.

  The module is created abstractly (``nnx.eval_shape``: no random init of 100M+
  parameters) and every parameter is then set from the checkpoint, transposing
  ``W[out, in]`` into the ``[in, out]`` kernels. Raises InputError if any model
  parameter is left without a checkpoint value.
  """
  import jax.numpy as jnp
  from flax import nnx

  from recall_theory.lm.model import Transformer

  config = dataclasses.replace(ckpt.config, param_dtype=param_dtype,
                               dtype=dtype or param_dtype).validate()
  check_tensors(config, ckpt.tensors, ckpt.source)
  store = config.storage_dtype
  t = ckpt.tensors

  def put(variable, array: np.ndarray) -> None:
    expected = tuple(variable.get_value().shape)
    if tuple(array.shape) != expected:  # the model's layout differs from the contract
      raise InputError(f"{ckpt.source}: cannot place a {list(array.shape)} tensor into a "
                       f"{list(expected)} parameter")
    variable.set_value(jnp.asarray(array, dtype=store))

  model = nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0)))
  with progress.stage(f"place weights ({param_dtype})", total=len(t), unit="arrays") as bar:
    put(model.embed.embedding, t["model.embed_tokens.weight"])
    bar.update(1)
    for i, block in enumerate(model.layers):
      p = f"model.layers.{i}."
      put(block.attn_norm.scale, t[p + "input_layernorm.weight"])
      for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
        put(getattr(block.attn, proj).kernel, t[p + f"self_attn.{proj}.weight"].T)
      put(block.mlp_norm.scale, t[p + "post_attention_layernorm.weight"])
      for proj in ("gate_proj", "up_proj", "down_proj"):
        put(getattr(block.mlp, proj).kernel, t[p + f"mlp.{proj}.weight"].T)
      bar.update(9)
    put(model.final_norm.scale, t["model.norm.weight"])
    bar.update(1)
    if not config.tie_embeddings:
      put(model.lm_head.kernel, t["lm_head.weight"].T)
      bar.update(1)
  for path, variable in nnx.iter_graph(model):
    if isinstance(variable, nnx.Variable) and not hasattr(variable.get_value(), "devices"):
      name = ".".join(map(str, path))
      raise InputError(f"{ckpt.source}: model parameter {name} received no weight")
  return model
