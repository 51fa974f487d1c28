"""Lesson 04's masked-pass figure: what the encoder sees, the masked and the unmasked pass's x̂0 from the same
x_t, and what the holes cost each visible token.

The masked pass comes from `mdt_teach.lessons.reconstruct`; this module adds the unmasked pass on the same x_t,
the per-token errors of both, and draws them.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from mdt_teach.lessons import reconstruct, token_rms
from mdt_teach.viz.images import render_token_grid
from mdt_teach.viz import core

HOLE_COST_VMAX = 1.0    # colour scale of the hole-cost map, in units of the unmasked pass's mean error at this t


def hide_tokens(image: torch.Tensor, mask: torch.Tensor, patch_size: int, fill: float = 0.0) -> torch.Tensor:
    """(C, H, W) image with every masked token (mask (L,) == 1, row-major) painted a flat `fill` grey."""
    g = image.shape[-1] // patch_size
    pixels = mask.reshape(g, g).repeat_interleave(patch_size, 0).repeat_interleave(patch_size, 1)  # (H, W)
    return torch.where(pixels.bool(), torch.full_like(image, fill), image)


@torch.no_grad()
def two_pass_reconstruction(model, x0: torch.Tensor, y: torch.Tensor, diffusion, t: int, mask_ratio: float,
                            seed: int = 0) -> dict:
    """`reconstruct`'s masked pass plus the unmasked pass on the same x_t: x̂0 of both, the mask, and each
    token's ε-MSE per element (B, G, G) for both passes, against the noise that made x_t."""
    rec = reconstruct(model, x0, y, diffusion, int(t), float(mask_ratio), seed)
    t_batch = torch.full((len(x0),), int(t), dtype=torch.long)
    alpha_bar = float(diffusion.alphas_cumprod[int(t)])
    noise = (rec["x_t"] - alpha_bar ** 0.5 * x0) / (1 - alpha_bar) ** 0.5   # the ε that q_sample drew
    was_training = model.training
    eps_full = model.eval()(rec["x_t"], t_batch, y)[:, : x0.shape[1]]       # (B, C, H, W), no label dropout
    model.train(was_training)
    p = model.patch_size
    return {**rec, "x0_hat_full": diffusion.predict_x0_from_eps(rec["x_t"], t_batch, eps_full).clamp(-1, 1),
            "mse_masked": token_rms(rec["eps_hat"] - noise, p).pow(2),         # (B, G, G)
            "mse_full": token_rms(eps_full - noise, p).pow(2)}


def _split(per_token: torch.Tensor, hidden: torch.Tensor) -> tuple[float, float]:
    """Mean of a (B, G, G) per-token value over the hidden and over the visible tokens."""
    mean = lambda m: per_token[m].mean().item() if m.any() else float("nan")   # noqa: E731
    return mean(hidden), mean(~hidden)


def render_reconstruction(mask_ratio: float, t: int, face: int, model, x0: torch.Tensor, y: torch.Tensor,
                          diffusion, seed: int = 0):
    """One face (index `face` of x0), left to right: x_t as the encoder gets it (hidden tokens grey), x̂0 of the
    masked pass on the visible tokens, x̂0 of the unmasked pass from the same x_t, and the hole cost: each visible
    token's ε-MSE in the masked pass minus the unmasked pass, in units of the unmasked pass's mean error (red:
    the holes made that token harder).

    Hidden tokens get no masked-pass x̂0: the model never saw x_t there, and the noise it would have to predict
    is independent of everything it saw, so MDT v1 learns ε̂ ≈ 0 at those positions (the title measures it).
    Computing (x_t − √(1−ᾱ)·ε̂)/√ᾱ there would only rescale the hidden x_t, which is not the model's work."""
    if not 0 <= int(face) < len(x0):
        raise ValueError(f"face {face} is not one of the {len(x0)} faces given (0..{len(x0) - 1})")
    rec = two_pass_reconstruction(model, x0, y, diffusion, t, mask_ratio, seed)
    i, p = int(face), model.patch_size
    g = x0.shape[-1] // p
    hidden = rec["mask"][i].reshape(g, g).bool()                               # (G, G)
    (m_hid, m_vis), (f_hid, f_vis) = _split(rec["mse_masked"][i], hidden), _split(rec["mse_full"][i], hidden)
    cost = ((rec["mse_masked"][i] - rec["mse_full"][i]) / f_vis).masked_fill(hidden, float("nan"))  # (G, G)
    fig, axes = plt.subplots(1, 4, figsize=(9.4, 3.1))   # narrower than a static grid's column: no blur
    render_token_grid(hide_tokens(rec["x_t"][i], rec["mask"][i], p), p, ax=axes[0],
                      title="encoder's input x_t\n(hidden tokens grey)")
    render_token_grid(hide_tokens(rec["x0_hat"][i], rec["mask"][i], p), p, ax=axes[1],
                      title=f"x̂0, masked pass (visible)\nε-MSE visible {m_vis:.3f}, hidden {m_hid:.2f}")
    render_token_grid(rec["x0_hat_full"][i], p, ax=axes[2],
                      title=f"x̂0, unmasked pass, same x_t\nε-MSE visible {f_vis:.3f}, hidden {f_hid:.3f}")
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.55")               # hidden tokens: grey
    im = axes[3].imshow(cost.numpy(), cmap=cmap, vmin=-HOLE_COST_VMAX, vmax=HOLE_COST_VMAX, interpolation="nearest")
    axes[3].set(xticks=[], yticks=[])
    axes[3].set_title("hole cost per visible token\n(masked − unmasked) / unmasked", fontsize=9)
    fig.colorbar(im, ax=axes[3], fraction=0.046, pad=0.03)
    fig.suptitle(f"t = {int(t)}, mask ratio {float(mask_ratio):.2f}: {int(hidden.sum())} of {g * g} tokens hidden",
                 fontsize=10)
    fig.tight_layout()
    return fig


def reconstruction_widget(model, x0: torch.Tensor, y: torch.Tensor, diffusion, seed: int = 0,
                          static: bool | None = None):
    """Sliders for mask ratio, t and the face redraw `render_reconstruction`; static grid at three settings."""
    controls = {}
    if core.widgets is not None:
        controls["mask_ratio"] = core.widgets.FloatSlider(value=0.3, min=0.0, max=0.9, step=0.05,
                                                          description="mask ratio", continuous_update=False)
        controls["t"] = core.widgets.IntSlider(value=300, min=0, max=diffusion.num_timesteps - 1, step=10,
                                               description="t", continuous_update=False)
        controls["face"] = core.widgets.IntSlider(value=0, min=0, max=len(x0) - 1, description="face",
                                                  continuous_update=False)
    settings = [{"mask_ratio": 0.3, "t": 100, "face": 0}, {"mask_ratio": 0.6, "t": 100, "face": 0},
                {"mask_ratio": 0.6, "t": 500, "face": 0}]
    fixed = {"model": model, "x0": x0, "y": y, "diffusion": diffusion, "seed": seed}
    return core.show(render_reconstruction, controls, settings, fixed=fixed, static=static)
