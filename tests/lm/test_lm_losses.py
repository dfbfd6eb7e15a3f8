"""Exact values and limits of every objective, at hand-computed log-ratios."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from recall_theory.errors import InputError
from recall_theory.lm import losses
from recall_theory.lm.model import ModelConfig, Transformer

V = 5
CFG = ModelConfig(vocab_size=V, d_model=8, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=8,
                  max_seq_len=8)


def _uniform_model():
  """All-zero weights: every next-token distribution is uniform, log q = -log V exactly."""
  m = Transformer(CFG, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(m)
  return nnx.merge(graphdef, jax.tree.map(jnp.zeros_like, state))


def _jit_loss(loss_fn):
  """loss_fn(model, batch) compiled once, the model's state a jit argument."""
  @jax.jit
  def f(state, batch):
    return loss_fn(nnx.merge(graphdef, state), batch)

  def call(model, batch):
    return f(nnx.state(model), batch)

  graphdef = nnx.graphdef(_uniform_model())
  return call


def _sig(x):
  return 1 / (1 + math.exp(-x))


def test_dpo_exact_values_and_limits():
  # h = (pc - rc) - (pr - rr) = (-1 - -2) - (-3 - -2) = 2
  val = float(losses.dpo_loss(-1.0, -3.0, -2.0, -2.0, 0.5))
  assert val == pytest.approx(-math.log(_sig(1.0)), rel=1e-6)
  assert float(losses.dpo_loss(-1.0, -1.0, -1.0, -1.0, 0.3)) == pytest.approx(math.log(2))
  # beta h -> +inf: loss -> 0; -> -inf: loss ~ -beta h (linear, no overflow)
  assert float(losses.dpo_loss(0.0, -1e4, 0.0, 0.0, 1.0)) == pytest.approx(0.0, abs=1e-30)
  assert float(losses.dpo_loss(-1e4, 0.0, 0.0, 0.0, 1.0)) == pytest.approx(1e4, rel=1e-6)
  # gradient with respect to the chosen log-prob: -beta sigmoid(-beta h)
  g = jax.grad(lambda pc: losses.dpo_loss(pc, -3.0, -2.0, -2.0, 0.5))(-1.0)
  assert float(g) == pytest.approx(-0.5 * _sig(-1.0), rel=1e-6)


def test_ipo_exact_values():
  # minimum (0) at h = 1/(2 beta); quadratic around it
  assert float(losses.ipo_loss(1.0, 0.0, 0.0, 0.0, 0.5)) == pytest.approx(0.0)
  assert float(losses.ipo_loss(3.0, 0.0, 0.0, 0.0, 0.5)) == pytest.approx(4.0)
  assert float(losses.ipo_loss(0.0, 0.0, 0.0, 0.0, 0.25)) == pytest.approx(4.0)


def test_simpo_exact_values():
  val = float(losses.simpo_loss(-1.0, -2.0, 2.0, 0.5))  # 2 * 1 - 0.5 = 1.5
  assert val == pytest.approx(-math.log(_sig(1.5)), rel=1e-6)
  assert float(losses.simpo_loss(-1.0, -1.0, 2.0, 0.0)) == pytest.approx(math.log(2))


def test_rloo_advantages_leave_one_out():
  s = jnp.array([1.0, 2.0, 3.0, 6.0, 0.0, 0.0, 0.0, 4.0])
  adv = np.asarray(losses.rloo_advantages(s, 4))
  np.testing.assert_allclose(adv[:4], [1 - 11 / 3, 2 - 10 / 3, 3 - 9 / 3, 6 - 6 / 3], rtol=1e-6)
  np.testing.assert_allclose(adv[4:], [-4 / 3, -4 / 3, -4 / 3, 4.0], rtol=1e-6)
  # equal scores -> zero advantages; advantages sum to zero within a group (unbiased baseline)
  assert np.allclose(losses.rloo_advantages(jnp.ones(6), 3), 0.0)
  np.testing.assert_allclose(adv.reshape(2, 4).sum(-1), 0.0, atol=1e-6)


def test_token_divergences_two_point():
  p = jnp.log(jnp.array([[0.5, 0.5]]))
  q = jnp.log(jnp.array([[0.9, 0.1]]))
  fkl = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
  rkl = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
  assert float(losses.token_divergence(p, q, "forward_kl")[0]) == pytest.approx(fkl, rel=1e-5)
  assert float(losses.token_divergence(p, q, "reverse_kl")[0]) == pytest.approx(rkl, rel=1e-5)
  # M = (p + q)/2 = [0.7, 0.3]
  jsd = 0.5 * (0.5 * math.log(0.5 / 0.7) + 0.5 * math.log(0.5 / 0.3)) + \
      0.5 * (0.9 * math.log(0.9 / 0.7) + 0.1 * math.log(0.1 / 0.3))
  assert float(losses.token_divergence(p, q, "jsd", 0.5)[0]) == pytest.approx(jsd, rel=1e-5)
  assert float(losses.token_divergence(p, p, "jsd", 0.3)[0]) == pytest.approx(0.0, abs=1e-7)
  # generalized JSD / beta -> forward KL as beta -> 0
  small = float(losses.token_divergence(p, q, "jsd", 1e-4)[0]) / 1e-4
  assert small == pytest.approx(fkl, rel=1e-2)


