"""Paper-quality plotting shared by every track (style, saving with data, phase maps, layout check)."""

from recall_theory.plotting.style import (
    COLUMN_WIDTH,
    TEXT_WIDTH,
    PIPELINE_COLORS,
    figure_size,
    paper_style,
    save_figure,
)
from recall_theory.plotting.figure_check import (
    assert_figure_ok,
    check_figure,
    checking_saved_figures,
)

__all__ = [
    "COLUMN_WIDTH",
    "TEXT_WIDTH",
    "PIPELINE_COLORS",
    "figure_size",
    "paper_style",
    "save_figure",
    "assert_figure_ok",
    "check_figure",
    "checking_saved_figures",
]
