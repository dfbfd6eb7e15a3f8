"""The package's one progress facility: named stages with counts and ETA (tqdm).

On a terminal each stage is a tqdm bar (name, count/total, rate, ETA, extra fields);
elsewhere (CI logs, pipes, files) a stage prints a line once it has run for
:data:`START_AFTER_S` seconds (so a redirected log shows what is running, not only what has
finished, while a stage that ends at once, or stops at once on bad input, stays one line or
none), a count line at most every
:data:`REPORT_EVERY_S` seconds while it runs, and one line when it ends, saying how long it
took. Counts are in the stage's own ``unit`` ("runs", "tokens", "checks"), and a stage
that counts nothing says "done" instead of a count of 0. Every long-running command (``verify``,
``sweep``, ``mog``, ``lm``, ``smollm2``, ``generate``'s load, the oracle) reports
through :func:`stage`.

Example::

  from recall_theory import progress
  with progress.stage("teacher", total=200, unit="steps") as bar:
    for step in range(200):
      bar.update(1, loss=0.5)

``progress.set_enabled(False)`` silences every stage (tests, ``--quiet``).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Iterator

_ENABLED = True
START_AFTER_S = 1.0    # off a terminal: a stage still running after this says it started
REPORT_EVERY_S = 30.0  # off a terminal: the longest a running stage stays silent (when it counts)


def set_enabled(enabled: bool) -> None:
  """Switch all progress output on or off (process-wide)."""
  global _ENABLED
  _ENABLED = bool(enabled)


def is_enabled() -> bool:
  return _ENABLED


def _format_fields(fields: dict) -> str:
  return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())


class Stage:
  """One named stage; ``update``/``set`` advance it, ``close`` ends it (see :func:`stage`)."""

  def __init__(self, name: str, total: int | None = None, *, unit: str = "",
               enabled: bool | None = None, stream=None):
    self.name = name
    self.unit = unit
    self.total = None if total is None else max(int(total), 0)
    self.stream = sys.stderr if stream is None else stream
    self.enabled = _ENABLED if enabled is None else (bool(enabled) and _ENABLED)
    self.interactive = self.enabled and getattr(self.stream, "isatty", lambda: False)()
    self.count = 0
    self.fields: dict = {}
    self.start = time.perf_counter()
    self._last_line = self.start
    self._closed = False
    self._bar = None
    self._lock = threading.Lock()  # the start-line timer writes from its own thread
    self._timer = None
    if self.interactive:
      from tqdm.auto import tqdm
      self._bar = tqdm(total=self.total, desc=name, file=self.stream, leave=True,
                       dynamic_ncols=True, mininterval=0.1, unit=f" {unit}" if unit else "it")
    elif self.enabled:  # a log: say what is running (its first step may compile for long)
      if START_AFTER_S <= 0:
        self._announce()
      else:
        self._timer = threading.Timer(START_AFTER_S, self._announce)
        self._timer.daemon = True
        self._timer.start()

  def __enter__(self) -> "Stage":
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    self.close(failed=exc_type is not None, bad_input=_is_input_error(exc))

  def set(self, count: int, **fields) -> None:
    """Set the count (clipped to the total) and any extra fields shown beside it."""
    count = int(count)
    if self.total is not None:
      count = min(count, self.total)
    delta, self.count = count - self.count, count
    self.fields.update(fields)
    if self._bar is not None:
      if fields:
        self._bar.set_postfix_str(_format_fields(self.fields), refresh=False)
      self._bar.update(delta)
    elif self.enabled and delta and time.perf_counter() - self._last_line >= REPORT_EVERY_S:
      self._write(f"{self.name}: {self._count()} after {self.elapsed:.0f}s")

  def update(self, n: int = 1, **fields) -> None:
    """Advance by ``n`` and update the extra fields."""
    self.set(self.count + n, **fields)

  @property
  def elapsed(self) -> float:
    return time.perf_counter() - self.start

  def close(self, failed: bool = False, bad_input: bool = False) -> None:
    """End the stage: close the bar, or print its one summary line off a terminal.

    ``bad_input``: the stage stopped on an InputError, whose one line says everything; a
    "(stopped)" summary line beside it would make the error two lines.
    """
    with self._lock:
      if self._closed:
        return
      self._closed = True
    if self._timer is not None:
      self._timer.cancel()
    if self._bar is not None:
      if failed:
        self._bar.set_description_str(f"{self.name} (stopped)")
      self._bar.close()
      return
    if not self.enabled or bad_input:
      return
    extra = _format_fields(self.fields)
    end = " (stopped)" if failed else ""
    # nothing counted and no total: a count would read "0" for a stage that did its work
    done = "done" if self.total is None and self.count == 0 else self._count()
    self._write(f"{self.name}: {done} in {self.elapsed:.1f}s{' ' + extra if extra else ''}{end}")

  def _announce(self) -> None:
    size = "" if self.total is None else f" ({self.total}{self._unit()})"
    with self._lock:
      if not self._closed:
        self._write(f"{self.name}: started{size}")

  def _unit(self) -> str:
    return f" {self.unit}" if self.unit else ""

  def _count(self) -> str:
    total = "" if self.total is None else f"/{self.total}"
    return f"{self.count}{total}{self._unit()}"

  def _write(self, line: str) -> None:
    self._last_line = time.perf_counter()
    self.stream.write(line + "\n")
    self.stream.flush()


def _is_input_error(exc) -> bool:
  from recall_theory.errors import InputError
  return isinstance(exc, InputError)


@contextlib.contextmanager
def stage(name: str, total: int | None = None, *, unit: str = "", enabled: bool | None = None,
          stream=None) -> Iterator[Stage]:
  """Context manager for one named stage of ``total`` ``unit``s (None: unknown)."""
  bar = Stage(name, total, unit=unit, enabled=enabled, stream=stream)
  try:
    yield bar
  except BaseException as exc:
    bar.close(failed=True, bad_input=_is_input_error(exc))
    raise
  bar.close()
