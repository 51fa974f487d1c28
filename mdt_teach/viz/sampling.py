"""Lesson 09's widget: the power-cosine guidance schedule w_eff(t) beside class-conditional samples without and
with guidance, each face marked by whether its mouth reads as the class it was asked for."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from mdt_teach.checker import two_eyes
from mdt_teach.guidance import cfg_scale_at
from mdt_teach.sampling import respace, sample
from mdt_teach.viz.images import to_image
from mdt_teach.viz import core

WIDGET_STEPS = "ddim10"   # the widget's sampler: 10 DDIM steps (lesson 09's table: ties DDPM-250 on pair agreement)
MATCH, MISS = (0.10, 0.62, 0.25), (0.85, 0.15, 0.15)   # frame colours: the mouth reads as its row / does not


def class_grid(model, diffusion, per_class: int = 4, cfg_scale: float = 1.0, scale_pow: float = 4.0,
               steps: str = WIDGET_STEPS, seed: int = 0) -> torch.Tensor:
    """per_class samples of every class (rows = classes) from fixed noise; returns (K·per_class, C, H, W)."""
    y = torch.arange(model.num_classes).repeat_interleave(per_class)  # (K·n,)
    shape = (len(y), model.in_channels, model.input_size, model.input_size)
    gen = torch.Generator().manual_seed(seed)
    method = "ddim" if str(steps).startswith("ddim") else "ddpm"
    return sample(model, shape, y, diffusion, steps=steps, cfg_scale=cfg_scale, scale_pow=scale_pow,
                  method=method, generator=gen)


_GRIDS: dict = {}   # the grids drawn so far: a slider moved back, or pow moved at w = 1, redraws at once
_GRIDS_KEPT = 32    # about 200 kB each for the tiny model's 16 faces


def cached_class_grid(model, diffusion, per_class: int, cfg_scale: float, scale_pow: float, steps: str,
                      seed: int) -> torch.Tensor:
    """`class_grid`, remembered for the same model weights and settings (pow does not matter at w = 1)."""
    weights = sum(p._version for p in model.parameters())   # changes when any weight is updated in place
    scale_pow = 0.0 if cfg_scale == 1.0 else float(scale_pow)
    key = (id(model), weights, id(diffusion), per_class, float(cfg_scale), scale_pow, steps, seed)
    if key not in _GRIDS:
        while len(_GRIDS) >= _GRIDS_KEPT:
            _GRIDS.pop(next(iter(_GRIDS)))
        _GRIDS[key] = class_grid(model, diffusion, per_class, cfg_scale, scale_pow, steps, seed)
    return _GRIDS[key]


def class_consistency(images: torch.Tensor, per_class: int) -> np.ndarray:
    """(N,) bool: does each face's mouth read (by the checker) as its row's class? Rows as in `class_grid`."""
    y = torch.arange(len(images)) // per_class                                 # (N,) the class each was asked for
    return two_eyes(images, y).expression_ok


def framed_grid(images: torch.Tensor, ok: np.ndarray, nrow: int, pad: int = 2, gap: int = 1) -> np.ndarray:
    """Faces tiled `nrow` to a row, each in a `pad`-pixel frame: green where `ok` (its mouth reads as its row),
    red where not; `gap` white pixels between frames. Returns (rows·(h+2pad+gap)+gap, ..., 3) in [0, 1]."""
    pics = [to_image(x) for x in images]
    h, w = pics[0].shape[:2]
    fh, fw = h + 2 * pad, w + 2 * pad
    rows = (len(pics) + nrow - 1) // nrow
    grid = np.ones((rows * (fh + gap) + gap, nrow * (fw + gap) + gap, 3), dtype=np.float32)
    for i, (pic, good) in enumerate(zip(pics, ok)):
        r, c = divmod(i, nrow)
        top, left = gap + r * (fh + gap), gap + c * (fw + gap)
        grid[top: top + fh, left: left + fw] = MATCH if good else MISS
        grid[top + pad: top + pad + h, left + pad: left + pad + w] = pic
    return grid


def mean_guidance(cfg_scale: float, scale_pow: float, diffusion, steps: str = WIDGET_STEPS) -> float:
    """The mean of w_eff(t) over the timesteps the sampler visits: how hard guidance pushes on average."""
    return float(np.mean(cfg_scale_at(respace(diffusion, steps).timestep_map, cfg_scale, scale_pow)))


def _plot_schedule(ax, cfg_scale: float, scale_pow: float, diffusion, steps: str) -> None:
    """w_eff(t) for (w, pow) and for constant guidance, the sampler's steps marked, the mean in the legend."""
    t = np.arange(diffusion.num_timesteps)
    visited = np.asarray(respace(diffusion, steps).timestep_map)
    mean, mean_const = (mean_guidance(cfg_scale, p, diffusion, steps) for p in (scale_pow, 0.0))
    ax.plot(t, cfg_scale_at(t, cfg_scale, scale_pow), color="tab:purple",
            label=f"pow {scale_pow:g}: mean over the steps {mean:.1f}")
    ax.plot(visited, cfg_scale_at(visited, cfg_scale, scale_pow), "o", color="tab:purple", ms=4)
    if scale_pow != 0:
        ax.plot(t, cfg_scale_at(t, cfg_scale, 0.0), color="0.45", lw=1.2, ls="--",
                label=f"pow 0 (constant): mean {mean_const:.1f}")
    ax.axhline(1.0, color="grey", lw=0.6, ls=":")
    ax.set(title=f"w_eff(t), w = {cfg_scale:g}, pow = {scale_pow:g}", ylim=(0.8, max(cfg_scale, 1.0) * 1.12 + 0.3),
           xlabel=f"t (sampling runs 999 → 0; dots: the {len(visited)} steps)")
    ax.legend(fontsize=7, loc="upper left")
    ax.invert_xaxis()


