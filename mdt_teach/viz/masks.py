"""Lesson 03's mask explorer: which tokens a random mask keeps, and the shuffled order the encoder sees."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib import patheffects
import numpy as np
import torch

from mdt_teach.masking import random_masking
from mdt_teach.viz.images import render_token_grid, to_image
from mdt_teach.viz import core


def image_patches(image: torch.Tensor, patch_size: int) -> np.ndarray:
    """One (C, H, W) image in [-1, 1] → (N, p, p, 3) picture patches in row-major token order."""
    pic = to_image(image)                                                # (H, W, 3)
    g = pic.shape[0] // patch_size
    pic = pic.reshape(g, patch_size, g, patch_size, 3)                   # (G, p, G, p, 3)
    return pic.transpose(0, 2, 1, 3, 4).reshape(g * g, patch_size, patch_size, 3)  # (N, p, p, 3)


def draw_mask(num_tokens: int, mask_ratio: float, seed: int):
    """The mask `random_masking` draws for one image with a seeded generator: (mask (L,), ids_keep (K,))."""
    dummy = torch.zeros(1, num_tokens, 1)                                # (1, L, 1): only the draw matters
    _, mask, _, ids_keep = random_masking(dummy, mask_ratio, torch.Generator().manual_seed(int(seed)))
    return mask[0], ids_keep[0]


def kept_strip(patches: np.ndarray, ids_keep: torch.Tensor, ncol: int, pad: int = 1) -> np.ndarray:
    """The kept patches in ids_keep (shuffled) order, wrapped into rows of `ncol` with white padding."""
    k, p = len(ids_keep), patches.shape[1]
    nrow = (k + ncol - 1) // ncol
    out = np.ones((nrow * (p + pad) + pad, ncol * (p + pad) + pad, 3), dtype=np.float32)
    for slot, token in enumerate(ids_keep.tolist()):
        r, c = divmod(slot, ncol)
        out[pad + r * (p + pad): pad + r * (p + pad) + p, pad + c * (p + pad): pad + c * (p + pad) + p] = patches[token]
    return out


def render_mask_explorer(index: int, mask_ratio: float, seed: int, images: torch.Tensor, patch_size: int = 4):
    """Figure: the image with masked tokens greyed, and the K kept tokens in the order the encoder reads them."""
    image = images[int(index)]
    patches = image_patches(image, patch_size)
    n = len(patches)
    mask, ids_keep = draw_mask(n, float(mask_ratio), seed)
    grid = int(round(n ** 0.5))
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4), gridspec_kw={"width_ratios": [1, 1.3]})
    render_token_grid(image, patch_size, mask=mask, ax=axes[0],
                      title=f"image {int(index)}: {n - len(ids_keep)} of {n} tokens masked (grey)")
    axes[1].imshow(kept_strip(patches, ids_keep, ncol=grid), interpolation="nearest")
    axes[1].set_title(f"encoder input: K = {len(ids_keep)} kept tokens, shuffled order", fontsize=9)
    axes[1].axis("off")
    outline = [patheffects.withStroke(linewidth=1.5, foreground="black")]
    for slot, token in enumerate(ids_keep.tolist()):                 # each kept token's original index
        r, c = divmod(slot, grid)
        axes[1].text(1 + c * (patch_size + 1) + (patch_size - 1) / 2, 1 + r * (patch_size + 1) + (patch_size - 1) / 2,
                     str(token), fontsize=6, ha="center", va="center", color="white", path_effects=outline)
    fig.suptitle(f"mask ratio {float(mask_ratio):.2f}, seed {int(seed)}", fontsize=10)
    fig.tight_layout()
    return fig


def mask_explorer_widget(images: torch.Tensor, patch_size: int = 4, static: bool | None = None):
    """Image index, mask ratio and seed → `render_mask_explorer`; static grid over a few ratios and seeds."""
    controls = {}
    if core.widgets is not None:
        controls["index"] = core.widgets.IntSlider(value=0, min=0, max=len(images) - 1, description="image",
                                              continuous_update=False)
        controls["mask_ratio"] = core.widgets.FloatSlider(value=0.3, min=0.0, max=0.9, step=0.05,
                                                     description="mask ratio", continuous_update=False)
        controls["seed"] = core.widgets.IntSlider(value=0, min=0, max=99, description="seed", continuous_update=False)
    last = len(images) - 1
    settings = [{"index": 0, "mask_ratio": 0.3, "seed": 0}, {"index": 0, "mask_ratio": 0.3, "seed": 1},
                {"index": min(1, last), "mask_ratio": 0.5, "seed": 0},
                {"index": min(2, last), "mask_ratio": 0.75, "seed": 0}]
    return core.show(render_mask_explorer, controls, settings, fixed={"images": images, "patch_size": patch_size},
                static=static)
