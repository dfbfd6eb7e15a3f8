"""Model and sampling: Llama semantics, causality, cache == full forward, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from recall_theory.errors import InputError
from recall_theory.lm.model import ModelConfig, Transformer, init_cache
from recall_theory.lm.sampling import filter_logits, generate

CFG = ModelConfig(vocab_size=17, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=48,
                  max_seq_len=24)


@pytest.fixture(scope="module")
def model():
  return Transformer(CFG, rngs=nnx.Rngs(0))


def _numpy_llama(model, tokens):
  """Independent float64 numpy forward written from the Hugging Face Llama definition."""
  p = jax.tree.map(lambda x: np.asarray(x, np.float64), nnx.to_pure_dict(nnx.state(model)))
  cfg = model.config
  dh = cfg.resolved_head_dim
  x = p["embed"]["embedding"][tokens]  # [B, L, D]
  b, l, _ = x.shape
  pos = np.arange(l)
  inv = cfg.rope_theta ** (-np.arange(0, dh, 2) / dh)
  ang = pos[:, None] * inv[None, :]
  cos = np.concatenate([np.cos(ang)] * 2, -1)
  sin = np.concatenate([np.sin(ang)] * 2, -1)

  def rot_half(v):
    return np.concatenate([-v[..., dh // 2:], v[..., : dh // 2]], -1)

  def rms(v, s):
    return v / np.sqrt((v ** 2).mean(-1, keepdims=True) + cfg.rms_eps) * s

  for i in range(cfg.n_layers):
    lp = p["layers"][i]
    h = rms(x, lp["attn_norm"]["scale"])
    q = (h @ lp["attn"]["q_proj"]["kernel"]).reshape(b, l, cfg.n_heads, dh).transpose(0, 2, 1, 3)
    k = (h @ lp["attn"]["k_proj"]["kernel"]).reshape(b, l, cfg.n_kv_heads, dh).transpose(0, 2, 1, 3)
    v = (h @ lp["attn"]["v_proj"]["kernel"]).reshape(b, l, cfg.n_kv_heads, dh).transpose(0, 2, 1, 3)
    q = q * cos + rot_half(q) * sin
    k = k * cos + rot_half(k) * sin
    rep = cfg.n_heads // cfg.n_kv_heads
    k = np.repeat(k, rep, axis=1)  # HF repeat_kv: head j uses kv head j // rep
    v = np.repeat(v, rep, axis=1)
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh)
    s = np.where(np.tril(np.ones((l, l), bool)), s, -np.inf)
    a = np.exp(s - s.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    o = (a @ v).transpose(0, 2, 1, 3).reshape(b, l, -1)
    x = x + o @ lp["attn"]["o_proj"]["kernel"]
    h = rms(x, lp["mlp_norm"]["scale"])
    g = h @ lp["mlp"]["gate_proj"]["kernel"]
    x = x + ((g / (1 + np.exp(-g))) * (h @ lp["mlp"]["up_proj"]["kernel"])) @ lp["mlp"]["down_proj"]["kernel"]
  h = rms(x, p["final_norm"]["scale"])
  return h @ p["embed"]["embedding"].T


def test_forward_matches_independent_numpy_llama():
  m = Transformer(CFG, rngs=nnx.Rngs(3))
  rng = np.random.default_rng(0)
  for blk in m.layers:  # random norm scales, so "scale" vs "1 + scale" would show
    blk.attn_norm.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, CFG.d_model), jnp.float32)
    blk.mlp_norm.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, CFG.d_model), jnp.float32)
  tokens = jnp.asarray(rng.integers(0, CFG.vocab_size, (2, 9)))
  # float64 reference: ask for full float32 matmuls (GPUs default to TF32/bf16 passes)
  with jax.default_matmul_precision("highest"):
    logits, cache = m(tokens)
  assert cache is None and logits.dtype == jnp.float32 and logits.shape == (2, 9, CFG.vocab_size)
  np.testing.assert_allclose(np.asarray(logits), _numpy_llama(m, np.asarray(tokens)),
                             atol=2e-5, rtol=1e-4)


def test_parameter_layout_matches_contract(model):
  shapes = jax.tree.map(jnp.shape, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
  d, h, kv, dh, f, v = 32, 4, 2, 8, 48, 17
  assert shapes["embed"]["embedding"] == (v, d)
  layer = shapes["layers"][1]
  assert layer["attn"]["q_proj"]["kernel"] == (d, h * dh)
  assert layer["attn"]["k_proj"]["kernel"] == (d, kv * dh)
  assert layer["attn"]["v_proj"]["kernel"] == (d, kv * dh)
  assert layer["attn"]["o_proj"]["kernel"] == (h * dh, d)
  assert layer["mlp"]["gate_proj"]["kernel"] == (d, f)
  assert layer["mlp"]["down_proj"]["kernel"] == (f, d)
  assert layer["attn_norm"]["scale"] == (d,) and shapes["final_norm"]["scale"] == (d,)
  assert "lm_head" not in shapes
  untied = Transformer(ModelConfig(**{**CFG.__dict__, "tie_embeddings": False}), rngs=nnx.Rngs(0))
  assert nnx.state(untied, nnx.Param)["lm_head"]["kernel"].shape == (d, v)
  n = sum(x.size for x in jax.tree.leaves(nnx.state(untied, nnx.Param)))
  assert n == untied.config.param_count()


def test_causality_gradient(model):
  """d logits[t] / d inputs[s] is non-zero for s <= t and exactly zero for s > t."""
  tokens = jnp.arange(10)[None] % CFG.vocab_size
  emb = model.embed(tokens)

  def out_at(emb_in, t):
    # Run the blocks on given embeddings to differentiate with respect to inputs.
    x = emb_in
    pos = jnp.arange(10)[None]
    for blk in model.layers:
      x, _ = blk(x, pos, None, 0)
    return jnp.sum(jax.lax.dynamic_index_in_dim(model.final_norm(x)[0], t, keepdims=False))

  grad_at = jax.jit(jax.grad(out_at))  # t is traced: one compilation for every position
  for t in (0, 4, 9):
    g = grad_at(emb, t)[0]
    norms = np.asarray(jnp.linalg.norm(g, axis=-1))
    assert (norms[: t + 1] > 0).all()
    assert (norms[t + 1:] == 0).all()


def test_cache_equals_full_forward(model):
  tokens = jax.random.randint(jax.random.key(1), (3, 12), 0, CFG.vocab_size)
  graphdef, state = nnx.split(model)

  @jax.jit
  def call(state, toks, cache):
    return nnx.merge(graphdef, state)(toks, cache=cache)

  full, _ = call(state, tokens, None)
  cache = init_cache(CFG, 3, 16)
  first, cache = call(state, tokens[:, :5], cache)
  pieces = [first]
  for t in range(5, 12):  # one compiled single-token step, reused
    step, cache = call(state, tokens[:, t:t + 1], cache)
    pieces.append(step)
  assert int(cache.index) == 12
  np.testing.assert_allclose(np.asarray(jnp.concatenate(pieces, 1)), np.asarray(full), atol=1e-5)


def test_sampling_cache_equals_recompute(model):
  prompt = jnp.array([[1, 2], [3, 4]])
  for kwargs in ({"temperature": 0.0}, {"temperature": 1.0, "top_p": 0.9}):
    a = generate(model, prompt, jax.random.key(5), max_new_tokens=8, **kwargs)
    b = generate(model, prompt, jax.random.key(5), max_new_tokens=8, use_cache=False, **kwargs)
    assert a.shape == (2, 8)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_eos_sticks(model):
  out = np.asarray(generate(model, jnp.zeros((16, 1), jnp.int32), jax.random.key(0),
                            max_new_tokens=20, temperature=2.0, eos_id=3))
  for row in out:
    hits = np.flatnonzero(row == 3)
    if hits.size:
      assert (row[hits[0]:] == 3).all()
  assert (out == 3).any()


def test_filter_logits_top_p_and_greedy():
  logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
  kept = np.exp(np.asarray(filter_logits(logits, 1.0, 0.75)))
  np.testing.assert_allclose(kept, [[0.625, 0.375, 0.0, 0.0]], atol=1e-6)
  kept = np.exp(np.asarray(filter_logits(logits, 1.0, 0.8)))  # mass above token 3 is 0.8
  np.testing.assert_allclose(kept, [[0.625, 0.375, 0.0, 0.0]], atol=1e-6)
  kept = np.exp(np.asarray(filter_logits(logits, 1.0, 0.81)))
  np.testing.assert_allclose(kept, [[0.5, 0.3, 0.15, 0.0]] / np.float32(0.95), atol=1e-6)
  np.testing.assert_allclose(np.exp(np.asarray(filter_logits(logits, 0.0, 1.0))), [[1, 0, 0, 0]])
  # temperature 2 flattens: p^(1/2) normalised
  want = np.sqrt([0.5, 0.3, 0.15, 0.05])
  np.testing.assert_allclose(np.exp(np.asarray(filter_logits(logits, 2.0, 1.0)))[0],
                             want / want.sum(), atol=1e-6)


@pytest.mark.parametrize("changes, word", [
    ({"n_heads": 5}, "n_heads=5 must divide d_model"),
    ({"n_kv_heads": 3}, "n_kv_heads=3 must divide"),
    ({"d_model": 0}, "d_model"),
    ({"dtype": "float8"}, "dtype"),
])
def test_bad_config(changes, word):
  with pytest.raises(InputError, match=word):
    ModelConfig(**{**CFG.__dict__, **changes}).validate()


def test_too_long_inputs(model):
  with pytest.raises(InputError, match="max_seq_len"):
    model(jnp.zeros((1, CFG.max_seq_len + 1), jnp.int32))
  with pytest.raises(InputError, match="max_seq_len"):
    generate(model, jnp.zeros((1, 20), jnp.int32), jax.random.key(0), max_new_tokens=5)
  with pytest.raises(InputError, match="top_p"):
    generate(model, jnp.zeros((1, 2), jnp.int32), jax.random.key(0), max_new_tokens=2, top_p=1.5)


def test_enable_deterministic_sets_xla_flags_before_the_backend_starts():
  """Before the backend starts the flag lands in XLA_FLAGS; on a running CPU backend: False."""
  import subprocess, sys, textwrap
  script = textwrap.dedent("""
      import os
      os.environ["XLA_FLAGS"] = "--xla_gpu_deterministic_ops=false"
      from recall_theory.lm import train
      assert not train.deterministic_enabled()
      assert train.enable_deterministic() is True        # backend not started yet
      assert os.environ["XLA_FLAGS"].endswith("--xla_gpu_deterministic_ops=true")
      assert train.enable_deterministic() is True        # idempotent, flag not doubled
      assert os.environ["XLA_FLAGS"].count("xla_gpu_deterministic_ops=true") == 1
      assert train.deterministic_enabled()
      import jax, jax.numpy as jnp
      jnp.ones(2).block_until_ready()
      assert train.enable_deterministic() is False       # CPU backend already running
      print("ok")
  """)
  proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                        timeout=120, env={**__import__("os").environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


def test_deterministic_mode_refused_on_a_running_gpu_backend():
  """The per-compilation route crashed on a GPU: a started GPU backend without the flag is refused."""
  from recall_theory.lm.train import DETERMINISTIC_FLAG, deterministic_refusal
  why = deterministic_refusal(True, "gpu", "--xla_force_host_platform_device_count=2")
  assert why is not None and "\n" not in why and f"XLA_FLAGS={DETERMINISTIC_FLAG}" in why
  assert deterministic_refusal(True, "gpu", "--xla_gpu_deterministic_ops=false") is not None
  assert deterministic_refusal(True, "gpu", DETERMINISTIC_FLAG) is None   # set before start
  assert deterministic_refusal(False, None, "") is None                   # not started yet
  assert deterministic_refusal(True, "cpu", "") is None                   # deterministic anyway
