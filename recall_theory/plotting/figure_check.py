"""A layout check for figures: what a reviewer would reject at first sight, found by code.

:func:`check_figure` draws a figure once at its own size and dpi (the size it is saved at;
``save_figure`` only crops white space around it) and records every text the renderer
actually draws -- titles, axis labels, tick labels, offset texts, legend texts and titles,
annotations, contour labels, colour-bar labels, super-titles -- so tick labels outside the
view limits, empty strings and invisible artists never count. Lengths are in points
(1/72 inch), converted with the figure's dpi. It returns one line per problem, each
starting with the rule's name (an empty list when the figure is fine):

* ``overlap`` -- the extents of two drawn texts intersect by more than
  ``OVERLAP_TOLERANCE_PT`` (0.75 pt) in both directions. Extents include the font's ascent
  and descent, so this catches tick labels running into each other or into a neighbouring
  panel, labels printed on top of each other, contour labels over one another, while
  glyph boxes that merely touch pass.
* ``crowded`` -- two axis labels or titles (x/y labels, titles, colour-bar labels, figure
  labels) closer than ``LABEL_CLEARANCE_PT`` (4 pt, about a word space at 8 pt): stacked
  rotated y labels of neighbouring rows then read as one label.
* ``off canvas`` -- a text reaches more than ``CANVAS_TOLERANCE_PT`` (1 pt) beyond the
  figure. With ``bbox_inches="tight"`` it would silently widen the saved figure beyond its
  column or text width.
* ``clipped`` -- a clipped text (contour labels, ``ax.text``) cut by its axes by more than
  ``CANVAS_TOLERANCE_PT``: half a label at the edge of a panel.
* ``long tick label`` -- a numeric tick label (one with a digit; category names such as
  ``K-A(teacher-ref)`` are words set on purpose) with a line longer than
  ``MAX_TICK_LABEL_CHARS`` (10) characters as displayed (mathtext markup removed:
  ``$\\mathdefault{10^{-4}}$`` counts as ``10-4``, 4 characters), or printing a number with more than ``MAX_TICK_SIGNIFICANT_DIGITS`` (4)
  significant digits: the signature of a formatter that gave up (``1.08779x10^-1``).
* ``label on a line`` -- a drawn line (a contour line, or a plotted line with a line
  style) runs through a contour label, an ``ax.text`` or an annotation: tested in the
  text's own rotated rectangle, shrunk by ``LINE_TOLERANCE_PT`` (0.75 pt), against points
  along the line no further apart than that tolerance.
* ``legend covers data`` -- a legend's frame, shrunk by ``LEGEND_TOLERANCE_PT`` (1 pt) and
  cut to the axes, contains a vertex of a visible line, a scatter point or an error-bar end,
  or a line's path crosses it (the tests matplotlib's ``loc="best"`` scores). Axes legends
  are tested against their own axes, figure legends against every axes.

* ``outside axes`` -- an ``ax.text`` or annotation attached to a point inside its axes (the
  annotated point, or the text's own position) whose glyphs reach more than
  ``CANVAS_TOLERANCE_PT`` beyond the axes' frame: a point label running out of its panel.
  Texts placed outside on purpose (anchored outside the frame) are left to ``off canvas``.
* ``garbled tick label`` -- a tick label with two powers of ten, a mantissa outside
  [1, 10) (matplotlib's logit formatter writes ``1 - 10.10^-13``), or one text at two ticks
  of an axis (a formatter that lost precision).
* ``not in legend`` -- in an axes a legend explains (its own, or a figure legend), a drawn
  line, collection (bands, error bars, scatters) or contour line whose colour or style
  (dash family, marker) no legend entry shows, or a labelled artist whose label no entry
  reads. Colour and style may be shown by different entries (a colour per pipeline, a grey
  swatch per kind of curve). Colour-mapped artists are the colour bar's (see
  :mod:`recall_theory.plotting.marks`). Heuristic: colours compare as RGB without alpha, so a
  light band of a pipeline's colour is explained by the pipeline's entry.
* ``legend swatch differs`` -- a legend entry drawn unlike what it names: an entry whose
  text is an artist's label must show that artist's colour, dash family and marker; any
  other (proxy) entry must show marks some artist of its axes has (a grey, black or white
  proxy is compared by style only).
* ``out of range`` -- a band (``fill_between``), error bar or data line beyond the valid
  range the plotting code declared for its axes with :func:`declare_valid_range` (a mass
  in [0, 1], a KL >= 0); axes without a declaration are not checked.
* ``marker cut`` -- a marker (line markers, scatter points; error-bar caps excepted) whose
  centre lies within its radius (half the marker size plus half its edge, less
  ``MARKER_TOLERANCE_PT``) of the clipping frame, or outside it: drawn as a chevron, or
  not at all.
* ``indistinguishable curves`` -- two plotted curves, of one colour or not, of which at least
  ``INDISTINGUISHABLE_SHARE`` (90%) of the shorter lies within half the wider line width
  (+1 px) of the other, in the rendered image: one hides the other, whatever their dash
  patterns and colours (a darker dashed bound on its solid ceiling, an orange dashed law on
  a black one, two pipelines at 0), unless both carry different markers, or a thin curve is
  drawn on one of another colour at least ``WIDE_LINE_RATIO`` (3x) wider (a light underlay).
  Heuristic: it samples the curves every pixel and compares nearest distances.
* ``hidden marker`` / ``hidden line`` -- markers of which ``HIDDEN_EXTENT`` (70%) of their
  reach lies inside an opaque marker of another colour drawn after them at their own place
  (centres within ``COINCIDENT_PX``, 0.25 pt: a grey "not converged" cross under a coloured disc,
  two pipelines at one value), or a line (an interval bar) lying entirely under such markers.
* ``line on frame`` -- a line or contour line that runs along an edge of its axes over 90%
  of its length (a teacher's value on the bottom spine, a boundary on the right edge).
* ``band off axes`` / ``error bar off axes`` -- a band or error bar running beyond the frame
  of its axes (a mean - sd band below a log axis' floor): where it ends is not shown.
* ``colour floor unmarked`` -- colour-mapped values piled at an end of the colour bar (two or
  more, at least 1%) without an extension there: a floor read as a value (an end declared as
  the quantity's own bound with :func:`declare_valid_range` on the bar's axes is a value).
* ``tick beyond range`` -- a labelled y tick outside the declared valid range (a mass axis to 10).
* ``unlabelled axis`` -- an axis drawing numeric tick labels with no label: not its own, not
  a figure-wide one, not (x) that of a panel in its column, not (y) that of a panel in its row
  that shares its y axis.
* ``colour clash`` -- a legend colour (a category) within ``COLOUR_CLASH_RGB`` (0.2, RGB) of a
  colour of a colour bar's map in the same figure: the category reads as a value.

:func:`assert_figure_ok` raises ``AssertionError`` listing the problems, and
:func:`checking_saved_figures` checks every figure handed to
:func:`recall_theory.plotting.save_figure` inside a ``with`` block (the figure-making
functions save and close their figures themselves); ``tests/test_all_figures.py`` runs it
on every figure the package makes.

Example::

  >>> fig, ax = plt.subplots(figsize=(3.25, 2.0), layout="constrained")
  >>> ax.plot([0, 1], [0, 1], label="data"); ax.legend(loc="center")
  >>> check_figure(fig)
  ['legend covers data: legend of axes[0,0] lies over 0 data points and 1 lines of axes[0,0]']
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Iterator

import matplotlib

matplotlib.use("Agg")
from matplotlib import colors as mcolors  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.collections import LineCollection, PathCollection, PolyCollection  # noqa: E402
from matplotlib.contour import ContourSet  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.legend import Legend  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.text import Annotation, Text  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402
import numpy as np  # noqa: E402

from recall_theory.plotting import style  # noqa: E402
from recall_theory.plotting.marks import (NO_LINE, NO_MARKER, Mark, artist_marks, drawn_artists,  # noqa: E402
                                          error_bar_caps, is_neutral, legend_entries, rgb)

OVERLAP_TOLERANCE_PT = 0.75
CANVAS_TOLERANCE_PT = 1.0
LEGEND_TOLERANCE_PT = 1.0
LABEL_CLEARANCE_PT = 4.0
LINE_TOLERANCE_PT = 0.75
MAX_TICK_LABEL_CHARS = 10
MAX_TICK_SIGNIFICANT_DIGITS = 4
MARKER_TOLERANCE_PT = 0.5
INDISTINGUISHABLE_SHARE = 0.9
WIDE_LINE_RATIO = 3.0


@dataclass(frozen=True)
class DrawnText:
  """One text the renderer drew: its string as displayed, what it is, and its pixel extent."""

  artist: Text
  shown: str
  role: str
  extent: Bbox  # the visible part: cut to the clip box of a clipped text
  full_extent: Bbox


def displayed_text(raw: str) -> str:
  """The characters a (math)text string shows: ``$\\mathdefault{10^{-4}}$`` -> ``10-4``.

  Font switches (``\\mathdefault``, ``\\mathrm``, ...) vanish, any other command
  (``\\times``, ``\\beta``) counts as one character, braces, ``^``, ``_`` and ``$`` vanish.
  """
  text = re.sub(r"\\(mathdefault|mathrm|mathit|mathbf|mathsf|mathtt|mathcal|rm|it|bf|left|right)"
                r"(?![A-Za-z])", "", raw)
  text = re.sub(r"\\[,;:! ]", " ", text)
  text = re.sub(r"\\[A-Za-z]+", "#", text)  # one glyph per remaining command
  text = re.sub(r"[${}^_]", "", text)
  return text.replace("\u2212", "-").strip()


def _significant_digits(number: str) -> int:
  """Significant digits of a decimal literal: '0.000316' -> 3, '1.08779' -> 6, '1000' -> 1."""
  digits = number.replace(".", "").lstrip("0")
  if "." not in number:
    digits = digits.rstrip("0")  # trailing zeros of an integer only place the point
  return len(digits)


def _describe_axes(fig: Figure) -> dict[int, str]:
  """Short names of the figure's axes: 'axes[row,col] "title"', 'colour bar', 'axes 3'."""
  names = {}
  for index, ax in enumerate(fig.axes):
    if hasattr(ax, "_colorbar"):
      names[id(ax)] = "colour bar"
      continue
    spec = ax.get_subplotspec() if hasattr(ax, "get_subplotspec") else None
    name = f"axes[{spec.rowspan.start},{spec.colspan.start}]" if spec is not None else f"axes {index}"
    title = ax.get_title() or ax.get_title("left")
    title = title if len(title) <= 24 else title[:21] + "..."
    names[id(ax)] = f"{name} {title!r}" if title else name
  return names


