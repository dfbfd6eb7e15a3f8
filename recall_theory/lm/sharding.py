"""One code path for 1 CPU, N GPUs or a TPU slice: a ("data", "fsdp") device mesh.

* Batches are split over both axes (every device sees ``B / n_devices`` rows).
* Parameters (and the optimizer moments, which share their shapes) are replicated, or
  with ``fsdp > 1`` sharded along their largest axis divisible by the ``fsdp`` size
  (ZeRO-3 style: XLA gathers a weight where a matmul needs it and reduce-scatters its
  gradient). The rule depends on shapes only, so it needs no per-layer annotations
  and applies unchanged to a loaded checkpoint.

Example::

  mesh = make_mesh(fsdp=2)                  # all devices; data = n_devices / 2
  state = jax.device_put(state, tree_shardings(state, mesh))
  batch = shard_batch(batch, mesh)
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from recall_theory.errors import InputError

AXES = ("data", "fsdp")


def make_mesh(n_devices: int | None = None, fsdp: int = 1) -> Mesh:
  """A ``(data, fsdp)`` mesh over the first ``n_devices`` devices (default: all)."""
  available = jax.devices()
  n = len(available) if n_devices is None else n_devices
  if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(available):
    raise InputError(f"n_devices must be an integer in [1, {len(available)}], got {n_devices!r}")
  if isinstance(fsdp, bool) or not isinstance(fsdp, int) or fsdp < 1 or n % fsdp:
    raise InputError(f"fsdp must be a positive integer dividing n_devices={n}, got {fsdp!r}")
  return jax.make_mesh((n // fsdp, fsdp), AXES, axis_types=(AxisType.Auto, AxisType.Auto),
                       devices=available[:n])


def leaf_spec(shape: tuple[int, ...], fsdp_size: int) -> P:
  """Shard the largest axis divisible by ``fsdp_size`` over "fsdp"; else replicate."""
  if fsdp_size == 1 or not shape:
    return P()
  candidates = [i for i, s in enumerate(shape) if s % fsdp_size == 0]
  if not candidates:
    return P()
  axis = max(candidates, key=lambda i: (shape[i], -i))
  spec = [None] * len(shape)
  spec[axis] = "fsdp"
  return P(*spec)


def tree_shardings(tree, mesh: Mesh):
  """NamedSharding for every array leaf of ``tree`` (params, optimizer state, step)."""
  fsdp_size = mesh.shape["fsdp"]
  return jax.tree.map(lambda x: NamedSharding(mesh, leaf_spec(np.shape(x), fsdp_size)), tree)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def shard_batch(batch, mesh: Mesh):
  """Place every array of ``batch`` with its leading axis split over all devices.

  ``batch`` is the GLOBAL batch. With several processes (see
  :mod:`recall_theory.lm.distributed`) every process passes the same global batch and
  contributes only the rows its devices hold; a process that loads only its own rows
  calls :func:`recall_theory.lm.distributed.global_batch` instead.
  """
  n = mesh.devices.size
  for leaf in jax.tree.leaves(batch):
    if np.shape(leaf)[0] % n:
      raise InputError(f"batch size {np.shape(leaf)[0]} must be divisible by the number of "
                       f"devices ({n})")
  if jax.process_count() == 1:
    return jax.device_put(batch, batch_sharding(mesh))
  return put_global(batch, jax.tree.map(lambda _: batch_sharding(mesh), batch))


def put_global(tree, shardings):
  """``jax.device_put`` that also works across processes.

  In one process this is ``jax.device_put``. With several, every process holds the same
  host values (same seed, same data) and fills in the shards its own devices hold
  (``jax.make_array_from_callback``), so no data crosses processes.
  """
  if jax.process_count() == 1:
    return jax.device_put(tree, shardings)

  def one(x, target):
    host = np.asarray(jax.device_get(x)) if isinstance(x, jax.Array) and x.is_fully_addressable \
        else np.asarray(x)
    return jax.make_array_from_callback(host.shape, target, lambda index: host[index])

  return jax.tree.map(one, tree, shardings)
