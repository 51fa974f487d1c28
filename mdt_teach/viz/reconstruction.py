"""Lesson 04's masked-token reconstruction figure: masked input x_t → ε̂ per token → x̂0 → ground truth x0.

The computation (`reconstruct`, `hidden_visible_rms`) lives in `mdt_teach.lessons`; this module only draws.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from mdt_teach.lessons import hidden_visible_rms, reconstruct, token_rms
from mdt_teach.viz.images import render_token_grid, to_image
from mdt_teach.viz import core


# ----------------------------------------------------------------------------------------------
# Figure and widget
# ----------------------------------------------------------------------------------------------

def hide_tokens(image: torch.Tensor, mask: torch.Tensor, patch_size: int, fill: float = 0.0) -> torch.Tensor:
    """(C, H, W) image with every masked token (mask (L,) == 1, row-major) painted a flat `fill` grey."""
    g = image.shape[-1] // patch_size
    pixels = mask.reshape(g, g).repeat_interleave(patch_size, 0).repeat_interleave(patch_size, 1)  # (H, W)
    return torch.where(pixels.bool(), torch.full_like(image, fill), image)


def render_reconstruction(mask_ratio: float, t: int, model, x0: torch.Tensor, y: torch.Tensor, diffusion,
                          seed: int = 0):
    """Rows = images; columns = x_t with hidden tokens grey, the per-token size of ε̂, the prediction x̂0 on
    the visible tokens (hidden ones grey), and the ground truth x0.

    Hidden tokens get no x̂0: the model never saw x_t there, and the noise it would have to predict is
    independent of everything it saw, so MDT v1 learns ε̂ ≈ 0 at those positions (the heat map shows it).
    Computing (x_t − √(1−ᾱ)·ε̂)/√ᾱ there would only rescale the hidden x_t, which is not the model's work."""
    rec = reconstruct(model, x0, y, diffusion, int(t), float(mask_ratio), seed)
    p = model.patch_size
    rms = token_rms(rec["eps_hat"], p)                                  # (B, G, G)
    hidden_rms, visible_rms = hidden_visible_rms(rec, p, rms)
    fig, axes = plt.subplots(len(x0), 4, figsize=(8.4, 2.1 * len(x0)), squeeze=False)
    for i in range(len(x0)):
        render_token_grid(hide_tokens(rec["x_t"][i], rec["mask"][i], p), p, ax=axes[i, 0],
                          title="masked input x_t" if i == 0 else None)
        axes[i, 1].imshow(rms[i].numpy(), cmap="magma", vmin=0.0, vmax=1.5, interpolation="nearest")
        render_token_grid(hide_tokens(rec["x0_hat"][i], rec["mask"][i], p), p, ax=axes[i, 2],
                          title="prediction x̂0 (visible)" if i == 0 else None)
        axes[i, 3].imshow(to_image(x0[i]), interpolation="nearest")
        for ax in axes[i, 1], axes[i, 3]:
            ax.set_xticks([])
            ax.set_yticks([])
        if i == 0:
            axes[i, 1].set_title("RMS of ε̂ per token\n(black 0, bright 1.5)", fontsize=9)
            axes[i, 3].set_title("ground truth x0", fontsize=9)
    hidden = int(rec["mask"][0].sum())
    fig.suptitle(f"t = {int(t)}, mask ratio {float(mask_ratio):.2f}: {hidden} of {rec['mask'].shape[1]} tokens "
                 f"hidden · RMS ε̂ hidden {hidden_rms:.2f}, visible {visible_rms:.2f}", fontsize=10)
    fig.tight_layout()
    return fig


def reconstruction_widget(model, x0: torch.Tensor, y: torch.Tensor, diffusion, seed: int = 0,
                          static: bool | None = None):
    """Sliders for mask ratio and t redraw `render_reconstruction`; static grid at four settings."""
    controls = {}
    if core.widgets is not None:
        controls["mask_ratio"] = core.widgets.FloatSlider(value=0.3, min=0.0, max=0.9, step=0.05,
                                                     description="mask ratio", continuous_update=False)
        controls["t"] = core.widgets.IntSlider(value=300, min=0, max=diffusion.num_timesteps - 1, step=10,
                                          description="t", continuous_update=False)
    settings = [{"mask_ratio": 0.3, "t": 200}, {"mask_ratio": 0.3, "t": 500},
                {"mask_ratio": 0.6, "t": 200}, {"mask_ratio": 0.6, "t": 500}]
    fixed = {"model": model, "x0": x0, "y": y, "diffusion": diffusion, "seed": seed}
    return core.show(render_reconstruction, controls, settings, fixed=fixed, static=static)