def _text_roles(fig: Figure) -> dict[int, str]:
  """id(text) -> what the text is, e.g. 'x tick label of axes[1,0]'."""
  roles: dict[int, str] = {}
  axes_names = _describe_axes(fig)

  def legend_roles(legend: Legend, owner: str) -> None:
    for text in legend.get_texts():
      roles[id(text)] = f"legend entry ({owner})"
    roles[id(legend.get_title())] = f"legend title ({owner})"

  for ax in fig.axes:
    owner = axes_names[id(ax)]
    for letter, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
      for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
        roles[id(tick.label1)] = roles[id(tick.label2)] = f"{letter} tick label of {owner}"
      roles[id(axis.label)] = f"{letter} label of {owner}"
      roles[id(axis.offsetText)] = f"{letter} offset text of {owner}"
    for title in (ax.title, ax._left_title, ax._right_title):
      roles[id(title)] = f"title of {owner}"
    for text in ax.texts:
      roles[id(text)] = f"{'annotation' if isinstance(text, Annotation) else 'text'} in {owner}"
    for collection in ax.collections:
      if isinstance(collection, ContourSet):
        for text in getattr(collection, "labelTexts", []):
          roles[id(text)] = f"contour label in {owner}"
    if ax.get_legend() is not None:
      legend_roles(ax.get_legend(), f"legend of {owner}")
  for legend in fig.legends:
    legend_roles(legend, "figure legend")
  for attr, role in (("_suptitle", "figure title"), ("_supxlabel", "figure x label"),
                     ("_supylabel", "figure y label")):
    if getattr(fig, attr, None) is not None:
      roles[id(getattr(fig, attr))] = role
  for text in fig.texts:
    roles.setdefault(id(text), "figure text")
  return roles


def _visible_extent(text: Text, extent: Bbox) -> Bbox:
  """The part of a text's window extent inside its clip box (all of it when not clipped)."""
  clip = text.get_clip_box() if text.get_clip_on() else None
  if clip is not None:
    cut = Bbox.intersection(extent, clip)
    return cut if cut is not None else Bbox.from_extents(0, 0, 0, 0)
  return extent


def drawn_texts(fig: Figure) -> tuple[list[DrawnText], "matplotlib.backend_bases.RendererBase"]:
  """Draw ``fig`` with the Agg renderer and return every non-empty text it drew, in draw order.

  The renderer's ``draw_text`` and ``draw_tex`` are wrapped on this one renderer instance,
  and ``Text.draw`` for the duration of the draw (a multi-line text draws its lines without
  naming itself), so exactly the texts that reach the picture are returned.
  """
  if not isinstance(fig.canvas, FigureCanvasAgg):
    FigureCanvasAgg(fig)
  # The layout engine runs at the start of the draw (it measures texts without drawing them),
  # so one draw both lays the figure out and records the texts at their final places.
  renderer = fig.canvas.get_renderer()
  seen: dict[int, Text] = {}  # id -> artist: each text once, however many lines it has
  drawing: list[Text] = []  # the text being drawn: a multi-line text draws its lines without mtext

  def recording(method):
    def record(gc, x, y, s, prop, angle, *args, mtext=None, **kwargs):
      owner = mtext if mtext is not None else (drawing[-1] if drawing else None)
      if owner is not None and s.strip():
        seen.setdefault(id(owner), owner)
      return method(gc, x, y, s, prop, angle, *args, mtext=mtext, **kwargs)
    return record

  text_draw = Text.draw

  def tracked_draw(self, *args, **kwargs):
    drawing.append(self)
    try:
      return text_draw(self, *args, **kwargs)
    finally:
      drawing.pop()

  renderer.draw_text = recording(renderer.draw_text)
  renderer.draw_tex = recording(renderer.draw_tex)
  Text.draw = tracked_draw  # for this draw only: which text a line without mtext belongs to
  try:
    fig.canvas.draw()
  finally:
    Text.draw = text_draw
    del renderer.draw_text, renderer.draw_tex  # back to the class's methods
  roles = _text_roles(fig)
  drawn = []
  for text in seen.values():
    shown = displayed_text(text.get_text())
    if shown:
      full = text.get_window_extent(renderer)
      drawn.append(DrawnText(text, shown, roles.get(id(text), "text"), _visible_extent(text, full), full))
  return drawn, renderer


def _label(item: DrawnText) -> str:
  raw = item.artist.get_text()
  return f"{item.role} {raw if len(raw) <= 40 else raw[:37] + '...'!r}"


