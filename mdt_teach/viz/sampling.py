"""Lesson 09's widget: the power-cosine guidance schedule w_eff(t) beside class-conditional samples."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from mdt_teach.guidance import cfg_scale_at
from mdt_teach.sampling import sample
from mdt_teach.viz.images import image_grid
from mdt_teach.viz import core


DIFF_VMAX = 0.25  # colour scale of the difference panel (mean |Δ| over channels; pixels live in [-1, 1])


def class_grid(model, diffusion, per_class: int = 4, cfg_scale: float = 1.0, scale_pow: float = 4.0,
               steps: str = "ddim25", seed: int = 0) -> torch.Tensor:
    """per_class samples of every class (rows = classes) from fixed noise; returns (K·per_class, C, H, W)."""
    y = torch.arange(model.num_classes).repeat_interleave(per_class)  # (K·n,)
    shape = (len(y), model.in_channels, model.input_size, model.input_size)
    gen = torch.Generator().manual_seed(seed)
    method = "ddim" if str(steps).startswith("ddim") else "ddpm"
    return sample(model, shape, y, diffusion, steps=steps, cfg_scale=cfg_scale, scale_pow=scale_pow,
                  method=method, generator=gen)


_CONSTANT: dict = {}   # the last few constant-guidance grids: moving only the pow slider reuses them


def constant_guidance_grid(model, diffusion, per_class: int, cfg_scale: float, steps: str, seed: int):
    """`class_grid` with pow 0 (constant w), remembered for the same model weights and settings."""
    weights = sum(p._version for p in model.parameters())   # changes when any weight is updated in place
    key = (id(model), weights, id(diffusion), per_class, float(cfg_scale), steps, seed)
    if key not in _CONSTANT:
        while len(_CONSTANT) >= 4:
            _CONSTANT.pop(next(iter(_CONSTANT)))
        _CONSTANT[key] = class_grid(model, diffusion, per_class, cfg_scale, 0.0, steps, seed)
    return _CONSTANT[key]


def render_cfg(cfg_scale: float, scale_pow: float, model, diffusion, per_class: int = 4, steps: str = "ddim25",
               seed: int = 0, labels=None):
    """Figure: w_eff(t) for this (w, pow), the class grid sampled with it, and how far each sample moved from
    the one constant guidance (pow 0) draws from the same noise — the schedule's effect, made visible."""
    t = np.arange(diffusion.num_timesteps)
    images = class_grid(model, diffusion, per_class, cfg_scale, scale_pow, steps, seed)
    constant = images if scale_pow == 0 else constant_guidance_grid(model, diffusion, per_class, cfg_scale, steps, seed)
    moved = (images - constant).abs().mean(dim=1, keepdim=True)          # (n, 1, H, W), in [0, 2]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), gridspec_kw={"width_ratios": [1, 1.1, 1.1]})
    axes[0].plot(t, cfg_scale_at(t, cfg_scale, scale_pow), color="tab:purple", label=f"pow {scale_pow:g}")
    axes[0].plot(t, cfg_scale_at(t, cfg_scale, 0.0), color="0.45", lw=1.2, ls="--", label="pow 0 (constant)")
    axes[0].axhline(1.0, color="grey", lw=0.6, ls="--")
    axes[0].set(title=f"w_eff(t), w = {cfg_scale:g}, pow = {scale_pow:g}", xlabel="t (sampling runs 999 → 0)",
                ylim=(0.8, max(cfg_scale, 1.0) + 0.3))
    axes[0].legend(fontsize=7, loc="upper left")
    axes[0].invert_xaxis()
    axes[1].imshow(image_grid(images, nrow=per_class))
    axes[1].set_title("rows: " + ", ".join(labels or map(str, range(model.num_classes))), fontsize=8)
    shown = image_grid(moved / DIFF_VMAX * 2 - 1, nrow=per_class)[..., 0] * DIFF_VMAX   # back to |Δ| units
    im = axes[2].imshow(shown, cmap="magma", vmin=0, vmax=DIFF_VMAX)
    fig.colorbar(im, ax=axes[2], fraction=0.046, pad=0.02)
    axes[2].set_title(f"|this − constant guidance|, same noise: mean {moved.mean().item():.3f}", fontsize=8)
    for ax in axes[1:]:
        ax.axis("off")
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
