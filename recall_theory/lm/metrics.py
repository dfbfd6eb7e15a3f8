"""Exact-likelihood metrics of a model q against the ground truth p*.

For samples x ~ q (temperature 1, the model's own distribution) and y ~ p*:

* reward            E_q[R(x)]                         (R from the oracle, in [0, 1])
* target_share      E_q[1{x shows the target}]        (target precision, share version)
* target_precision  E_q[log p*(x | target)] / T       (log-likelihood version; NaN if p*
                                                       has no ``target_log_prob``)
* precision         E_q[log p*(x)] / T                (overall precision, per token)
* recall            E_{p*}[log q(y)] / T              (overall recall, per token)
* kl_ref            E_q[log q(x) - log ref(x)]        (sequence KL(q || ref), nats)

Every log-likelihood is exact; only the expectations are Monte Carlo averages over
``n`` samples (the same p* samples for every model, so recall differences are paired).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from recall_theory.lm.losses import sequence_log_prob
from recall_theory.lm.sampling import generate

METRIC_NAMES = ("reward", "target_share", "target_precision", "precision", "recall", "kl_ref")


@functools.partial(jax.jit, static_argnames=("graphdef", "prompt_len"))
def _seq_logp(graphdef, state, tokens, prompt_len):
  return sequence_log_prob(nnx.merge(graphdef, state), tokens, prompt_len)


def model_log_prob(model, tokens_NxL, prompt_len: int, chunk: int = 1024) -> np.ndarray:
  """log q(continuation | prompt) for many sequences, in chunks: float32 [N]."""
  graphdef, state = nnx.split(model)
  tokens_NxL = jnp.asarray(tokens_NxL)
  out = [_seq_logp(graphdef, state, tokens_NxL[i:i + chunk], prompt_len)
         for i in range(0, tokens_NxL.shape[0], chunk)]
  return np.asarray(jnp.concatenate(out))


def sample_model(model, groundtruth, key, n: int, *, temperature: float = 1.0,
                 chunk: int = 1024) -> jax.Array:
  """n sequences ``prompt + T`` tokens from ``model`` (KV cache), int32 [n, P + T]."""
  prompt = jnp.asarray(groundtruth.prompt, jnp.int32)
  out = []
  for i, start in enumerate(range(0, n, chunk)):
    b = min(chunk, n - start)
    gen = generate(model, jnp.broadcast_to(prompt, (b, prompt.shape[0])),
                   jax.random.fold_in(key, i), max_new_tokens=groundtruth.seq_len,
                   temperature=temperature)
    out.append(jnp.concatenate([jnp.broadcast_to(prompt, (b, prompt.shape[0])), gen], axis=1))
  return jnp.concatenate(out)


def evaluate(model, groundtruth, key, *, n: int, ref_model=None,
             groundtruth_samples=None, return_draws: bool = False):
  """All metrics of the module docstring for ``model`` (see there).

  With ``return_draws`` also the per-sample values behind them: ``(metrics, draws)`` with
  ``draws = {"log_q", "log_ref", "reward"}`` ([n] float64 numpy; ``log_ref`` nan without a
  reference) of the n model samples.
  """
  p = int(np.shape(groundtruth.prompt)[0])
  t = groundtruth.seq_len
  k_q, k_p = jax.random.split(key)
  x = sample_model(model, groundtruth, k_q, n)
  y = groundtruth.sample(k_p, n) if groundtruth_samples is None else groundtruth_samples
  log_q_x = model_log_prob(model, x, p)
  log_ref_x = model_log_prob(ref_model, x, p) if ref_model is not None else None
  reward = groundtruth.reward(x)
  out = {
      "reward": float(jnp.mean(reward)),
      "target_share": float(jnp.mean(groundtruth.shows_target(x))),
      "target_precision": (float(jnp.mean(groundtruth.target_log_prob(x))) / t
                           if hasattr(groundtruth, "target_log_prob") else float("nan")),
      "precision": float(jnp.mean(groundtruth.log_prob(x))) / t,
      "recall": float(np.mean(model_log_prob(model, y, p))) / t,
      "kl_ref": (float(np.mean(log_q_x - log_ref_x)) if log_ref_x is not None else float("nan")),
  }
  if not return_draws:
    return out
  draws = {"log_q": np.asarray(log_q_x, np.float64),
           "log_ref": (np.asarray(log_ref_x, np.float64) if log_ref_x is not None
                       else np.full(n, np.nan)),
           "reward": np.asarray(reward, np.float64)}
  return out, draws
