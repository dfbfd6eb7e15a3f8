"""Figure style and save_figure: pdf/png/data written atomically, TrueType fonts embedded."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from recall_theory import plotting
from recall_theory.plotting import style


def test_figure_size_and_constants():
  assert plotting.figure_size() == (plotting.COLUMN_WIDTH, plotting.COLUMN_WIDTH * style.GOLDEN)
  assert plotting.figure_size(plotting.TEXT_WIDTH, 0.5) == (6.75, 3.375)
  assert abs(style.GOLDEN - 0.6180339887) < 1e-9
  for key in ("A-K", "K-A", "teacher", "student"):
    assert plotting.PIPELINE_COLORS[key].startswith("#")
  assert len(set(plotting.PIPELINE_COLORS.values())) == len(plotting.PIPELINE_COLORS)


def test_paper_style_is_scoped():
  before = plt.rcParams["pdf.fonttype"]
  with plotting.paper_style(**{"font.size": 11}):
    assert plt.rcParams["pdf.fonttype"] == 42
    assert plt.rcParams["font.size"] == 11
    assert plt.rcParams["text.usetex"] is False
  assert plt.rcParams["pdf.fonttype"] == before


def test_save_figure_writes_pdf_png_data_with_truetype_fonts(tmp_path):
  x = np.linspace(0, 1, 20)
  with plotting.paper_style():
    fig, ax = plt.subplots(figsize=plotting.figure_size())
    ax.plot(x, x ** 2, color=plotting.PIPELINE_COLORS["A-K"], label=r"$\pi^*(A)$")
    ax.set_xlabel("recall $p$")
    ax.legend()
    written = plotting.save_figure(fig, tmp_path, "demo", data={"x": x, "y": x ** 2})
  names = sorted(p.name for p in tmp_path.iterdir())
  assert names == ["demo.pdf", "demo.png", "demo_data.npz"]  # and no leftover temporaries
  assert sorted(p.name for p in written) == names
  pdf = (tmp_path / "demo.pdf").read_bytes()
  assert pdf.startswith(b"%PDF")
  assert b"/FontFile2" in pdf and b"/Type3" not in pdf
  assert (tmp_path / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  with np.load(tmp_path / "demo_data.npz") as data:
    np.testing.assert_array_equal(data["x"], x)
    np.testing.assert_array_equal(data["y"], x ** 2)
  assert not plt.fignum_exists(fig.number)  # closed after saving


def test_save_figure_outside_style_block_still_truetype(tmp_path):
  # the sweep CLI draws inside paper_style() and saves after the block
  with plotting.paper_style():
    fig, ax = plt.subplots(figsize=plotting.figure_size())
    ax.plot([0, 1], [0, 1])
    ax.set_xlabel("recall")
  plotting.save_figure(fig, tmp_path, "late", data={"x": np.arange(2)})
  pdf = (tmp_path / "late.pdf").read_bytes()
  assert b"/FontFile2" in pdf and b"/Type3" not in pdf
