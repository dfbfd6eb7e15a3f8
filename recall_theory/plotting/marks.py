"""What a reader sees of a drawn artist: its *marks* (colour + line style, marker or fill).

The legend checks of :mod:`recall_theory.plotting.figure_check` compare the marks of the
artists drawn in an axes with the marks of the legend's swatches. A mark is one visual
encoding a reader can match by eye:

* ``line``   -- a stroked path: its colour and dash family (solid, dashed, dotted, dash-dot);
* ``marker`` -- a marker: its colour and ``(shape, hollow)``; scatter markers have no
  recoverable shape (``style=None``, which matches any shape);
* ``fill``   -- a filled area (``fill_between`` bands, legend patches): its colour;
* ``hatch``  -- a hatched area: its hatch pattern (its colour is the cell's, not a key).

Colours are compared as RGB without alpha (a 15%-opaque band of a pipeline's colour belongs
to that pipeline). Colour-mapped artists (meshes, images, scatters coloured by a value,
filled contours without hatches) carry no marks: their colour bar explains them.
"""

from __future__ import annotations

from dataclasses import dataclass

from matplotlib import colors as mcolors
from matplotlib.collections import Collection, LineCollection, PathCollection, PolyCollection
from matplotlib.container import ErrorbarContainer
from matplotlib.contour import ContourSet
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
import numpy as np

NO_LINE = ("None", "none", "", " ")
NO_MARKER = (None, "None", "none", "", " ")
# The markers matplotlib draws an error bar's caps with: part of the bar, not symbols of their own.
CAP_MARKERS = ("_", "|", 2, 3)


@dataclass(frozen=True)
class Mark:
  kind: str  # "line", "marker", "fill" or "hatch"
  colour: tuple[float, float, float] | None  # RGB rounded to 1/255; None: not a key (hatches)
  style: object = None  # dash family, (shape, hollow), hatch pattern; None: any

  def describe(self) -> str:
    colour = "" if self.colour is None else mcolors.to_hex(self.colour)
    if self.kind == "line":
      return f"{self.style} line {colour}"
    if self.kind == "marker":
      shape = "marker" if self.style is None else f"{'hollow ' if self.style[1] else ''}{self.style[0]!r} marker"
      return f"{shape} {colour}"
    if self.kind == "hatch":
      return f"hatch {self.style!r}"
    return f"fill {colour}"


def rgb(colour) -> tuple[float, float, float]:
  """RGB rounded to 8 bits, alpha dropped: colours equal by eye compare equal."""
  r, g, b = mcolors.to_rgb(colour)
  return (round(r * 255) / 255, round(g * 255) / 255, round(b * 255) / 255)


def is_neutral(colour: tuple[float, float, float] | None) -> bool:
  """Black, greys and white: the colour legends use for a style that holds in every colour."""
  return colour is not None and max(colour) - min(colour) < 0.03


def dash_family(pattern) -> str:
  """'solid', 'dashed', 'dotted' or 'dash-dot' of an unscaled dash pattern ``(offset, seq)``.

  The families a reader tells apart; ``':'`` (1, 1.65) and ``(0, (1, 2))`` are both dotted.
  """
  seq = pattern[1] if pattern is not None else None
  if not seq:
    return "solid"
  if len(seq) >= 4:
    return "dash-dot"
  return "dotted" if seq[0] <= 1.5 else "dashed"


def _transparent(colour) -> bool:
  if isinstance(colour, str) and colour.lower() == "none":
    return True
  return mcolors.to_rgba(colour)[3] == 0


def _line2d_marks(line: Line2D) -> set[Mark]:
  marks = set()
  if line.get_linestyle() not in NO_LINE and line.get_linewidth() > 0:
    marks.add(Mark("line", rgb(line.get_color()), dash_family(line._unscaled_dash_pattern)))
  marker = line.get_marker()
  if marker not in NO_MARKER and line.get_markersize() > 0:
    face = line.get_markerfacecolor()
    hollow = _transparent(face) or rgb(face) == (1.0, 1.0, 1.0)
    colour = line.get_markeredgecolor() if hollow else face
    if not _transparent(colour):
      marks.add(Mark("marker", rgb(colour), (str(marker), hollow)))
  return marks


def _unique_rgbs(rgba_Nx4) -> list[tuple[float, float, float]]:
  rgba_Nx4 = np.asarray(rgba_Nx4, float).reshape(-1, 4)
  return sorted({rgb(c) for c in rgba_Nx4 if c[3] > 0})


