"""The figure check fails on deliberately bad figures and passes clean ones."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from recall_theory import plotting  # noqa: E402
from recall_theory.plotting import figure_check as fc  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
  yield
  plt.close("all")


def _kinds(problems):
  return sorted({p.split(":")[0] for p in problems})


def _check(fig):
  """The check's problems but 'unlabelled axis': the small figures of the tests up to the
  curves' leave their axes unlabelled on purpose (that rule has tests of its own below)."""
  return [p for p in fc.check_figure(fig) if not p.startswith("unlabelled axis")]


def _clean_line_figure():
  x = np.linspace(0.0, 1.0, 50)
  with plotting.paper_style():
    fig, ax = plt.subplots(figsize=plotting.figure_size())
    ax.plot(x, x ** 2, label="quadratic")
    ax.plot(x, x ** 3, "--", label="cubic")
    ax.set_xlabel("recall $p$")
    ax.set_ylabel(r"mass $\pi(A)$")
    ax.set_title("two curves")
    ax.legend(loc="upper left")  # the curves stay low on the left
  return fig


def test_clean_line_figure_passes():
  fig = _clean_line_figure()
  assert _check(fig) == []
  fc.assert_figure_ok(fig, "clean")  # does not raise


def test_clean_grid_with_contours_and_colour_bar_passes():
  x = np.geomspace(1e-6, 0.5, 60)
  y = np.geomspace(1e-2, 1e2, 50)
  z = np.log10(x[None, :]) + np.log10(y[:, None])
  with plotting.paper_style():
    fig, axes = plt.subplots(2, 2, figsize=(plotting.TEXT_WIDTH, 0.6 * plotting.TEXT_WIDTH), sharex=True,
                             sharey=True)
    for ax in axes.ravel():
      ax.set_xscale("log")  # before clabel, which places labels in the current coordinates
      ax.set_yscale("log")
      mesh = ax.pcolormesh(x, y, z, shading="nearest")
      cs = ax.contour(x, y, z, levels=[-4, 0], colors="white", linewidths=0.5)
      ax.clabel(cs, fmt="%g", fontsize=6)
    for ax in axes[-1]:
      ax.set_xlabel("recall $p$")
    for ax in axes[:, 0]:
      ax.set_ylabel(r"gap / $\beta$")
    fig.colorbar(mesh, ax=axes, label=r"$\log_{10}$ mass")
  assert _check(fig) == []


def test_overlapping_tick_labels_are_caught():
  with plotting.paper_style():
    fig, ax = plt.subplots(figsize=(2.0, 1.5))
    ax.set_xlim(0, 1)
    ax.set_xticks(np.linspace(0, 1, 11), [f"{v:.3f}" for v in np.linspace(0, 1, 11)])
  problems = _check(fig)
  assert _kinds(problems) == ["overlap"]
  assert all(p.count("x tick label") == 2 for p in problems)
  assert any("'0.200'" in p and "'0.300'" in p for p in problems)


def test_tick_labels_running_into_the_next_panel_are_caught():
  with plotting.paper_style():
    fig, axes = plt.subplots(1, 4, figsize=(3.0, 1.2), sharey=True, layout="none")
    fig.subplots_adjust(left=0.1, right=0.95, bottom=0.25, wspace=0.05)  # panels close together
    for ax in axes:
      ax.set_xscale("log")
      ax.set_xlim(1e-12, 1.0)
      ax.set_xticks([1e-12, 1e-6, 1.0])
  problems = _check(fig)
  assert problems and all(p.startswith("overlap:") for p in problems)
  assert any("axes[0,0]" in p and "axes[0,1]" in p for p in problems)  # across panels


def test_text_off_canvas_is_caught():
  fig = _clean_line_figure()
  fig.axes[0].text(1.3, 0.5, "runs off the page", transform=fig.axes[0].transAxes, clip_on=False)
  problems = _check(fig)
  assert _kinds(problems) == ["off canvas"]
  assert "runs off the page" in problems[0]


