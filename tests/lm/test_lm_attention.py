"""Attention through jax.nn.dot_product_attention equals the explicit einsum reference.

Covered: grouped-query heads (H / KV = 3 and 1), the causal mask, key-value-cache decoding
at an offset, float32 and bfloat16, gradients, the whole model and the chunked loss head.
cuDNN only exists on GPUs: there `implementation="auto"` takes it for bfloat16 and the
same comparisons run against it; on CPU "cudnn" must refuse with a clear error.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from recall_theory.errors import InputError
from recall_theory.lm.model import (ModelConfig, Transformer, attend, chunked_target_log_probs,
                                    cudnn_supported, init_cache, resolve_attention)

ON_GPU = jax.default_backend() == "gpu"
IMPLS = ["xla", "auto"] + (["cudnn"] if ON_GPU else [])
TOL = {jnp.float32: 2e-5, jnp.bfloat16: 2e-2}


def _qkv(key, b, l, s, h, kv, dh, dtype):
  kq, kk, kv_ = jax.random.split(key, 3)
  q = jax.random.normal(kq, (b, l, h, dh), jnp.float32).astype(dtype)
  k = jax.random.normal(kk, (b, s, kv, dh), jnp.float32).astype(dtype)
  v = jax.random.normal(kv_, (b, s, kv, dh), jnp.float32).astype(dtype)
  return q, k, v


def _numpy_attention(q, k, v, query_slot):
  """float64 reference: HF repeat_kv, causal by slot."""
  q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
  rep = q.shape[2] // k.shape[2]
  k, v = np.repeat(k, rep, axis=2), np.repeat(v, rep, axis=2)
  s = np.einsum("blhd,bshd->bhls", q, k) / np.sqrt(q.shape[-1])
  visible = np.arange(k.shape[1])[None, :] <= np.asarray(query_slot)[:, None]
  s = np.where(visible, s, -np.inf)
  a = np.exp(s - s.max(-1, keepdims=True))
  a /= a.sum(-1, keepdims=True)
  return np.einsum("bhls,bshd->blhd", a, v)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("h, kv", [(6, 2), (4, 4), (3, 1)])
@pytest.mark.parametrize("impl", IMPLS)
def test_causal_attention_matches_einsum_and_float64(dtype, h, kv, impl):
  if impl == "cudnn" and dtype == jnp.float32:
    pytest.skip("cuDNN flash attention takes bfloat16/float16 only (float32 is refused)")
  q, k, v = _qkv(jax.random.key(h * 10 + kv), 2, 16, 16, h, kv, 16, dtype)
  with jax.default_matmul_precision("highest"):
    ref = attend(q, k, v, implementation="einsum")
    out = attend(q, k, v, implementation=impl)
  assert out.shape == q.shape and out.dtype == q.dtype
  tol = TOL[dtype]
  np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref, np.float32),
                             atol=tol, rtol=tol)
  if dtype == jnp.float32:
    np.testing.assert_allclose(np.asarray(out), _numpy_attention(q, k, v, np.arange(16)),
                               atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("impl", IMPLS)
def test_decode_offset_mask_matches_reference(impl):
  """Queries at slots 5..7 of a 12-slot buffer see slots <= their own, never later ones."""
  dtype = jnp.bfloat16 if impl == "cudnn" else jnp.float32  # cuDNN: 16-bit only
  tol = TOL[dtype]
  q, k, v = _qkv(jax.random.key(3), 2, 3, 12, 6, 2, 8, dtype)
  slots = jnp.arange(3, dtype=jnp.int32) + 5
  with jax.default_matmul_precision("highest"):
    out = attend(q, k, v, slots, implementation=impl)
    ref = attend(q, k, v, slots, implementation="einsum")
  np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref, np.float32),
                             atol=tol, rtol=tol)
  np.testing.assert_allclose(np.asarray(out, np.float32), _numpy_attention(q, k, v, slots),
                             atol=max(tol, 2e-5), rtol=max(tol, 1e-4))
  # keys after the last query slot do not matter at all
  k2 = k.at[:, 8:].set(100)
  v2 = v.at[:, 8:].set(-100)
  np.testing.assert_array_equal(np.asarray(attend(q, k2, v2, slots, implementation=impl)),
                                np.asarray(out))


@pytest.mark.parametrize("impl", IMPLS)
def test_attention_gradients_match_einsum(impl):
  dtype = jnp.bfloat16 if impl == "cudnn" else jnp.float32  # cuDNN: 16-bit only
  tol = 5e-5 if dtype == jnp.float32 else 5e-2
  q, k, v = _qkv(jax.random.key(4), 2, 10, 10, 6, 2, 8, dtype)
  weights = jax.random.normal(jax.random.key(5), q.shape)

  def loss(q, k, v, implementation):
    out = attend(q, k, v, implementation=implementation).astype(jnp.float32)
    return jnp.sum(out * weights)

  with jax.default_matmul_precision("highest"):
    g_ref = jax.grad(loss, argnums=(0, 1, 2))(q, k, v, "einsum")
    g = jax.grad(loss, argnums=(0, 1, 2))(q, k, v, impl)
  for a, b in zip(g, g_ref):
    np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), atol=tol,
                               rtol=tol)


CFG = ModelConfig(vocab_size=29, d_model=48, n_layers=2, n_heads=6, n_kv_heads=2, d_ff=64,
                  max_seq_len=20, attention="einsum")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_model_forward_and_cached_decode_match_across_paths(dtype):
  """Same weights, two attention paths: full forward and prefill + one-token decode steps."""
  impls = [i for i in IMPLS if not (i == "cudnn" and dtype == "float32")]  # cuDNN: 16-bit only
  cfgs = {impl: dataclasses.replace(CFG, attention=impl, dtype=dtype)
          for impl in ["einsum"] + impls}
  models = {impl: Transformer(c, rngs=nnx.Rngs(0)) for impl, c in cfgs.items()}
  tokens = jax.random.randint(jax.random.key(1), (2, 12), 0, CFG.vocab_size)
  tol = 1e-4 if dtype == "float32" else 6e-2
  # jitted as training and sampling run it: one program per path and input shape (the five
  # one-token decode steps share one) instead of hundreds of eagerly compiled operations
  call = nnx.jit(lambda m, tokens, cache=None: m(tokens, cache=cache))
  with jax.default_matmul_precision("highest"):
    ref, _ = call(models["einsum"], tokens)
    for impl, m in models.items():
      full, _ = call(m, tokens)
      np.testing.assert_allclose(np.asarray(full), np.asarray(ref), atol=tol, rtol=tol)
      cache = init_cache(cfgs[impl], 2, 16)
      first, cache = call(m, tokens[:, :7], cache)
      pieces = [first]
      for t in range(7, 12):
        step, cache = call(m, tokens[:, t:t + 1], cache)
        pieces.append(step)
      np.testing.assert_allclose(np.asarray(jnp.concatenate(pieces, 1)), np.asarray(ref),
                                 atol=tol, rtol=tol)


def test_chunked_log_probs_equal_dense_with_gradients():
  model = Transformer(dataclasses.replace(CFG, attention="auto"), rngs=nnx.Rngs(2))
  tokens = jax.random.randint(jax.random.key(7), (3, 13), 0, CFG.vocab_size)
  graphdef, params = nnx.split(model, nnx.Param)

  def nll(params, chunk):
    m = nnx.merge(graphdef, params)
    return -jnp.mean(m.target_log_probs(tokens[:, :-1], tokens[:, 3:], chunk_size=chunk))

  # jitted (chunk static), as the training step runs it: one program per chunk size
  # instead of hundreds of eagerly compiled operations
  log_probs = jax.jit(lambda params, chunk: nnx.merge(graphdef, params).target_log_probs(
      tokens[:, :-1], tokens[:, 3:], chunk_size=chunk), static_argnums=1)
  grad_nll = jax.jit(jax.grad(nll), static_argnums=1)
  with jax.default_matmul_precision("highest"):
    logits, _ = jax.jit(lambda params: nnx.merge(graphdef, params)(tokens[:, :-1]))(params)
    dense = jax.nn.log_softmax(logits[:, 2:], -1)
    want = jnp.take_along_axis(dense, tokens[:, 3:, None], -1)[..., 0]
    for chunk in (None, 1, 4, 5, 64):  # 10 targets: even, ragged and single chunks
      got = log_probs(params, chunk)
      assert got.shape == (3, 10) and got.dtype == jnp.float32
      np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=2e-6, rtol=1e-6)
    g_dense = grad_nll(params, None)
    g_chunk = grad_nll(params, 4)
  for a, b in zip(jax.tree.leaves(g_chunk), jax.tree.leaves(g_dense)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=1e-5)


def test_chunked_head_never_builds_full_logits():
  """The compiled chunked loss has no [B, T, V] float32 buffer; the dense one does."""
  b, t, d, v = 2, 64, 16, 512
  h = jax.random.normal(jax.random.key(0), (b, t, d))
  w = jax.random.normal(jax.random.key(1), (d, v))
  y = jax.random.randint(jax.random.key(2), (b, t), 0, v)

  def temp_bytes(chunk):
    fn = jax.jit(jax.grad(lambda h, w: chunked_target_log_probs(h, w, y, chunk_size=chunk).sum(),
                          argnums=1))
    return fn.lower(h, w).compile().memory_analysis().temp_size_in_bytes

  full_logits = b * t * v * 4
  assert temp_bytes(None) >= full_logits
  assert temp_bytes(8) < full_logits / 2


def test_cudnn_refused_without_gpu_and_auto_resolution():
  if ON_GPU:
    assert resolve_attention("auto", jnp.bfloat16, 64, cached=False) == "cudnn"
  else:
    assert not cudnn_supported(jnp.bfloat16, 64)
    with pytest.raises(InputError, match="attention='cudnn' needs a GPU"):
      resolve_attention("cudnn", jnp.bfloat16, 64, cached=False)
  assert resolve_attention("auto", jnp.float32, 64, cached=False) == "xla"  # fp32: never cuDNN
  assert resolve_attention("auto", jnp.bfloat16, 64, cached=True) == "xla"  # decode: masked XLA
  assert resolve_attention("einsum", jnp.bfloat16, 64, cached=True) == "einsum"
  with pytest.raises(InputError, match="attention must be one of"):
    dataclasses.replace(CFG, attention="flash").validate()


@pytest.mark.parametrize("chunk", [None, 16])
def test_memory_estimate_tracks_xla_count(chunk):
  """train.estimate_train_memory (used to refuse runs before compiling) is within 2x of XLA."""
  from recall_theory.lm import sharding, train
  cfg = ModelConfig(vocab_size=2048, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128,
                    max_seq_len=64, attention="xla")
  b, l = 4, 64
  mesh = sharding.make_mesh(1)
  tx = train.make_optimizer(1e-3, 10)
  graphdef, state = train.init_train_state(Transformer(cfg, rngs=nnx.Rngs(0)), tx)

  def loss_fn(model, batch):
    t = batch["tokens"]
    return -jnp.mean(model.target_log_probs(t[:, :-1], t[:, 1:], chunk_size=chunk)), {}

  step = train.make_train_step(graphdef, tx, loss_fn, mesh)
  tokens = jnp.zeros((b, l + 1), jnp.int32)
  mem = step.lower(state, {"tokens": tokens}).compile().memory_analysis()
  xla = mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes \
      - mem.alias_size_in_bytes
  est = train.estimate_train_memory(cfg, b, l, attention="xla", logits_chunk=chunk)["total"]
  assert 0.5 < est / xla < 2.0, (est, xla)


def test_bench_refuses_bad_input_before_compiling():
  """bench_lm.py: too big for memory, cuDNN without a GPU, bad numbers: one line, exit 2."""
  import os, subprocess, sys
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  script = os.path.join(root, "experiments", "bench_lm.py")
  cases = [(["--config", "smollm2-135m", "--batch", "4096"], "needs about"),
           (["--config", "smollm2-135m", "--batch", "0"], "--batch must be a positive integer")]
  if not ON_GPU:
    cases.append((["--config", "smollm2-135m", "--attention", "cudnn", "--batch", "1"],
                  "--attention cudnn needs a GPU"))
  for argv, words in cases:
    proc = subprocess.run([sys.executable, script] + argv, capture_output=True, text=True,
                          timeout=120, cwd=root)
    assert proc.returncode == 2, (argv, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], (argv, proc.stderr)
    assert "train [" not in proc.stdout  # refused before any training
