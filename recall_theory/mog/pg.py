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

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from recall_theory.errors import check_positive
from recall_theory.mog.divergence_guard import Watch, new_watch, update_watch
from recall_theory.mog.mixture import Mixture, log_prob, sample
from recall_theory.mog.params import MixtureParams, all_finite, to_mixture
from recall_theory.plateau import PlateauRule, PlateauState, plateau_schedule, run_to_plateau

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


def _pg_step(config: PGConfig, reference: Mixture, reward: Any, beta, opt):
  """``step(t, key_t, params, opt_state, watch) -> (params, opt_state, watch, (mean r, mean shaped))``."""
  grad_fn = jax.value_and_grad(make_pg_loss(config.clip_eps), has_aux=True)

  def step(t, key_t, params, opt_state, watch):
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
    return params, opt_state, watch, (jnp.mean(r_B), jnp.mean(shaped_B))

  return step


def train_pg(key: jax.Array, init: MixtureParams, reference: Mixture, reward: Any, beta,
             config: PGConfig = PGConfig()) -> tuple[MixtureParams, PGTrace, Watch]:
  """Run PPO-style KL-regularised policy gradient; returns (params, trace, watch).

  Check ``watch`` on the host with
  ``divergence_guard.raise_if_diverged(watch, "policy gradient", PG_QUANTITIES)``.
  """
  check_positive("beta", beta)
  opt = optax.adam(config.learning_rate)
  update = _pg_step(config, reference, reward, beta, opt)

  def step(carry, inputs):
    params, opt_state, watch = carry
    t, key_t = inputs
    params, opt_state, watch, (mean_r, mean_shaped) = update(t, key_t, params, opt_state, watch)
    return (params, opt_state, watch), PGTrace(mean_r, mean_shaped)

  keys = jax.random.split(key, config.n_steps)
  (params, _, watch), trace = jax.lax.scan(
      step, (init, opt.init(init), new_watch()), (jnp.arange(config.n_steps), keys))
  return params, trace, watch


def train_pg_to_plateau(key: jax.Array, init: MixtureParams, reference: Mixture, reward: Any, beta,
                        config: PGConfig, rule: PlateauRule, evaluate: Callable
                        ) -> tuple[MixtureParams, Watch, PlateauState]:
  """Policy gradient until the plateau rule holds or ``config.n_steps`` (the budget) have run.

  ``evaluate(params) -> (objective, mass)``: the exact held-out objective (J/beta) and the
  aligned mass. The learning rate follows :func:`recall_theory.plateau.plateau_schedule`
  (constant for ``rule.first_check`` steps, then 1/step). Returns the final parameters,
  the divergence watch and the driver's final state (steps used, whether the rule held, the
  last objective and mass).
  """
  check_positive("beta", beta)
  opt = optax.adam(plateau_schedule(config.learning_rate, constant_steps=rule.first_check))
  update = _pg_step(config, reference, reward, beta, opt)
  keys = jax.random.split(key, config.n_steps)

  def step(t, carry):
    params, opt_state, watch = carry
    params, opt_state, watch, _ = update(t, keys[t], params, opt_state, watch)
    return params, opt_state, watch

  final = run_to_plateau(step, lambda c: evaluate(c[0]), (init, opt.init(init), new_watch()),
                         rule, config.n_steps)
  params, _, watch = final.carry
  return params, watch, final._replace(carry=None)
