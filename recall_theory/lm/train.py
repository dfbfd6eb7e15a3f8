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

Deterministic mode (:func:`enable_deterministic`): on a GPU, XLA by default may pick
different GEMM kernels per compilation (autotuning) and lowers scatter-add (the
gradient of the embedding lookup) with atomics, so two runs of the same step can
differ in the last bits; a killed-and-resumed run then drifts from an uninterrupted
one. Deterministic mode is XLA's ``--xla_gpu_deterministic_ops=true`` in ``XLA_FLAGS``
for the whole process, set **before JAX starts its backend** (``enable_deterministic()``
first thing, or the variable in the environment). Giving the option per compilation
(``jax.jit(..., compiler_options=...)``) to an already running GPU backend is not
supported (XLA reads the flag when the backend starts; a step compiled with it afterwards
can crash inside XLA when executed), so ``enable_deterministic()`` refuses that case with one line. Its cost is GPU-only (CPU
execution is deterministic already): serialised scatter-add and no autotuning of
kernels; ``experiments/bench_lm.py --deterministic`` measures it in a fresh subprocess
against the default step of the same run.
"""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from recall_theory.errors import TrainingDivergedError
from recall_theory.lm import sharding


_tree_norm = optax.tree.norm if hasattr(optax, "tree") and hasattr(optax.tree, "norm") \
    else optax.global_norm


DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops=true"
_deterministic = False


class DeterministicModeError(RuntimeError):
  """Deterministic mode asked for after the GPU backend started without it (one line)."""


def deterministic_refusal(backend_started: bool, platform: str | None, xla_flags: str) -> str | None:
  """Why deterministic mode cannot be switched on now (None: it can).

  Only one case is refused: a GPU backend that already runs without the flag. XLA
  reads ``XLA_FLAGS`` once, when the backend starts; the per-compilation route crashed
  on a GPU (see the module docstring). A CPU backend needs nothing (deterministic).
  """
  if backend_started and platform == "gpu" and "xla_gpu_deterministic_ops=true" not in xla_flags:
    return ("deterministic mode must be on before JAX starts its GPU backend: set "
            f"XLA_FLAGS={DETERMINISTIC_FLAG} in the environment, or call "
            "enable_deterministic() before the first JAX computation")
  return None


def enable_deterministic() -> bool:
  """Make training and sampling bit-reproducible on GPUs (XLA deterministic ops).

  Adds ``--xla_gpu_deterministic_ops=true`` to ``XLA_FLAGS``, which XLA reads when JAX
  starts its backend, so it must run before the first JAX computation. Idempotent.
  On CPU it changes nothing observable: XLA:CPU is deterministic already.

  Returns:
    True when the flag is in ``XLA_FLAGS`` before the backend starts (every computation
    of the process is covered); False when the backend was already running: a CPU
    backend (nothing to cover there) or a GPU backend whose ``XLA_FLAGS`` holds the flag
    (covered only if the variable held it when the backend started, which this process
    cannot check: set it before starting Python to be sure).

  Raises:
    DeterministicModeError: a GPU backend already runs without the flag (a new process
      with ``XLA_FLAGS=--xla_gpu_deterministic_ops=true`` is the way; see
      ``experiments/bench_lm.py --deterministic``).

  Cost (GPU only): scatter-add runs as a sorted, serialised reduction instead of
  atomics and GEMM autotuning is off; measure it with
  ``python experiments/bench_lm.py --config smollm2-135m --deterministic``.
  """
  global _deterministic
  from jax._src import xla_bridge  # why private: the only way to ask "backend started?"
  flags = os.environ.get("XLA_FLAGS", "")
  started = xla_bridge.backends_are_initialized()
  why = deterministic_refusal(started, jax.default_backend() if started else None, flags)
  if why:
    raise DeterministicModeError(why)
  _deterministic = True
  if "xla_gpu_deterministic_ops=true" not in flags:  # a later flag overrides an earlier =false
    os.environ["XLA_FLAGS"] = (flags + " " + DETERMINISTIC_FLAG).strip()
  return not started


def deterministic_enabled() -> bool:
  """Whether :func:`enable_deterministic` was called in this process."""
  return _deterministic


class TrainState(NamedTuple):
  """step: int32 scalar; params: nnx.State of the model's Params; opt_state: optax state."""
  step: jax.Array
  params: Any
  opt_state: Any