def test_clipped_text_counts_with_its_visible_part_only():
  fig = _clean_line_figure()
  fig.axes[0].text(1.3, 0.5, "clipped away", transform=fig.axes[0].transAxes, clip_on=True)
  assert _check(fig) == []


def test_text_cut_at_the_axes_edge_is_caught():
  fig = _clean_line_figure()
  fig.axes[0].text(0.97, 0.5, "cut at the edge", transform=fig.axes[0].transAxes, clip_on=True)
  problems = _check(fig)
  assert _kinds(problems) == ["clipped"]
  assert "cut at the edge" in problems[0]


@pytest.mark.parametrize("gap_px, crowded", [(3.0, True), (20.0, False)])
def test_stacked_y_labels_closer_than_the_clearance_are_crowded(gap_px, crowded):
  """Two rows whose rotated y labels are ``gap_px`` apart (4 pt = 8.3 px at 150 dpi is the limit)."""
  with plotting.paper_style():
    fig = plt.figure(figsize=(3.0, 4.0), layout="none")
    upper, lower = fig.add_axes([0.3, 0.5, 0.6, 0.4]), fig.add_axes([0.3, 0.1, 0.6, 0.4])
    upper.set_ylabel("target precision, upper row")
    lower.set_ylabel("precision, lower row")
    for ax in (upper, lower):
      ax.set_xticks([])
      ax.set_yticks([])
    fig.canvas.draw()
    half_labels_px = (upper.yaxis.label.get_window_extent().height
                      + lower.yaxis.label.get_window_extent().height) / 2
    height = (half_labels_px + gap_px) / fig.bbox.height  # labels centred on their axes: gap_px apart
    lower.set_position([0.3, 0.05, 0.6, height])
    upper.set_position([0.3, 0.05 + height, 0.6, height])
  problems = _check(fig)
  if crowded:
    assert _kinds(problems) == ["crowded"]
    assert "y label of axes 0" in problems[0] and "y label of axes 1" in problems[0]
  else:
    assert problems == []


def test_legend_on_lines_is_caught():
  x = np.linspace(0.0, 1.0, 50)
  with plotting.paper_style():
    fig, ax = plt.subplots(figsize=plotting.figure_size())
    ax.plot(x, x, label="identity")
    ax.plot(x, 1 - x, label="mirror")
    ax.legend(loc="center")
  problems = _check(fig)
  assert _kinds(problems) == ["legend covers data"]
  assert "2 lines" in problems[0]


def test_legend_on_scatter_points_is_caught():
  points = np.random.default_rng(0).uniform(0, 1, (400, 2))
  with plotting.paper_style():
    fig, ax = plt.subplots(figsize=plotting.figure_size())
    ax.scatter(points[:, 0], points[:, 1], s=4, label="seeds")
    ax.legend(loc="upper right")
  problems = _check(fig)
  assert _kinds(problems) == ["legend covers data"]
  assert "0 lines" in problems[0]


def test_legend_outside_the_axes_passes():
  x = np.linspace(0.0, 1.0, 50)
  with plotting.paper_style():
    fig, ax = plt.subplots(figsize=plotting.figure_size())
    ax.plot(x, x, label="identity")
    ax.plot(x, 1 - x, label="mirror")
    fig.legend(loc="outside lower center", ncol=2)
  assert _check(fig) == []


def test_long_and_overprecise_tick_labels_are_caught():
  with plotting.paper_style():
    fig, (left, right) = plt.subplots(1, 2, figsize=(plotting.TEXT_WIDTH, 2.0))
    left.set_ylim(-1, 1)
    left.set_yticks([-0.5, 0.5], [r"$\mathdefault{-1.08779\times10^{-1}}$", "$\\mathdefault{0}$"])
    right.set_ylim(0, 1)
    right.set_yticks([0.2, 0.8], ["0.108779", "0.5"])
  problems = _check(fig)
  assert _kinds(problems) == ["long tick label"]
  assert any("13 characters" in p for p in problems)
  assert any("108779" in p and "significant digits" in p for p in problems)
  assert len(problems) == 2


