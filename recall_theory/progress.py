"""The package's one progress facility: named stages with counts and ETA (tqdm).

On a terminal each stage is a tqdm bar (name, count/total, rate, ETA, extra fields);
elsewhere (CI logs, pipes, files) a stage prints one line when it ends, so logs stay
short and still say how long each stage took. Every long-running command (``verify``,
``sweep``, ``mog``, ``lm``, ``smollm2``, ``generate``'s load, the oracle) reports
through :func:`stage`.

Example::

  from recall_theory import progress
  with progress.stage("teacher", total=200) as bar:
    for step in range(200):
      bar.update(1, loss=0.5)

``progress.set_enabled(False)`` silences every stage (tests, ``--quiet``).
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Iterator

_ENABLED = True


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

  def __init__(self, name: str, total: int | None = None, *, enabled: bool | None = None,
               stream=None):
    self.name = name
    self.total = None if total is None else max(int(total), 0)
    self.stream = sys.stderr if stream is None else stream
    self.enabled = _ENABLED if enabled is None else (bool(enabled) and _ENABLED)
    self.interactive = self.enabled and getattr(self.stream, "isatty", lambda: False)()
    self.count = 0
    self.fields: dict = {}
    self.start = time.perf_counter()
    self._closed = False
    self._bar = None
    if self.interactive:
      from tqdm.auto import tqdm
      self._bar = tqdm(total=self.total, desc=name, file=self.stream, leave=True,
                       dynamic_ncols=True, mininterval=0.1)

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
    if self._closed:
      return
    self._closed = True
    if self._bar is not None:
      if failed:
        self._bar.set_description_str(f"{self.name} (stopped)")
      self._bar.close()
      return
    if not self.enabled or bad_input:
      return
    total = "" if self.total is None else f"/{self.total}"
    extra = _format_fields(self.fields)
    end = " (stopped)" if failed else ""
    self.stream.write(f"{self.name}: {self.count}{total} in {self.elapsed:.1f}s"
                      f"{' ' + extra if extra else ''}{end}\n")
    self.stream.flush()


def _is_input_error(exc) -> bool:
  from recall_theory.errors import InputError
  return isinstance(exc, InputError)


@contextlib.contextmanager
def stage(name: str, total: int | None = None, *, enabled: bool | None = None,
          stream=None) -> Iterator[Stage]:
  """Context manager for one named stage of ``total`` steps (None: unknown)."""
  bar = Stage(name, total, enabled=enabled, stream=stream)
  try:
    yield bar
  except BaseException as exc:
    bar.close(failed=True, bad_input=_is_input_error(exc))
    raise
  bar.close()
