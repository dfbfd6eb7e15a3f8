"""A Llama-style decoder-only transformer in Flax NNX, with a key-value cache.

Architecture (identical in semantics to Hugging Face ``LlamaForCausalLM``, so real
Llama-family checkpoints such as SmolLM2 load unchanged):

* pre-norm residual blocks ``x + attn(norm(x))`` then ``x + mlp(norm(x))``;
* RMSNorm ``y = x * rsqrt(mean(x^2) + eps) * scale`` in float32 (scale multiplies
  directly, not ``1 + scale``);
* rotary positions in the "rotate_half" layout: dims ``i`` and ``i + Dh/2`` form a pair
  rotated by ``pos * theta**(-2i/Dh)``;
* grouped-query attention: ``n_heads / n_kv_heads`` query heads share one kv head;
  causal, scale ``1/sqrt(Dh)``, softmax in float32;
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
    dtype: activation/compute dtype ("float32", "bfloat16", "float16").
    param_dtype: parameter storage dtype.
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

  def __call__(self, x_BxLxD, positions_BxL, cache: LayerCache | None, index):
    b, l, _ = x_BxLxD.shape
    h, kv, dh = self.n_heads, self.n_kv_heads, self.head_dim
    q = apply_rope(self.q_proj(x_BxLxD).reshape(b, l, h, dh), positions_BxL, self.rope_theta)
    k = apply_rope(self.k_proj(x_BxLxD).reshape(b, l, kv, dh), positions_BxL, self.rope_theta)
    v = self.v_proj(x_BxLxD).reshape(b, l, kv, dh)
    query_slot_L = jnp.arange(l)
    if cache is not None:
      # int32 throughout, so the slice indices agree whether or not float64/int64 is enabled
      index = jnp.asarray(index, jnp.int32)
      zero = jnp.zeros((), jnp.int32)
      k_all = jax.lax.dynamic_update_slice(cache.k, k.astype(cache.k.dtype), (zero, index, zero, zero))
      v_all = jax.lax.dynamic_update_slice(cache.v, v.astype(cache.v.dtype), (zero, index, zero, zero))
      cache = LayerCache(k_all, v_all)
      query_slot_L = query_slot_L + index
      k, v = k_all.astype(q.dtype), v_all.astype(q.dtype)
    s = k.shape[1]
    # A key slot is visible to a query when it was written no later than the query.
    mask_LxS = jnp.arange(s)[None, :] <= query_slot_L[:, None]
    q_BxLxKVxGxDh = q.reshape(b, l, kv, h // kv, dh)
    scores = jnp.einsum("blkgd,bskd->bkgls", q_BxLxKVxGxDh, k,
                        preferred_element_type=jnp.float32) / jnp.sqrt(jnp.float32(dh))
    scores = jnp.where(mask_LxS, scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkgls,bskd->blkgd", probs, v).reshape(b, l, h * dh)
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

  def __call__(self, tokens_BxL: jax.Array, positions_BxL: jax.Array | None = None,
               cache: KVCache | None = None) -> tuple[jax.Array, KVCache | None]:
    """Return (float32 logits [B, L, V], updated cache or None)."""
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
    h = self.final_norm(x)
    if cfg.tie_embeddings:
      kernel_DxV = self.embed.embedding[...].T
    else:
      kernel_DxV = self.lm_head.kernel[...]
    logits = jnp.einsum("bld,dv->blv", h.astype(kernel_DxV.dtype), kernel_DxV,
                        preferred_element_type=jnp.float32)
    new_cache = None if cache is None else KVCache(tuple(new_layers), index + l)
    return logits.astype(jnp.float32), new_cache


def sequence_log_probs(logits_BxLxV: jax.Array, targets_BxL: jax.Array,
                       mask_BxL: jax.Array | None = None) -> jax.Array:
  """Per-token log q(target) in float32, zeroed where ``mask`` is False: [B, L]."""
  log_probs = jax.nn.log_softmax(logits_BxLxV.astype(jnp.float32), axis=-1)
  token_lp = jnp.take_along_axis(log_probs, targets_BxL[..., None], axis=-1)[..., 0]
  if mask_BxL is not None:
    token_lp = jnp.where(mask_BxL, token_lp, 0.0)
  return token_lp
