"""Lesson 09's widget: the power-cosine guidance schedule w_eff(t) beside class-conditional samples."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from mdt_teach.sampling import cfg_scale_at, sample
from mdt_teach.viz.images import image_grid
from mdt_teach.viz import core


def class_grid(model, diffusion, per_class: int = 4, cfg_scale: float = 1.0, scale_pow: float = 4.0,
               steps: str = "ddim25", seed: int = 0) -> torch.Tensor:
    """per_class samples of every class (rows = classes) from fixed noise; returns (K·per_class, C, H, W)."""
    y = torch.arange(model.num_classes).repeat_interleave(per_class)  # (K·n,)
    shape = (len(y), model.in_channels, model.input_size, model.input_size)
    gen = torch.Generator().manual_seed(seed)
    method = "ddim" if str(steps).startswith("ddim") else "ddpm"
    return sample(model, shape, y, diffusion, steps=steps, cfg_scale=cfg_scale, scale_pow=scale_pow,
                  method=method, generator=gen)


def render_cfg(cfg_scale: float, scale_pow: float, model, diffusion, per_class: int = 4, steps: str = "ddim25",
               seed: int = 0, labels=None):
    """Figure: w_eff(t) for this (w, pow) and the class grid sampled with it."""
    t = np.arange(diffusion.num_timesteps)
    images = class_grid(model, diffusion, per_class, cfg_scale, scale_pow, steps, seed)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1, 1.2]})
    axes[0].plot(t, cfg_scale_at(t, cfg_scale, scale_pow), color="tab:purple")
    axes[0].axhline(1.0, color="grey", lw=0.6, ls="--")
    axes[0].set(title=f"w_eff(t), w = {cfg_scale:g}, pow = {scale_pow:g}", xlabel="t (sampling runs 999 → 0)",
                ylim=(0.8, max(cfg_scale, 1.0) + 0.3))
    axes[0].invert_xaxis()
    axes[1].imshow(image_grid(images, nrow=per_class))
    axes[1].set_title("rows: " + ", ".join(labels or map(str, range(model.num_classes))), fontsize=8)
    axes[1].axis("off")
    fig.tight_layout()
    return fig


def cfg_widget(model, diffusion, labels=None, static: bool | None = None):
    """Sliders for the guidance scale w and the schedule's power, redrawing `render_cfg`."""
    controls = {}
    if core.widgets is not None:
        controls["cfg_scale"] = core.widgets.FloatSlider(value=3.0, min=1.0, max=8.0, step=0.5, description="w",
                                                    continuous_update=False)
        controls["scale_pow"] = core.widgets.FloatSlider(value=4.0, min=0.0, max=8.0, step=0.5, description="pow",
                                                    continuous_update=False)
    settings = [{"cfg_scale": 1.0, "scale_pow": 4.0}, {"cfg_scale": 4.0, "scale_pow": 4.0},
                {"cfg_scale": 4.0, "scale_pow": 0.0}]
    return core.show(render_cfg, controls, settings, fixed={"model": model, "diffusion": diffusion, "labels": labels},
                static=static)
