"""Lesson 04's masked-token reconstruction: masked input x_t → predicted x̂0 → ground truth x0.

Also the format of the small lesson checkpoint (`data/lesson04_mdt_tiny.pt`, written by
`tools/make_lesson_checkpoint.py`): the EMA weights in float16 plus the model config.
"""
from __future__ import annotations

from dataclasses import asdict

import matplotlib.pyplot as plt
import torch

from mdt_teach.masking import draw_mask_ratio, random_masking
from mdt_teach.models import fixed_mask_ratio
from mdt_teach.viz.images import render_token_grid, to_image

LESSON_CHECKPOINT = "lesson04_mdt_tiny.pt"
FORMAT = "mdt_teach.lesson_checkpoint/1"


# ----------------------------------------------------------------------------------------------
# The lesson checkpoint
# ----------------------------------------------------------------------------------------------

def save_lesson_checkpoint(model, path, info: dict | None = None) -> None:
    """Save float weights as float16 (integer buffers as they are) with the model config and `info`."""
    state = {k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()
             for k, v in model.state_dict().items()}
    torch.save({"format": FORMAT, "model_config": asdict(model.config), "state_dict": state,
                "info": dict(info or {})}, path)


def load_lesson_checkpoint(relpath: str = LESSON_CHECKPOINT):
    """Rebuild the model of a lesson checkpoint under data/ in float32 and eval mode; returns (model, info)."""
    from mdt_teach.models import from_config
    from mdt_teach.resources import data_file

    blob = torch.load(data_file(relpath), map_location="cpu", weights_only=True)
    if blob.get("format") != FORMAT:
        raise ValueError(f"{relpath} is not a lesson checkpoint (format {blob.get('format')!r}); "
                         "rewrite it with tools/make_lesson_checkpoint.py")
    model = from_config(blob["model_config"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()})
    return model.eval(), blob["info"]


# ----------------------------------------------------------------------------------------------
# A masked forward pass whose mask we can see
# ----------------------------------------------------------------------------------------------

def model_mask(model, batch: int, seed: int) -> torch.Tensor:
    """The (B, L) mask a masked forward with generator seed `seed` draws: the ratio draw first, then the noise."""
    g = torch.Generator().manual_seed(int(seed))
    ratio = draw_mask_ratio(model.mask_ratio, model.mask_ratio_jitter, "cpu", g)
    dummy = torch.zeros(batch, model.x_embedder.num_patches, 1)        # (B, L, 1): only the draw matters
    return random_masking(dummy, ratio, g)[1]


@torch.no_grad()
def masked_forward(model, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor, seed: int = 0,
                   mask_ratio: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the masked training pass in eval mode (no label dropout) with a seeded mask; returns (output, mask)."""
    if not getattr(model, "is_mdt", False) or model.mask_ratio is None and mask_ratio is None:
        raise ValueError("masked_forward needs an MDT / MDTv2 model built with a mask_ratio (or pass mask_ratio)")
    was_training = model.training
    model.eval()
    try:
        with fixed_mask_ratio(model, mask_ratio):  # exactly this ratio (jitter 0), or the model's own draw
            out = model(x_t, t, y, enable_mask=True, generator=torch.Generator().manual_seed(int(seed)))
            mask = model_mask(model, x_t.shape[0], seed)
    finally:
        model.train(was_training)
    return out, mask


def reconstruct(model, x0: torch.Tensor, y: torch.Tensor, diffusion, t: int, mask_ratio: float,
                seed: int = 0) -> dict:
    """Noise x0 to x_t, run the masked pass, and turn its ε̂ into x̂0 = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t."""
    g = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(x0.shape, generator=g)                           # (B, C, H, W)
    t_batch = torch.full((x0.shape[0],), int(t), dtype=torch.long)
    x_t = diffusion.q_sample(x0, t_batch, noise)
    out, mask = masked_forward(model, x_t, t_batch, y, seed=seed, mask_ratio=mask_ratio)
    eps_hat = out[:, : x0.shape[1]]                                      # (B, C, H, W): drop the v channels
    x0_hat = diffusion.predict_x0_from_eps(x_t, t_batch, eps_hat).clamp(-1, 1)
    return {"x_t": x_t, "mask": mask, "eps_hat": eps_hat, "x0_hat": x0_hat}


# ----------------------------------------------------------------------------------------------
# Figure and widget
# ----------------------------------------------------------------------------------------------

def hide_tokens(image: torch.Tensor, mask: torch.Tensor, patch_size: int, fill: float = 0.0) -> torch.Tensor:
    """(C, H, W) image with every masked token (mask (L,) == 1, row-major) painted a flat `fill` grey."""
    g = image.shape[-1] // patch_size
    pixels = mask.reshape(g, g).repeat_interleave(patch_size, 0).repeat_interleave(patch_size, 1)  # (H, W)
    return torch.where(pixels.bool(), torch.full_like(image, fill), image)


def token_rms(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) → (B, G, G): the root-mean-square of each p×p token over its pixels and channels."""
    B, C, H, W = x.shape
    g = H // patch_size
    tokens = x.reshape(B, C, g, patch_size, g, patch_size)              # (B, C, G, p, G, p)
    return tokens.pow(2).mean(dim=(1, 3, 5)).sqrt()                     # (B, G, G)


def hidden_visible_rms(rec: dict, patch_size: int, rms: torch.Tensor | None = None) -> tuple[float, float]:
    """RMS of ε̂ over the hidden tokens and over the visible ones (all images of a `reconstruct` result);
    `rms` is `token_rms(rec["eps_hat"], patch_size)` when the caller already has it."""
    g = rec["x_t"].shape[-1] // patch_size
    mask = rec["mask"].reshape(-1, g, g).bool()                         # (B, G, G), True = hidden
    rms = token_rms(rec["eps_hat"], patch_size) if rms is None else rms
    ms = rms.pow(2)                                                     # (B, G, G) mean ε̂² per token
    hidden = ms[mask].mean().sqrt().item() if mask.any() else float("nan")
    visible = ms[~mask].mean().sqrt().item() if (~mask).any() else float("nan")
    return hidden, visible


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
    from mdt_teach.viz.core import show, widgets

    controls = {}
    if widgets is not None:
        controls["mask_ratio"] = widgets.FloatSlider(value=0.3, min=0.0, max=0.9, step=0.05,
                                                     description="mask ratio", continuous_update=False)
        controls["t"] = widgets.IntSlider(value=300, min=0, max=diffusion.num_timesteps - 1, step=10,
                                          description="t", continuous_update=False)
    settings = [{"mask_ratio": 0.3, "t": 200}, {"mask_ratio": 0.3, "t": 500},
                {"mask_ratio": 0.6, "t": 200}, {"mask_ratio": 0.6, "t": 500}]
    fixed = {"model": model, "x0": x0, "y": y, "diffusion": diffusion, "seed": seed}
    return show(render_reconstruction, controls, settings, fixed=fixed, static=static)
