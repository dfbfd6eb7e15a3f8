"""A tiny per-stage progress bar on stderr (no dependency).

Redraws one line in place on a terminal; elsewhere (CI logs, pipes) it prints only
the stage's final line, so logs stay short.

Example::

  with ProgressBar("teacher", total=200) as bar:
    for _ in range(200):
      bar.update(1, loss=0.5)
"""

from __future__ import annotations

import sys
import time


class ProgressBar:
  def __init__(self, name: str, total: int, *, enabled: bool = True, width: int = 24,
               stream=None):
    self.name, self.total, self.width = name, max(int(total), 1), width
    self.stream = sys.stderr if stream is None else stream
    self.enabled = enabled
    self.interactive = enabled and getattr(self.stream, "isatty", lambda: False)()
    self.count = 0
    self.fields: dict = {}
    self.start = time.perf_counter()
    self._last_draw = 0.0

  def __enter__(self) -> "ProgressBar":
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    self.close(failed=exc_type is not None)

  def set(self, count: int, **fields) -> None:
    self.count = min(int(count), self.total)
    self.fields.update(fields)
    now = time.perf_counter()
    if self.interactive and (now - self._last_draw > 0.1 or self.count == self.total):
      self._last_draw = now
      self.stream.write("\r" + self._line())
      self.stream.flush()

  def update(self, n: int = 1, **fields) -> None:
    self.set(self.count + n, **fields)

  def _line(self) -> str:
    done = int(self.width * self.count / self.total)
    bar = "#" * done + "." * (self.width - done)
    extra = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in self.fields.items())
    elapsed = time.perf_counter() - self.start
    return f"{self.name:<28} [{bar}] {self.count}/{self.total} {elapsed:6.1f}s {extra}"

  def close(self, failed: bool = False) -> None:
    if not self.enabled:
      return
    end = " (stopped)" if failed else ""
    self.stream.write(("\r" if self.interactive else "") + self._line() + end + "\n")
    self.stream.flush()
