"""FLOPs of the Llama-style model of :mod:`recall_theory.lm.model`, per token and per stage.

Counting convention (Kaplan et al. 2020; PaLM, Chowdhery et al. 2022, appendix B): a
multiply-add is 2 FLOPs; matrix products and attention are counted, element-wise work
(RMSNorm, rotary, SiLU, softmax, residual adds) is not (about 1-2% of the total for the
models here, see ``tests/lm/test_lm_cost.py``); the embedding lookup is a gather (0).
With ``D`` = d_model, ``H``/``KV`` query/key-value heads of width ``Dh``, ``F`` = d_ff,
``V`` = vocabulary, ``n`` = n_layers, one token costs in the matrix products

    M = 2 [ n (D H Dh + 2 D KV Dh + H Dh D + 3 D F) + D V ]        (q, k, v, o; SwiGLU; head)

and, attending to ``S`` key slots, in attention (``q k^T`` and ``probs v``)

    A(S) = 4 n H Dh S.

* forward over a sequence of length L: ``M + A(L)`` per token. The XLA and einsum
  attention paths evaluate every one of the ``L x L`` scores and mask half of them, so
  ``S = L`` (the PaLM count); cuDNN's flash kernel skips masked tiles and does about
  half of ``A(L)``: the count is what XLA executes, an upper bound on GPU.
* training (forward + backward): ``3 (M + A(L))``: every product ``y = x W`` costs
  ``2 |x||W|`` forward and twice that backward (``dx`` and ``dW``). Rematerialised
  recomputation is not counted (model FLOPs, as in MFU).
* sampling with the key-value cache (:func:`recall_theory.lm.sampling.generate`): the
  cache holds ``C = P + N`` slots (prompt ``P``, ``N`` new tokens) and every step attends
  to all ``C`` slots (masked), so each position fed through the model costs
  ``M + A(C)``; a sequence feeds ``P + N - 1`` positions (the prompt at once, then each
  sampled token but the last). The useful work at position ``t`` is ``M + A(t + 1)``.
* reference log-prob precomputation (DPO's ``ref_chosen``/``ref_rejected``, RLOO's
  ``ref_logp``): one forward of the reference over each ``P + T`` token sequence.

Example::

  >>> from recall_theory.lm.model import ModelConfig
  >>> cfg = ModelConfig(vocab_size=512, d_model=128, n_layers=2, n_heads=4, n_kv_heads=2,
  ...                   d_ff=512, max_seq_len=64)
  >>> matmul_flops_per_token(cfg), attention_flops_per_token(cfg, 64)
  (1114112.0, 65536.0)
  >>> stage_cost(cfg, tokens=2 * 64, kind="train", seq_len=64) == 3 * 128 * 1179648
  True

Reference: Kaplan et al., "Scaling laws for neural language models" (2020), table 1;
Chowdhery et al., "PaLM" (2022), appendix B.
"""

from __future__ import annotations

from recall_theory.errors import InputError

STAGE_KINDS = ("train", "forward", "reference", "sample")


def _check_positive_int(name: str, value) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise InputError(f"{name} must be a positive integer, got {value!r}")
  return value


def matmul_flops_per_token(config) -> float:
  """``M = 2 [n (D H Dh + 2 D KV Dh + H Dh D + 3 D F) + D V]``: one token's matrix products.

  The projections q, k, v, o, the SwiGLU gate/up/down and the output head (tied or not,
  the head is a ``D x V`` product).
  """
  d, f, v = config.d_model, config.d_ff, config.vocab_size
  h, kv, dh = config.n_heads, config.n_kv_heads, config.resolved_head_dim
  per_layer = d * h * dh + 2 * d * kv * dh + h * dh * d + 3 * d * f
  return 2.0 * (config.n_layers * per_layer + d * v)


def attention_flops_per_token(config, keys: int) -> float:
  """``A(S) = 4 n H Dh S``: one query attending to ``S = keys`` slots (scores and values)."""
  keys = _check_positive_int("keys", keys)
  return 4.0 * config.n_layers * config.n_heads * config.resolved_head_dim * keys


