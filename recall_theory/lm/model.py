"""A Llama-style decoder-only transformer in Flax NNX, with a key-value cache.

Architecture (identical in semantics to Hugging Face ``LlamaForCausalLM``, so real
Llama-family checkpoints such as SmolLM2 load unchanged):

* pre-norm residual blocks ``x + attn(norm(x))`` then ``x + mlp(norm(x))``;
* RMSNorm ``y = x * rsqrt(mean(x^2) + eps) * scale`` in float32 (scale multiplies
  directly, not ``1 + scale``);
* rotary positions in the "rotate_half" layout: dims ``i`` and ``i + Dh/2`` form a pair
  rotated by ``pos * theta**(-2i/Dh)``;
* grouped-query attention: ``n_heads / n_kv_heads`` query heads share one kv head;
  causal, scale ``1/sqrt(Dh)``, softmax in float32, through
  ``jax.nn.dot_product_attention`` (``ModelConfig.attention``: "auto" = cuDNN flash
  attention on a GPU for bf16/fp16 activations, XLA elsewhere; "xla"; "cudnn";
  "einsum" = the explicit reference einsum path, see :func:`attend`);
* SwiGLU MLP ``down(silu(gate(x)) * up(x))``;
* final RMSNorm and a head tied to the embedding (``logits = h @ E^T``) or a separate
  ``lm_head``. Logits are always float32.

Parameter paths (kernels are ``[in, out]``, so a torch weight ``W[out, in]`` loads as
``W.T``)::

  embed.embedding                   [V, D]
  layers[i].attn_norm.scale         [D]
  layers[i].attn.{q,k,v,o}_proj.kernel  [D, H*Dh] / [D, KV*Dh] / [D, KV*Dh] / [H*Dh, D]
  layers[i].mlp_norm.scale          [D]
  layers[i].mlp.{gate,up,down}_proj.kernel  [D, F] / [D, F] / [F, D]
  final_norm.scale                  [D]
  lm_head.kernel                    [D, V]   (only when tie_embeddings is False)

Training losses that only need log q(target) should call
:meth:`Transformer.target_log_probs`, which never holds more than one chunk of float32
logits ``[B, chunk, V]`` (forward and backward) instead of the full ``[B, L, V]``.

Call::

  logits_BxLxV, cache = model(tokens_BxL, positions_BxL=None, cache=None)

Without a cache the call is a plain causal forward over ``L`` tokens (positions default
to ``0..L-1``). With a cache (from :func:`init_cache`) the ``L`` new tokens are written
at slots ``cache.index .. cache.index + L - 1``, attend to every filled slot up to
their own, and the returned cache has ``index`` advanced by ``L``. Positions default to
the slot numbers. Every sequence in a batch shares the slot index (prompts of equal
length; left-padded prompts pass explicit positions).

Example::

  cfg = ModelConfig(vocab_size=32, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2,
                    d_ff=128, max_seq_len=64)
  model = Transformer(cfg, rngs=nnx.Rngs(0))
  logits, _ = model(jnp.zeros((2, 8), jnp.int32))      # [2, 8, 32] float32

Reference: Touvron et al., "LLaMA" (2023); Su et al., "RoFormer" (2021); Ainslie et al.,
"GQA" (2023); Shazeer, "GLU variants improve transformer" (2020).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from recall_theory.errors import InputError

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
ATTENTION_IMPLEMENTATIONS = ("auto", "xla", "cudnn", "einsum")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Sizes of a Llama-style decoder.

  Attributes:
    vocab_size: V, number of token ids.
    d_model: D, residual width.
    n_layers: number of blocks.
    n_heads: H, query heads.
    n_kv_heads: KV, key/value heads (grouped-query attention; H % KV == 0).
    d_ff: F, SwiGLU hidden width.
    max_seq_len: context length; longer inputs raise InputError.
    head_dim: Dh; default D // H.
    rope_theta: rotary base.
    rms_eps: RMSNorm epsilon.
    tie_embeddings: logits from the embedding matrix (no ``lm_head``).
    dtype: activation/compute dtype ("float32", "bfloat16", "float16"). With
      ``param_dtype="float32"`` this is mixed precision: float32 master weights and
      optimizer state, matmuls in ``dtype`` (accumulated in float32 by the hardware).
    param_dtype: parameter storage dtype.
    attention: "auto" | "xla" | "cudnn" | "einsum" (see :func:`attend`).
  """
  vocab_size: int
  d_model: int
  n_layers: int
  n_heads: int
  n_kv_heads: int
  d_ff: int
  max_seq_len: int
  head_dim: int | None = None
  rope_theta: float = 10000.0
  rms_eps: float = 1e-5
  tie_embeddings: bool = True
  dtype: str = "float32"
  param_dtype: str = "float32"
  attention: str = "auto"

  @property
  def resolved_head_dim(self) -> int:
    return self.head_dim if self.head_dim is not None else self.d_model // self.n_heads

  @property
  def compute_dtype(self):
    return _DTYPES[self.dtype]

  @property
  def storage_dtype(self):
    return _DTYPES[self.param_dtype]

  def validate(self) -> "ModelConfig":
    """Raise InputError naming the first inconsistent size; return self."""
    for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff",
                 "max_seq_len"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
    if self.head_dim is None and self.d_model % self.n_heads:
      raise InputError(f"ModelConfig: n_heads={self.n_heads} must divide d_model={self.d_model}"
                       " (or set head_dim)")
    if self.n_heads % self.n_kv_heads:
      raise InputError(f"ModelConfig: n_kv_heads={self.n_kv_heads} must divide "
                       f"n_heads={self.n_heads}")
    dh = self.resolved_head_dim
    if isinstance(dh, bool) or not isinstance(dh, int) or dh < 2 or dh % 2:
      raise InputError(f"ModelConfig.head_dim must be an even integer >= 2 (rotary pairs), got {dh}")
    if not self.rope_theta > 1.0:
      raise InputError(f"ModelConfig.rope_theta must be > 1, got {self.rope_theta}")
    if not 0.0 < self.rms_eps < 1.0:
      raise InputError(f"ModelConfig.rms_eps must lie in (0, 1), got {self.rms_eps}")
    if self.attention not in ATTENTION_IMPLEMENTATIONS:
      raise InputError(f"ModelConfig.attention must be one of {ATTENTION_IMPLEMENTATIONS}, "
                       f"got {self.attention!r}")
    for name in ("dtype", "param_dtype"):
      if getattr(self, name) not in _DTYPES:
        raise InputError(f"ModelConfig.{name} must be one of {sorted(_DTYPES)}, "
                         f"got {getattr(self, name)!r}")
    return self

  def param_count(self) -> int:
    """Number of parameters (embedding counted once when tied)."""
    d, f, v, dh = self.d_model, self.d_ff, self.vocab_size, self.resolved_head_dim
    attn = d * self.n_heads * dh * 2 + d * self.n_kv_heads * dh * 2
    block = attn + 3 * d * f + 2 * d
    head = 0 if self.tie_embeddings else d * v
    return v * d + self.n_layers * block + d + head

  def flops_per_token(self, seq_len: int) -> float:
    """Training FLOPs per token (forward + backward = 3x forward), PaLM appendix B count.

    6 * N_nonembedding-matmul + 12 * n_layers * H * Dh * seq_len (attention scores),
    with the output head counted as a matmul.
    """
    d, f, v, dh = self.d_model, self.d_ff, self.vocab_size, self.resolved_head_dim
    matmul = self.n_layers * (d * self.n_heads * dh * 2 + d * self.n_kv_heads * dh * 2
                              + 3 * d * f) + d * v
    return 6.0 * matmul + 12.0 * self.n_layers * self.n_heads * dh * seq_len


