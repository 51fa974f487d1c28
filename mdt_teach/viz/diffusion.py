"""Lesson 01's figure: x_t for a slider over t, beside ᾱ_t and SNR(t) with a marker at t."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from mdt_teach.viz.images import image_grid
from mdt_teach.viz import core


def noised_images(x0: torch.Tensor, t: int, diffusion, seed: int = 0) -> torch.Tensor:
    """x_t for a batch of clean images at one timestep, with fixed noise so only t changes the picture."""
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))  # (B, C, H, W)
    return diffusion.q_sample(x0, torch.full((x0.shape[0],), int(t)), eps)


def render_forward_process(t: int, x0: torch.Tensor, diffusion, seed: int = 0):
    """Figure: the images at step t, and the ᾱ_t and log-SNR curves with the current t marked."""
    t = int(t)
    x_t = noised_images(x0, t, diffusion, seed)
    steps = np.arange(diffusion.num_timesteps)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3), gridspec_kw={"width_ratios": [1.6, 1, 1]})
    axes[0].imshow(image_grid(x_t, nrow=4))
    axes[0].set_title(f"x_t at t = {t}", fontsize=10)
    axes[0].axis("off")
    axes[1].plot(steps, diffusion.alphas_cumprod, color="tab:blue")
    axes[1].axvline(t, color="tab:red", lw=1)
    axes[1].set_title(f"ᾱ_t = {diffusion.alphas_cumprod[t]:.4f}", fontsize=10)
    axes[1].set_xlabel("t")
    axes[2].semilogy(steps, diffusion.snr, color="tab:green")
    axes[2].axvline(t, color="tab:red", lw=1)
    axes[2].axhline(1.0, color="grey", lw=0.5, ls="--")
    axes[2].set_title(f"SNR(t) = {diffusion.snr[t]:.3g}", fontsize=10)
    axes[2].set_xlabel("t")
    fig.tight_layout()
    return fig


def forward_process_widget(x0: torch.Tensor, diffusion, static: bool | None = None):
    """Slider over t (0..T−1) redrawing `render_forward_process`; static grid at t = 0, 100, 400, 999."""
    controls = {}
    if core.widgets is not None:
        controls["t"] = core.widgets.IntSlider(value=100, min=0, max=diffusion.num_timesteps - 1, step=1,
                                          description="t", continuous_update=False)
    settings = [{"t": t} for t in (0, 100, 400, diffusion.num_timesteps - 1)]
    return core.show(render_forward_process, controls, settings, fixed={"x0": x0, "diffusion": diffusion},
                static=static)
