"""Paper-quality plotting shared by every track (style, saving with data, phase maps)."""

from recall_theory.plotting.style import (
    COLUMN_WIDTH,
    TEXT_WIDTH,
    PIPELINE_COLORS,
    figure_size,
    paper_style,
    save_figure,
)

__all__ = [
    "COLUMN_WIDTH",
    "TEXT_WIDTH",
    "PIPELINE_COLORS",
    "figure_size",
    "paper_style",
    "save_figure",
]