def test_overlapping_contour_labels_are_caught():
  x = np.linspace(0.0, 1.0, 80)
  z = x[None, :] + 0.0 * x[:, None]  # vertical contours
  with plotting.paper_style():
    fig, ax = plt.subplots(figsize=(2.0, 1.5))
    cs = ax.contour(x, x, z, levels=np.linspace(0.40, 0.46, 4), colors="k", linewidths=0.4)
    ax.clabel(cs, fmt="%.2f", fontsize=9, inline=False, manual=[(v, 0.5) for v in cs.levels])
  problems = _check(fig)
  overlaps = [p for p in problems if p.startswith("overlap:")]
  assert len(overlaps) >= 3 and all(p.count("contour label") == 2 for p in overlaps)
  # not inline: each label also sits on its own line
  assert _kinds(problems) == ["label on a line", "overlap"]


def test_contour_labels_placed_before_a_log_scale_are_caught():
  """clabel places labels in the coordinates of the moment; a later log scale strands them on the lines."""
  x = np.geomspace(1e-6, 0.5, 60)
  y = np.geomspace(1e-2, 1e2, 50)
  z = np.log10(x[None, :]) + np.log10(y[:, None])
  with plotting.paper_style():
    fig, ax = plt.subplots(figsize=plotting.figure_size())
    ax.clabel(ax.contour(x, y, z, levels=[-4, 0], colors="white", linewidths=0.5), fmt="%g", fontsize=6)
    ax.set_xscale("log")
    ax.set_yscale("log")
  problems = _check(fig)
  assert _kinds(problems) == ["label on a line"]
  assert len(problems) == 2


def test_tick_labels_outside_the_view_and_empty_texts_are_ignored():
  fig = _clean_line_figure()
  ax = fig.axes[0]
  ax.set_xticks([-5.0, 0.0, 0.5, 1.0, 5.0])  # -5 and 5 lie outside the view: not drawn
  ax.set_xlim(0, 1)
  ax.text(0.9, 0.1, "")
  ax.text(0.9, 0.1, "   ")
  assert _check(fig) == []


def test_assert_figure_ok_names_the_figure_and_every_problem():
  with plotting.paper_style():
    fig, ax = plt.subplots(figsize=plotting.figure_size(), layout="none")
    ax.text(0.5, 0.5, "beta = 3")
    ax.text(0.5, 0.5, "beta = 10")
    ax.text(0.5, 1.6, "far above", transform=ax.transAxes, clip_on=False)
    ax.set_xticks([])
    ax.set_yticks([])
  with pytest.raises(AssertionError) as error:
    fc.assert_figure_ok(fig, "mog_tradeoff")
  message = str(error.value)
  assert "'mog_tradeoff' has 2 layout problem(s)" in message
  assert "overlap: text in axes[0,0] 'beta = 3' and text in axes[0,0] 'beta = 10'" in message
  assert "off canvas: text in axes[0,0] 'far above'" in message


def test_displayed_text_strips_mathtext():
  assert fc.displayed_text(r"$\mathdefault{10^{-4}}$") == "10-4"
  assert fc.displayed_text(r"$\mathdefault{1.08779\times10^{-1}}$") == "1.08779#10-1"
  assert fc.displayed_text("0.001") == "0.001"
  assert fc.displayed_text("\u22121000") == "-1000"
  assert fc.displayed_text("  ") == ""