class LayerCache(NamedTuple):
  """Keys and values of one block: ``k_BxSxKVxDh``, ``v_BxSxKVxDh``."""
  k: jax.Array
  v: jax.Array


class KVCache(NamedTuple):
  """Per-layer keys/values for S = capacity slots and the next free slot ``index``."""
  layers: tuple[LayerCache, ...]
  index: jax.Array  # int32 scalar: number of filled slots

  @property
  def capacity(self) -> int:
    return self.layers[0].k.shape[1]


def init_cache(config: ModelConfig, batch_size: int, capacity: int | None = None,
               dtype=None) -> KVCache:
  """An empty cache for ``batch_size`` sequences of up to ``capacity`` tokens."""
  capacity = config.max_seq_len if capacity is None else capacity
  if capacity > config.max_seq_len:
    raise InputError(f"cache capacity {capacity} exceeds max_seq_len={config.max_seq_len}")
  dtype = config.compute_dtype if dtype is None else dtype
  shape = (batch_size, capacity, config.n_kv_heads, config.resolved_head_dim)
  layers = tuple(LayerCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))
                 for _ in range(config.n_layers))
  return KVCache(layers, jnp.zeros((), jnp.int32))


class RMSNorm(nnx.Module):
  """y = x * rsqrt(mean(x^2, -1) + eps) * scale, computed in float32."""

  def __init__(self, dim: int, *, eps: float, param_dtype=jnp.float32):
    self.scale = nnx.Param(jnp.ones((dim,), param_dtype))
    self.eps = eps

  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return (y * self.scale[...].astype(jnp.float32)).astype(x.dtype)


