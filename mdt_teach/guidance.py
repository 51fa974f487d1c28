"""Classifier-free guidance with MDT's power-cosine schedule: the guided mix of a conditional and an
unconditional prediction, below both the models (their `forward_with_cfg`) and the samplers.

    ε̂ = ε_u + w_eff(t)·(ε_c − ε_u),      w_eff(t) = 1 + (w − 1)·(1 − cos(π·(1 − t/T)^s))/2

Official: `masked_diffusion/models.py: MDTv2.forward_with_cfg` (s = `scale_pow` 4 for MDTv2's demo and FID);
s = 0 gives DiT's constant scale w (DiT `models.py: DiT.forward_with_cfg`).
"""
from __future__ import annotations

import math

import numpy as np
import torch


def _power_cos_scale(t, cfg_scale: float, scale_pow: float, num_timesteps: int):
    """w_eff(t) = 1 + (w − 1)·(1 − cos(π(1 − t/T)^s))/2, no checks (tensor or float)."""
    if isinstance(t, torch.Tensor):
        step = (1 - torch.cos((1 - t / num_timesteps) ** scale_pow * math.pi)) / 2
    else:
        step = (1 - np.cos((1 - np.asarray(t) / num_timesteps) ** scale_pow * math.pi)) / 2
    return 1 + (cfg_scale - 1) * step


def cfg_scale_at(t, cfg_scale: float, scale_pow: float = 4.0, T: int = 1000):
    """Guidance weight at original timestep t (MDT's power-cosine CFG, official `MDTv2.forward_with_cfg`):
    w_eff(t) = 1 + (w − 1)·(1 − cos(π·(1 − t/T)^s))/2, so w_eff(T−1) ≈ 1 and w_eff(0) = w."""
    values = np.asarray(t.cpu() if isinstance(t, torch.Tensor) else t)
    if values.size and (values.min() < 0 or values.max() > T - 1):
        raise ValueError(f"timestep out of range: got values in [{values.min()}, {values.max()}], allowed 0..{T - 1}")
    scale = _power_cos_scale(t, cfg_scale, scale_pow, T)
    return float(scale) if np.ndim(scale) == 0 and not isinstance(scale, torch.Tensor) else scale


def combine_cfg(model_out: torch.Tensor, t: torch.Tensor, cfg_scale: float, scale_pow: float = 4.0,
                guided_channels: int = 3, T: int = 1000) -> torch.Tensor:
    """Guide the doubled batch [cond; uncond]: ε_u + w_eff(t)(ε_c − ε_u) on the first `guided_channels`
    channels, written to both halves; the other channels keep their raw values (official DiT/MDT quirk)."""
    half = model_out.shape[0] // 2
    guided, rest = model_out[:, :guided_channels], model_out[:, guided_channels:]
    cond, uncond = guided[:half], guided[half:]  # (B, g, H, W) each
    w = _power_cos_scale(t[:half].float(), cfg_scale, scale_pow, T)  # (B,)
    w = w.view(-1, 1, 1, 1).to(model_out.dtype)  # (B, 1, 1, 1)
    mixed = uncond + w * (cond - uncond)  # (B, g, H, W)
    return torch.cat([torch.cat([mixed, mixed], dim=0), rest], dim=1)  # (2B, C_out, H, W)


def cfg_forward(model, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, cfg_scale: float,
                scale_pow: float = 4.0, guided_channels: int | None = 3, T: int = 1000) -> torch.Tensor:
    """`forward_with_cfg` for a model that lacks one: run [x_half; x_half] with labels [y; null], then guide."""
    half = x[: x.shape[0] // 2]
    out = model(torch.cat([half, half], dim=0), t, y)  # (2B, C_out, H, W)
    channels = model.in_channels if guided_channels is None else guided_channels  # None: guide every ε channel
    return combine_cfg(out, t, cfg_scale, scale_pow, channels, T)