def forward_flops_per_token(config, seq_len: int) -> float:
  """``M + A(L)``: one token of a causal forward over ``L = seq_len`` tokens (no cache)."""
  return matmul_flops_per_token(config) + attention_flops_per_token(config, seq_len)


def train_flops_per_token(config, seq_len: int) -> float:
  """``3 (M + A(L))``: forward + backward of one token (backward = 2x forward)."""
  return 3.0 * forward_flops_per_token(config, seq_len)


def sampling_flops_per_token(config, position: int, cache_capacity: int | None = None) -> float:
  """One position fed through the model with the key-value cache.

  Args:
    config: the model's :class:`~recall_theory.lm.model.ModelConfig`.
    position: 0-based slot ``t`` of the token (it attends to slots ``0..t``).
    cache_capacity: ``C``, the cache's slots. Given: the executed count ``M + A(C)``
      (the implementation attends to every slot, masked). None: the useful count
      ``M + A(t + 1)``.
  """
  if isinstance(position, bool) or not isinstance(position, int) or position < 0:
    raise InputError(f"position must be a non-negative integer, got {position!r}")
  if cache_capacity is not None:
    cache_capacity = _check_positive_int("cache_capacity", cache_capacity)
    if position >= cache_capacity:
      raise InputError(f"position {position} does not fit a cache of {cache_capacity} slots")
    return matmul_flops_per_token(config) + attention_flops_per_token(config, cache_capacity)
  return matmul_flops_per_token(config) + attention_flops_per_token(config, position + 1)


def sampling_flops(config, n_sequences: int, prompt_len: int, new_tokens: int) -> float:
  """Executed FLOPs of :func:`recall_theory.lm.sampling.generate` with the cache.

  ``n_sequences (P + N - 1) (M + A(P + N))``: the prompt's P positions at once, then N - 1
  decode steps, each attending to the whole cache of ``P + N`` slots.
  """
  n_sequences = _check_positive_int("n_sequences", n_sequences)
  prompt_len = _check_positive_int("prompt_len", prompt_len)
  new_tokens = _check_positive_int("new_tokens", new_tokens)
  capacity = prompt_len + new_tokens
  return (n_sequences * (capacity - 1)
          * sampling_flops_per_token(config, capacity - 1, cache_capacity=capacity))


def reference_flops(config, n_sequences: int, seq_len: int) -> float:
  """Reference log-probs of ``n_sequences`` sequences of ``L = seq_len`` tokens (prompt
  included): one forward each, ``n L (M + A(L))``."""
  n_sequences = _check_positive_int("n_sequences", n_sequences)
  return n_sequences * seq_len * forward_flops_per_token(config, seq_len)


def stage_cost(config, tokens: int, kind: str, *, seq_len: int | None = None) -> float:
  """FLOPs of a pipeline stage that runs ``tokens`` token positions through ``config``.

  Args:
    config: the model of the stage.
    tokens: token positions processed (e.g. steps x batch x sequence length for
      training; for sampling, ``n (P + N - 1)`` positions fed, see :func:`sampling_flops`).
    kind: "train" (forward + backward), "forward" (evaluation, teacher logits),
      "reference" (reference log-prob precomputation: a forward), "sample" (decoding
      with the key-value cache).
    seq_len: tokens per sequence (prompt included): the attention span. For "sample"
      the cache capacity ``P + N``. Default: the model's context ``max_seq_len`` (an
      upper bound).

  Returns:
    FLOPs (float).

  Example::

    stage_cost(student, tokens=steps * batch * (1 + T), kind="train", seq_len=1 + T)
  """
  if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
    raise InputError(f"tokens must be a non-negative integer, got {tokens!r}")
  if kind not in STAGE_KINDS:
    raise InputError(f"kind must be one of {STAGE_KINDS}, got {kind!r}")
  span = config.max_seq_len if seq_len is None else _check_positive_int("seq_len", seq_len)
  if span > config.max_seq_len:
    raise InputError(f"seq_len {span} exceeds the model's max_seq_len={config.max_seq_len}")
  if kind == "train":
    per_token = train_flops_per_token(config, span)
  elif kind == "sample":
    per_token = sampling_flops_per_token(config, span - 1, cache_capacity=span)
  else:
    per_token = forward_flops_per_token(config, span)
  return tokens * per_token
