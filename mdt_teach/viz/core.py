"""The one widget shell every lesson uses: controls → state → `render(**state)` → one redrawn figure.

`show(render, controls, static_settings)` returns a live widget in JupyterLab / Colab, or a static grid
of representative settings when MDT_STATIC=1 (nbval, CI), when ipywidgets is missing, or on request.
"""
from __future__ import annotations

from typing import Callable

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from mdt_teach.config import static_mode

try:  # ipywidgets is a runtime dependency, but a learner's bare kernel may lack it
    import ipywidgets as widgets
    from IPython.display import Image, display
except ImportError:  # pragma: no cover - exercised only without ipywidgets
    widgets = None

Render = Callable[..., "matplotlib.figure.Figure"]


def figure_to_array(fig) -> np.ndarray:
    """Rasterise a figure to an (H, W, 3) uint8 array (used by static grids and widget tests)."""
    if not hasattr(fig.canvas, "buffer_rgba"):  # a closed figure falls back to a base canvas
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()  # (H, W, 3)


def figure_to_png(fig, dpi: float | None = None) -> bytes:
    """PNG bytes of a figure (savefig picks Agg for PNG whatever the session's backend is).

    Widgets show these bytes instead of `display(fig)`: a figure's rich display needs the inline backend,
    and code that switched the backend (e.g. to Agg) would leave only "<Figure size ... with N Axes>"."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi or fig.dpi)
    return buffer.getvalue()


class FigureWidget:
    """Controls above one Output; every change re-renders a PNG inside it with clear_output(wait=True)."""

    def __init__(self, render: Render, controls: dict, fixed: dict | None = None):
        self.render, self.controls, self.fixed = render, controls, dict(fixed or {})
        self.output = widgets.Output()
        self.last_figure = None
        self.draw_count = 0
        for ctrl in controls.values():
            ctrl.observe(lambda _change: self.update(), names="value")
        # wrap the controls onto more rows rather than shrink them: six sliders in one row leave each a
        # zero-width track in JupyterLab (lesson 06, found by the browser check)
        row = widgets.HBox(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap"))
        self.box = widgets.VBox([row, self.output])
        self.update()

    def state(self) -> dict:
        """The current control values plus the fixed arguments."""
        return {**self.fixed, **{k: c.value for k, c in self.controls.items()}}

    def update(self) -> None:
        """Re-render the figure for the current state and show it as a PNG inside the Output."""
        fig = self.render(**self.state())
        if self.last_figure is not None:
            plt.close(self.last_figure)
        self.last_figure, self.draw_count = fig, self.draw_count + 1
        png = figure_to_png(fig)
        plt.close(fig)  # keep the inline backend from drawing it a second time
        with self.output:
            self.output.clear_output(wait=True)
            display(Image(data=png, format="png"))

    def _ipython_display_(self):
        display(self.box)


def static_grid(render: Render, settings: list[dict], fixed: dict | None = None, titles=None):
    """Render each setting and tile the pictures into one figure (the no-widget fallback)."""
    fixed = dict(fixed or {})
    images = []
    for s in settings:
        fig = render(**{**fixed, **s})
        images.append(figure_to_array(fig))
        plt.close(fig)
    titles = titles or [", ".join(f"{k}={v}" for k, v in s.items()) for s in settings]
    n = len(images)
    h, w = images[0].shape[:2]
    ncol = 1 if w > 1.5 * h else n  # wide multi-panel figures stack vertically
    nrow = (n + ncol - 1) // ncol
    width = min(4 * ncol, 12) if ncol > 1 else 10
    out, axes = plt.subplots(nrow, ncol, figsize=(width, width / ncol * h / w * nrow + 0.3 * nrow),
                             squeeze=False)
    for ax, img, title in zip(axes.ravel(), images, titles):
        ax.imshow(img)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    out.tight_layout()
    for ax, img in zip(axes.ravel(), images):   # a tile drawn at least at its own size: repeat pixels, do not blur
        if ax.get_window_extent().width >= img.shape[1]:
            ax.images[0].set_interpolation("nearest")
    plt.close(out)   # shown once, as the cell's result (an open pyplot figure would be drawn a second time)
    return out


def show(render: Render, controls: dict, static_settings: list[dict], fixed: dict | None = None,
         static: bool | None = None):
    """A live widget, or a static grid of `static_settings` under MDT_STATIC=1 / without ipywidgets."""
    if static is None:
        static = static_mode() or widgets is None
    if static:
        return static_grid(render, static_settings, fixed)
    return FigureWidget(render, controls, fixed)