def _intersections(boxes_Nx4: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Pairwise widths and heights (N, N) of the intersections of boxes (x0, y0, x1, y1); < 0: apart."""
  x0, y0, x1, y1 = boxes_Nx4.T
  width_NxN = np.minimum(x1[:, None], x1[None, :]) - np.maximum(x0[:, None], x0[None, :])
  height_NxN = np.minimum(y1[:, None], y1[None, :]) - np.maximum(y0[:, None], y0[None, :])
  return width_NxN, height_NxN


def _overlaps(drawn: list[DrawnText], tolerance_px: float) -> list[str]:
  boxes_Nx4 = np.array([[d.extent.x0, d.extent.y0, d.extent.x1, d.extent.y1] for d in drawn]).reshape(-1, 4)
  width_NxN, height_NxN = _intersections(boxes_Nx4)
  hits = np.triu((width_NxN > tolerance_px) & (height_NxN > tolerance_px), k=1)  # i < j: each pair once
  return [f"overlap: {_label(drawn[i])} and {_label(drawn[j])} "
          f"({width_NxN[i, j]:.0f} x {height_NxN[i, j]:.0f} px)" for i, j in zip(*np.nonzero(hits))]


def _off_canvas(fig: Figure, drawn: list[DrawnText], tolerance_px: float) -> list[str]:
  canvas = fig.bbox
  problems = []
  for d in drawn:
    e = d.extent
    beyond = max(canvas.x0 - e.x0, e.x1 - canvas.x1, canvas.y0 - e.y0, e.y1 - canvas.y1)
    if e.width > 0 and beyond > tolerance_px:
      problems.append(f"off canvas: {_label(d)} extends {beyond:.0f} px beyond the figure")
  return problems


def _clipped(drawn: list[DrawnText], renderer, tolerance_px: float) -> list[str]:
  """Texts cut by their clip box (contour labels at an axes edge) by more than ``tolerance_px``."""
  problems = []
  for d in drawn:
    full = d.full_extent
    cut = max(d.extent.x0 - full.x0, full.x1 - d.extent.x1, d.extent.y0 - full.y0, full.y1 - d.extent.y1)
    if d.extent.width > 0 and cut > tolerance_px:
      problems.append(f"clipped: {_label(d)} is cut by {cut:.0f} px at the edge of its axes")
  return problems


def _long_tick_labels(drawn: list[DrawnText]) -> list[str]:
  problems = []
  for d in drawn:
    if " tick label " not in f" {d.role} ":
      continue
    longest = max(len(line) for line in d.shown.split("\n"))
    if longest > MAX_TICK_LABEL_CHARS and re.search(r"\d", d.shown):  # a number, not a category name
      problems.append(f"long tick label: {_label(d)} has {longest} characters "
                      f"(at most {MAX_TICK_LABEL_CHARS})")
      continue
    for number in re.findall(r"\d+\.?\d*", d.shown):
      if _significant_digits(number) > MAX_TICK_SIGNIFICANT_DIGITS:
        problems.append(f"long tick label: {_label(d)} prints {number} "
                        f"(more than {MAX_TICK_SIGNIFICANT_DIGITS} significant digits)")
        break
  return problems


def _is_axis_label(role: str) -> bool:
  return role.startswith(("x label", "y label", "title", "figure title", "figure x label",
                          "figure y label"))


def _crowded_labels(drawn: list[DrawnText], overlap_px: float, clearance_px: float) -> list[str]:
  """Axis labels and titles closer than ``clearance_px`` to each other (but not overlapping)."""
  labels = [d for d in drawn if _is_axis_label(d.role)]
  problems = []
  for i, a in enumerate(labels):
    for b in labels[i + 1:]:
      ea, eb = a.extent, b.extent
      dx = min(ea.x1, eb.x1) - max(ea.x0, eb.x0)  # > 0: the x ranges intersect by dx
      dy = min(ea.y1, eb.y1) - max(ea.y0, eb.y0)
      if dx > overlap_px and dy > overlap_px:
        continue  # reported as an overlap
      gap = max(-dx, -dy)
      if gap < clearance_px:
        problems.append(f"crowded: {_label(a)} and {_label(b)} are {max(gap, 0.0):.0f} px apart "
                        f"(at least {clearance_px:.0f} px)")
  return problems


def _densified(polyline_Nx2: np.ndarray, step_px: float) -> np.ndarray:
  """Points along a polyline (N, 2) no more than ``step_px`` apart, its vertices included."""
  polyline_Nx2 = polyline_Nx2[np.all(np.isfinite(polyline_Nx2), axis=1)]
  if len(polyline_Nx2) < 2:
    return polyline_Nx2
  start, step = polyline_Nx2[:-1], np.diff(polyline_Nx2, axis=0)
  pieces = np.maximum(np.ceil(np.hypot(step[:, 0], step[:, 1]) / step_px), 1).astype(int)
  segment = np.repeat(np.arange(len(step)), pieces)  # which segment each new point lies on
  first = np.repeat(np.cumsum(pieces) - pieces, pieces)
  fraction = (np.arange(segment.size) - first + 1) / pieces[segment]  # in (0, 1]
  return np.concatenate([polyline_Nx2[:1], start[segment] + step[segment] * fraction[:, None]])


def _line_points(ax, step_px: float) -> np.ndarray:
  """Display coordinates along every drawn line of ``ax``: contour lines and plotted lines."""
  polylines = []
  for collection in ax.collections:
    if isinstance(collection, ContourSet) and not collection.filled and collection.get_visible():
      transform = collection.get_transform()
      for path in collection.get_paths():  # one path per level, MOVETO between pieces
        polylines += transform.transform_path(path).to_polygons(closed_only=False)
  for line in ax.lines:
    if line.get_visible() and line.get_linestyle() not in ("None", "none", "", " "):
      polylines.append(line.get_transform().transform(line.get_xydata()))
  points = [_densified(np.asarray(p, dtype=float), step_px) for p in polylines]
  points = [p for p in points if len(p)]
  return np.concatenate(points) if points else np.zeros((0, 2))


def _labels_on_lines(fig: Figure, drawn: list[DrawnText], renderer, tolerance_px: float) -> list[str]:
  """Contour labels and texts inside axes that a drawn line runs through.

  The test uses the text's own (rotated) rectangle, shrunk by ``tolerance_px``: a point of a
  line, in the text's frame, inside it means the line crosses the glyphs.
  """
  problems = []
  cache: dict[int, np.ndarray] = {}
  for d in drawn:
    if not d.role.startswith(("contour label", "text in", "annotation in")) or d.artist.axes is None:
      continue
    ax = d.artist.axes
    if id(ax) not in cache:
      cache[id(ax)] = _line_points(ax, step_px=max(tolerance_px, 0.5))
    points = cache[id(ax)]
    if not len(points):
      continue
    upright = Text(0, 0, d.artist.get_text(), fontproperties=d.artist.get_fontproperties())
    upright.set_figure(fig)
    size = upright.get_window_extent(renderer)
    angle = np.deg2rad(d.artist.get_rotation())
    cos, sin = np.cos(angle), np.sin(angle)
    full = d.full_extent
    centre = np.array([(full.x0 + full.x1) / 2, (full.y0 + full.y1) / 2])
    shifted = points - centre
    along = shifted[:, 0] * cos + shifted[:, 1] * sin
    across = -shifted[:, 0] * sin + shifted[:, 1] * cos
    inside = ((np.abs(along) < size.width / 2 - tolerance_px)
              & (np.abs(across) < size.height / 2 - tolerance_px))
    clip = ax.bbox
    inside &= (points[:, 0] >= clip.x0) & (points[:, 0] <= clip.x1) & (points[:, 1] >= clip.y0) \
        & (points[:, 1] <= clip.y1)
    if np.any(inside):
      problems.append(f"label on a line: a line runs through {_label(d)}")
  return problems


def _data_points(ax) -> tuple[np.ndarray, list]:
  """Display coordinates of the axes' drawn data points (N, 2), and its line paths."""
  points, paths = [], []
  for line in ax.lines:
    if not isinstance(line, Line2D) or not line.get_visible():
      continue
    path = line.get_transform().transform_path(line.get_path())
    vertices = path.vertices[np.all(np.isfinite(path.vertices), axis=1)]
    points.append(vertices)
    if line.get_linestyle() not in ("None", "none", "", " "):
      paths.append(path)
  for collection in ax.collections:
    if not collection.get_visible():
      continue
    if isinstance(collection, PathCollection):  # scatter
      offsets = np.asarray(collection.get_offsets(), dtype=float).reshape(-1, 2)
      points.append(collection.get_offset_transform().transform(offsets))
    elif isinstance(collection, LineCollection) and not isinstance(collection, ContourSet):
      for segment in collection.get_segments():  # error bars
        if len(segment):
          points.append(collection.get_transform().transform(np.asarray(segment, dtype=float)))
  stacked = np.concatenate(points) if points else np.zeros((0, 2))
  return stacked[np.all(np.isfinite(stacked), axis=1)], paths


def _legend_on_data(fig: Figure, renderer, tolerance_px: float) -> list[str]:
  problems = []
  axes_names = _describe_axes(fig)
  legends = [(ax.get_legend(), [ax], f"legend of {axes_names[id(ax)]}") for ax in fig.axes
             if ax.get_legend() is not None]
  legends += [(legend, [ax for ax in fig.axes if not hasattr(ax, "_colorbar")], "figure legend")
              for legend in fig.legends]
  for legend, axes, name in legends:
    if not legend.get_visible():
      continue
    frame = legend.get_window_extent(renderer)
    frame = Bbox.from_extents(frame.x0 + tolerance_px, frame.y0 + tolerance_px,
                              frame.x1 - tolerance_px, frame.y1 - tolerance_px)
    for ax in axes:
      region = Bbox.intersection(frame, ax.bbox)
      if region is None or region.width <= 0 or region.height <= 0:
        continue
      points, paths = _data_points(ax)
      inside = int(np.sum((points[:, 0] > region.x0) & (points[:, 0] < region.x1)
                          & (points[:, 1] > region.y0) & (points[:, 1] < region.y1)))
      crossing = sum(bool(path.intersects_bbox(region, filled=False)) for path in paths)
      if inside or crossing:
        problems.append(f"legend covers data: {name} lies over {inside} data points and "
                        f"{crossing} lines of {axes_names[id(ax)]}")
  return problems



# ----------------------------------------------------------------------------- artists

VALID_RANGE_ATTR = "recall_theory_valid_y_range"


def declare_valid_range(ax, low: float = -np.inf, high: float = np.inf, quantity: str = "y") -> None:
  """Declare the values ``quantity`` can take on ``ax``'s y axis: ``low <= y <= high``.

  Plotting code calls it on every axes whose y has a range by definition (a mass in
  [0, 1], a KL >= 0); the ``out of range`` check then fails any band, error bar or data
  line drawn beyond it (a mean +- sd band reaching a mass of 1.2).
  """
  setattr(ax, VALID_RANGE_ATTR, (float(low), float(high), str(quantity)))


def _plot_axes(fig: Figure) -> list:
  return [ax for ax in fig.axes if not hasattr(ax, "_colorbar")]


def _covering_legends(fig: Figure, ax) -> list[Legend]:
  """The legends that explain ``ax``: its own and every figure legend."""
  legends = [ax.get_legend()] if ax.get_legend() is not None else []
  return [lg for lg in legends + list(fig.legends) if lg.get_visible()]


def _artist_name(artist) -> str:
  label = artist.get_label() if hasattr(artist, "get_label") else ""
  kind = type(artist).__name__
  if label and not str(label).startswith("_"):
    return f"{kind} {str(label)[:40]!r}"
  return kind


def _labelled_artists(ax) -> dict[str, set[Mark]]:
  """label -> marks of everything ``ax`` draws under that label: artists and error-bar
  containers (a line and the scatter of its points may share one label)."""
  found: dict[str, set[Mark]] = {}
  caps = error_bar_caps(ax)
  for artist in drawn_artists(ax):
    label = str(artist.get_label())
    if label and not label.startswith("_"):
      found.setdefault(label, set()).update(artist_marks(artist))
  for container in ax.containers:
    label = str(container.get_label())
    if label and not label.startswith("_"):
      for child in container.get_children():
        if child.get_visible() and id(child) not in caps:
          found.setdefault(label, set()).update(artist_marks(child))
  return found


def _mark_is_represented(mark: Mark, shown: set[Mark]) -> bool:
  """A drawn mark is explained when the legend shows its colour and its style (each in some
  entry: legends often give colour (pipeline) and style (kind of curve) separately)."""
  colour_ok = mark.colour is None or mark.colour in {m.colour for m in shown}
  if mark.kind == "line":
    style_ok = mark.style in {m.style for m in shown if m.kind == "line"}
  elif mark.kind == "marker":
    style_ok = mark.style is None or mark.style in {m.style for m in shown if m.kind == "marker"}
  elif mark.kind == "hatch":
    style_ok = mark.style in {m.style for m in shown if m.kind == "hatch"}
  else:
    style_ok = True
  return colour_ok and style_ok


def _artists_missing_from_legend(fig: Figure) -> list[str]:
  """Drawn lines, collections and contour lines whose colour or style no legend entry shows,
  and labelled artists whose label no legend reads, in axes that a legend explains."""
  names = _describe_axes(fig)
  problems = []
  for ax in _plot_axes(fig):
    legends = _covering_legends(fig, ax)
    if not legends:
      continue
    entries = [entry for lg in legends for entry in legend_entries(lg)]
    shown = set().union(*(marks for _, marks in entries)) if entries else set()
    texts = {text for text, _ in entries}
    for artist in drawn_artists(ax):
      missing = sorted((m for m in artist_marks(artist) if not _mark_is_represented(m, shown)),
                       key=Mark.describe)
      if missing:
        problems.append(f"not in legend: {_artist_name(artist)} of {names[id(ax)]} is drawn as "
                        f"{', '.join(m.describe() for m in missing)}, which no legend entry shows")
    for label in sorted(set(_labelled_artists(ax)) - texts):
      problems.append(f"not in legend: the artist labelled {label[:40]!r} of {names[id(ax)]} has "
                      f"no legend entry reading so")
  return problems


def _marks_equal(entry: Mark, drawn: Mark, any_colour: bool = False) -> bool:
  if entry.kind != drawn.kind:
    return False
  if entry.style is not None and drawn.style is not None and entry.style != drawn.style:
    return False
  return any_colour or entry.colour is None or entry.colour == drawn.colour


def _legend_swatch_mismatches(fig: Figure) -> list[str]:
  """Legend entries drawn unlike the artist they name.

  An entry whose text is the label of an artist must show exactly that artist's marks. Any
  other entry (a proxy handle) must show marks that some artist in the axes it explains
  has; a grey, black or white proxy stands for a style in any colour, so only its style
  is compared.
  """
  problems = []
  legends = [lg for lg in (*(ax.get_legend() for ax in _plot_axes(fig)), *fig.legends)
             if lg is not None and lg.get_visible()]
  for legend in legends:
    axes = [ax for ax in _plot_axes(fig) if any(lg is legend for lg in _covering_legends(fig, ax))]
    labelled: dict[str, list[set[Mark]]] = {}  # label -> its marks in each axes, then in all of them
    for ax in axes:
      for label, marks in _labelled_artists(ax).items():
        labelled.setdefault(label, []).append(marks)
    for candidates in labelled.values():  # a figure legend's entry may name a label drawn in several panels
      candidates.append(set().union(*candidates))
    drawn = set()
    for ax in axes:
      for artist in (*drawn_artists(ax), *ax.patches):
        drawn |= artist_marks(artist)
    for text, marks in legend_entries(legend):
      if text in labelled:
        if not any(all(any(_marks_equal(m, d) for d in candidate) for m in marks) for candidate in labelled[text]):
          drawn_as = "; ".join(", ".join(sorted(d.describe() for d in c)) for c in labelled[text][:2])
          problems.append(f"legend swatch differs: entry {text[:40]!r} shows "
                          f"{', '.join(sorted(m.describe() for m in marks))} but its artist is drawn as {drawn_as}")
        continue
      unmatched = [m for m in marks
                   if not any(_marks_equal(m, d, any_colour=is_neutral(m.colour)) for d in drawn)]
      if unmatched:
        problems.append(f"legend swatch differs: entry {text[:40]!r} shows "
                        f"{', '.join(sorted(m.describe() for m in unmatched))}, which no drawn artist has")
  return problems


def _anchor_in_display(text: Text) -> np.ndarray:
  """Where a text is attached: an annotation's annotated point, else the text's position."""
  if isinstance(text, Annotation):
    return np.asarray(text._get_xy_display(), float)
  return np.asarray(text.get_transform().transform(text.get_unitless_position()), float)


def _texts_outside_axes(drawn: list[DrawnText], tolerance_px: float) -> list[str]:
  """Texts attached to a point inside their axes (a label of a data point, an in-panel
  note) whose drawn glyphs reach beyond the axes' frame: a label running out of its panel."""
  problems = []
  for d in drawn:
    if not d.role.startswith(("text in", "annotation in")) or d.artist.axes is None:
      continue
    frame = d.artist.axes.bbox
    x, y = _anchor_in_display(d.artist)
    if not (frame.x0 - tolerance_px <= x <= frame.x1 + tolerance_px
            and frame.y0 - tolerance_px <= y <= frame.y1 + tolerance_px):
      continue  # placed outside on purpose: off canvas / overlap still apply
    e = d.extent
    beyond = max(frame.x0 - e.x0, e.x1 - frame.x1, frame.y0 - e.y0, e.y1 - frame.y1)
    if e.width > 0 and beyond > tolerance_px:
      problems.append(f"outside axes: {_label(d)} runs {beyond:.0f} px out of its axes")
  return problems


def _data_y(artist, ax) -> np.ndarray:
  """y of an artist drawn in data coordinates (fills, error bars, data lines); empty otherwise."""
  if artist.get_transform() != ax.transData:
    return np.zeros(0)
  if isinstance(artist, Line2D):
    return np.asarray(artist.get_xydata(), float)[:, 1]
  if isinstance(artist, PolyCollection):
    paths = artist.get_paths()
    return np.concatenate([p.vertices[:, 1] for p in paths]) if paths else np.zeros(0)
  if isinstance(artist, LineCollection) and not isinstance(artist, ContourSet):
    segments = [np.asarray(s, float).reshape(-1, 2)[:, 1] for s in artist.get_segments()]
    return np.concatenate(segments) if segments else np.zeros(0)
  return np.zeros(0)


def _out_of_declared_range(fig: Figure) -> list[str]:
  """Bands, error bars and data lines beyond the range the plotting code declared for the
  axes (:func:`declare_valid_range`): a +-sd band of a mass above 1 or a KL below 0."""
  names = _describe_axes(fig)
  problems = []
  for ax in _plot_axes(fig):
    declared = getattr(ax, VALID_RANGE_ATTR, None)
    if declared is None:
      continue
    low, high, quantity = declared
    slack = 1e-9 * max(1.0, abs(low) if np.isfinite(low) else 0.0, abs(high) if np.isfinite(high) else 0.0)
    for artist in (*ax.lines, *ax.collections):
      y = _data_y(artist, ax)
      y = y[np.isfinite(y)]
      outside = y[(y < low - slack) | (y > high + slack)]
      if outside.size:
        worst = outside[np.argmax(np.maximum(low - outside, outside - high))]
        problems.append(f"out of range: {_artist_name(artist)} of {names[id(ax)]} reaches "
                        f"{quantity} = {worst:.3g}, outside its valid range [{low:g}, {high:g}]")
  return problems


def _marker_centres(artist) -> np.ndarray:
  """Display coordinates of the markers an artist draws (markevery honoured for ints and slices)."""
  if isinstance(artist, Line2D):
    xy = artist.get_transform().transform(np.asarray(artist.get_xydata(), float))
    every = artist.get_markevery()
    if isinstance(every, (int, np.integer)):
      xy = xy[::int(every)]
    elif (isinstance(every, tuple) and len(every) == 2
          and all(isinstance(v, (int, np.integer)) for v in every)):  # (start, step)
      xy = xy[int(every[0])::int(every[1])]
    elif isinstance(every, slice):
      xy = xy[every]
    elif isinstance(every, (list, tuple, np.ndarray)) and np.asarray(every).dtype.kind in "iu":
      xy = xy[np.asarray(every)]
  else:
    offsets = np.asarray(artist.get_offsets(), float).reshape(-1, 2)
    xy = artist.get_offset_transform().transform(offsets)
  return xy[np.all(np.isfinite(xy), axis=1)]


def _marker_radii_pt(artist, n: int) -> np.ndarray:
  """Radius in points of each marker: half the marker size plus half its edge."""
  if isinstance(artist, Line2D):
    return np.full(n, artist.get_markersize() / 2 + artist.get_markeredgewidth() / 2)
  sizes = np.resize(np.asarray(artist.get_sizes(), float), n) if len(artist.get_sizes()) else np.zeros(n)
  edge = np.resize(np.asarray(artist.get_linewidth(), float), n) if n else np.zeros(0)
  return np.sqrt(np.maximum(sizes, 0)) / 2 + edge / 2


def _draws_markers(artist) -> bool:
  if not artist.get_visible() or not artist.get_clip_on():
    return False
  if isinstance(artist, Line2D):
    return artist.get_marker() not in NO_MARKER and artist.get_markersize() > 0
  return isinstance(artist, PathCollection)


def _markers_cut_by_frame(fig: Figure, tolerance_px: float) -> list[str]:
  """Markers whose centre lies less than a marker radius inside the frame (cut) or outside it
  (hidden): a point drawn at an axis limit reads as a chevron, or not at all."""
  names = _describe_axes(fig)
  px_per_pt = fig.dpi / 72.0
  problems = []
  for ax in _plot_axes(fig):
    frame = ax.bbox
    for artist in drawn_artists(ax):  # error-bar caps sit at the bar's ends: the bar's business
      if not _draws_markers(artist):
        continue
      centres = _marker_centres(artist)
      if not len(centres):
        continue
      radius_px = _marker_radii_pt(artist, len(centres)) * px_per_pt
      inside_by = np.minimum.reduce([centres[:, 0] - frame.x0, frame.x1 - centres[:, 0],
                                     centres[:, 1] - frame.y0, frame.y1 - centres[:, 1]])
      hidden = int(np.sum(inside_by < -radius_px + tolerance_px))
      cut = int(np.sum((inside_by < radius_px - tolerance_px) & (inside_by >= -radius_px + tolerance_px)))
      if hidden or cut:
        problems.append(f"marker cut: {cut} of {len(centres)} markers of {_artist_name(artist)} in "
                        f"{names[id(ax)]} are cut by the frame and {hidden} lie outside the limits")
  return problems


_MANTISSA_TIMES_POWER = re.compile(r"(\d+(?:\.\d+)?)\s*(?:\\cdot|\\times|\u00d7|\u00b7)\s*10\^")


def _garbled_tick_labels(drawn: list[DrawnText]) -> list[str]:
  """Tick labels a formatter got wrong: two powers of ten in one label or a mantissa outside
  [1, 10) (``1 - 10.10^-13``), and one text at two ticks of an axis (lost precision)."""
  problems = []
  ticks = [d for d in drawn if " tick label " in f" {d.role} "]
  for d in ticks:
    raw = d.artist.get_text()
    if raw.count("10^") >= 2:
      problems.append(f"garbled tick label: {_label(d)} shows two powers of ten")
      continue
    for mantissa in _MANTISSA_TIMES_POWER.findall(raw):
      if not 1.0 <= float(mantissa) < 10.0:
        problems.append(f"garbled tick label: {_label(d)} has the mantissa {mantissa} (outside [1, 10))")
        break
  by_axis: dict[tuple[str, str], list[float]] = {}
  for d in ticks:
    along = (d.extent.x0 + d.extent.x1) / 2 if d.role.startswith("x") else (d.extent.y0 + d.extent.y1) / 2
    by_axis.setdefault((d.role, d.shown), []).append(along)
  for (role, shown), positions in by_axis.items():
    if len(positions) > 1 and np.ptp(positions) > 1.0:
      problems.append(f"garbled tick label: {shown!r} labels {len(positions)} ticks ({role})")
  return problems


def _curve_points(line: Line2D, frame: Bbox, step_px: float) -> np.ndarray:
  points = _densified(line.get_transform().transform(np.asarray(line.get_xydata(), float)), step_px)
  keep = ((points[:, 0] >= frame.x0) & (points[:, 0] <= frame.x1)
          & (points[:, 1] >= frame.y0) & (points[:, 1] <= frame.y1))
  return points[keep]


def _marker_style(line: Line2D):
  marks = [m for m in artist_marks(line) if m.kind == "marker"]
  return marks[0].style if marks else None


def _indistinguishable_curves(fig: Figure, share: float = 0.9) -> list[str]:
  """Two curves lying on each other, whatever their colours (heuristic, see the module docstring)."""
  from scipy.spatial import cKDTree

  names = _describe_axes(fig)
  px_per_pt = fig.dpi / 72.0
  problems = []
  for ax in _plot_axes(fig):
    curves = [line for line in ax.lines if line.get_visible()
              and line.get_linestyle() not in NO_LINE and line.get_linewidth() > 0]
    points = [_curve_points(line, ax.bbox, 1.0) for line in curves]
    for i, a in enumerate(curves):
      for j in range(i + 1, len(curves)):
        b = curves[j]
        if min(len(points[i]), len(points[j])) < 10:
          continue
        markers = (_marker_style(a), _marker_style(b))
        if None not in markers and markers[0] != markers[1]:
          continue  # different markers tell the two apart
        thin, wide = sorted((a, b), key=lambda line: line.get_linewidth())
        if (wide.get_linewidth() >= WIDE_LINE_RATIO * thin.get_linewidth()
                and thin.get_zorder() >= wide.get_zorder() and rgb(thin.get_color()) != rgb(wide.get_color())):
          continue  # a thin line drawn on a much wider one of another colour: the wide one shows around it
        shorter, longer = (points[i], points[j]) if len(points[i]) <= len(points[j]) else (points[j], points[i])
        reach_px = max(a.get_linewidth(), b.get_linewidth()) * px_per_pt / 2 + 1.0
        distance, _ = cKDTree(longer).query(shorter)
        covered = float(np.mean(distance <= reach_px))
        if covered >= share:
          colours = ("one colour" if rgb(a.get_color()) == rgb(b.get_color()) else
                     f"colours {mcolors.to_hex(a.get_color())} and {mcolors.to_hex(b.get_color())}")
          problems.append(f"indistinguishable curves: {_artist_name(a)} and {_artist_name(b)} of "
                          f"{names[id(ax)]} ({colours}) lie on each other over "
                          f"{100 * covered:.0f}% of the shorter")
  return problems


# ----------------------------------------------------------------------------- hidden marks

def _draw_order(ax) -> list:
  """The axes' lines and collections in the order they are drawn (zorder, then addition)."""
  children = [a for a in getattr(ax, "_children", [*ax.collections, *ax.lines])
              if isinstance(a, (Line2D, PathCollection)) and a.get_visible()]
  return sorted(children, key=lambda a: a.get_zorder())  # stable: ties keep the addition order


def _marker_geometry(artist, fig: Figure) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Per marker of ``artist``: centres (N, 2) in pixels, inscribed and circumscribed radii in
  pixels, whether its face is opaque (alpha >= 0.9, not 'none') and its RGB face or edge colour."""
  from matplotlib.markers import MarkerStyle

  px_per_pt = fig.dpi / 72.0
  empty = (np.zeros((0, 2)), np.zeros(0), np.zeros(0), np.zeros(0, bool), np.zeros((0, 3)))
  if not _draws_markers(artist):
    return empty
  centres = _marker_centres(artist)
  n = len(centres)
  if not n:
    return empty
  if isinstance(artist, Line2D):
    style = MarkerStyle(artist.get_marker(), artist.get_fillstyle())
    vertices = style.get_transform().transform(style.get_path().vertices) * artist.get_markersize() * px_per_pt
    inner = np.full(n, _inscribed(vertices))
    outer = np.full(n, float(np.max(np.hypot(*vertices.T))) + artist.get_markeredgewidth() * px_per_pt / 2)
    face = artist.get_markerfacecolor()
    alpha = 1.0 if artist.get_alpha() is None else float(artist.get_alpha())
    opaque = style.is_filled() and not _transparent_colour(face) and mcolors.to_rgba(face)[3] * alpha >= 0.9
    colour = rgb(face if style.is_filled() and not _transparent_colour(face) else artist.get_markeredgecolor())
    return centres, inner, outer, np.full(n, opaque), np.tile(colour, (n, 1))
  paths = artist.get_paths()
  transforms = artist.get_transforms()
  if not len(paths) or not len(transforms):
    return empty
  inner, outer = np.zeros(n), np.zeros(n)
  for i in range(n):
    # the draw has set the collection's transforms in pixels (sqrt(size) x dpi / 72)
    vertices = paths[i % len(paths)].vertices @ transforms[i % len(transforms)][:2, :2].T
    inner[i], outer[i] = _inscribed(vertices), float(np.max(np.hypot(*vertices.T)))
  faces = np.asarray(artist.get_facecolor(), float).reshape(-1, 4)
  edges = np.asarray(artist.get_edgecolor(), float).reshape(-1, 4)
  alpha = 1.0 if artist.get_alpha() is None else float(artist.get_alpha())
  if len(faces):
    face_n = faces[np.arange(n) % len(faces)]
    opaque = face_n[:, 3] * alpha >= 0.9
    colours = face_n[:, :3]
  else:
    opaque = np.zeros(n, bool)
    colours = edges[np.arange(n) % len(edges), :3] if len(edges) else np.zeros((n, 3))
  return centres, inner, outer, opaque, np.round(colours * 255) / 255


def _inscribed(vertices_Nx2: np.ndarray) -> float:
  """Distance from the marker's centre to the nearest of its outline's edges (pixels)."""
  if len(vertices_Nx2) < 2:
    return 0.0
  a, b = vertices_Nx2[:-1], vertices_Nx2[1:]
  d = b - a
  length2 = np.maximum(np.sum(d * d, axis=1), 1e-12)
  t = np.clip(-np.sum(a * d, axis=1) / length2, 0.0, 1.0)
  nearest = a + t[:, None] * d
  return float(np.min(np.hypot(*nearest.T)))


def _transparent_colour(colour) -> bool:
  if isinstance(colour, str) and colour.lower() == "none":
    return True
  return mcolors.to_rgba(colour)[3] == 0


HIDDEN_EXTENT = 0.7  # share of a marker's reach that must lie under another marker to call it hidden
# A marker is hidden by one drawn at its own place (centres this close, in points): two groups at
# one value. Neighbours of a dense scatter that partly cover each other are not reported.
COINCIDENT_PX = 0.25


def _hidden_marks(fig: Figure, tolerance_px: float = 1.0) -> list[str]:
  """Markers (and short lines: an interval bar) drawn entirely inside an opaque marker of
  another colour that is drawn after them: the reader sees the later marker only.

  A marker is hidden when a later one is drawn at its place (centres within ``COINCIDENT_PX``
  points: two groups at one value, not neighbours of a dense scatter) and ``HIDDEN_EXTENT`` of
  its outline's reach lies inside the later marker's inscribed circle (``tolerance_px``
  allowed): the tips of a cross poking out of a disc do not make it readable. A line is
  hidden when every point of it is.
  A marker covered by one of its own colour (a mean over its own seeds) is not reported.
  """
  from scipy.spatial import cKDTree

  names = _describe_axes(fig)
  problems = []
  for ax in _plot_axes(fig):
    order = _draw_order(ax)
    geometry = {id(a): _marker_geometry(a, fig) for a in order}
    for i, artist in enumerate(order):
      later = [b for b in order[i + 1:] if b is not artist and len(geometry[id(b)][0])]
      # coverers: opaque faces of closed outlines (a cross or a dash has no inside)
      solid = {id(b): geometry[id(b)][3] & (geometry[id(b)][1] > 1.0) for b in later}
      covers = [(geometry[id(b)][0][solid[id(b)]], geometry[id(b)][1][solid[id(b)]],
                 geometry[id(b)][4][solid[id(b)]]) for b in later]
      covers = [c for c in covers if len(c[0])]
      if not covers:
        continue
      cover_xy = np.concatenate([c[0] for c in covers])
      cover_r = np.concatenate([c[1] for c in covers])
      cover_rgb = np.concatenate([c[2] for c in covers])
      tree = cKDTree(cover_xy)
      reach = float(cover_r.max())

      def hidden(points_Nx2, radius_N, colour_Nx3, within=np.inf):
        out = np.zeros(len(points_Nx2), bool)
        for k, neighbours in enumerate(tree.query_ball_point(points_Nx2, reach + tolerance_px)):
          for j in neighbours:
            distance = np.hypot(*(cover_xy[j] - points_Nx2[k]))
            if (np.any(np.abs(cover_rgb[j] - colour_Nx3[k]) > 1.5 / 255) and distance <= within
                and distance + HIDDEN_EXTENT * radius_N[k] <= cover_r[j] + tolerance_px):
              out[k] = True
              break
        return out

      centres, _, outer, _, colours = geometry[id(artist)]
      if len(centres):
        covered = hidden(centres, outer, colours, within=COINCIDENT_PX * fig.dpi / 72.0)
        if covered.any():
          problems.append(f"hidden marker: {int(covered.sum())} of {len(centres)} markers of "
                          f"{_artist_name(artist)} in {names[id(ax)]} lie under opaque markers of "
                          f"another colour drawn after them")
      if isinstance(artist, Line2D) and artist.get_linestyle() not in NO_LINE and artist.get_linewidth() > 0:
        points = _curve_points(artist, ax.bbox, 1.0)
        if 2 <= len(points):
          width = artist.get_linewidth() * fig.dpi / 72.0 / 2
          covered = hidden(points, np.full(len(points), width), np.tile(rgb(artist.get_color()), (len(points), 1)))
          if covered.all():
            problems.append(f"hidden line: {_artist_name(artist)} in {names[id(ax)]} lies entirely under "
                            f"opaque markers of another colour drawn after it")
  return problems


# ----------------------------------------------------------------------------- frame and ranges

def _polylines(ax) -> list[tuple[object, np.ndarray, float]]:
  """(artist, display polyline, half width px) of every stroked line and contour piece of ``ax``."""
  found = []
  px_per_pt = ax.figure.dpi / 72.0
  for collection in ax.collections:
    if isinstance(collection, ContourSet) and not collection.filled and collection.get_visible():
      transform = collection.get_transform()
      widths = np.atleast_1d(collection.get_linewidth())
      for path in collection.get_paths():
        for piece in transform.transform_path(path).to_polygons(closed_only=False):
          found.append((collection, np.asarray(piece, float), float(widths[0]) * px_per_pt / 2))
  for line in ax.lines:
    if line.get_visible() and line.get_linestyle() not in NO_LINE and line.get_linewidth() > 0:
      found.append((line, line.get_transform().transform(np.asarray(line.get_xydata(), float)),
                    line.get_linewidth() * px_per_pt / 2))
  return found


def _lines_on_frame(fig: Figure, share: float = 0.9) -> list[str]:
  """Lines and contour lines that run along an edge of their axes' frame (within their half
  width + 1 px) over ``share`` of their visible length: the spine or the clip hides them."""
  names = _describe_axes(fig)
  problems = []
  for ax in _plot_axes(fig):
    frame = ax.bbox
    for artist, polyline, half in _polylines(ax):
      points = _densified(polyline, 1.0)
      inside = points[(points[:, 0] >= frame.x0 - 0.5) & (points[:, 0] <= frame.x1 + 0.5)
                      & (points[:, 1] >= frame.y0 - 0.5) & (points[:, 1] <= frame.y1 + 0.5)]
      if len(inside) < 10:
        continue
      reach = half + 1.0
      edges = {"left": np.abs(inside[:, 0] - frame.x0), "right": np.abs(inside[:, 0] - frame.x1),
               "bottom": np.abs(inside[:, 1] - frame.y0), "top": np.abs(inside[:, 1] - frame.y1)}
      for edge, distance in edges.items():
        on = float(np.mean(distance <= reach))
        if on >= share:
          problems.append(f"line on frame: {_artist_name(artist)} of {names[id(ax)]} runs along the "
                          f"{edge} edge of its axes over {100 * on:.0f}% of its length")
          break
  return problems


def _bands_beyond_frame(fig: Figure, tolerance_px: float) -> list[str]:
  """Bands (``fill_between``) and error bars that run out of their axes: the reader cannot see
  where they end (a mean - sd band below the floor of a log axis)."""
  names = _describe_axes(fig)
  problems = []
  for ax in _plot_axes(fig):
    frame = ax.bbox
    for artist in ax.collections:
      if (not artist.get_visible() or not artist.get_clip_on() or isinstance(artist, ContourSet)
              or artist.get_array() is not None
              or not isinstance(artist, (PolyCollection, LineCollection))
              or artist.get_transform() != ax.transData):
        continue
      vertices = [np.asarray(p.vertices, float) for p in artist.get_paths()] if isinstance(artist, PolyCollection) \
          else [np.asarray(s, float).reshape(-1, 2) for s in artist.get_segments()]
      vertices = [v for v in vertices if len(v)]
      if not vertices:
        continue
      xy = ax.transData.transform(np.concatenate(vertices))
      xy = xy[np.all(np.isfinite(xy), axis=1)]
      beyond = np.max(np.maximum.reduce([frame.x0 - xy[:, 0], xy[:, 0] - frame.x1,
                                         frame.y0 - xy[:, 1], xy[:, 1] - frame.y1])) if len(xy) else 0.0
      if beyond > tolerance_px:
        kind = "band" if isinstance(artist, PolyCollection) else "error bar"
        problems.append(f"{kind} off axes: {_artist_name(artist)} of {names[id(ax)]} runs {beyond:.0f} px "
                        f"beyond the frame of its axes")
  return problems


def _colour_floor_unmarked(fig: Figure, share: float = 0.01) -> list[str]:
  """A colour bar over colour-mapped data piled at (or beyond) one end of its scale (two values
  or more, at least ``share`` of them) without an extension (triangle) at that end: a floor
  read as a value. An end the plotting code declared as the quantity's own bound
  (:func:`declare_valid_range` on the colour bar's axes: log10 of a mass <= 0) is a value."""
  problems = []
  for bar_ax in (ax for ax in fig.axes if hasattr(ax, "_colorbar")):
    bar = bar_ax._colorbar
    mappable = bar.mappable
    if isinstance(mappable, ContourSet):
      continue
    values = mappable.get_array()
    if values is None:
      continue
    values = np.ma.compressed(np.ma.masked_invalid(np.ma.asarray(values, float)))
    if not values.size or mappable.norm.vmin is None:
      continue
    low, high = float(mappable.norm.vmin), float(mappable.norm.vmax)
    slack = 1e-9 * max(1.0, abs(low), abs(high))
    # a bound of the quantity itself (log10 of a mass <= 0) is a value, not a floor
    natural = getattr(bar_ax, VALID_RANGE_ATTR, (-np.inf, np.inf, ""))
    for end, at_end, extended, bound in (
        ("lowest", values <= low + slack, bar.extend in ("min", "both"), abs(natural[0] - low) <= slack),
        ("highest", values >= high - slack, bar.extend in ("max", "both"), abs(natural[1] - high) <= slack)):
      if at_end.sum() >= 2 and np.mean(at_end) >= share and not extended and not bound:
        problems.append(f"colour floor unmarked: {int(at_end.sum())} of {values.size} colour-mapped values "
                        f"sit at or beyond the {end} colour of the bar ({low if end == 'lowest' else high:g}) "
                        f"but the bar has no extension there (extend='min'/'max' or a '<=' tick label)")
  return problems


def _ticks_beyond_valid_range(fig: Figure, drawn: list[DrawnText]) -> list[str]:
  """Labelled y ticks outside the range the axes declared (:func:`declare_valid_range`): a mass
  axis running to 10."""
  names = _describe_axes(fig)
  shown = {id(d.artist) for d in drawn}
  problems = []
  for ax in _plot_axes(fig):
    declared = getattr(ax, VALID_RANGE_ATTR, None)
    if declared is None:
      continue
    low, high, quantity = declared
    slack = 1e-9 * max(1.0, abs(low) if np.isfinite(low) else 0.0, abs(high) if np.isfinite(high) else 0.0)
    bottom, top = sorted(ax.get_ylim())
    for tick in ax.yaxis.get_major_ticks():
      value = tick.get_loc()
      if not (bottom <= value <= top) or not ({id(tick.label1), id(tick.label2)} & shown):
        continue
      if value < low - slack or value > high + slack:
        problems.append(f"tick beyond range: the y tick {displayed_text(tick.label1.get_text())!r} of "
                        f"{names[id(ax)]} labels {quantity} = {value:g}, outside its valid range "
                        f"[{low:g}, {high:g}]")
  return problems


def _unlabelled_axes(fig: Figure, drawn: list[DrawnText]) -> list[str]:
  """An axis that draws numeric tick labels but has no label: not its own, not a figure-wide
  one, not (x) that of a panel in its column, not (y) that of a panel in its row sharing its
  y axis. The reader sees numbers without knowing of what (a right-hand panel with its own scale)."""
  names = _describe_axes(fig)
  shown = {id(d.artist): d.shown for d in drawn}
  problems = []
  figure_label = {"x": getattr(fig, "_supxlabel", None), "y": getattr(fig, "_supylabel", None)}
  plot_axes = [ax for ax in _plot_axes(fig) if ax.get_visible() and ax.axison]

  def spans(ax):
    spec = ax.get_subplotspec() if hasattr(ax, "get_subplotspec") else None
    return (None, None) if spec is None else (spec.colspan, spec.rowspan)

  def labelled_by_neighbour(ax, letter) -> bool:
    # x: a panel of the same column labels it (columns of one quantity, labelled at the bottom);
    # y: a panel of the same row labels it *and* shares its y axis (same scale, ticks or not)
    col, row = spans(ax)
    for other in plot_axes:
      if other is ax or spans(other)[0] is None:
        continue
      if letter == "x" and spans(other)[0] == col and other.xaxis.get_label().get_text().strip():
        return True
      if (letter == "y" and spans(other)[1] == row and other.yaxis.get_label().get_text().strip()
              and ax.get_shared_y_axes().joined(ax, other)):
        return True
    return False

  for ax in plot_axes:
    for letter, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
      if axis.get_label().get_text().strip() or (figure_label[letter] is not None
                                                 and figure_label[letter].get_text().strip()):
        continue
      if labelled_by_neighbour(ax, letter):
        continue
      numeric = [shown[id(t.label1)] for t in axis.get_major_ticks()
                 if id(t.label1) in shown and re.search(r"\d", shown[id(t.label1)])]
      if numeric:
        problems.append(f"unlabelled axis: the {letter} axis of {names[id(ax)]} draws tick labels "
                        f"({', '.join(numeric[:3])}{', ...' if len(numeric) > 3 else ''}) but has no label")
  return problems


COLOUR_CLASH_RGB = 0.2  # categorical colours nearer than this (RGB distance) to a colour map's read as values


def _colour_clashes(fig: Figure) -> list[str]:
  """A legend colour (a category: pipeline, group) close to a colour of a colour bar's map in
  the same figure: a categorical marker reads as a value of the colour scale."""
  bars = [ax._colorbar for ax in fig.axes if hasattr(ax, "_colorbar")]
  if not bars:
    return []
  samples = np.concatenate([np.asarray(bar.cmap(np.linspace(0.0, 1.0, 256)))[:, :3] for bar in bars])
  legends = [lg for lg in (*(ax.get_legend() for ax in _plot_axes(fig)), *fig.legends)
             if lg is not None and lg.get_visible()]
  problems, seen = [], set()
  for legend in legends:
    for text, marks in legend_entries(legend):
      for mark in marks:
        if mark.colour is None or is_neutral(mark.colour) or mark.colour in seen:
          continue
        distance = np.sqrt(np.sum((samples - np.asarray(mark.colour)) ** 2, axis=1))
        if distance.min() < COLOUR_CLASH_RGB:
          seen.add(mark.colour)
          problems.append(f"colour clash: legend entry {text[:40]!r} is drawn in "
                          f"{mcolors.to_hex(mark.colour)}, {distance.min():.2f} from a colour of "
                          f"the colour bar's map (at least {COLOUR_CLASH_RGB:g}): a category reads as a value")
  return problems


def check_figure(fig: Figure) -> list[str]:
  """Problems a reader would see in ``fig`` (see the module docstring); [] when there are none.

  Args:
    fig: a matplotlib figure, laid out as it will be saved (same size and dpi).
  Returns:
    one human-readable line per problem: overlapping texts, text off the canvas or out of
    its axes, long or garbled tick labels, legends over data, artists missing from the
    legend or drawn unlike their swatch, bands out of their declared range, markers cut by
    the frame, curves hiding each other.
  """
  drawn, renderer = drawn_texts(fig)
  px_per_pt = fig.dpi / 72.0
  return (_overlaps(drawn, OVERLAP_TOLERANCE_PT * px_per_pt)
          + _crowded_labels(drawn, OVERLAP_TOLERANCE_PT * px_per_pt, LABEL_CLEARANCE_PT * px_per_pt)
          + _off_canvas(fig, drawn, CANVAS_TOLERANCE_PT * px_per_pt)
          + _clipped(drawn, renderer, CANVAS_TOLERANCE_PT * px_per_pt)
          + _long_tick_labels(drawn)
          + _labels_on_lines(fig, drawn, renderer, LINE_TOLERANCE_PT * px_per_pt)
          + _legend_on_data(fig, renderer, LEGEND_TOLERANCE_PT * px_per_pt)
          + _texts_outside_axes(drawn, CANVAS_TOLERANCE_PT * px_per_pt)
          + _garbled_tick_labels(drawn)
          + _artists_missing_from_legend(fig)
          + _legend_swatch_mismatches(fig)
          + _out_of_declared_range(fig)
          + _markers_cut_by_frame(fig, MARKER_TOLERANCE_PT * px_per_pt)
          + _indistinguishable_curves(fig, INDISTINGUISHABLE_SHARE)
          + _hidden_marks(fig, MARKER_TOLERANCE_PT * px_per_pt)
          + _lines_on_frame(fig, INDISTINGUISHABLE_SHARE)
          + _bands_beyond_frame(fig, CANVAS_TOLERANCE_PT * px_per_pt)
          + _colour_floor_unmarked(fig)
          + _ticks_beyond_valid_range(fig, drawn)
          + _unlabelled_axes(fig, drawn)
          + _colour_clashes(fig))


def assert_figure_ok(fig: Figure, name: str) -> None:
  """Raise ``AssertionError`` naming figure ``name`` and listing every problem of :func:`check_figure`."""
  problems = check_figure(fig)
  if problems:
    raise AssertionError(f"figure {name!r} has {len(problems)} layout problem(s):\n  "
                         + "\n  ".join(problems))


@contextlib.contextmanager
def checking_saved_figures() -> Iterator[dict[str, list[str]]]:
  """Within the block, check every figure handed to ``save_figure`` just before it is written.

  Yields a dict filled as figures are saved: figure name -> its problems (``[]`` when fine).
  Example::

    with checking_saved_figures() as found:
      figures.plot_tradeoff(tmp_path, betas, metrics, "4-mode")
    assert found == {"mog_tradeoff": []}
  """
  found: dict[str, list[str]] = {}

  def hook(fig: Figure, name: str) -> None:
    found[name] = check_figure(fig)

  with style.before_save(hook):
    yield found
