"""Runs past one machine: start ``jax.distributed`` from flags or the cluster's environment.

One process per host (or per GPU) runs the same program; together they see one global
device list, so :func:`recall_theory.lm.sharding.make_mesh` spans every process and the
jitted train step is unchanged. What differs per process:

* **start-up**: :func:`initialize_from_args` calls ``jax.distributed.initialize`` when
  ``--coordinator/--num-processes/--process-id`` (:func:`add_arguments`) or the
  environment say so: ``JAX_COORDINATOR_ADDRESS`` + ``JAX_NUM_PROCESSES`` +
  ``JAX_PROCESS_ID``, or a cluster manager JAX detects by itself (Slurm with more than
  one task, Open MPI with more than one rank, a multi-host Cloud TPU slice);
* **data**: each process loads only its rows of the global batch
  (:func:`process_rows`) and :func:`global_batch` assembles the global array with
  ``jax.make_array_from_process_local_data``;
* **state**: :func:`recall_theory.lm.sharding.put_global` places identical host copies
  of the initial state on the global mesh;
* **files**: only :func:`is_writer` (process 0) writes results, figures and checkpoint
  metadata; Orbax writes the array shards of every process.

Bad input raises :class:`~recall_theory.errors.InputError` with one line: flags that
disagree with each other or with the environment, a missing piece, or a coordinator
that cannot be reached within ``--distributed-timeout`` seconds (no hang).

Example (two processes on one machine, CPU collectives through gloo)::

  python train.py --coordinator localhost:12345 --num-processes 2 --process-id 0 &
  python train.py --coordinator localhost:12345 --num-processes 2 --process-id 1

  # in train.py
  parser = argparse.ArgumentParser(); distributed.add_arguments(parser)
  args = parser.parse_args()
  distributed.initialize_from_args(args)          # before any other JAX call
  mesh = sharding.make_mesh()                     # all devices of all processes
  rows = distributed.process_rows(global_batch_size, mesh)
  batch = distributed.global_batch({"tokens": tokens_np[rows]}, mesh)

Reference: JAX, "Multi-process environments"
(https://docs.jax.dev/en/latest/multi_process.html).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import sys
import threading
import time
from typing import Mapping

import numpy as np

from recall_theory.errors import InputError

# jax (and lm.sharding, which imports it) is imported inside the functions that run JAX:
# the CLI calls add_arguments while building its parser, and `recall-theory --help` or a
# bad flag must return without paying for JAX's import.

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
DEFAULT_TIMEOUT_S = 60


@dataclasses.dataclass(frozen=True)
class DistributedSpec:
  """How to start: explicit values, or ``None`` values left to JAX's cluster detection."""
  coordinator: str | None
  num_processes: int | None
  process_id: int | None
  source: str  # "flags/environment" or the cluster manager's name


def add_arguments(parser: argparse.ArgumentParser) -> None:
  """Add ``--coordinator``, ``--num-processes``, ``--process-id``, ``--distributed-timeout``."""
  group = parser.add_argument_group("multi-process (one process per host or GPU)")
  group.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                     help=f"address of process 0's coordinator (or ${ENV_COORDINATOR}; default: one "
                          "process unless a cluster manager says otherwise)")
  group.add_argument("--num-processes", default=None, metavar="N",
                     help=f"number of processes (or ${ENV_NUM_PROCESSES}; default 1)")
  group.add_argument("--process-id", default=None, metavar="I",
                     help=f"this process, 0..N-1 (or ${ENV_PROCESS_ID}; default 0)")
  group.add_argument("--distributed-timeout", default=str(DEFAULT_TIMEOUT_S), metavar="S",
                     help="seconds to wait for the coordinator and the other processes "
                          f"(default {DEFAULT_TIMEOUT_S})")


def detect_cluster(environ: Mapping[str, str] = os.environ) -> str | None:
  """Name of a multi-process cluster manager JAX configures itself from, or None."""
  def count(name):
    try:
      return int(environ.get(name, "1"))
    except ValueError:
      return 1
  if "SLURM_JOB_ID" in environ and count("SLURM_NTASKS") > 1:
    return "slurm"
  if "OMPI_MCA_orte_hnp_uri" in environ and count("OMPI_COMM_WORLD_SIZE") > 1:
    return "openmpi"
  if "," in environ.get("TPU_WORKER_HOSTNAMES", ""):
    return "cloud-tpu"
  return None


def _int(value, flag: str, low: int, high: int | None = None) -> int:
  text = str(value).strip()
  try:
    number = int(text)
  except ValueError:
    number = None
  if number is None or number < low or (high is not None and number > high):
    allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
    raise InputError(f"{flag} must be an integer {allowed}, got {value!r}")
  return number