def test_checking_saved_figures_sees_what_save_figure_saves(tmp_path):
  good = _clean_line_figure()
  with plotting.paper_style():
    bad, ax = plt.subplots(figsize=(2.0, 1.5))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.5, 0.5, "one")
    ax.text(0.5, 0.5, "two")
  with fc.checking_saved_figures() as found:
    plotting.save_figure(good, tmp_path, "good", data={"x": np.arange(2)})
    plotting.save_figure(bad, tmp_path, "bad", data={"x": np.arange(2)})
  assert found["good"] == []
  assert len(found["bad"]) == 1 and found["bad"][0].startswith("overlap:")
  assert (tmp_path / "bad.pdf").exists() and (tmp_path / "good.png").exists()
  # outside the block nothing is checked any more
  plotting.save_figure(_clean_line_figure(), tmp_path, "later", data={"x": np.arange(2)})
  assert sorted(found) == ["bad", "good"]


# --- legends: every drawn artist explained, every swatch drawn as its artist ----------------

def _two_pipelines(ax, x):
  ax.plot(x, 0.2 + 0.3 * x, color="#D55E00", label="K-A")
  ax.plot(x, 0.6 + 0.3 * x, color="#0072B2", label="A-K")


def test_line_missing_from_the_legend_is_caught():
  x = np.linspace(0.0, 1.0, 20)
  with plotting.paper_style():
    fig, ax = plt.subplots(figsize=plotting.figure_size())
    _two_pipelines(ax, x)
    ax.axhline(0.5, color="0.6", ls="-.", lw=0.5)  # the trap line, in no legend entry
    ax.plot(x, 0.1 + 0 * x, color="#009E73", label="control")  # labelled, left out below
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles[:2], labels[:2], loc="outside lower center", ncol=2)
  problems = _check(fig)
  assert _kinds(problems) == ["not in legend"]
  assert any("dash-dot line #999999" in p for p in problems)
  assert any("labelled 'control'" in p for p in problems)


def test_every_artist_in_the_legend_passes_and_styles_may_be_given_apart():
  """Colour names the pipeline, a grey swatch the kind of curve: both may be separate entries."""
  from matplotlib.lines import Line2D
  x = np.linspace(0.0, 1.0, 20)
  with plotting.paper_style():
    fig, ax = plt.subplots(figsize=plotting.figure_size())
    _two_pipelines(ax, x)
    ax.plot(x, 0.25 + 0.3 * x, color="#D55E00", ls="--")  # K-A's law, dashed
    ax.fill_between(x, 0.15 + 0.3 * x, 0.25 + 0.3 * x, color="#D55E00", alpha=0.15, lw=0)
    ax.axhline(0.5, color="0.6", ls="-.", lw=0.5, label="share 1/2")
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], color="0.3", ls="--", label="law"))
    fig.legend(handles=handles, loc="outside lower center", ncol=4)
  assert _check(fig) == []


def _iso_mass_map(line_colour):
  from matplotlib.lines import Line2D
  x = np.linspace(0.0, 1.0, 40)
  z = x[None, :] + x[:, None]
  with plotting.paper_style():
    fig, ax = plt.subplots(figsize=plotting.figure_size())
    ax.pcolormesh(x, x, z, shading="nearest")
    ax.contour(x, x, z, levels=[0.5, 1.0], colors="white", linewidths=0.5)
    fig.legend(handles=[Line2D([], [], color=line_colour, label="white: iso-mass")],
               loc="outside upper center")
  return fig


def test_legend_swatch_in_another_colour_than_its_lines_is_caught():
  problems = _check(_iso_mass_map("#21918c"))
  assert _kinds(problems) == ["legend swatch differs", "not in legend"]
  assert any("solid line #21918c, which no drawn artist has" in p for p in problems)
  assert any("QuadContourSet" in p and "solid line #ffffff" in p for p in problems)


def test_legend_swatch_drawn_like_its_lines_passes():
  assert _check(_iso_mass_map("white")) == []


