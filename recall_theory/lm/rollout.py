"""On-policy draws for RLOO in one compiled call: sample, score by the oracle and the reference.

An RLOO step needs a fresh batch from the current policy, the oracle's reward of each
sequence and the reference's log-probability of it. Done as three host calls, dispatch
dominates a small model's step; :func:`make_rollout` compiles the three into one program
(the policy's weights are an argument, so one compilation serves every step and every
policy of the architecture). The ground truth's ``reward`` and ``shows_target`` must be
traceable (``jax.numpy`` on the tokens), as both of the package's ground truths are.

Example::

  rollout = make_rollout(groundtruth, reference, batch_size=64)
  batch = rollout(policy, jax.random.key(0))   # tokens, reward, ref_logp, in_target
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from recall_theory.lm.losses import sequence_log_prob
from recall_theory.lm.sampling import generate_with_state


def make_rollout(groundtruth, reference, batch_size: int, *, temperature: float = 1.0):
  """``rollout(policy, key) -> {"tokens" [B, L], "reward" [B], "ref_logp" [B], "in_target" [B]}``.

  The tokens are ``batch_size`` samples of ``policy`` at ``temperature`` after the ground
  truth's prompt; ``ref_logp`` is ``log pi_ref(continuation | prompt)`` under ``reference``.
  """
  prompt = jnp.asarray(groundtruth.prompt, jnp.int32)
  p, t = int(prompt.shape[0]), int(groundtruth.seq_len)
  prompt_BxP = jnp.broadcast_to(prompt, (batch_size, p))
  ref_graphdef, ref_state = nnx.split(reference)
  compiled: dict = {}

  def program(graphdef):
    if graphdef not in compiled:
      def run(state, ref_state, key):
        gen = generate_with_state(graphdef, state, prompt_BxP, key, max_new_tokens=t,
                                  temperature=jnp.float32(temperature), top_p=jnp.float32(1.0))
        tokens = jnp.concatenate([prompt_BxP, gen], axis=1)
        ref_logp = sequence_log_prob(nnx.merge(ref_graphdef, ref_state), tokens, p)
        return {"tokens": tokens, "reward": groundtruth.reward(tokens), "ref_logp": ref_logp,
                "in_target": groundtruth.shows_target(tokens)}
      compiled[graphdef] = jax.jit(run)
    return compiled[graphdef]

  def rollout(policy, key) -> dict:
    graphdef, state = nnx.split(policy)
    return program(graphdef)(state, ref_state, key)

  rollout.prompt_len = p
  rollout.batch_size = batch_size
  return rollout


def count_in_target(batch: dict) -> int:
  """How many sequences of a rollout lie in the target set A (host int)."""
  return int(np.sum(np.asarray(batch["in_target"])))

