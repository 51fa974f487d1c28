"""Tensors → pictures: one image for imshow, a batch as one grid, a grid saved as a PNG. No plotting library:
the training and sampling paths save grids through this module (figures and widgets live in `viz`)."""
from __future__ import annotations

import numpy as np
import torch

from .checkpoint import atomic_write


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
