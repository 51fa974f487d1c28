"""Image helpers shared by the lessons: tensors → pictures, image grids, token grids with masks."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from mdt_teach.checkpoint import atomic_write


def to_image(x) -> np.ndarray:
    """A (C, H, W) tensor in [-1, 1] → an (H, W, 3) float array in [0, 1] for imshow."""
    x = torch.as_tensor(x).detach().float().cpu()
    if x.dim() != 3:
        raise ValueError(f"expected one image of shape (C, H, W), got shape {tuple(x.shape)}")
    x = ((x.clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()  # (H, W, C)
    return np.repeat(x, 3, axis=2) if x.shape[2] == 1 else x[..., :3]


def image_grid(images, nrow: int = 8, pad: int = 1) -> np.ndarray:
    """A batch (B, C, H, W) in [-1, 1] → one (rows·H, nrow·W, 3) picture with white padding."""
    pics = [to_image(x) for x in images]
    h, w = pics[0].shape[:2]
    ncol = min(nrow, len(pics))
    nrows = (len(pics) + ncol - 1) // ncol
    grid = np.ones((nrows * (h + pad) + pad, ncol * (w + pad) + pad, 3), dtype=np.float32)
    for i, pic in enumerate(pics):
        r, c = divmod(i, ncol)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = pic
    return grid


def save_grid(images, path, nrow: int = 8, scale: int = 1) -> None:
    """Write an image grid to a PNG (atomically), each pixel repeated `scale`× (nearest neighbour: no blur)."""
    from PIL import Image

    grid = (image_grid(images, nrow) * 255).round().astype(np.uint8)       # (H, W, 3)
    grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)                # (scale·H, scale·W, 3)
    atomic_write(path, lambda f: Image.fromarray(grid).save(f, format="PNG"))


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
