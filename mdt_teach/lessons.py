"""What the lessons compute with a trained model: the small lesson checkpoints, a masked forward pass whose
mask we can see, and the masked-token reconstruction of lesson 04 (its figures are in `viz/`).

A lesson checkpoint (`data/lesson04_mdt_tiny.pt`, `data/lesson09_mdtv2_tiny.pt`, written by
`tools/make_lesson_checkpoint.py`) holds the EMA weights in float16 and the model config, as plain data: it
is read with the same safe reader as every checkpoint (`checkpoint.read_torch_file`).
"""
from __future__ import annotations

from dataclasses import asdict

import torch

from .checkpoint import atomic_save, read_torch_file
from .masking import draw_mask_ratio, mask_from_hidden, random_masking
from .model_size import fixed_mask_ratio
from .models import from_config
from .resources import data_file

LESSON_CHECKPOINT = "lesson04_mdt_tiny.pt"
FORMAT = "mdt_teach.lesson_checkpoint/1"


# ----------------------------------------------------------------------------------------------
# The lesson checkpoint
# ----------------------------------------------------------------------------------------------

def save_lesson_checkpoint(model, path, info: dict | None = None) -> None:
    """Save float weights as float16 (integer buffers as they are) with the model config and `info`."""
    state = {k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()
             for k, v in model.state_dict().items()}
    atomic_save({"format": FORMAT, "model_config": asdict(model.config), "state_dict": state,
                 "info": dict(info or {})}, path)


def load_lesson_checkpoint(relpath: str = LESSON_CHECKPOINT):
    """Rebuild the model of a lesson checkpoint under data/ in float32 and eval mode; returns (model, info)."""
    blob = read_torch_file(data_file(relpath))
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{relpath} is not a lesson checkpoint; rewrite it with tools/make_lesson_checkpoint.py")
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


@torch.no_grad()
def masked_pass_errors(model, x0: torch.Tensor, y: torch.Tensor, diffusion, t: int, mask_ratio: float = 0.3,
                       seed: int = 0) -> dict:
    """Where the masked pass's loss comes from: the ε-MSE per token, averaged over the hidden and over the visible
    tokens, for the masked pass and — at the same tokens, same x_t — for the unmasked pass; and the RMS of ε̂.

    MDT v1 cannot see a hidden token's x_t, whose noise is independent of everything it sees: the best it can
    predict there is ε̂ = 0, an MSE of E[ε²] = 1. MDTv2's dense shortcut hands the decoder every token's x_t, so
    its hidden-token MSE measures what denoising costs when the encoder's context around the token is missing."""
    g = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(x0.shape, generator=g)                           # (B, C, H, W)
    t_batch = torch.full((x0.shape[0],), int(t), dtype=torch.long)
    x_t = diffusion.q_sample(x0, t_batch, noise)
    masked, mask = masked_forward(model, x_t, t_batch, y, seed=seed, mask_ratio=mask_ratio)
    was_training = model.training
    unmasked = model.eval()(x_t, t_batch, y)                             # no label dropout, like masked_forward
    model.train(was_training)
    hidden = mask.bool()                                                 # (B, L), True = hidden
    C, p = x0.shape[1], model.patch_size
    per_token = lambda e: token_rms(e, p).pow(2).flatten(1)              # (B, L) mean square per token  # noqa: E731
    mse_masked, mse_full = per_token(masked[:, :C] - noise), per_token(unmasked[:, :C] - noise)
    eps_ms = per_token(masked[:, :C])
    return {"t": int(t), "masked_hidden": mse_masked[hidden].mean().item(),
            "masked_visible": mse_masked[~hidden].mean().item(),
            "unmasked_hidden": mse_full[hidden].mean().item(), "unmasked_visible": mse_full[~hidden].mean().item(),
            "eps_rms_hidden": eps_ms[hidden].mean().sqrt().item(), "eps_rms_visible": eps_ms[~hidden].mean().sqrt().item()}


@torch.no_grad()
def one_shot_prediction(model, x0: torch.Tensor, y: torch.Tensor, hidden: torch.Tensor, diffusion, t: int,
                        seed: int = 0) -> torch.Tensor:
    """The masked pass's own completion: noise x0 to x_t, hide the tokens `hidden` (B, L) from the encoder
    (the side-interpolater fills them), and turn the one ε̂ into x̂0 = (x_t − √(1−ᾱ)·ε̂)/√ᾱ — one forward at
    one t, the expected clean image given what was seen (lesson 11 sets it beside RePaint's completion)."""
    if not getattr(model, "is_mdt", False):
        raise ValueError("one_shot_prediction needs an MDT / MDTv2 model (DiT has no masked pass)")
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(int(seed)))
    t_batch = torch.full((x0.shape[0],), int(t), dtype=torch.long)
    x_t = diffusion.q_sample(x0, t_batch, noise)
    was_training, ratio = model.training, model.mask_ratio
    model.eval()
    model.mask_tokens = lambda h0, generator=None: mask_from_hidden(h0, hidden)   # this instance only
    model.mask_ratio = ratio if ratio is not None else 0.0                        # the masked pass needs a ratio
    try:
        out = model(x_t, t_batch, y, enable_mask=True)
    finally:
        del model.mask_tokens
        model.mask_ratio = ratio
        model.train(was_training)
    return diffusion.predict_x0_from_eps(x_t, t_batch, out[:, : x0.shape[1]]).clamp(-1, 1)