def _check_address(value: str, flag: str) -> str:
  host, _, port = str(value).rpartition(":")
  if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
    raise InputError(f"{flag} must be HOST:PORT with a port in [1, 65535], got {value!r}")
  return str(value)


def resolve(coordinator=None, num_processes=None, process_id=None, *,
            environ: Mapping[str, str] = os.environ) -> DistributedSpec | None:
  """The start-up plan from flags (strings or ints) and the environment; None = one process.

  A flag and its environment variable may both be set only to the same value. Either
  all three values are known (from flags or ``JAX_*`` variables), or none is and a
  cluster manager is detected (JAX reads its own variables), or none is and no cluster
  is there (a single process: returns None).
  """
  pieces = {}
  for flag, env, value in (("--coordinator", ENV_COORDINATOR, coordinator),
                           ("--num-processes", ENV_NUM_PROCESSES, num_processes),
                           ("--process-id", ENV_PROCESS_ID, process_id)):
    env_value = environ.get(env)
    if value is not None and env_value is not None and str(value).strip() != env_value.strip():
      raise InputError(f"{flag} {value} disagrees with {env}={env_value}")
    chosen = value if value is not None else env_value
    pieces[flag] = (chosen, flag if value is not None else env)
  given = {flag: v for flag, (v, _) in pieces.items() if v is not None}
  if not given:
    cluster = detect_cluster(environ)
    return None if cluster is None else DistributedSpec(None, None, None, cluster)
  missing = [flag for flag in pieces if flag not in given]
  if missing:
    raise InputError(f"multi-process runs need --coordinator, --num-processes and --process-id "
                     f"(or their JAX_* variables); missing {', '.join(missing)}")
  (coord, coord_name), (n, n_name), (i, i_name) = pieces.values()
  coord = _check_address(coord, coord_name)
  n = _int(n, n_name, 1)
  i = _int(i, i_name, 0)
  if i >= n:
    raise InputError(f"{i_name} {i} must be below {n_name} {n} (ids run 0..{n - 1})")
  if n == 1:
    return None
  return DistributedSpec(coord, n, i, "flags/environment")


def wait_for_coordinator(address: str, timeout_s: float) -> None:
  """Return once ``address`` accepts TCP connections; InputError after ``timeout_s``."""
  host, _, port = address.rpartition(":")
  deadline = time.monotonic() + timeout_s
  last = None
  while time.monotonic() < deadline:
    try:
      with socket.create_connection((host.strip("[]"), int(port)),
                                    timeout=max(0.1, min(2.0, deadline - time.monotonic()))):
        return
    except OSError as err:
      last = err
      time.sleep(0.2)
  raise InputError(f"--coordinator {address} was not reachable within {timeout_s:g} s "
                   f"({getattr(last, 'strerror', None) or last}); start process 0 first or "
                   "check the address")


