"""Image figures for the lessons: token grids with masks (tensors → pictures and grids are `mdt_teach.images`,
re-exported here for the lessons)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from mdt_teach.images import image_grid, save_grid, to_image

__all__ = ["image_grid", "render_token_grid", "save_grid", "to_image"]


def render_token_grid(image, patch_size: int, mask=None, ax=None, title: str | None = None):
    """Draw an image cut into patch_size² tokens; masked tokens (mask == 1, row-major) are greyed out."""
    pic = to_image(image)
    h, w = pic.shape[:2]
    if h % patch_size or w % patch_size:
        raise ValueError(f"image size {h}x{w} is not divisible by patch size {patch_size}")
    gh, gw = h // patch_size, w // patch_size
    if mask is not None:
        m = torch.as_tensor(mask).reshape(gh, gw).cpu().numpy().astype(bool)  # (G, G)
        m = m.repeat(patch_size, 0).repeat(patch_size, 1)  # (H, W)
        pic = pic.copy()
        pic[m] = 0.5 * pic[m] + 0.5 * np.array([0.35, 0.35, 0.35])
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(3, 3))
    ax.imshow(pic, interpolation="nearest")
    for k in range(1, gh):
        ax.axhline(k * patch_size - 0.5, color="white", lw=0.8)
    for k in range(1, gw):
        ax.axvline(k * patch_size - 0.5, color="white", lw=0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return fig if fig is not None else ax.figure
