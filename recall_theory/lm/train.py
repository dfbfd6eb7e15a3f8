"""One jitted train step for every objective, over a pure ``TrainState``.

The model is split once into ``(graphdef, params)``; the step is a pure function
``step(state, batch) -> (state, metrics)`` with the graphdef closed over (static), the
state donated, and its output shardings pinned to the input ones (data parallel, or
FSDP, see :mod:`recall_theory.lm.sharding`). Any ``loss_fn(model, batch) -> (loss,
aux)`` from :mod:`recall_theory.lm.losses` plugs in unchanged.

Example::

  graphdef, state = init_train_state(model, make_optimizer(1e-3, total_steps=100))
  step = make_train_step(graphdef, tx, make_mle_loss(prompt_len=1), mesh)
  state, metrics = step(state, batch)
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from recall_theory.errors import TrainingDivergedError
from recall_theory.lm import sharding


_tree_norm = optax.tree.norm if hasattr(optax, "tree") and hasattr(optax.tree, "norm") \
    else optax.global_norm


class TrainState(NamedTuple):
  """step: int32 scalar; params: nnx.State of the model's Params; opt_state: optax state."""
  step: jax.Array
  params: Any
  opt_state: Any


def make_optimizer(learning_rate: float, total_steps: int, *, warmup_steps: int = 0,
                   weight_decay: float = 0.0, clip_norm: float = 1.0,
                   b2: float = 0.99) -> optax.GradientTransformation:
  """AdamW with linear warm-up then cosine decay to 10%, and global-norm clipping."""
  warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
  schedule = optax.warmup_cosine_decay_schedule(
      0.0 if warmup_steps else learning_rate, learning_rate, warmup_steps,
      max(total_steps, warmup_steps + 1), end_value=0.1 * learning_rate)
  return optax.chain(optax.clip_by_global_norm(clip_norm),
                     optax.adamw(schedule, b2=b2, weight_decay=weight_decay))


def init_train_state(model: nnx.Module, tx: optax.GradientTransformation):
  """(graphdef, TrainState at step 0)."""
  graphdef, params = nnx.split(model, nnx.Param)
  return graphdef, TrainState(jnp.zeros((), jnp.int32), params, tx.init(params))


def make_train_step(graphdef, tx: optax.GradientTransformation, loss_fn, mesh=None):
  """The jitted step; ``mesh`` (default: one device) fixes data and state shardings."""
  mesh = sharding.make_mesh(1) if mesh is None else mesh

  def step(state: TrainState, batch):
    def loss_of(params):
      return loss_fn(nnx.merge(graphdef, params), batch)

    (loss, aux), grads = jax.value_and_grad(loss_of, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, "grad_norm": _tree_norm(grads), **aux}
    new_state = TrainState(state.step + 1, params, opt_state)
    new_state = jax.lax.with_sharding_constraint(new_state,
                                                 sharding.tree_shardings(new_state, mesh))
    return new_state, metrics

  return jax.jit(step, donate_argnums=0)


def place_state(state: TrainState, mesh) -> TrainState:
  """Put ``state`` on ``mesh`` with the data-parallel / FSDP rule."""
  return jax.device_put(state, sharding.tree_shardings(state, mesh))


def check_finite_metrics(metrics: dict, step: int, stage: str) -> dict:
  """Host values of ``metrics``; TrainingDivergedError naming step and quantity if any is not finite."""
  host = {k: float(v) for k, v in metrics.items()}
  for name, value in sorted(host.items(), key=lambda kv: kv[0] != "loss"):  # loss first
    if not math.isfinite(value):
      raise TrainingDivergedError(
          f"stage {stage!r}: {name} became {value} at step {step}; training stopped")
  return host