def test_labelled_artist_drawn_unlike_its_swatch_is_caught():
  from matplotlib.lines import Line2D
  x = np.linspace(0.0, 1.0, 20)
  with plotting.paper_style():
    fig, ax = plt.subplots(figsize=plotting.figure_size())
    ax.plot(x, 0.2 + 0.3 * x, "--", color="#D55E00", label="loose bound")
    ax.plot(x, 0.5 + 0.3 * x, "-", color="#D55E00", label="exact")
    fig.legend(handles=[Line2D([], [], color="#D55E00", ls="-", label="loose bound"),
                        Line2D([], [], color="#D55E00", ls="-", label="exact")],
               loc="outside lower center", ncol=2)
  problems = _check(fig)
  assert _kinds(problems) == ["legend swatch differs", "not in legend"]
  assert any("entry 'loose bound' shows solid line #d55e00 but its artist is drawn as dashed" in p
             for p in problems)


# --- texts out of their axes ------------------------------------------------------------------

def _ladder_with_label(offset_pt):
  with plotting.paper_style():
    fig, ax = plt.subplots(figsize=plotting.figure_size())
    ax.plot([1, 4, 16, 64], [0.1, 0.2, 0.3, 0.4], "o-")
    ax.set_xlim(-2, 66)  # the points' markers inside the frame, the last label not
    ax.set_ylim(0, 0.5)
    ax.annotate("64x", (64, 0.4), textcoords="offset points", xytext=(offset_pt, -4), ha="left", va="top")
  return fig


def test_point_label_running_out_of_its_axes_is_caught():
  problems = _check(_ladder_with_label(2))
  assert _kinds(problems) == ["outside axes"]
  assert "'64x'" in problems[0]


def test_point_label_turned_inward_and_text_placed_outside_on_purpose_pass():
  fig = _ladder_with_label(-14)
  fig.axes[0].text(0.0, 1.04, "(a)", transform=fig.axes[0].transAxes, va="bottom")  # anchored outside
  assert _check(fig) == []


# --- bands beyond the declared valid range ----------------------------------------------------

def _mass_band(low, high, declare=True):
  x = np.linspace(0.0, 1.0, 20)
  with plotting.paper_style():
    fig, ax = plt.subplots(figsize=plotting.figure_size())
    ax.plot(x, 0.9 * np.ones_like(x))
    ax.fill_between(x, low * np.ones_like(x), high * np.ones_like(x), alpha=0.2, lw=0)
    ax.set_ylim(-0.3, 1.3)
    if declare:
      fc.declare_valid_range(ax, 0.0, 1.0, "target mass")
  return fig


def test_band_beyond_the_declared_range_is_caught():
  problems = _check(_mass_band(0.7, 1.2))
  assert _kinds(problems) == ["out of range"]
  assert "target mass = 1.2, outside its valid range [0, 1]" in problems[0]


def test_band_inside_the_declared_range_or_without_a_declaration_passes():
  assert _check(_mass_band(0.7, 1.0)) == []
  assert _check(_mass_band(0.7, 1.2, declare=False)) == []


# --- markers cut by the frame -----------------------------------------------------------------

def _points_at(ys, ylim):
  with plotting.paper_style():
    fig, ax = plt.subplots(figsize=plotting.figure_size())
    ax.scatter([0.2, 0.5, 0.8][:len(ys)], ys, s=20)
    ax.plot([0.3], [0.5], "D", ms=4)
    ax.set_xlim(0, 1)
    ax.set_ylim(*ylim)
  return fig


def test_markers_on_or_beyond_the_frame_are_caught():
  problems = _check(_points_at([1e-4, 0.5, 2.0], (1e-4, 1.0)))
  assert _kinds(problems) == ["marker cut"]
  assert "1 of 3 markers of PathCollection" in problems[0] and "1 lie outside the limits" in problems[0]


def test_markers_inside_the_frame_pass():
  assert _check(_points_at([0.05, 0.5, 0.9], (0.0, 1.0))) == []


# --- tick labels a formatter garbled ----------------------------------------------------------

