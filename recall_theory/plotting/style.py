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
from typing import Any, Callable, Iterator, Mapping

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
    "A": "#CC79A7",   # the aligned teacher on its own (the collapse figure's panel b)
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


def darker(colour, towards_black: float = 0.3) -> tuple[float, float, float]:
  """``colour`` moved ``towards_black`` of the way to black: a second curve of the same
  quantity (a bound, a limit) that stays visible where it lies on the first."""
  from matplotlib import colors
  return tuple((1.0 - towards_black) * c for c in colors.to_rgb(colour))


def figure_size(width: float = COLUMN_WIDTH, aspect: float = GOLDEN) -> tuple[float, float]:
  """(width, height) in inches; height = width * aspect (golden ratio by default)."""
  return (width, width * aspect)


@contextlib.contextmanager
def paper_style(**overrides: Any) -> Iterator[None]:
  """Context manager applying the package's rcParams (plus ``overrides``)."""
  with matplotlib.rc_context({**_RC, **overrides}):
    yield


# What every saved figure gets, whether or not the caller is still inside paper_style():
# TrueType fonts (editable text) and the same resolution and cropping.
_SAVE_RC = {key: _RC[key] for key in ("pdf.fonttype", "ps.fonttype", "savefig.dpi", "savefig.bbox",
                                      "savefig.pad_inches")}

# Run-varying metadata removed per format, so that the same figure gives the same bytes on
# every run (a None value tells matplotlib to leave the key out): PDF and SVG otherwise carry
# the creation date (PDF honours SOURCE_DATE_EPOCH only when it is set). The producer
# (PDF) and software (PNG) keys name the matplotlib version: constant within an install, kept.
_REPRODUCIBLE_METADATA = {
    "pdf": {"Creator": "recall-theory", "CreationDate": None, "ModDate": None},
    "png": {},
    "svg": {"Creator": "recall-theory", "Date": None},
}

_BEFORE_SAVE_HOOKS: list[Callable[["matplotlib.figure.Figure", str], None]] = []


@contextlib.contextmanager
def before_save(hook: Callable[["matplotlib.figure.Figure", str], None]) -> Iterator[None]:
  """Within the block, call ``hook(fig, name)`` in :func:`save_figure` before anything is written.

  Used by :func:`recall_theory.plotting.figure_check.checking_saved_figures` to check the
  figures that the figure-making functions save and close themselves.
  """
  _BEFORE_SAVE_HOOKS.append(hook)
  try:
    yield
  finally:
    _BEFORE_SAVE_HOOKS.remove(hook)


def save_figure(fig: "matplotlib.figure.Figure", out_dir: str | os.PathLike, name: str,
                data: Mapping[str, Any], *, formats: tuple[str, ...] = ("pdf", "png")) -> list[Path]:
  """Save ``fig`` as NAME.{pdf,png} plus NAME_data.npz (the arrays that drew it).

  The figure files are byte-reproducible: no creation date in their metadata, so the same
  figure gives the same bytes on every run (with the same matplotlib). They are written with
  the package style's save settings even when the caller has left :func:`paper_style`:
  fonts embedded as TrueType, 300 dpi, tight crop. All files are written to temporary names
  first and renamed into place, then the figure is closed. Returns the written paths.
  ``formats`` may contain "pdf", "png" and "svg".
  """
  unknown = sorted(set(formats) - set(_REPRODUCIBLE_METADATA))
  if unknown:
    raise ValueError(f"save_figure formats must be among {sorted(_REPRODUCIBLE_METADATA)}, got {unknown}")
  for hook in list(_BEFORE_SAVE_HOOKS):
    hook(fig, name)
  out = Path(out_dir)
  written = [io.save_npz(out / f"{name}_data.npz", **data)]
  for fmt in formats:
    target = out / f"{name}.{fmt}"
    with io.atomic_path(target) as tmp, matplotlib.rc_context(_SAVE_RC):
      fig.savefig(tmp, format=fmt, metadata=_REPRODUCIBLE_METADATA[fmt])
    written.append(target)
  plt.close(fig)
  return written
