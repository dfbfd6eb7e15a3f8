"""Non-finite detection for jitted training loops, raised on the host with step and quantity.

Inside ``lax.scan`` nothing can raise, so every trainer carries a :class:`Watch`: the first
step at which a watched quantity became non-finite, and which one (an index into the
trainer's ``QUANTITIES``). :func:`raise_if_diverged` runs on the host after the jitted
call (also on the stacked watches of a vmapped grid) and raises
:class:`~recall_theory.errors.TrainingDivergedError` naming step, quantity and run.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from recall_theory.errors import TrainingDivergedError


class Watch(NamedTuple):
  """``step``: first non-finite step (-1 if none); ``quantity``: index of what went non-finite."""
  step: jax.Array
  quantity: jax.Array


def new_watch() -> Watch:
  return Watch(jnp.asarray(-1, jnp.int32), jnp.asarray(-1, jnp.int32))


def update_watch(watch: Watch, step, finite_Q: jax.Array) -> Watch:
  """Record ``step`` and the first False entry of ``finite_Q`` unless already recorded."""
  bad = ~jnp.all(finite_Q)
  first = (watch.step < 0) & bad
  return Watch(jnp.where(first, jnp.asarray(step, jnp.int32), watch.step),
               jnp.where(first, jnp.argmin(finite_Q).astype(jnp.int32), watch.quantity))


def raise_if_diverged(watch: Watch, trainer: str, quantities: Sequence[str],
                      run_names: Sequence[str] | None = None) -> None:
  """Raise TrainingDivergedError for the first run whose watch fired (host values)."""
  steps = np.asarray(watch.step).ravel()
  qs = np.asarray(watch.quantity).ravel()
  bad = np.flatnonzero(steps >= 0)
  if bad.size:
    i = int(bad[0])
    where = f" in run {run_names[i]}" if run_names is not None else (f" in run {i}" if steps.size > 1 else "")
    raise TrainingDivergedError(
        f"{trainer}: {quantities[int(qs[i])]} became non-finite at step {int(steps[i])}{where} "
        f"({bad.size} run(s) affected); lower the learning rate or raise beta")