def test_logit_tick_reading_1_minus_10_times_10_to_the_minus_13_is_caught():
  with plotting.paper_style():
    fig, ax = plt.subplots(figsize=(2.0, 3.0))
    ax.set_yscale("logit")
    ax.set_ylim(1e-10, 1 - 1e-14)  # matplotlib's LogitFormatter writes 1 - 10.10^-13 up there
  problems = _check(fig)
  assert _kinds(problems) == ["garbled tick label"]
  assert any(r"1-10\\cdot10^{-13}" in p and "mantissa 10 " in p for p in problems)


def test_tick_label_with_two_powers_of_ten_is_caught():
  with plotting.paper_style():
    fig, ax = plt.subplots(figsize=(2.0, 3.0))
    ax.set_ylim(0, 1)
    ax.set_yticks([0.5], [r"$10^{3}\cdot10^{-2}$"])
  problems = _check(fig)
  assert _kinds(problems) == ["garbled tick label"] and "two powers of ten" in problems[0]


def test_repeated_tick_label_and_unnormalised_mantissa_are_caught():
  with plotting.paper_style():
    fig, (left, right) = plt.subplots(1, 2, figsize=(plotting.TEXT_WIDTH, 2.0))
    left.set_ylim(0, 1)
    left.set_yticks([0.2, 0.5, 0.8], ["$10^{-3}$", "$10^{-3}$", "$10^{-2}$"])
    right.set_ylim(0, 1)
    right.set_yticks([0.2, 0.8], [r"$10\times10^{3}$", r"$2\times10^{3}$"])
  problems = _check(fig)
  assert _kinds(problems) == ["garbled tick label"]
  assert any("'10-3' labels 2 ticks" in p for p in problems)
  assert any("mantissa 10 " in p for p in problems)
  assert len(problems) == 2


def test_clean_logit_ticks_pass():
  with plotting.paper_style():
    fig, ax = plt.subplots(figsize=(2.0, 3.0))
    ax.set_yscale("logit")
    ax.set_ylim(1e-4, 1 - 1e-4)
    ax.set_yticks([1e-3, 0.5, 1 - 1e-3], ["0.001", "0.5", "0.999"])
    ax.yaxis.set_minor_locator(plt.NullLocator())
  assert _check(fig) == []


# --- curves hiding each other -----------------------------------------------------------------

def _bound_and_exact(loose_colour, loose_marker=""):
  x = np.geomspace(1e-6, 0.5, 100)
  exact = np.minimum(1.0, 0.4 + 0.02 * np.log10(x) + 0.6)
  with plotting.paper_style():
    fig, ax = plt.subplots(figsize=plotting.figure_size())
    ax.plot(x, exact, "-", color="#9bd93c")
    ax.plot(x, exact * (1 + 1e-3), "--" + loose_marker, color=loose_colour, markevery=20, ms=3)
    ax.set_xscale("log")
  return fig


def test_one_colour_curves_on_each_other_are_caught():
  problems = _check(_bound_and_exact("#9bd93c"))
  assert _kinds(problems) == ["indistinguishable curves"]
  assert "over 100% of the shorter" in problems[0]


def test_curves_of_two_colours_on_each_other_are_caught_too():
  """A darker dashed bound on its light solid ceiling (recall_ceiling's K = 10), or an orange
  dashed law on a black one: the reader still sees one curve."""
  problems = _check(_bound_and_exact("#4a7c12"))
  assert _kinds(problems) == ["indistinguishable curves"]
  assert "colours #9bd93c and #4a7c12" in problems[0]