def test_model_losses_on_uniform_model():
  """With log q = -log V per token, every loss has a closed form."""
  model = _uniform_model()
  tokens = jnp.array([[0, 1, 2, 3], [0, 4, 4, 1]])  # prompt_len 1, T = 3
  log_v = math.log(V)
  loss, aux = _jit_loss(losses.make_mle_loss(1))(model, {"tokens": tokens})
  assert float(loss) == pytest.approx(log_v, rel=1e-6)
  # DPO: policy log-probs are -3 log V for both; refs chosen -2, rejected -4 -> h = -2
  batch = {"chosen": tokens, "rejected": tokens[::-1], "ref_chosen": jnp.array([-2.0, -2.0]),
           "ref_rejected": jnp.array([-4.0, -4.0])}
  loss, aux = _jit_loss(losses.make_dpo_loss(1, beta=0.5))(model, batch)
  assert float(loss) == pytest.approx(-math.log(_sig(-1.0)), rel=1e-5)
  assert float(aux["margin"]) == pytest.approx(-1.0, rel=1e-5)
  loss, _ = _jit_loss(losses.make_dpo_loss(1, beta=0.5, variant="ipo"))(model, batch)
  assert float(loss) == pytest.approx((-2.0 - 1.0) ** 2, rel=1e-5)
  loss, _ = _jit_loss(losses.make_simpo_loss(1, beta=2.0, gamma=0.5))(model, batch)
  assert float(loss) == pytest.approx(-math.log(_sig(-0.5)), rel=1e-5)
  # token KD against a teacher whose tempered distribution is known
  t_logits = jnp.log(jnp.array([0.4, 0.3, 0.1, 0.1, 0.1]))
  batch = {"tokens": tokens, "teacher_logits": jnp.broadcast_to(t_logits, (2, 3, V))}
  p = np.array([0.4, 0.3, 0.1, 0.1, 0.1])
  loss, _ = _jit_loss(losses.make_token_kd_loss(1, "forward_kl"))(model, batch)
  assert float(loss) == pytest.approx(float(np.sum(p * np.log(p * V))), rel=1e-5)
  loss, _ = _jit_loss(losses.make_token_kd_loss(1, "reverse_kl"))(model, batch)
  assert float(loss) == pytest.approx(float(np.sum(np.log(1 / (V * p)) / V)), rel=1e-5)
  p_half = p ** 2 / np.sum(p ** 2)  # temperature 1/2 sharpens the teacher
  loss, _ = _jit_loss(losses.make_token_kd_loss(1, "forward_kl", temperature=0.5))(model, batch)
  assert float(loss) == pytest.approx(float(np.sum(p_half * np.log(p_half * V))), rel=1e-5)
  # RLOO: rewards [1, 0] in one group, ref = policy -> advantages [1, -1], loss = -mean(A logp) = 0
  batch = {"tokens": tokens, "reward": jnp.array([1.0, 0.0]),
           "ref_logp": jnp.full((2,), -3 * log_v)}
  loss, aux = _jit_loss(losses.make_rloo_loss(1, beta=0.1, group_size=2))(model, batch)
  assert float(loss) == pytest.approx(0.0, abs=1e-5)
  assert float(aux["kl"]) == pytest.approx(0.0, abs=1e-5)
  # ref log-prob lower by 1 on row 0: s = [1 - 0.1, 0] -> A = [0.9, -0.9]
  batch["ref_logp"] = jnp.array([-3 * log_v - 1.0, -3 * log_v])
  loss, aux = _jit_loss(losses.make_rloo_loss(1, beta=0.1, group_size=2))(model, batch)
  assert float(loss) == pytest.approx(-0.5 * (0.9 - 0.9) * 3 * -log_v, abs=1e-5)
  assert float(aux["kl"]) == pytest.approx(0.5, rel=1e-5)


def test_rloo_gradient_direction():
  """One gradient step raises log pi of the rewarded sample and lowers the other."""
  model = Transformer(CFG, rngs=nnx.Rngs(1))
  tokens = jnp.array([[0, 1, 2, 3], [0, 4, 4, 1]])
  graphdef, state = nnx.split(model)
  before = losses.sequence_log_prob(model, tokens, 1)
  batch = {"tokens": tokens, "reward": jnp.array([1.0, 0.0]), "ref_logp": before}
  loss_fn = losses.make_rloo_loss(1, beta=0.1, group_size=2)

  def f(s):
    return loss_fn(nnx.merge(graphdef, s), batch)[0]

  grads = jax.jit(jax.grad(f))(state)
  new = jax.tree.map(lambda a, g: a - 0.05 * g, state, grads)
  after = losses.sequence_log_prob(nnx.merge(graphdef, new), tokens, 1)
  assert float(after[0]) > float(before[0])
  assert float(after[1]) < float(before[1])


@pytest.mark.parametrize("call, word", [
    (lambda: losses.make_dpo_loss(1, beta=0.0), "beta"),
    (lambda: losses.make_dpo_loss(1, beta=0.1, variant="kto"), "variant"),
    (lambda: losses.make_token_kd_loss(1, "tv"), "kd divergence"),
    (lambda: losses.make_token_kd_loss(1, "jsd", beta=1.0), "jsd beta"),
    (lambda: losses.make_rloo_loss(1, beta=0.1, group_size=1), "group_size"),
    (lambda: losses.make_mle_loss(0), "prompt_len"),
])
def test_bad_loss_arguments(call, word):
  with pytest.raises(InputError, match=word):
    call()