def rope_inv_freq(head_dim: int, theta: float) -> jax.Array:
  """theta ** (-2i/Dh), i in [0, Dh/2), float32."""
  return theta ** (-jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)


def apply_rope(x_BxLxNxDh: jax.Array, positions_BxL: jax.Array, theta: float) -> jax.Array:
  """Rotate pairs (i, i + Dh/2) by angle pos * inv_freq_i (Hugging Face rotate_half)."""
  dh = x_BxLxNxDh.shape[-1]
  angles_BxLxHalf = positions_BxL.astype(jnp.float32)[..., None] * rope_inv_freq(dh, theta)
  cos = jnp.cos(angles_BxLxHalf)[:, :, None, :]
  sin = jnp.sin(angles_BxLxHalf)[:, :, None, :]
  x = x_BxLxNxDh.astype(jnp.float32)
  x1, x2 = x[..., : dh // 2], x[..., dh // 2:]
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x_BxLxNxDh.dtype)


def _on_cuda_gpu() -> bool:
  if jax.default_backend() != "gpu":
    return False
  version = getattr(jax.devices()[0].client, "platform_version", "") or ""
  return "rocm" not in version.lower()  # ROCm GPUs report "gpu" too but have no cuDNN


def cudnn_supported(dtype, head_dim: int) -> bool:
  """Whether cuDNN flash attention can run: an NVIDIA GPU, fp16/bf16, Dh % 8 == 0, Dh <= 128."""
  return (jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16) and head_dim % 8 == 0
          and head_dim <= 128 and _on_cuda_gpu())


def resolve_attention(implementation: str, dtype, head_dim: int, cached: bool) -> str:
  """The path :func:`attend` takes: "einsum", "xla" or "cudnn".

  "auto" picks cuDNN where :func:`cudnn_supported`, else XLA. Decoding with a cache
  (a query block at an offset into a longer key buffer) always uses XLA with an
  explicit mask: cuDNN's causal mask is aligned to the top-left corner, and one-token
  decode steps are memory-bound anyway. "cudnn" without a GPU raises InputError.
  """
  if implementation == "einsum":
    return "einsum"
  if implementation == "cudnn" and not cudnn_supported(dtype, head_dim):
    raise InputError(f"attention='cudnn' needs a GPU and bfloat16/float16 activations with "
                     f"head_dim a multiple of 8 up to 128 (backend {jax.default_backend()}, "
                     f"dtype {jnp.dtype(dtype).name}, head_dim {head_dim})")
  if cached:
    return "xla"
  if implementation == "auto":
    return "cudnn" if cudnn_supported(dtype, head_dim) else "xla"
  return implementation