def test_curves_told_apart_by_markers_or_by_a_wide_underlay_pass():
  x = np.geomspace(1e-6, 0.5, 100)
  with plotting.paper_style():
    fig, (marked, underlay) = plt.subplots(1, 2, figsize=(plotting.TEXT_WIDTH, 2.0))
    for ax in (marked, underlay):
      ax.set_xscale("log")
      ax.set_xlabel("p")
      ax.set_ylabel("mass")
    marked.plot(x, 0.5 + 0.01 * np.log10(x), "-o", color="#D55E00", markevery=(0, 20), ms=3)
    marked.plot(x, 0.5 + 0.01 * np.log10(x), "--s", color="#009E73", markevery=(10, 20), ms=3)
    underlay.plot(x, 0.5 + 0.01 * np.log10(x), color="0.8", lw=5.0)  # the student's recall, wide and light
    underlay.plot(x, 0.5 + 0.01 * np.log10(x), color="#9bd93c", lw=1.1)  # a curve on it, drawn after
  assert fc.check_figure(fig) == []


# --- markers and short lines under other markers ----------------------------------------------

def _crosses_and_discs(crosses_on_top: bool):
  with plotting.paper_style():
    fig, ax = plt.subplots(figsize=plotting.figure_size())
    xs, ys = np.array([0.2, 0.4, 0.6, 0.8]), np.array([0.3, 0.5, 0.4, 0.6])
    ax.scatter(xs, ys, marker="x", s=18, color="0.55", linewidths=0.6, zorder=4 if crosses_on_top else 2.5)
    ax.scatter(xs, ys, marker="o", s=18, color="#D55E00", edgecolors="0.15", linewidths=0.4, zorder=3)
    ax.plot([0.5, 0.5], [0.49, 0.51], color="#0072B2", lw=4.0, alpha=0.25, zorder=1)  # a narrow interval bar
    ax.plot([0.5], [0.5], "D", ms=6, mfc="white", color="#0072B2", zorder=2)  # ... under its hollow diamond
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
  return fig


def test_markers_and_an_interval_bar_under_opaque_markers_are_caught():
  problems = fc.check_figure(_crosses_and_discs(crosses_on_top=False))
  assert _kinds(problems) == ["hidden line", "hidden marker"]
  assert any("4 of 4 markers of PathCollection" in p for p in problems)


def test_crosses_drawn_on_top_and_a_visible_interval_pass():
  fig = _crosses_and_discs(crosses_on_top=True)
  fig.axes[0].lines[0].set_ydata([0.3, 0.7])  # the interval reaches beyond its diamond
  assert fc.check_figure(fig) == []


# --- lines along the frame, bands beyond it ---------------------------------------------------

def _reference_line_at(y, band_low=0.2):
  x = np.linspace(0.0, 1.0, 20)
  with plotting.paper_style():
    fig, ax = plt.subplots(figsize=plotting.figure_size())
    ax.plot(x, 0.5 + 0.3 * x, color="#D55E00")
    ax.fill_between(x, band_low + 0.3 * x, 0.8 + 0.1 * x, color="#D55E00", alpha=0.15, lw=0)
    ax.axhline(y, color="0.3", ls="--", lw=0.8)  # the teacher's value
    ax.set_ylim(0.1, 1.0)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
  return fig


def test_a_line_on_the_spine_and_a_band_running_off_the_axes_are_caught():
  problems = fc.check_figure(_reference_line_at(0.1, band_low=-0.5))
  assert _kinds(problems) == ["band off axes", "line on frame"]
  assert any("bottom edge" in p for p in problems)


def test_lines_and_bands_inside_the_frame_pass():
  assert fc.check_figure(_reference_line_at(0.15)) == []


# --- colour scales: floors, clashes -----------------------------------------------------------

def _floored_map(extend: str, natural_top: bool = True, cmap="viridis", category="#009E73"):
  z = np.maximum(np.log10(np.geomspace(1e-20, 1.0, 40))[None, :] * np.ones((30, 1)), -12.0)
  with plotting.paper_style():
    fig, ax = plt.subplots(figsize=plotting.figure_size())
    mesh = ax.pcolormesh(np.arange(41), np.arange(31), z, vmin=-12, vmax=0, cmap=cmap)
    ax.plot([5, 30], [5, 25], "o-", color=category, label="K-A(teacher-ref)")
    fig.legend(loc="outside upper center")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    bar = fig.colorbar(mesh, ax=ax, extend=extend)
    bar.set_label("log10 mass")
    if natural_top:
      fc.declare_valid_range(bar.ax, -np.inf, 0.0, "log10 mass")
  return fig