def render_cfg(cfg_scale: float, scale_pow: float, model, diffusion, per_class: int = 3, steps: str = WIDGET_STEPS,
               seed: int = 0, labels=None):
    """Figure: w_eff(t) for this (w, pow); the class grid without guidance; the same noise sampled with it.
    Each face is framed green when its mouth reads as its row's class (the checker's expression), else red."""
    unguided = cached_class_grid(model, diffusion, per_class, 1.0, 0.0, steps, seed)
    guided = cached_class_grid(model, diffusion, per_class, cfg_scale, scale_pow, steps, seed)
    fig, axes = plt.subplots(1, 3, figsize=(11, 4.0), gridspec_kw={"width_ratios": [1.4, 1, 1]})
    _plot_schedule(axes[0], cfg_scale, scale_pow, diffusion, steps)
    names = list(labels or map(str, range(model.num_classes)))
    for ax, images, name in ((axes[1], unguided, "no guidance (w = 1)"),
                             (axes[2], guided, f"w = {cfg_scale:g}, pow = {scale_pow:g}")):
        ok = class_consistency(images, per_class)
        grid = framed_grid(images, ok, nrow=per_class)
        ax.imshow(grid, interpolation="nearest")
        ax.set_title(f"{name}:\n{int(ok.sum())} of {len(ok)} mouths read as their row", fontsize=9)
        ax.set_xticks([])
        row_height = (grid.shape[0] - 1) / len(names)
        ax.set_yticks([(r + 0.5) * row_height for r in range(len(names))], names if ax is axes[1] else [])
        ax.tick_params(length=0, labelsize=8)
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.tight_layout()
    return fig


def cfg_widget(model, diffusion, labels=None, static: bool | None = None):
    """Sliders for the guidance scale w and the schedule's power, redrawing `render_cfg`. It opens at constant
    guidance w = 8, where lesson 09's 512-sample table shows guidance buying the most class consistency (at
    w = 16 it breaks faces up: fewer pass the two-eyes verdict); pow runs to MDT's FID setting, 4."""
    controls = {}
    if core.widgets is not None:
        controls["cfg_scale"] = core.widgets.FloatSlider(value=8.0, min=1.0, max=12.0, step=1.0, description="w",
                                                         continuous_update=False)
        controls["scale_pow"] = core.widgets.FloatSlider(value=0.0, min=0.0, max=4.0, step=0.5, description="pow",
                                                         continuous_update=False)
    settings = [{"cfg_scale": 8.0, "scale_pow": 0.0}, {"cfg_scale": 8.0, "scale_pow": 4.0}]
    return core.show(render_cfg, controls, settings, fixed={"model": model, "diffusion": diffusion, "labels": labels},
                     static=static)