def attend(q_BxLxHxDh: jax.Array, k_BxSxKVxDh: jax.Array, v_BxSxKVxDh: jax.Array,
           query_slot_L: jax.Array | None = None, *, implementation: str = "auto") -> jax.Array:
  """Causal grouped-query attention ``softmax(q k^T / sqrt(Dh) + mask) v``: [B, L, H, Dh].

  Query head ``j`` reads key/value head ``j // (H / KV)`` (Hugging Face ``repeat_kv``).
  Scores and softmax are float32 on every path; the output has ``q``'s dtype.

  Args:
    q_BxLxHxDh, k_BxSxKVxDh, v_BxSxKVxDh: queries, keys, values (one dtype).
    query_slot_L: int slot of each query in the key buffer; key slot ``s`` is visible
      to query ``i`` iff ``s <= query_slot_L[i]``. None means L == S and slots 0..L-1
      (plain causal self-attention, the only case cuDNN gets).
    implementation: "auto", "xla", "cudnn" (``jax.nn.dot_product_attention``) or
      "einsum" (explicit scores, the reference the tests compare against).

  Example::

    out = attend(q, k, v)                                   # causal, L == S
    out = attend(q1, k_cache, v_cache, jnp.array([7]))      # one decode step at slot 7

  Reference: Dao, "FlashAttention-2" (2023); Ainslie et al., "GQA" (2023).
  """
  b, l, h, dh = q_BxLxHxDh.shape
  s, kv = k_BxSxKVxDh.shape[1], k_BxSxKVxDh.shape[2]
  plain_causal = query_slot_L is None
  path = resolve_attention(implementation, q_BxLxHxDh.dtype, dh, not plain_causal)
  if plain_causal:
    if s != l:
      raise InputError(f"attend without query_slot_L needs as many keys as queries, got "
                       f"L={l}, S={s}")
    query_slot_L = jnp.arange(l)
  mask_LxS = jnp.arange(s)[None, :] <= query_slot_L[:, None]
  if path == "einsum":
    q_BxLxKVxGxDh = q_BxLxHxDh.reshape(b, l, kv, h // kv, dh)
    scores = jnp.einsum("blkgd,bskd->bkgls", q_BxLxKVxGxDh, k_BxSxKVxDh,
                        preferred_element_type=jnp.float32) / jnp.sqrt(jnp.float32(dh))
    scores = jnp.where(mask_LxS, scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(v_BxSxKVxDh.dtype)
    out = jnp.einsum("bkgls,bskd->blkgd", probs, v_BxSxKVxDh)
    return out.reshape(b, l, h, dh)
  # cuDNN (and XLA) build the causal mask themselves; cuDNN then skips masked tiles
  return jax.nn.dot_product_attention(
      q_BxLxHxDh, k_BxSxKVxDh, v_BxSxKVxDh,
      mask=None if plain_causal else mask_LxS[None, None],
      is_causal=plain_causal, implementation=path)


class Attention(nnx.Module):
  """Causal grouped-query self-attention with rotary positions."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    d, h, kv, dh = config.d_model, config.n_heads, config.n_kv_heads, config.resolved_head_dim
    lin = dict(use_bias=False, dtype=config.compute_dtype, param_dtype=config.storage_dtype,
               rngs=rngs)
    self.q_proj = nnx.Linear(d, h * dh, **lin)
    self.k_proj = nnx.Linear(d, kv * dh, **lin)
    self.v_proj = nnx.Linear(d, kv * dh, **lin)
    self.o_proj = nnx.Linear(h * dh, d, **lin)
    self.n_heads, self.n_kv_heads, self.head_dim = h, kv, dh
    self.rope_theta = config.rope_theta
    self.implementation = config.attention

  def __call__(self, x_BxLxD, positions_BxL, cache: LayerCache | None, index):
    b, l, _ = x_BxLxD.shape
    h, kv, dh = self.n_heads, self.n_kv_heads, self.head_dim
    q = apply_rope(self.q_proj(x_BxLxD).reshape(b, l, h, dh), positions_BxL, self.rope_theta)
    k = apply_rope(self.k_proj(x_BxLxD).reshape(b, l, kv, dh), positions_BxL, self.rope_theta)
    v = self.v_proj(x_BxLxD).reshape(b, l, kv, dh)
    query_slot_L = None
    if cache is not None:
      # int32 throughout, so the slice indices agree whether or not float64/int64 is enabled
      index = jnp.asarray(index, jnp.int32)
      zero = jnp.zeros((), jnp.int32)
      k_all = jax.lax.dynamic_update_slice(cache.k, k.astype(cache.k.dtype), (zero, index, zero, zero))
      v_all = jax.lax.dynamic_update_slice(cache.v, v.astype(cache.v.dtype), (zero, index, zero, zero))
      cache = LayerCache(k_all, v_all)
      query_slot_L = jnp.arange(l, dtype=jnp.int32) + index
      k, v = k_all.astype(q.dtype), v_all.astype(q.dtype)
    out = attend(q, k, v, query_slot_L, implementation=self.implementation).reshape(b, l, h * dh)
    return self.o_proj(out), cache


class MLP(nnx.Module):
  """SwiGLU: down(silu(gate(x)) * up(x))."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    lin = dict(use_bias=False, dtype=config.compute_dtype, param_dtype=config.storage_dtype,
               rngs=rngs)
    self.gate_proj = nnx.Linear(config.d_model, config.d_ff, **lin)
    self.up_proj = nnx.Linear(config.d_model, config.d_ff, **lin)
    self.down_proj = nnx.Linear(config.d_ff, config.d_model, **lin)

  def __call__(self, x):
    return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nnx.Module):
  """Pre-norm residual block: attention then MLP."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    self.attn_norm = RMSNorm(config.d_model, eps=config.rms_eps, param_dtype=config.storage_dtype)
    self.attn = Attention(config, rngs=rngs)
    self.mlp_norm = RMSNorm(config.d_model, eps=config.rms_eps, param_dtype=config.storage_dtype)
    self.mlp = MLP(config, rngs=rngs)

  def __call__(self, x, positions_BxL, cache, index):
    attn_out, cache = self.attn(self.attn_norm(x), positions_BxL, cache, index)
    x = x + attn_out
    x = x + self.mlp(self.mlp_norm(x))
    return x, cache


class Transformer(nnx.Module):
  """Decoder-only Llama-style language model (see the module docstring)."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    config.validate()
    self.config = config
    self.embed = nnx.Embed(config.vocab_size, config.d_model, dtype=config.compute_dtype,
                           param_dtype=config.storage_dtype,
                           embedding_init=nnx.initializers.normal(0.02), rngs=rngs)
    self.layers = nnx.List([Block(config, rngs=rngs) for _ in range(config.n_layers)])
    self.final_norm = RMSNorm(config.d_model, eps=config.rms_eps, param_dtype=config.storage_dtype)
    if not config.tie_embeddings:
      self.lm_head = nnx.Linear(config.d_model, config.vocab_size, use_bias=False,
                                dtype=config.compute_dtype, param_dtype=config.storage_dtype,
                                rngs=rngs)

  def hidden(self, tokens_BxL: jax.Array, positions_BxL: jax.Array | None = None,
             cache: KVCache | None = None) -> tuple[jax.Array, KVCache | None]:
    """Final-norm hidden states ``h_BxLxD`` (compute dtype) and the updated cache."""
    cfg = self.config
    b, l = tokens_BxL.shape
    capacity = cfg.max_seq_len if cache is None else cache.capacity
    if l > capacity:
      what = "max_seq_len" if cache is None else "cache capacity"
      raise InputError(f"sequence length {l} exceeds the model's {what}={capacity}")
    index = jnp.zeros((), jnp.int32) if cache is None else cache.index
    if positions_BxL is None:
      positions_BxL = jnp.broadcast_to(index + jnp.arange(l, dtype=jnp.int32), (b, l))
    x = self.embed(tokens_BxL)
    new_layers = []
    for i, block in enumerate(self.layers):
      x, layer_cache = block(x, positions_BxL, None if cache is None else cache.layers[i], index)
      new_layers.append(layer_cache)
    new_cache = None if cache is None else KVCache(tuple(new_layers), index + l)
    return self.final_norm(x), new_cache

  def head_kernel(self) -> jax.Array:
    """The output projection ``W_DxV`` in the compute dtype (``E^T`` when tied)."""
    if self.config.tie_embeddings:
      kernel_DxV = self.embed.embedding[...].T
    else:
      kernel_DxV = self.lm_head.kernel[...]
    return kernel_DxV.astype(self.config.compute_dtype)

  def __call__(self, tokens_BxL: jax.Array, positions_BxL: jax.Array | None = None,
               cache: KVCache | None = None) -> tuple[jax.Array, KVCache | None]:
    """Return (float32 logits [B, L, V], updated cache or None)."""
    h_BxLxD, new_cache = self.hidden(tokens_BxL, positions_BxL, cache)
    return head_logits(h_BxLxD, self.head_kernel()), new_cache

  def target_log_probs(self, inputs_BxL: jax.Array, targets_BxT: jax.Array, *,
                       chunk_size: int | None = 256) -> jax.Array:
    """log q(targets[:, t] | inputs up to position L - T + t): float32 [B, T], T <= L.

    The last ``T`` positions of ``inputs_BxL`` are scored against ``targets_BxT`` (for
    next-token prediction: ``inputs = tokens[:, :-1]``, ``targets = tokens[:, P:]``).
    The head runs in chunks of ``chunk_size`` positions (see
    :func:`chunked_target_log_probs`), so float32 logits never exceed
    ``[B, chunk_size, V]``; ``chunk_size=None`` computes them all at once.
    """
    t = targets_BxT.shape[1]
    if t > inputs_BxL.shape[1]:
      raise InputError(f"{t} targets for {inputs_BxL.shape[1]} input positions")
    h_BxLxD, _ = self.hidden(inputs_BxL)
    return chunked_target_log_probs(h_BxLxD[:, h_BxLxD.shape[1] - t:], self.head_kernel(),
                                    targets_BxT, chunk_size=chunk_size)