def test_a_colour_floor_without_extension_and_a_category_in_the_maps_colours_are_caught():
  problems = fc.check_figure(_floored_map("neither"))
  assert _kinds(problems) == ["colour clash", "colour floor unmarked"]
  assert any("lowest colour" in p for p in problems) and not any("highest colour" in p for p in problems)
  assert any("highest colour" in p for p in fc.check_figure(_floored_map("min", natural_top=False)))


def test_an_extended_floor_and_a_category_outside_the_map_pass():
  assert fc.check_figure(_floored_map("min", cmap="cividis", category="#009E73")) == []


# --- ticks beyond the declared range, axes without labels -------------------------------------

def test_tick_labels_beyond_the_valid_range_and_unlabelled_axes_are_caught():
  with plotting.paper_style():
    fig, (left, right) = plt.subplots(1, 2, figsize=(plotting.TEXT_WIDTH, 2.0))
    for ax in (left, right):
      ax.set_yscale("log")
      ax.plot([1, 2], [1e-3, 0.5], "o")
      ax.set_ylim(1e-4, 30.0)
      ax.set_yticks([1e-3, 1e-1, 10.0])
      fc.declare_valid_range(ax, 0.0, 1.0, "target mass")
      ax.set_xlabel("seed")
    left.set_ylabel("target mass")
  problems = fc.check_figure(fig)
  assert _kinds(problems) == ["tick beyond range", "unlabelled axis"]
  assert any("labels target mass = 10" in p for p in problems)
  assert any(p.startswith("unlabelled axis: the y axis of axes[0,1]") for p in problems)


def test_ticks_inside_the_range_and_a_shared_or_labelled_axis_pass():
  with plotting.paper_style():
    fig, axes = plt.subplots(2, 2, figsize=(plotting.TEXT_WIDTH, 3.0), sharey="row")
    for ax in axes.ravel():
      ax.set_yscale("log")
      ax.plot([1, 2], [1e-3, 0.5], "o")
      ax.set_ylim(1e-4, 1.0)
      fc.declare_valid_range(ax, 0.0, 1.0, "target mass")
    for ax in axes[-1]:
      ax.set_xlabel("seed")  # the top row's x ticks read by the column's label
    for ax in axes[:, 0]:
      ax.set_ylabel("mass")  # the right column shares the row's y axis
  assert fc.check_figure(fig) == []


def test_multi_line_texts_are_checked_too():
  """A text of several lines is drawn line by line without naming itself: it still counts."""
  fig = _clean_line_figure()
  ax = fig.axes[0]
  ax.annotate("law: K-A escapes\nfor p > 0.0056", (0.8, 0.5), textcoords="offset points", xytext=(3, -4),
              ha="left", va="top", fontsize=6)
  ax.annotate("tau=0.8", (0.8, 0.5), textcoords="offset points", xytext=(6, -8), ha="left", va="top", fontsize=6)
  problems = fc.check_figure(fig)
  assert "overlap" in _kinds(problems)
  assert any("law: K-A escapes" in p and "tau=0.8" in p for p in problems if p.startswith("overlap"))


def test_long_category_tick_labels_pass_long_numbers_do_not():
  with plotting.paper_style():
    fig, (words, numbers) = plt.subplots(1, 2, figsize=(plotting.TEXT_WIDTH, 2.0))
    words.set_xticks([0, 1], ["K-A", "K-A\n(teacher-ref)"])
    numbers.set_xlim(0, 1)
    numbers.set_xticks([0.5], ["0.50000000001"])
  problems = _check(fig)
  assert len(problems) == 1 and "0.50000000001" in problems[0] and problems[0].startswith("long tick label")
