"""The LM code's progress bar: a thin alias of :mod:`recall_theory.progress`.

``ProgressBar(name, total, enabled=..., stream=...)`` is a
:class:`recall_theory.progress.Stage` (tqdm on a terminal, one line per stage
elsewhere); the pipeline itself calls :func:`recall_theory.progress.stage`.

Example::

  with ProgressBar("teacher", total=200) as bar:
    for _ in range(200):
      bar.update(1, loss=0.5)
"""

from __future__ import annotations

from recall_theory.progress import Stage


class ProgressBar(Stage):
  """:class:`recall_theory.progress.Stage` under its old name (``width`` is ignored)."""

  def __init__(self, name: str, total: int, *, enabled: bool = True, width: int | None = None,
               stream=None):
    del width  # tqdm sizes the bar to the terminal
    super().__init__(name, total, enabled=enabled, stream=stream)
