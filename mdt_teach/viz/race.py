"""Lesson 08's widget: a slider over training progress shows each model's EMA samples side by side with
its two-eyes and FD-smileys curves, at equal steps or at equal (calibrated) wall-clock."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from mdt_teach.race import curve_array
from mdt_teach.viz import core

AXES = {"steps": 0, "seconds": 1}


def point_at(record: dict, progress: float, axis: str = "steps") -> dict:
    """The last evaluation of `record` at or before `progress` (a step count or calibrated seconds)."""
    where = curve_array(record, "two_eyes")[AXES[axis]]
    i = int(np.searchsorted(where, progress, side="right")) - 1
    return record["curve"][max(i, 0)]


def grid_image(folder: Path, name: str, step: int) -> np.ndarray | None:
    """The sample grid the race saved for `name` at `step` (None when it is not there)."""
    path = Path(folder) / name / f"step_{step:06d}.png"
    return np.asarray(Image.open(path).convert("RGB")) if path.exists() else None


def render_race(progress: float, records: dict, folder, axis: str = "steps", names=None):
    """Figure: one row of sample grids (one per model, at `progress`) above the two-eyes and FD curves."""
    names = list(names or records)
    fig = plt.figure(figsize=(11, 5.2))
    grid = fig.add_gridspec(2, len(names), height_ratios=[1, 1.6])
    for col, name in enumerate(names):
        point = point_at(records[name], progress, axis)
        ax = fig.add_subplot(grid[0, col])
        img = grid_image(folder, name, point["step"])
        if img is not None:
            ax.imshow(img)
        ax.set_title(f"{records[name]['label']}\nstep {point['step']} · two-eyes {point['two_eyes']:.0%}",
                     fontsize=8)
        ax.axis("off")
    for col, (key, title) in enumerate([("two_eyes", "two-eyes score ↑"), ("fd_smileys", "FD-smileys ↓")]):
        ax = fig.add_subplot(grid[1, col * len(names) // 2:(col + 1) * len(names) // 2])
        for name in names:
            x = curve_array(records[name], key)[AXES[axis]]
            ax.plot(x, curve_array(records[name], key)[2], label=records[name]["label"], marker=".", ms=3)
        ax.axvline(progress, color="grey", lw=0.8)
        ax.set(title=title, xlabel="training step" if axis == "steps" else "seconds (calibrated)")
        if key == "fd_smileys":
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def race_widget(records: dict, folder, names=None, static: bool | None = None):
    """Slider over progress (steps or seconds, chosen with a dropdown) redrawing `render_race`."""
    max_step = max(curve_array(r, "two_eyes")[0][-1] for r in records.values())
    max_sec = max(curve_array(r, "two_eyes")[1][-1] for r in records.values())
    controls = {}
    if core.widgets is not None:
        controls["axis"] = core.widgets.Dropdown(options=list(AXES), value="steps", description="compare at")
        controls["progress"] = core.widgets.FloatSlider(value=max_step / 2, min=0, max=max(max_step, max_sec), step=1,
                                                   description="progress", continuous_update=False)
    settings = [{"progress": f * max_step, "axis": "steps"} for f in (0.1, 0.5, 1.0)]
    return core.show(render_race, controls, settings, fixed={"records": records, "folder": folder, "names": names},
                static=static)