def make_optimizer(learning_rate: float, total_steps: int, *, warmup_steps: int = 0,
                   weight_decay: float = 0.0, clip_norm: float = 1.0,
                   b2: float = 0.99, schedule=None) -> optax.GradientTransformation:
  """AdamW with global-norm clipping; by default linear warm-up then cosine decay to 10%.

  ``schedule`` (an optax schedule) replaces the default one, e.g. the 1/t
  schedule of stages trained to a plateau (:mod:`recall_theory.plateau`).
  """
  if schedule is None:
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
  """The jitted step; ``mesh`` (default: one device) fixes data and state shardings.

  Deterministic ops are a process-wide setting (:func:`enable_deterministic`), not an
  option of the step.
  """
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
  return sharding.put_global(state, sharding.tree_shardings(state, mesh))


def check_finite_metrics(metrics: dict, step: int, stage: str) -> dict:
  """Host values of ``metrics``; TrainingDivergedError naming step and quantity if any is not finite."""
  host = {k: float(v) for k, v in metrics.items()}
  for name, value in sorted(host.items(), key=lambda kv: kv[0] != "loss"):  # loss first
    if not math.isfinite(value):
      raise TrainingDivergedError(
          f"stage {stage!r}: {name} became {value} at step {step}; training stopped")
  return host


def estimate_train_memory(config, batch_size: int, seq_len: int, *, attention: str,
                          logits_chunk: int | None, optimizer_moments: int = 2,
                          platform: str | None = None) -> dict:
  """Bytes one AdamW train step needs on one device, by part (an estimate, before compiling).

  * ``state``: parameters in ``param_dtype``, their gradient, ``optimizer_moments``
    float32 moments, plus one compute-dtype copy of the weights;
  * ``activations``: per layer and token, the tensors kept for the backward pass of a
    pre-norm SwiGLU block: about ``14 D + 2 (H + 2 KV) Dh + 4 F`` values (norm
    inputs/outputs, q/k/v before and after rotary, attention output, residuals; gate,
    up, silu(gate), product) in the compute dtype;
  * ``attention``: "xla"/"einsum" keep three ``[B, H, L, L]`` arrays per layer (float32
    scores, float32 exponentials, probabilities in the compute dtype); cuDNN flash
    attention keeps only a float32 log-sum-exp ``[B, H, L]`` per layer;
  * ``logits``: float32 ``[B, C, V]`` three times (logits, softmax, gradient) with
    ``C = logits_chunk`` (None: the whole sequence).

  On ``platform="cpu"`` (default: JAX's default backend) 16-bit compute dtypes count
  as 4 bytes: XLA:CPU carries them out in float32. Calibration against XLA's own count
  (``bench_lm.py --compile-only`` on CPU, SmolLM2 shapes, L = 2048, XLA attention): 4%
  above it for 2 layers and 6% above for 4 layers (float32, B = 2), 10% above for 30
  layers (bfloat16, B = 8). Not calibrated on a GPU.
  """
  platform = jax.default_backend() if platform is None else platform
  d, f, v = config.d_model, config.d_ff, config.vocab_size
  h, kv, dh, n = config.n_heads, config.n_kv_heads, config.resolved_head_dim, config.n_layers
  act = jnp.dtype(config.compute_dtype).itemsize
  if platform == "cpu":
    act = max(act, 4)
  store = jnp.dtype(config.storage_dtype).itemsize
  p = config.param_count()
  state = p * (2 * store + 4 * optimizer_moments + act)
  tokens = batch_size * seq_len
  per_token_layer = act * (14 * d + 2 * (h + 2 * kv) * dh + 4 * f)
  activations = n * tokens * per_token_layer + tokens * d * 4 * 2  # + embedding out, final norm
  if attention == "cudnn":
    attn = n * batch_size * h * seq_len * 4
  else:
    attn = n * batch_size * h * seq_len * seq_len * (4 + 4 + act)
  chunk = seq_len if logits_chunk is None else min(logits_chunk, seq_len)
  logits = 3 * batch_size * chunk * v * 4
  parts = {"state": state, "activations": activations, "attention": attn, "logits": logits}
  parts["total"] = sum(parts.values())
  return parts


def free_device_memory(device=None) -> tuple[int | None, str]:
  """(free bytes, how they were measured) of ``device`` (default: the first device).

  Accelerators report ``bytes_limit - bytes_in_use`` of JAX's allocator; on CPU the
  host's ``MemAvailable`` from /proc/meminfo stands in. (None, reason) when unknown.
  """
  device = jax.devices()[0] if device is None else device
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if stats and "bytes_limit" in stats:
    return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0)), "device allocator"
  try:
    with open("/proc/meminfo") as fh:
      for line in fh:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024, "host MemAvailable"
  except OSError:
    pass
  return None, "unknown"
