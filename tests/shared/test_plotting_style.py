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


def _hatched_contour_figure():
  """A figure with the pieces that could make bytes differ: fonts, mathtext, hatches, a raster."""
  x = np.geomspace(1e-6, 0.5, 40)
  z = np.log10(x[None, :]) * np.linspace(0.5, 1.5, 30)[:, None]
  with plotting.paper_style():
    fig, ax = plt.subplots(figsize=plotting.figure_size())
    mesh = ax.pcolormesh(x, np.arange(30), z, rasterized=True, shading="nearest")
    ax.contourf(x, np.arange(30), z < -3, levels=[0.5, 1.5], colors="none", hatches=["////"])
    ax.clabel(ax.contour(x, np.arange(30), z, levels=[-4, -2], colors="white"), fmt="%g")
    ax.set_xscale("log")
    ax.set_xlabel(r"recall $p=\pi_{\rm ref}(A)$")
    fig.colorbar(mesh, ax=ax, label=r"$\log_{10}$ mass")
  return fig


def test_save_figure_is_byte_reproducible(tmp_path, monkeypatch):
  monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
  (tmp_path / "first").mkdir()
  (tmp_path / "second").mkdir()
  plotting.save_figure(_hatched_contour_figure(), tmp_path / "first", "fig", data={"x": np.arange(3)})
  monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000000000")  # must not leak a date either
  plotting.save_figure(_hatched_contour_figure(), tmp_path / "second", "fig", data={"x": np.arange(3)})
  for name in ("fig.pdf", "fig.png"):
    first, second = (tmp_path / "first" / name).read_bytes(), (tmp_path / "second" / name).read_bytes()
    assert first == second, name
  pdf = (tmp_path / "first" / "fig.pdf").read_bytes()
  assert b"/CreationDate" not in pdf and b"/ModDate" not in pdf
  assert b"/Creator (recall-theory)" in pdf
  assert b"/FontFile2" in pdf and b"/Type3" not in pdf  # still TrueType


def test_save_figure_bytes_do_not_depend_on_the_process(tmp_path):
  """Two separate processes (different hash seeds, minutes apart in a real run) give the same bytes."""
  import os
  import subprocess
  import sys
  script = ("import sys, numpy as np; sys.path.insert(0, sys.argv[2]); "
            "import test_plotting_style as t; from recall_theory import plotting; "
            "plotting.save_figure(t._hatched_contour_figure(), sys.argv[1], 'fig', data={'x': np.arange(3)})")
  here = os.path.dirname(__file__)
  for run, seed in (("a", "1"), ("b", "2")):
    (tmp_path / run).mkdir()
    env = {**os.environ, "PYTHONHASHSEED": seed}
    env.pop("SOURCE_DATE_EPOCH", None)
    subprocess.run([sys.executable, "-c", script, str(tmp_path / run), here], check=True, env=env,
                   capture_output=True, timeout=120)
  for name in ("fig.pdf", "fig.png"):
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_save_figure_uses_the_package_save_settings_outside_the_style(tmp_path):
  from PIL import Image
  fig, ax = plt.subplots(figsize=(2.0, 1.0), dpi=72)  # default rcParams, not paper_style()
  ax.plot([0, 1], [0, 1])
  plotting.save_figure(fig, tmp_path, "plain", data={"x": np.arange(2)})
  with Image.open(tmp_path / "plain.png") as image:
    width, height = image.size
  # 300 dpi (a 600 x 300 px canvas, give or take the tight crop); 72 dpi would give 144 x 72
  assert width > 450 and height > 225


def test_save_figure_rejects_unknown_formats_before_writing(tmp_path):
  fig, _ = plt.subplots()
  with pytest.raises(ValueError, match="formats must be among"):
    plotting.save_figure(fig, tmp_path, "x", data={"x": np.arange(2)}, formats=("pdf", "eps"))
  assert list(tmp_path.iterdir()) == []
  plt.close(fig)


def test_before_save_hook_sees_the_figure_and_name_and_is_scoped(tmp_path):
  seen = []
  fig, _ = plt.subplots()
  with style.before_save(lambda f, name: seen.append((f, name))):
    plotting.save_figure(fig, tmp_path, "hooked", data={"x": np.arange(2)})
  assert seen == [(fig, "hooked")]
  plotting.save_figure(plt.subplots()[0], tmp_path, "unhooked", data={"x": np.arange(2)})
  assert len(seen) == 1
