"""Labels beside data points, placed where they cover nothing and stay inside their axes.

:func:`label_points` writes one short label per point (a budget "16x", a temperature
"tau=0.6") at the first of a few offsets around the point -- right, left, above, below,
then the diagonals -- whose text box

* lies inside the axes' frame (a label never runs out of its panel),
* contains no vertex of a drawn line (lines sampled every pixel) and no marker, error
  bar or scatter point of the axes (their boxes grown by the marker's radius), and
* does not meet a text already in the axes or a label placed before it.

Where no offset is clean, the cheapest is used (a line through the text costs most). The figure is laid
out (drawn once) before placing, so the geometry is the saved one; labels inside the
axes do not change a constrained layout.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.lines import Line2D
from matplotlib.transforms import Bbox

from recall_theory.plotting.marks import NO_LINE, NO_MARKER, drawn_artists

# (dx, dy) in points and the alignment that keeps the text on that side of the point: the
# eight directions close to the point, then the same eight farther out
_DIRECTIONS = ((1, 0, "left", "center"), (-1, 0, "right", "center"), (0, 1, "center", "bottom"),
               (0, -1, "center", "top"), (0.75, 0.75, "left", "bottom"), (-0.75, 0.75, "right", "bottom"),
               (0.75, -0.75, "left", "top"), (-0.75, -0.75, "right", "top"))
OFFSETS = tuple((dx * r, dy * r, ha, va) for r in (4.0, 9.0) for dx, dy, ha, va in _DIRECTIONS)
CLEARANCE_PT = 1.0
# What a conflict costs: a line through the text reads worst, then another label, then a marker.
LINE_COST, LABEL_COST, MARKER_COST, OUTSIDE_COST = 4, 3, 1, 1000


def _densified(points_Nx2: np.ndarray, step_px: float) -> np.ndarray:
  points_Nx2 = points_Nx2[np.all(np.isfinite(points_Nx2), axis=1)]
  if len(points_Nx2) < 2:
    return points_Nx2
  pieces = [points_Nx2[:1]]
  for a, b in zip(points_Nx2[:-1], points_Nx2[1:]):
    n = max(int(np.ceil(np.hypot(*(b - a)) / step_px)), 1)
    pieces.append(a + (b - a) * (np.arange(1, n + 1) / n)[:, None])
  return np.concatenate(pieces)


def _obstacles(ax, px_per_pt: float) -> tuple[np.ndarray, list[Bbox]]:
  """Display points of the axes' lines and bars, and the boxes of its markers."""
  points, boxes = [np.zeros((0, 2))], []
  for artist in drawn_artists(ax):
    if isinstance(artist, Line2D):
      xy = artist.get_transform().transform(np.asarray(artist.get_xydata(), float))
      if artist.get_linestyle() not in NO_LINE and artist.get_linewidth() > 0:
        points.append(_densified(xy, 1.0))
      if artist.get_marker() not in NO_MARKER:
        radius = (artist.get_markersize() / 2 + artist.get_markeredgewidth() / 2) * px_per_pt
        boxes += [Bbox.from_extents(x - radius, y - radius, x + radius, y + radius)
                  for x, y in xy if np.isfinite(x) and np.isfinite(y)]
    elif isinstance(artist, PathCollection):
      xy = artist.get_offset_transform().transform(np.asarray(artist.get_offsets(), float).reshape(-1, 2))
      sizes = np.resize(np.asarray(artist.get_sizes(), float), len(xy)) if len(artist.get_sizes()) else np.zeros(len(xy))
      for (x, y), s in zip(xy, sizes):
        radius = np.sqrt(max(s, 0.0)) / 2 * px_per_pt
        if np.isfinite(x) and np.isfinite(y):
          boxes.append(Bbox.from_extents(x - radius, y - radius, x + radius, y + radius))
    elif isinstance(artist, LineCollection) and artist.get_array() is None:
      for segment in artist.get_segments():
        points.append(_densified(artist.get_transform().transform(np.asarray(segment, float)), 1.0))
  return np.concatenate(points), boxes


def _conflicts(text: Bbox, box: Bbox, frame: Bbox, line_points: np.ndarray, markers: list[Bbox],
               labels: list[Bbox]) -> int:
  """The cost of a label's place: ``text`` its extent, ``box`` that grown by the clearance."""
  if text.x0 < frame.x0 or text.x1 > frame.x1 or text.y0 < frame.y0 or text.y1 > frame.y1:
    return OUTSIDE_COST  # outside the panel: never chosen while another place exists
  inside = ((line_points[:, 0] > box.x0) & (line_points[:, 0] < box.x1)
            & (line_points[:, 1] > box.y0) & (line_points[:, 1] < box.y1))
  return (LINE_COST * int(inside.any()) + MARKER_COST * sum(box.overlaps(m) for m in markers)
          + LABEL_COST * sum(box.overlaps(other) for other in labels))


def label_points(ax, xy: Sequence[tuple[float, float]], texts: Sequence[str], *, color="0.3",
                 fontsize: float = 6.0, offsets=OFFSETS) -> list:
  """Annotate each data point ``xy[i]`` with ``texts[i]`` where it covers nothing (see module);
  returns the annotations. Where every place covers something, the cheapest is taken: a
  line through the text costs most (``LINE_COST``), then another label, then each marker."""
  fig = ax.figure
  fig.canvas.draw()  # lay the figure out: the geometry the labels are placed in
  renderer = fig.canvas.get_renderer()
  px_per_pt = fig.dpi / 72.0
  line_points, markers = _obstacles(ax, px_per_pt)
  frame = ax.bbox
  grow = CLEARANCE_PT * px_per_pt
  placed = []
  taken = [t.get_window_extent(renderer) for t in ax.texts if t.get_visible() and t.get_text().strip()]
  for (x, y), text in zip(xy, texts):
    best = None
    for dx, dy, ha, va in offsets:
      label = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), ha=ha, va=va,
                          fontsize=fontsize, color=color)
      extent = label.get_window_extent(renderer)
      box = Bbox.from_extents(extent.x0 - grow, extent.y0 - grow, extent.x1 + grow, extent.y1 + grow)
      score = _conflicts(extent, box, frame, line_points, markers, taken)
      if best is None or score < best[0]:
        if best is not None:
          best[1].remove()
        best = (score, label, extent)
      else:
        label.remove()
      if score == 0:
        break
    taken.append(best[2])
    placed.append(best[1])
  return placed
