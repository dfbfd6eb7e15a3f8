"""Objectives as loss factories: ``make_*_loss(...) -> loss_fn(model, batch) -> (loss, aux)``.

Every factory returns a function of an NNX model and a batch dict, so one jitted train
step (:mod:`recall_theory.lm.train`) serves them all. Sequences are ``tokens_BxL`` with a
prompt of ``prompt_len`` tokens; only the ``T = L - prompt_len`` continuation tokens are
scored. Log-probabilities are float32 (the model's logits are float32 before
``log_softmax``). Each factory's pure core (on log-probabilities) is exposed for exact
tests.

=====================  ==============================================================
factory                loss (per batch mean)
=====================  ==============================================================
make_mle_loss          -1/T sum_t log q(x_t | x_<t)  (also sequence-level KD on
                       teacher samples drawn at temperature tau)
make_token_kd_loss     1/T sum_t D(p_teacher^tau(.|x_<t), q(.|x_<t)), D in
                       forward_kl = KL(p||q), reverse_kl = KL(q||p), jsd(beta)
make_dpo_loss          DPO: -log sigmoid(beta h); IPO: (h - 1/(2 beta))^2, with
                       h = [log pi(y_w) - log ref(y_w)] - [log pi(y_l) - log ref(y_l)]
make_simpo_loss        -log sigmoid(beta/|y_w| log pi(y_w) - beta/|y_l| log pi(y_l) - gamma)
make_rloo_loss         -mean_i A_i log pi(y_i),  A_i = s_i - mean_{j != i in group} s_j,
                       s_i = R(y_i) - beta [log pi(y_i) - log ref(y_i)]  (KL in the reward)
=====================  ==============================================================

References: Rafailov et al. 2023 (DPO); Azar et al. 2023 (IPO); Meng et al. 2024
(SimPO); Ahmadian et al. 2024 (RLOO); Kim & Rush 2016 (sequence-level KD); Agarwal et
al. 2024 (generalized JSD distillation).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from recall_theory import divergences
from recall_theory.errors import InputError, check_positive

LossFn = Callable[..., tuple[jax.Array, dict]]
KD_DIVERGENCES = ("forward_kl", "reverse_kl", "jsd")


# -- shared pieces ---------------------------------------------------------------------
def continuation_log_probs(model, tokens_BxL: jax.Array, prompt_len: int):
  """(log q(x_t | x_<t) for the T continuation tokens [B, T], full log-probs [B, T, V])."""
  logits_BxLxV, _ = model(tokens_BxL[:, :-1])
  log_q_BxTxV = jax.nn.log_softmax(logits_BxLxV[:, prompt_len - 1:].astype(jnp.float32), -1)
  targets_BxT = tokens_BxL[:, prompt_len:]
  token_lp = jnp.take_along_axis(log_q_BxTxV, targets_BxT[..., None], axis=-1)[..., 0]
  return token_lp, log_q_BxTxV


def sequence_log_prob(model, tokens_BxL: jax.Array, prompt_len: int) -> jax.Array:
  """log q(x_{P+1..L} | prompt): [B]."""
  return continuation_log_probs(model, tokens_BxL, prompt_len)[0].sum(-1)


# -- pure cores (exact-value tests target these) ----------------------------------------
def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
  """-log sigmoid(beta h) per pair (sequence log-probs in, [B] out)."""
  h = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
  return -jax.nn.log_sigmoid(beta * h)


def ipo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
  """(h - 1/(2 beta))^2 per pair (Azar et al.'s tau is our beta)."""
  h = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
  return (h - 1.0 / (2.0 * beta)) ** 2


def simpo_loss(avg_chosen, avg_rejected, beta, gamma):
  """-log sigmoid(beta (avg log pi(y_w) - avg log pi(y_l)) - gamma), length-normalised."""
  return -jax.nn.log_sigmoid(beta * (avg_chosen - avg_rejected) - gamma)


def rloo_advantages(scores_B: jax.Array, group_size: int) -> jax.Array:
  """Leave-one-out baseline within consecutive groups: s_i - mean_{j != i} s_j."""
  groups = scores_B.reshape(-1, group_size)
  loo_mean = (groups.sum(-1, keepdims=True) - groups) / (group_size - 1)
  return (groups - loo_mean).reshape(-1)


def token_divergence(log_teacher_BxTxV, log_student_BxTxV, kind: str, beta: float = 0.5):
  """Per-token divergence [B, T] between teacher p and student q (directions fixed)."""
  if kind == "forward_kl":
    return divergences.forward_kl(log_teacher_BxTxV, log_student_BxTxV)
  if kind == "reverse_kl":
    return divergences.reverse_kl(log_teacher_BxTxV, log_student_BxTxV)
  if kind == "jsd":
    return divergences.jsd(log_teacher_BxTxV, log_student_BxTxV, beta)
  raise InputError(f"kd divergence must be one of {KD_DIVERGENCES}, got {kind!r}")


# -- factories ---------------------------------------------------------------------------
def _check_prompt_len(prompt_len):
  if isinstance(prompt_len, bool) or not isinstance(prompt_len, int) or prompt_len < 1:
    raise InputError(f"prompt_len must be a positive integer, got {prompt_len!r}")


def make_mle_loss(prompt_len: int) -> LossFn:
  """Mean next-token negative log-likelihood. batch: {"tokens": int [B, L]}."""
  _check_prompt_len(prompt_len)

  def loss_fn(model, batch):
    token_lp, _ = continuation_log_probs(model, batch["tokens"], prompt_len)
    nll = -jnp.mean(token_lp)
    return nll, {"nll": nll}

  return loss_fn


make_sequence_kd_loss = make_mle_loss  # sequence-level KD = MLE on teacher samples at tau


def make_token_kd_loss(prompt_len: int, divergence: str = "forward_kl", beta: float = 0.5,
                       temperature: float = 1.0) -> LossFn:
  """Token-level KD on precomputed teacher logits.

  batch: {"tokens": int [B, L], "teacher_logits": float [B, T, V]} (the teacher's logits
  predicting the T continuation tokens). The target at each position is the teacher's
  tempered distribution softmax(logits / temperature): temperature < 1 is the
  low-recall, high-precision target (no temperature^2 rescaling: the student is not
  tempered, it is fitted to the tempered teacher).
  """
  _check_prompt_len(prompt_len)
  if divergence not in KD_DIVERGENCES:
    raise InputError(f"kd divergence must be one of {KD_DIVERGENCES}, got {divergence!r}")
  check_positive("temperature", temperature)
  if divergence == "jsd" and not 0.0 < beta < 1.0:
    raise InputError(f"jsd beta must lie in (0, 1), got {beta}")

  def loss_fn(model, batch):
    _, log_q = continuation_log_probs(model, batch["tokens"], prompt_len)
    log_p = jax.nn.log_softmax(batch["teacher_logits"].astype(jnp.float32) / temperature, -1)
    div = jnp.mean(token_divergence(log_p, log_q, divergence, beta))
    return div, {divergence: div}

  return loss_fn


def make_dpo_loss(prompt_len: int, beta: float, variant: str = "dpo") -> LossFn:
  """DPO or IPO on preference pairs with precomputed reference log-probs.

  batch: {"chosen": int [B, L], "rejected": int [B, L], "ref_chosen": [B],
  "ref_rejected": [B]} (reference sequence log-probs, computed once before training).
  """
  _check_prompt_len(prompt_len)
  check_positive("beta", beta)
  if variant not in ("dpo", "ipo"):
    raise InputError(f"preference loss variant must be 'dpo' or 'ipo', got {variant!r}")
  core = dpo_loss if variant == "dpo" else ipo_loss

  def loss_fn(model, batch):
    b = batch["chosen"].shape[0]
    both = jnp.concatenate([batch["chosen"], batch["rejected"]], axis=0)
    logp = sequence_log_prob(model, both, prompt_len)
    pc, pr = logp[:b], logp[b:]
    losses = core(pc, pr, batch["ref_chosen"], batch["ref_rejected"], beta)
    reward_c = beta * (pc - batch["ref_chosen"])
    reward_r = beta * (pr - batch["ref_rejected"])
    aux = {"margin": jnp.mean(reward_c - reward_r), "accuracy": jnp.mean(reward_c > reward_r),
           "logp_chosen": jnp.mean(pc), "logp_rejected": jnp.mean(pr)}
    return jnp.mean(losses), aux

  return loss_fn


def make_simpo_loss(prompt_len: int, beta: float, gamma: float = 0.5) -> LossFn:
  """SimPO: reference-free, length-normalised. batch: {"chosen", "rejected"}."""
  _check_prompt_len(prompt_len)
  check_positive("beta", beta)

  def loss_fn(model, batch):
    b = batch["chosen"].shape[0]
    both = jnp.concatenate([batch["chosen"], batch["rejected"]], axis=0)
    token_lp, _ = continuation_log_probs(model, both, prompt_len)
    avg = token_lp.mean(-1)
    losses = simpo_loss(avg[:b], avg[b:], beta, gamma)
    return jnp.mean(losses), {"avg_logp_chosen": jnp.mean(avg[:b]),
                              "avg_logp_rejected": jnp.mean(avg[b:])}

  return loss_fn


def make_rloo_loss(prompt_len: int, beta: float, group_size: int) -> LossFn:
  """Online REINFORCE with a leave-one-out baseline and the KL in the reward.

  batch: {"tokens": int [B, L] sampled from the current policy in groups of
  ``group_size`` consecutive rows, "reward": [B] oracle rewards, "ref_logp": [B]
  reference sequence log-probs}. The shaped score s = R - beta (log pi - log ref) uses
  the policy's log-prob without gradient (its gradient flows through the
  score-function term only), so the expected gradient is that of
  E_pi[R] - beta KL(pi || ref).
  """
  _check_prompt_len(prompt_len)
  check_positive("beta", beta)
  if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 2:
    raise InputError(f"rloo group_size must be an integer >= 2, got {group_size!r}")

  def loss_fn(model, batch):
    logp = sequence_log_prob(model, batch["tokens"], prompt_len)
    kl_sample = jax.lax.stop_gradient(logp) - batch["ref_logp"]
    scores = batch["reward"] - beta * kl_sample
    adv = jax.lax.stop_gradient(rloo_advantages(scores, group_size))
    loss = -jnp.mean(adv * logp)
    return loss, {"reward": jnp.mean(batch["reward"]), "kl": jnp.mean(kl_sample)}

  return loss_fn