def head_logits(h_BxLxD: jax.Array, kernel_DxV: jax.Array) -> jax.Array:
  """``h @ W`` with float32 accumulation and output: [B, L, V]."""
  return jnp.einsum("bld,dv->blv", h_BxLxD.astype(kernel_DxV.dtype), kernel_DxV,
                    preferred_element_type=jnp.float32)


def _target_log_probs_dense(h_BxCxD, kernel_DxV, targets_BxC):
  logits_BxCxV = head_logits(h_BxCxD, kernel_DxV)
  target_logit = jnp.take_along_axis(logits_BxCxV, targets_BxC[..., None], axis=-1)[..., 0]
  return target_logit - jax.nn.logsumexp(logits_BxCxV, axis=-1)


def chunked_target_log_probs(h_BxTxD: jax.Array, kernel_DxV: jax.Array, targets_BxT: jax.Array,
                             *, chunk_size: int | None = 256) -> jax.Array:
  """``log softmax(h W)[target]`` per position, float32 [B, T], one chunk of logits at a time.

  ``log q(y_t) = (h_t W)_{y_t} - logsumexp_v (h_t W)_v``. Positions are processed in
  ``ceil(T / C)`` chunks of ``C = chunk_size`` by ``lax.map`` with each chunk under
  ``jax.checkpoint``: the backward pass recomputes a chunk's logits instead of storing
  them, so peak logits memory is ``B * C * V * 4`` bytes instead of ``B * T * V * 4``
  (B=8, T=2048, V=49152, C=256: 0.4 GB instead of 3.2 GB, and the same again for
  the gradient). Each position goes through the same ops as the dense computation.

  Example::

    lp_BxT = chunked_target_log_probs(h, model.head_kernel(), targets, chunk_size=128)
  """
  b, t, d = h_BxTxD.shape
  if chunk_size is None or chunk_size >= t:
    return _target_log_probs_dense(h_BxTxD, kernel_DxV, targets_BxT)
  if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
    raise InputError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
  n_chunks = -(-t // chunk_size)
  pad = n_chunks * chunk_size - t
  h_pad = jnp.pad(h_BxTxD, ((0, 0), (0, pad), (0, 0)))
  y_pad = jnp.pad(targets_BxT, ((0, 0), (0, pad)))
  h_NxBxCxD = h_pad.reshape(b, n_chunks, chunk_size, d).transpose(1, 0, 2, 3)
  y_NxBxC = y_pad.reshape(b, n_chunks, chunk_size).transpose(1, 0, 2)
  chunk_fn = jax.checkpoint(lambda hy: _target_log_probs_dense(hy[0], kernel_DxV, hy[1]))
  lp_NxBxC = jax.lax.map(chunk_fn, (h_NxBxCxD, y_NxBxC))
  return lp_NxBxC.transpose(1, 0, 2).reshape(b, n_chunks * chunk_size)[:, :t]


def sequence_log_probs(logits_BxLxV: jax.Array, targets_BxL: jax.Array,
                       mask_BxL: jax.Array | None = None) -> jax.Array:
  """Per-token log q(target) in float32, zeroed where ``mask`` is False: [B, L]."""
  log_probs = jax.nn.log_softmax(logits_BxLxV.astype(jnp.float32), axis=-1)
  token_lp = jnp.take_along_axis(log_probs, targets_BxL[..., None], axis=-1)[..., 0]
  if mask_BxL is not None:
    token_lp = jnp.where(mask_BxL, token_lp, 0.0)
  return token_lp
