"""Figures and widgets: pure `render_*` functions plus thin ipywidgets shells (see `mdt_teach.viz.core.show`)."""
from mdt_teach.viz.core import FigureWidget, figure_to_array, show, static_grid

__all__ = ["FigureWidget", "figure_to_array", "show", "static_grid"]
