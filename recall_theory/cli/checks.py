"""Command-line checks shared by every subcommand: numbers the chosen dtype can hold, path
flags the file system can hold, integer flags with their real range.

Each raises :class:`~recall_theory.errors.InputError` with one line naming the flag as
typed and its allowed range; none imports jax, so they run before anything expensive.
"""

from __future__ import annotations

import errno
import os


from recall_theory.errors import InputError

# Flags that name a file or folder, by their argparse dest (the flag is --dest-with-dashes).
PATH_DESTS = ("out", "checkpoint_dir", "cache_dir", "figures", "readme", "inputs", "model")


def flag_of(dest: str) -> str:
  return "--" + dest.replace("_", "-")


# ------------------------------------------------------------------------------ numbers
# The number checks live in recall_theory.errors, below the library (sweep.py uses them too).
from recall_theory.errors import check_distinct, check_representable, normal_range  # noqa: E402,F401


def check_count(flag: str, value, low: int, high: int, why: str = "") -> int:
  """``value`` as an int in ``[low, high]``; the message gives the range and why it ends there."""
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
    raise InputError(f"{flag} must be an integer in [{low}, {high}]{why}, got {value!r}")
  if not low <= int(value) <= high:
    raise InputError(f"{flag} must be an integer in [{low}, {high}]{why}, got {int(value)}")
  return int(value)


# -------------------------------------------------------------------------------- paths
def _name_max(path: str) -> int:
  """Longest file name the file system under ``path`` allows (its nearest existing folder)."""
  folder = os.path.abspath(path)
  while True:
    try:
      if os.path.isdir(folder):
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
      break
    parent = os.path.dirname(folder)
    if parent == folder:
      break
    folder = parent
  return 255


def check_path(flag: str, path) -> None:
  """Refuse a path the file system cannot hold: a component longer than its name limit
  (``OSError: File name too long`` otherwise surfaces from whichever call touches it first)."""
  text = os.fspath(path)
  if "\0" in text:
    raise InputError(f"{flag} must not contain a NUL byte")
  limit = _name_max(text)
  for part in text.split(os.sep):
    size = len(os.fsencode(part))
    if size > limit:
      raise InputError(f"{flag}: the path component {part[:24]!r}... is {size} bytes; this file "
                       f"system allows at most {limit}")
  try:
    os.stat(text)
  except OSError as err:
    if err.errno == errno.ENAMETOOLONG:
      raise InputError(f"{flag}: the path is {len(os.fsencode(text))} bytes, longer than this "
                       f"file system allows") from err


def check_path_flags(args) -> None:
  """Every path flag of a parsed command line (:data:`PATH_DESTS`) the file system can hold."""
  for dest in PATH_DESTS:
    value = getattr(args, dest, None)
    for item in (value if isinstance(value, (list, tuple)) else [value]):
      if isinstance(item, (str, os.PathLike)):
        check_path(flag_of(dest), item)


# -------------------------------------------------------------------------------- devices
def check_mesh_flags(n_devices, fsdp=None, *, fsdp_typed: bool = False) -> None:
  """``--n-devices`` in [1, the devices jax sees] and ``--fsdp`` a divisor of it.

  Call after ``jax.distributed`` is initialised (the count is then global) and before any
  weights are read or models built: the ranges name the flags as typed, not the mesh's
  internal ``n_devices``/``fsdp``.
  """
  import jax

  count = jax.device_count()
  why = (f" (the {count} device(s) jax sees here; on CPU, "
         "XLA_FLAGS=--xla_force_host_platform_device_count=N makes N)")
  n = count if n_devices is None else check_count("--n-devices", n_devices, 1, count, why)
  if fsdp is None:
    return
  divisors = [d for d in range(1, n + 1) if n % d == 0]
  if isinstance(fsdp, bool) or not isinstance(fsdp, int) or fsdp not in divisors:
    source = "" if fsdp_typed else " (the preset's)"
    raise InputError(f"--fsdp{source} must divide the {n} data-parallel device(s) of --n-devices: "
                     f"one of {', '.join(map(str, divisors))}, got {fsdp!r}")
