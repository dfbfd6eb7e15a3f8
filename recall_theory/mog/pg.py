"""KL-regularised policy gradient (PPO style) for a mixture policy against a mixture reference.

Objective (theory item 1): J(pi) = E_pi[r] - beta KL(pi || pi_ref), maximised by the Gibbs
tilt. On-policy estimate: sample x ~ pi_old, shape the reward as in RLHF,

  r~(x) = r(x) - beta [log pi_old(x) - log pi_ref(x)],

standardise it into an advantage A, and take ``n_epochs`` Adam steps on the clipped
surrogate  -mean(min(rho A, clip(rho, 1-eps, 1+eps) A)),  rho = pi(x)/pi_old(x)
(Schulman et al. 2017; Ouyang et al. 2022). E[grad log pi * (r~ - b)] is exactly grad J,
so the fixed point is the optimum within the policy family. Both traps are visible here:
samples never land where pi is ~ 0 (sampling trap), and log pi_ref -> -inf makes r~ -> -inf
there (learning trap).

Loss factory (nanodo style): ``make_pg_loss(clip_eps) -> loss_fn(params, batch) -> (loss, aux)``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from recall_theory.errors import check_positive
from recall_theory.mog.divergence_guard import Watch, new_watch, update_watch
from recall_theory.mog.mixture import Mixture, log_prob, sample
from recall_theory.mog.params import MixtureParams, all_finite, to_mixture

PG_QUANTITIES = ("surrogate loss", "shaped reward", "policy parameters")


class PGConfig(NamedTuple):
  n_steps: int = 300
  batch_size: int = 256
  learning_rate: float = 0.02
  clip_eps: float = 0.2
  n_epochs: int = 2


class PGBatch(NamedTuple):
  x_BxD: jax.Array
  log_prob_old_B: jax.Array
  advantage_B: jax.Array


class PGTrace(NamedTuple):
  """Per-step means of the oracle reward and of the shaped reward, shape (n_steps,)."""
  reward_T: jax.Array
  shaped_reward_T: jax.Array


def make_pg_loss(clip_eps: float):
  """Clipped-surrogate loss on a :class:`PGBatch` (returns (loss, aux))."""

  def loss_fn(params: MixtureParams, batch: PGBatch):
    log_p_B = log_prob(to_mixture(params), batch.x_BxD)
    ratio_B = jnp.exp(log_p_B - batch.log_prob_old_B)
    unclipped = ratio_B * batch.advantage_B
    clipped = jnp.clip(ratio_B, 1.0 - clip_eps, 1.0 + clip_eps) * batch.advantage_B
    loss = -jnp.mean(jnp.minimum(unclipped, clipped))
    return loss, {"ratio_mean": jnp.mean(ratio_B)}

  return loss_fn


def train_pg(key: jax.Array, init: MixtureParams, reference: Mixture, reward: Any, beta,
             config: PGConfig = PGConfig()) -> tuple[MixtureParams, PGTrace, Watch]:
  """Run PPO-style KL-regularised policy gradient; returns (params, trace, watch).

  Check ``watch`` on the host with
  ``divergence_guard.raise_if_diverged(watch, "policy gradient", PG_QUANTITIES)``.
  """
  check_positive("beta", beta)
  opt = optax.adam(config.learning_rate)
  loss_fn = make_pg_loss(config.clip_eps)
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def step(carry, inputs):
    params, opt_state, watch = carry
    t, key_t = inputs
    policy = to_mixture(params)
    x_BxD = jax.lax.stop_gradient(sample(key_t, policy, config.batch_size))
    log_old_B = jax.lax.stop_gradient(log_prob(policy, x_BxD))
    r_B = reward(x_BxD)
    shaped_B = r_B - beta * (log_old_B - log_prob(reference, x_BxD))
    adv_B = (shaped_B - jnp.mean(shaped_B)) / (jnp.std(shaped_B) + 1e-8)
    batch = PGBatch(x_BxD, log_old_B, adv_B)
    loss = jnp.zeros((), x_BxD.dtype)
    for _ in range(config.n_epochs):
      (loss, _), grads = grad_fn(params, batch)
      updates, opt_state = opt.update(grads, opt_state, params)
      params = optax.apply_updates(params, updates)
    finite = jnp.stack([jnp.isfinite(loss), jnp.all(jnp.isfinite(shaped_B)), all_finite(params)])
    watch = update_watch(watch, t, finite)
    return (params, opt_state, watch), PGTrace(jnp.mean(r_B), jnp.mean(shaped_B))

  keys = jax.random.split(key, config.n_steps)
  (params, _, watch), trace = jax.lax.scan(
      step, (init, opt.init(init), new_watch()), (jnp.arange(config.n_steps), keys))
  return params, trace, watch