def _collection_dash(collection: Collection) -> str:
  patterns = getattr(collection, "_us_linestyles", None) or [(0, None)]
  return dash_family(patterns[0])


def _contour_marks(contours: ContourSet) -> set[Mark]:
  if contours.filled:
    hatches = [h for h in (contours.hatches or []) if h]
    return {Mark("hatch", None, h) for h in hatches}
  if getattr(contours, "colors", None) is None:  # coloured by level through the colour map
    return set()
  edge = np.asarray(contours.get_edgecolor(), float).reshape(-1, 4)
  patterns = getattr(contours, "_us_linestyles", None) or [(0, None)]
  marks = set()
  for i, colour in enumerate(edge):
    if colour[3] > 0:
      marks.add(Mark("line", rgb(colour), dash_family(patterns[i % len(patterns)])))
  return marks


def _scatter_marks(points: PathCollection) -> set[Mark]:
  """A scatter's marker colour: its edge where the face is colour-mapped or hollow."""
  edge = points.get_edgecolor()
  edge_shown = np.size(edge) and np.max(np.atleast_1d(points.get_linewidth())) > 0
  if points.get_array() is not None:  # face coloured by a value: the colour bar explains it,
    # and a grey or black outline is only an outline; a coloured one names a group
    outline = [c for c in _unique_rgbs(edge) if not is_neutral(c)] if edge_shown else []
    return {Mark("marker", c, None) for c in outline}
  # a white face is a hollow marker, as for lines (_line2d_marks): its outline carries the colour
  face = [c for c in _unique_rgbs(points.get_facecolor()) if c != (1.0, 1.0, 1.0) or not edge_shown]
  colours = face if face else (_unique_rgbs(edge) if edge_shown else [])
  return {Mark("marker", c, None) for c in colours}


def artist_marks(artist) -> set[Mark]:
  """The marks of one artist (empty for artists a legend cannot explain: colour-mapped ones)."""
  if not artist.get_visible():
    return set()
  if isinstance(artist, Line2D):
    return _line2d_marks(artist)
  if isinstance(artist, ContourSet):
    return _contour_marks(artist)
  if isinstance(artist, PathCollection):
    return _scatter_marks(artist)
  if isinstance(artist, LineCollection):
    if artist.get_array() is not None:
      return set()
    dash = _collection_dash(artist)
    return {Mark("line", c, dash) for c in _unique_rgbs(artist.get_edgecolor())}
  if isinstance(artist, PolyCollection):
    if artist.get_array() is not None:
      return set()
    marks = {Mark("fill", c) for c in _unique_rgbs(artist.get_facecolor())}
    if artist.get_hatch():
      marks.add(Mark("hatch", None, artist.get_hatch()))
    return marks
  if isinstance(artist, Patch):
    if artist.get_hatch():
      return {Mark("hatch", None, artist.get_hatch())}
    return {Mark("fill", c) for c in _unique_rgbs([artist.get_facecolor()])}
  return set()


def error_bar_caps(ax) -> set[int]:
  """ids of the cap lines of ``ax``'s error bars (drawn with their bar, not as markers)."""
  return {id(cap) for container in ax.containers if isinstance(container, ErrorbarContainer)
          for cap in container.lines[1]}


def drawn_artists(ax) -> list:
  """The artists of ``ax`` a legend may have to explain: lines (error-bar caps excepted),
  collections, contour sets."""
  caps = error_bar_caps(ax)
  return [a for a in (*ax.lines, *ax.collections) if a.get_visible() and id(a) not in caps]


def legend_entries(legend) -> list[tuple[str, set[Mark]]]:
  """(text, marks of its swatch) per entry of ``legend``, in order.

  The swatch is every artist its handler drew (an error bar's marker, bar and caps; each
  member of a tuple handle), read from the legend's packed boxes (column -> row ->
  (swatch area, text area)), a layout matplotlib has kept since 3.0.
  """
  entries = []
  for column in legend._legend_handle_box.get_children():
    for row in column.get_children():
      swatch, text = row.get_children()
      artists = swatch.get_children()
      if any(isinstance(a, LineCollection) for a in artists):  # an error bar: its caps are the bar's
        artists = [a for a in artists if not (isinstance(a, Line2D) and a.get_marker() in CAP_MARKERS)]
      marks = set().union(*(artist_marks(a) for a in artists)) if artists else set()
      entries.append((text._text.get_text(), marks))
  return entries
