"""FLOP counts of the transformer (recall_theory.lm.cost) against a hand count and against
XLA's own count of the compiled program.

Tolerance of the XLA comparison: 3%. The formulas count matrix products and attention
only; XLA also counts element-wise work (RMSNorm, rotary, SiLU, softmax, the loss),
measured at 1.1-1.5% of the total for the model below on CPU.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from recall_theory.errors import InputError
from recall_theory.lm import cost
from recall_theory.lm.model import ModelConfig, Transformer, init_cache

XLA_TOLERANCE = 0.03

# 1-layer toy: V=16, D=8, H=2 heads of Dh=4, KV=1, F=16.
TOY = ModelConfig(vocab_size=16, d_model=8, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=16,
                  max_seq_len=8)


def test_hand_count_of_a_one_layer_toy():
  # multiply-adds per token: q 8x8 = 64, k 8x4 = 32, v 8x4 = 32, o 8x8 = 64,
  # gate/up/down 3 x 8x16 = 384, head 8x16 = 128  ->  704, so M = 1408 FLOPs.
  assert cost.matmul_flops_per_token(TOY) == 1408
  # attention over S keys: q.k (2 heads x 4 dims) and probs.v, 2 FLOPs each: 4*2*4*S = 32 S
  assert cost.attention_flops_per_token(TOY, 4) == 128
  assert cost.forward_flops_per_token(TOY, 4) == 1536
  assert cost.train_flops_per_token(TOY, 4) == 3 * 1536
  # decode at slot 5 of a 6-slot cache: executed over all 6 slots, useful over 6 = 5 + 1
  assert cost.sampling_flops_per_token(TOY, 5, cache_capacity=6) == 1408 + 32 * 6
  assert cost.sampling_flops_per_token(TOY, 2) == 1408 + 32 * 3
  # generate 4 new tokens after a 2-token prompt: 5 positions fed, each over 6 slots
  assert cost.sampling_flops(TOY, 3, prompt_len=2, new_tokens=4) == 3 * 5 * (1408 + 32 * 6)
  assert cost.reference_flops(TOY, 10, 4) == 10 * 4 * 1536
  assert cost.stage_cost(TOY, 40, "reference", seq_len=4) == 40 * 1536
  assert cost.stage_cost(TOY, 40, "forward", seq_len=4) == 40 * 1536
  assert cost.stage_cost(TOY, 40, "train", seq_len=4) == 40 * 3 * 1536
  assert cost.stage_cost(TOY, 5, "sample", seq_len=6) == 5 * (1408 + 32 * 6)
  assert cost.stage_cost(TOY, 1, "train") == 3 * (1408 + 32 * 8)  # default span: the context


def test_training_count_agrees_with_the_model_config_helper():
  cfg = ModelConfig(vocab_size=300, d_model=48, n_layers=3, n_heads=6, n_kv_heads=2, d_ff=96,
                    max_seq_len=40)
  assert cost.train_flops_per_token(cfg, 40) == pytest.approx(cfg.flops_per_token(40), rel=1e-12)


def _xla_flops(fn, *args) -> float:
  analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older jax: one dict per computation
    analysis = analysis[0]
  if not analysis or "flops" not in analysis:
    pytest.skip("this backend's compiled cost analysis has no FLOP count")
  return float(analysis["flops"])


@pytest.fixture(scope="module")
def small():
  cfg = ModelConfig(vocab_size=512, d_model=128, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=512,
                    max_seq_len=64, attention="xla")
  graphdef, state = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)))
  tokens = jax.random.randint(jax.random.key(0), (2, 64), 0, cfg.vocab_size)
  return cfg, graphdef, state, tokens


def test_forward_count_matches_xla_within_tolerance(small):
  cfg, graphdef, state, tokens = small
  counted = _xla_flops(lambda s, x: nnx.merge(graphdef, s)(x)[0], state, tokens)
  want = tokens.size * cost.forward_flops_per_token(cfg, tokens.shape[1])
  assert counted == pytest.approx(want, rel=XLA_TOLERANCE)


def test_training_count_matches_xla_within_tolerance(small):
  cfg, graphdef, state, tokens = small

  def next_token_loss(s, x):
    log_probs = jax.nn.log_softmax(nnx.merge(graphdef, s)(x)[0][:, :-1])
    return -jnp.mean(jnp.take_along_axis(log_probs, x[:, 1:, None], axis=-1))
  counted = _xla_flops(jax.grad(next_token_loss), state, tokens)
  want = tokens.size * cost.train_flops_per_token(cfg, tokens.shape[1])
  assert counted == pytest.approx(want, rel=XLA_TOLERANCE)


def test_cached_decode_step_count_matches_xla_within_tolerance(small):
  cfg, graphdef, state, tokens = small
  capacity = 48
  cache = init_cache(cfg, tokens.shape[0], capacity)
  counted = _xla_flops(lambda s, x, c: nnx.merge(graphdef, s)(x, cache=c)[0], state,
                       tokens[:, :1], cache)
  want = tokens.shape[0] * cost.sampling_flops_per_token(cfg, 0, cache_capacity=capacity)
  assert counted == pytest.approx(want, rel=XLA_TOLERANCE)
  # prefill of an 8-token prompt into the same cache: 8 positions over 48 slots
  counted = _xla_flops(lambda s, x, c: nnx.merge(graphdef, s)(x, cache=c)[0], state,
                       tokens[:, :8], cache)
  assert counted == pytest.approx(tokens.shape[0] * 8 * cost.sampling_flops_per_token(
      cfg, 7, cache_capacity=capacity), rel=XLA_TOLERANCE)


def test_bad_arguments_name_themselves():
  with pytest.raises(InputError, match="kind must be one of"):
    cost.stage_cost(TOY, 4, "distill")
  with pytest.raises(InputError, match="tokens must be a non-negative integer"):
    cost.stage_cost(TOY, -1, "train")
  with pytest.raises(InputError, match="seq_len 9 exceeds the model's max_seq_len=8"):
    cost.stage_cost(TOY, 4, "train", seq_len=9)
  with pytest.raises(InputError, match="position 6 does not fit a cache of 6 slots"):
    cost.sampling_flops_per_token(TOY, 6, cache_capacity=6)
  with pytest.raises(InputError, match="keys must be a positive integer"):
    cost.attention_flops_per_token(TOY, 0)