def initialize(spec: DistributedSpec | None, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
  """Start ``jax.distributed`` per ``spec``; True when this is a multi-process run.

  Must run before any other JAX computation. Processes other than 0 first wait (at
  most ``timeout_s``) for the coordinator's port, so an unreachable coordinator is one
  InputError instead of a hang. If the processes then do not all join within
  ``timeout_s`` (a wrong ``--num-processes``, a process never started) the process
  prints one line and exits with code 2: JAX would otherwise abort it with a stack
  dump. On CPUs the collectives go through gloo.
  """
  if spec is None:
    return False
  import jax
  if jax.distributed.is_initialized():
    return True
  from jax._src import xla_bridge  # why private: the public API has no "backend started?"
  if xla_bridge.backends_are_initialized():
    raise InputError("multi-process start-up must happen before JAX runs anything "
                     "(call distributed.initialize_from_args first)")
  if spec.coordinator is not None and spec.process_id != 0:
    wait_for_coordinator(spec.coordinator, timeout_s)
  try:  # CPU collectives across processes (the default in recent JAX; explicit for older)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  except (AttributeError, ValueError):
    pass
  # When the other processes never arrive, JAX's C++ client aborts the process with a
  # fatal log and a stack dump at its deadline. A watchdog with an earlier deadline
  # turns that into the one-line error and exit code 2 of bad input instead.
  def give_up():
    sys.stderr.write(f"error: multi-process start-up ({spec.source}): the "
                     f"{spec.num_processes or 'expected'} processes did not all join within "
                     f"{timeout_s:g} s (check --num-processes, --process-id and that every "
                     "process was started)\n")
    sys.stderr.flush()
    os._exit(2)

  watchdog = threading.Timer(timeout_s, give_up)
  watchdog.daemon = True
  watchdog.start()
  try:
    jax.distributed.initialize(coordinator_address=spec.coordinator,
                               num_processes=spec.num_processes, process_id=spec.process_id,
                               initialization_timeout=int(timeout_s) + 30)
  except Exception as err:  # JAX raises several types for a failed rendezvous
    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
    raise InputError(f"multi-process start-up ({spec.source}) failed: {first}") from err
  finally:
    watchdog.cancel()
  return True


def initialize_from_args(args: argparse.Namespace, *,
                         environ: Mapping[str, str] = os.environ) -> bool:
  """:func:`resolve` + :func:`initialize` from the flags of :func:`add_arguments`; a
  multi-process command-line run (``args.command`` set) also starts :func:`watch_peers`."""
  timeout_s = _int(getattr(args, "distributed_timeout", DEFAULT_TIMEOUT_S),
                   "--distributed-timeout", 1, 3600)
  spec = resolve(getattr(args, "coordinator", None), getattr(args, "num_processes", None),
                 getattr(args, "process_id", None), environ=environ)
  multi = initialize(spec, timeout_s=timeout_s)
  if multi and getattr(args, "command", None):
    watch_peers(f"recall-theory {args.command}")
  return multi


HEARTBEAT_S = 1.0
LOST_AFTER_S = 15.0
_BEAT_KEY = "recall_theory/beat/{}"
_DONE_KEY = "recall_theory/done/{}"


def watch_peers(prog: str, *, beat_s: float = HEARTBEAT_S, lost_after_s: float = LOST_AFTER_S):
  """Stop this process with one line when another process of the run is gone.

  A daemon thread counts this process's heartbeat up in ``jax.distributed``'s key-value
  store every ``beat_s`` and reads the others'. A process whose count stands still for
  ``lost_after_s`` (killed, frozen), or a store that no longer answers (process 0, which hosts
  it, is gone), ends this process through :func:`abandon` with a line naming the lost process.
  Without it a survivor blocks in a collective or an Orbax barrier until JAX's own timeouts
  (minutes) abort it with a stack dump. Returns the thread (None outside a multi-process run).
  The beat continues while the process waits in ``jax.distributed``'s exit barrier, so a
  process that finished early is not mistaken for a lost one; a process that is exiting says
  so in the store first (a peer that said so is never called lost), and once exiting, a store
  that stops answering (process 0 shut it down after the barrier) ends the watch quietly.
  """
  import jax
  from jax._src import distributed as jax_distributed  # why private: the KV store has no public API
  client = jax_distributed.global_state.client
  if client is None or jax.process_count() < 2:
    return None
  me, n = jax.process_index(), jax.process_count()
  exiting = threading.Event()

  def say_done():
    exiting.set()
    try:
      client.key_value_set(_DONE_KEY.format(me), "1")
    except Exception:  # the store is already gone: nothing to tell
      pass

  def done(peer: int) -> bool:
    return count(peer, _DONE_KEY) is not None

  def count(peer: int, key: str = _BEAT_KEY) -> int | None:
    try:
      return int(client.key_value_try_get(key.format(peer)))
    except Exception as err:  # not set yet: NOT_FOUND; anything else: the store is gone
      if "NOT_FOUND" in str(err) or "not found" in str(err).lower():
        return None
      raise

  def watch():
    last = {peer: (None, time.monotonic()) for peer in range(n) if peer != me}
    while True:
      try:
        client.key_value_increment(_BEAT_KEY.format(me), 1)
        now = time.monotonic()
        for peer, (value, since) in last.items():
          current = count(peer)
          if current != value:
            last[peer] = (current, now)
          elif now - since > lost_after_s and not done(peer):
            abandon(f"lost process {peer} of {n} of the multi-process run (no heartbeat for "
                    f"{now - since:.0f} s); process {me} stops too (rerun every process; "
                    "--resume continues from the last checkpoint)", prog)
      except Exception as err:  # the key-value store itself is gone: process 0 stopped
        if exiting.is_set():  # after the exit barrier process 0 may shut it down first
          return
        abandon(f"lost process 0 of {n} of the multi-process run (its coordination service "
                f"stopped answering: {str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__}); "
                f"process {me} stops too", prog)
      time.sleep(beat_s)

  import atexit
  atexit.register(say_done)  # runs before jax.distributed's own shutdown (registered earlier)
  thread = threading.Thread(target=watch, name="recall-theory-peer-watch", daemon=True)
  thread.start()
  return thread


# What gloo's CPU collectives (and the coordination client) say when another process is gone.
_LOST_PEER_SIGNS = ("Connection closed by peer", "Connection reset by peer", "Broken pipe",
                    "Gloo", "task has been disconnected", "heartbeat")
LOST_PEER_EXIT_CODE = 4


def lost_peer_message(err: BaseException) -> str | None:
  """One line for a collective that failed because another process of the run stopped.

  None when ``err`` is something else or this is not a multi-process run. With two processes
  the lost peer is the other one and is named by its index; with more, the failed
  connection's own words name its address.
  """
  if "jax" not in sys.modules:
    return None
  import jax
  if not jax.distributed.is_initialized() or jax.process_count() < 2:
    return None
  text = str(err)
  if not any(sign in text for sign in _LOST_PEER_SIGNS):
    return None
  detail = next((line.strip() for line in text.splitlines() if line.strip()), type(err).__name__)
  me, n = jax.process_index(), jax.process_count()
  who = (f"process {1 - me} of {n}" if n == 2 else f"a process of the {n}")
  return (f"lost {who} of the multi-process run ({detail[:240]}); process {me} stops too "
          "(rerun every process; --resume continues from the last checkpoint)")


def abandon(message: str, prog: str) -> None:
  """Print ``message`` as one line and leave at once: exiting normally would wait in
  ``jax.distributed``'s shutdown barrier for the lost process and then abort with a dump."""
  sys.stderr.write(f"{prog}: error: {message}\n")
  sys.stderr.flush()
  sys.stdout.flush()
  os._exit(LOST_PEER_EXIT_CODE)


def is_writer() -> bool:
  """True in the one process that writes results, figures and checkpoint metadata (0)."""
  import jax
  return jax.process_index() == 0


def process_rows(global_batch_size: int, mesh) -> slice:
  """The contiguous rows of a ``[global_batch_size, ...]`` batch this process must load.

  Follows the batch sharding of :func:`recall_theory.lm.sharding.batch_sharding`:
  the rows held by this process's devices (contiguous because ``make_mesh`` orders
  devices by process).
  """
  n = mesh.devices.size
  if global_batch_size % n:
    raise InputError(f"batch size {global_batch_size} must be divisible by the number of "
                     f"devices ({n})")
  from recall_theory.lm import sharding
  index_map = sharding.batch_sharding(mesh).addressable_devices_indices_map((global_batch_size,))
  starts = sorted({idx[0].start or 0 for idx in index_map.values()})
  stops = sorted({idx[0].stop if idx[0].stop is not None else global_batch_size
                  for idx in index_map.values()})
  rows = slice(starts[0], stops[-1])
  per_device = global_batch_size // n
  if (rows.stop - rows.start) != per_device * len({i[0].start for i in index_map.values()}):
    raise InputError("this process's devices do not hold one contiguous block of the batch; "
                     "build the mesh with sharding.make_mesh()")
  return rows


def global_batch(local_batch, mesh):
  """Assemble global arrays from this process's rows (every leaf: ``[rows, ...]``).

  ``jax.make_array_from_process_local_data`` with the batch sharding; in a single
  process this equals :func:`recall_theory.lm.sharding.shard_batch`.
  """
  import jax
  from recall_theory.lm import sharding
  target = sharding.batch_sharding(mesh)
  n_proc = jax.process_count()

  def one(x):
    x = np.asarray(x)
    global_shape = (x.shape[0] * n_proc,) + x.shape[1:]
    return jax.make_array_from_process_local_data(target, x, global_shape)

  return jax.tree.map(one, local_batch)


def main(argv=None) -> int:
  """``python -m recall_theory.lm.distributed [flags]``: start, print the topology, finish.

  A check that a set of processes can form one JAX system (each prints its index and
  device counts; process 0 also runs one all-reduce over every device). Bad flags or an
  unreachable coordinator: one line on stderr, exit code 2.
  """
  parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
  add_arguments(parser)
  args = parser.parse_args(argv)
  try:
    multi = initialize_from_args(args)
  except InputError as err:
    print(f"error: {err}", file=sys.stderr)
    return 2
  import jax
  from recall_theory.lm import sharding
  mesh = sharding.make_mesh()
  ones = global_batch(np.ones((jax.local_device_count(),), np.float32), mesh)
  total = float(jax.jit(lambda x: x.sum(), out_shardings=sharding.replicated(mesh))(ones))
  print(f"process {jax.process_index()} of {jax.process_count()} (multi-process: {multi}): "
        f"{jax.local_device_count()} local / {jax.device_count()} global devices "
        f"({jax.devices()[0].platform}); all-reduce over devices = {total:g}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
