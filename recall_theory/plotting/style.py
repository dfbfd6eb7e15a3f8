"""The package's figure style and the one way figures are saved.

Every track draws inside :func:`paper_style` and saves with :func:`save_figure`, which
writes ``NAME.pdf`` (fonts embedded as TrueType, editable), ``NAME.png`` and
``NAME_data.npz`` (the arrays that drew it) atomically, so a figure can always be
redrawn without rerunning the experiment. Mathtext only: no LaTeX install needed.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

import matplotlib

matplotlib.use("Agg")  # headless: figures are files, never windows
import matplotlib.pyplot as plt  # noqa: E402

from recall_theory import io  # noqa: E402

COLUMN_WIDTH = 3.25  # inches, one conference column
TEXT_WIDTH = 6.75  # inches, full text width
GOLDEN = (5 ** 0.5 - 1) / 2

# One colour per pipeline, used identically by the MoG and transformer tracks.
PIPELINE_COLORS = {
    "teacher": "#4d4d4d",
    "A-K": "#0072B2",
    "K-A": "#D55E00",
    "K-A(teacher-ref)": "#009E73",
    "A-K(tau)": "#56B4E9",
    "student": "#E69F00",
    "p*": "#000000",
}

_RC = {
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "text.usetex": False,
    "mathtext.fontset": "dejavusans",
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.2,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "figure.dpi": 150,
    "savefig.dpi": 300,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
    "figure.constrained_layout.use": True,
    "image.cmap": "viridis",
}


def figure_size(width: float = COLUMN_WIDTH, aspect: float = GOLDEN) -> tuple[float, float]:
  """(width, height) in inches; height = width * aspect (golden ratio by default)."""
  return (width, width * aspect)


@contextlib.contextmanager
def paper_style(**overrides: Any) -> Iterator[None]:
  """Context manager applying the package's rcParams (plus ``overrides``)."""
  with matplotlib.rc_context({**_RC, **overrides}):
    yield


def save_figure(fig: "matplotlib.figure.Figure", out_dir: str | os.PathLike, name: str,
                data: Mapping[str, Any], *, formats: tuple[str, ...] = ("pdf", "png")) -> list[Path]:
  """Save ``fig`` as NAME.{pdf,png} plus NAME_data.npz (the arrays that drew it).

  All files are written to temporary names first and renamed into place, then the
  figure is closed. Returns the written paths.
  """
  out = Path(out_dir)
  written = [io.save_npz(out / f"{name}_data.npz", **data)]
  for fmt in formats:
    target = out / f"{name}.{fmt}"
    # Fonts must embed as TrueType (editable) even when the caller saves outside paper_style().
    with io.atomic_path(target) as tmp, matplotlib.rc_context({"pdf.fonttype": 42, "ps.fonttype": 42}):
      fig.savefig(tmp, format=fmt, metadata={"Creator": "recall-theory"} if fmt == "pdf" else None)
    written.append(target)
  plt.close(fig)
  return written
