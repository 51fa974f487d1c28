"""Sampling: timestep respacing, ancestral DDPM with learned variance, DDIM, guided by classifier-free guidance
(`guidance.py`, MDT's power-cosine scale schedule). Official sources, under `masked_diffusion/`: `respace.py`,
`gaussian_diffusion.py: p_sample_loop, ddim_sample_loop` and `models.py: MDTv2.forward_with_cfg`.

The model always receives the ORIGINAL timestep index (0..999) as an integer tensor, also when sampling
with 250 respaced steps (official `respace.py: _WrappedModel` maps step i to `timestep_map[i]`).
All noise is drawn through one `torch.Generator` when given.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

from .diffusion import GaussianDiffusion, extract, randn
from .guidance import cfg_forward

METHODS = ("ddpm", "ddim")


# Official settings (`scripts/image_sample.py` for FID; `infer_mdt.py` for the demo grid). `labels`:
# "random" draws each image's class; the demo's six classes are those of `infer_mdt.py`.
PRESETS = {
    "fid": dict(steps="250", method="ddpm", cfg_scale=3.8, scale_pow=4.0, vae_decoder="ema", labels="random"),
    "demo": dict(steps="250", method="ddpm", cfg_scale=4.0, scale_pow=0.01, vae_decoder="mse", seed=1,
                 labels="19,23,106,108,278,282"),
}
# DiT's own settings where they differ: constant guidance (pow 0, DiT `models.py: forward_with_cfg`) and, for
# FID, cfg 1.5 (the FID-50K of DiT-XL/2-G, arXiv 2212.09748; DiT `sample_ddp.py`: --cfg-scale 1.5).
DIT_PRESETS = {"fid": dict(cfg_scale=1.5, scale_pow=0.0), "demo": dict(scale_pow=0.0)}


def preset(name: str | None, family: str | None = None) -> dict:
    """The official settings `name` (PRESETS; {} for None) for a model family: DiT's own where they differ."""
    own = DIT_PRESETS.get(name or "", {}) if family == "DiT" else {}
    return {**PRESETS.get(name or "", {}), **own}


def default_scale_pow(model) -> float:
    """The guidance schedule a model's own code uses: MDT's power-cosine with pow 4 (`forward_with_cfg`'s
    default), or DiT's constant scale (pow 0: w_eff(t) = w at every t, as in DiT's `forward_with_cfg`)."""
    return 0.0 if getattr(model, "family", None) == "DiT" else 4.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] (B, C, H, W) → uint8 (B, H, W, C) exactly as the official sampler:
    `((x + 1) * 127.5).clamp(0, 255).to(uint8)` — truncation toward zero, not rounding."""
    return ((x.float() + 1) * 127.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


# ---------------------------------------------------------------------------------------------------
# Respacing
# ---------------------------------------------------------------------------------------------------

def _ddim_stride_steps(num_timesteps: int, count: int) -> list[int]:
    """"ddimN": the first integer stride s with len(range(0, T, s)) == N (DDIM paper striding, ADM)."""
    for stride in range(1, num_timesteps):
        if len(range(0, num_timesteps, stride)) == count:
            return list(range(0, num_timesteps, stride))
    raise ValueError(f"cannot take exactly {count} steps from {num_timesteps} with an integer stride; "
                     f"pick another ddim count (e.g. ddim50) or a plain count like '{count}'")


def _section_steps(start: int, size: int, count: int) -> list[int]:
    """`count` steps spread evenly over [start, start + size), both ends kept (fractional stride, rounded)."""
    if count > size or count < 1:
        raise ValueError(f"cannot take {count} steps from a section of {size}; use a count in 1..{size}")
    stride = (size - 1) / (count - 1) if count > 1 else 1
    steps, position = [], 0.0
    for _ in range(count):  # accumulate the float stride exactly as ADM does, then round half to even
        steps.append(start + round(position))
        position += stride
    return steps


def _parse_count(text: str, spec) -> int:
    """One step count of a respacing string, or the ValueError that names the accepted forms."""
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"unknown respacing {spec!r}; use a step count like '250', 'ddim50' or "
                         f"comma-separated section counts like '10,15,20'") from None


def space_timesteps(num_timesteps: int, section_counts) -> list[int]:
    """Kept original timesteps, sorted (ADM `space_timesteps`): "250" → round(i·999/249); "ddim50" → 0, 20, …, 980;
    "10,15,20" → 10, 15 and 20 steps in three equal sections of [0, T); "" → all T steps."""
    if isinstance(section_counts, int):
        section_counts = str(section_counts)
    if isinstance(section_counts, str):
        text = section_counts.strip()
        if text.startswith("ddim"):
            return _ddim_stride_steps(num_timesteps, _parse_count(text[len("ddim"):], section_counts))
        section_counts = [_parse_count(part, section_counts) for part in text.split(",")] if text else [num_timesteps]
    counts = list(section_counts)
    size_per, extra = divmod(num_timesteps, len(counts))
    steps, start = [], 0
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        steps += _section_steps(start, size, int(count))
        start += size
    return sorted(set(steps))


class SpacedDiffusion(GaussianDiffusion):
    """A diffusion that keeps only some timesteps S_i of `base`: β'_i = 1 − ᾱ_{S_i}/ᾱ_{S_{i−1}} (ADM respace).

    Every derived quantity (posterior, learned-range bounds) is recomputed from β'; `timestep_map[i] = S_i`
    is what the model is fed.
    """

    def __init__(self, base: GaussianDiffusion, use_timesteps):
        kept = sorted(set(int(s) for s in use_timesteps))
        if not kept or kept[0] < 0 or kept[-1] >= base.num_timesteps:
            raise ValueError(f"kept timesteps must lie in 0..{base.num_timesteps - 1}")
        alpha_bar = base.alphas_cumprod[kept]
        alpha_bar_prev = np.append(1.0, alpha_bar[:-1])
        super().__init__(betas=1.0 - alpha_bar / alpha_bar_prev)
        self.base = base
        self.timestep_map = np.asarray(kept, dtype=np.int64)
        self.original_num_steps = base.num_timesteps


def respace(diffusion: GaussianDiffusion, steps) -> GaussianDiffusion:
    """The process to sample with: `diffusion` itself for steps=None, else its base respaced by `steps`."""
    if steps is None:
        return diffusion
    base = diffusion.base if isinstance(diffusion, SpacedDiffusion) else diffusion
    return SpacedDiffusion(base, space_timesteps(base.num_timesteps, steps))


# ---------------------------------------------------------------------------------------------------
# One reverse step
# ---------------------------------------------------------------------------------------------------

def _nonzero(i: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """1 where the step index is not 0, shaped (B, 1, 1, 1): no noise is added on the last step."""
    return (i != 0).to(like.dtype).view(-1, *([1] * (like.ndim - 1)))  # (B, 1, 1, 1)


def ddpm_step(diffusion: GaussianDiffusion, model_out, x: torch.Tensor, i: torch.Tensor, noise: torch.Tensor,
              clip_denoised: bool = False):
    """Ancestral step x_{i−1} = μ + σ·z with the learned variance; returns (x_prev, pred_x0) (ADM `p_sample`)."""
    p = diffusion.p_mean_variance(model_out, x, i, clip_denoised)
    return p["mean"] + _nonzero(i, x) * torch.exp(0.5 * p["log_variance"]) * noise, p["pred_x0"]


def ddim_step(diffusion: GaussianDiffusion, model_out, x: torch.Tensor, i: torch.Tensor, noise: torch.Tensor,
              eta: float = 0.0, clip_denoised: bool = False):
    """DDIM step (Song et al. 2021, eq. 12): x_{i−1} = √ᾱ'·x̂_0 + √(1−ᾱ'−σ²)·ε + σ·z,
    σ = η·√((1−ᾱ')/(1−ᾱ))·√(1−ᾱ/ᾱ'); ε is re-derived from x̂_0 as in ADM `ddim_sample`."""
    p = diffusion.p_mean_variance(model_out, x, i, clip_denoised)
    eps = diffusion.predict_eps_from_x0(x, i, p["pred_x0"])
    alpha_bar = extract(diffusion.alphas_cumprod, i, x.shape)  # (B, 1, 1, 1)
    alpha_bar_prev = extract(diffusion.alphas_cumprod_prev, i, x.shape)  # (B, 1, 1, 1)
    sigma = eta * torch.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)) * torch.sqrt(1 - alpha_bar / alpha_bar_prev)
    mean = p["pred_x0"] * torch.sqrt(alpha_bar_prev) + torch.sqrt(1 - alpha_bar_prev - sigma ** 2) * eps
    return mean + _nonzero(i, x) * sigma * noise, p["pred_x0"]


# ---------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------

@contextmanager
def _eval_mode(model):
    """Label dropout and masking are off in eval mode; restore the caller's mode afterwards.

    The official `infer_mdt.py` likewise calls `model.eval()` before sampling.
    """
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        yield
    finally:
        if hasattr(model, "train"):
            model.train(was_training)


def _model_device(model) -> torch.device:
    """Device of the model's first parameter (CPU for a parameter-free callable)."""
    params = getattr(model, "parameters", None)
    first = next(params(), None) if params is not None else None
    return first.device if first is not None else torch.device("cpu")


def _check_sampling_args(method: str, eta: float, y: torch.Tensor, batch: int, null_label: int | None) -> None:
    """One clear ValueError for each bad sampling argument."""
    if method not in METHODS:
        raise ValueError(f"unknown sampling method {method!r}; use one of {', '.join(METHODS)}")
    if eta < 0:
        raise ValueError(f"eta must be ≥ 0 (0 = deterministic DDIM, 1 = DDPM-like noise); got {eta}")
    if y.shape != (batch,):
        raise ValueError(f"need one label per sample: y has shape {tuple(y.shape)}, the batch is {batch}")
    if null_label is not None and batch and (int(y.min()) < 0 or int(y.max()) > null_label):
        raise ValueError(f"labels must lie in 0..{null_label} ({null_label} = unconditional); "
                         f"got {int(y.min())}..{int(y.max())}")


def _guided_model_fn(model, cfg_scale: float, scale_pow: float, guided_channels: int | None, T: int):
    """The callable (x, t, y) → output the loop uses: plain forward, or CFG on the doubled batch."""
    if cfg_scale == 1.0:
        return lambda x, t, y: model(x, t, y)
    if hasattr(model, "forward_with_cfg"):
        return lambda x, t, y: model.forward_with_cfg(x, t, y, cfg_scale=cfg_scale, diffusion_steps=T,
                                                      scale_pow=scale_pow, guided_channels=guided_channels)
    return lambda x, t, y: cfg_forward(model, x, t, y, cfg_scale, scale_pow, guided_channels, T)


def sample_loop(model, shape_or_z, y, diffusion: GaussianDiffusion, steps="250", cfg_scale: float = 1.0,
                scale_pow: float = 4.0, method: str = "ddpm", eta: float = 0.0,
                generator: torch.Generator | None = None, progress: bool = False, clip_denoised: bool = False,
                guided_channels: int | None = 3) -> Iterator[dict]:
    """Yield {"i", "t", "x", "pred_x0"} after every reverse step (first half of the batch only with CFG).

    Arguments are checked here, before the first step. cfg_scale = 1 runs the plain batch; otherwise the
    batch is [z; z] with labels [y; null] (official `infer_mdt.py`, `scripts/image_sample.py`) and noise is
    drawn for the whole doubled batch, as the official loop does. `steps=None` samples with `diffusion` as it is.
    """
    device = _model_device(model)
    z = randn(tuple(shape_or_z), generator, device) if not isinstance(shape_or_z, torch.Tensor) \
        else shape_or_z.to(device, torch.float32)
    y = torch.as_tensor(y, device=device).long().reshape(-1)
    null_label = getattr(model, "num_classes", None)
    _check_sampling_args(method, eta, y, z.shape[0], null_label)
    spaced = respace(diffusion, steps)
    if cfg_scale != 1.0:
        if null_label is None:
            raise ValueError("classifier-free guidance needs model.num_classes (the null label); use cfg_scale=1")
        z = torch.cat([z, z], dim=0)  # (2B, C, H, W)
        y = torch.cat([y, torch.full_like(y, null_label)], dim=0)  # (2B,)
    model_fn = _guided_model_fn(model, cfg_scale, scale_pow, guided_channels, spaced.original_num_steps)
    step_fn = ddpm_step if method == "ddpm" else \
        (lambda d, out, x, i, noise, clip: ddim_step(d, out, x, i, noise, eta, clip))
    keep = z.shape[0] // 2 if cfg_scale != 1.0 else z.shape[0]
    return _reverse_steps(model, model_fn, step_fn, spaced, z, y, keep, generator, progress, clip_denoised,
                          f"{method} {spaced.num_timesteps} steps")


def _reverse_steps(model, model_fn, step_fn, spaced: GaussianDiffusion, z, y, keep: int, generator,
                   progress: bool, clip_denoised: bool, desc: str) -> Iterator[dict]:
    """Run i = S−1 … 0, feeding the model t = timestep_map[i]; yield the first `keep` samples after each step."""
    timestep_map = torch.as_tensor(spaced.timestep_map, device=z.device)
    indices = range(spaced.num_timesteps - 1, -1, -1)
    if progress:
        from tqdm.auto import tqdm
        indices = tqdm(indices, desc=desc)
    x = z
    with _eval_mode(model), torch.no_grad():
        for step in indices:
            i = torch.full((x.shape[0],), step, device=x.device, dtype=torch.long)  # (N,) respaced index
            t = timestep_map[i]  # (N,) original index fed to the model
            out = model_fn(x, t, y).float()
            noise = randn(x.shape, generator, x.device, x.dtype)
            x, pred_x0 = step_fn(spaced, out, x, i, noise, clip_denoised)
            yield {"i": step, "t": int(spaced.timestep_map[step]), "x": x[:keep], "pred_x0": pred_x0[:keep]}


def sample(model, shape_or_z, y, diffusion: GaussianDiffusion, steps="250", cfg_scale: float = 1.0,
           scale_pow: float = 4.0, method: str = "ddpm", eta: float = 0.0,
           generator: torch.Generator | None = None, progress: bool = False, clip_denoised: bool = False,
           guided_channels: int | None = 3) -> torch.Tensor:
    """Draw x_0 (B, C, H, W) from noise (a shape, or a given z) by DDPM or DDIM over respaced steps, with
    optional power-cosine CFG (official `p_sample_loop` / `ddim_sample_loop` + `forward_with_cfg`)."""
    last = None
    for last in sample_loop(model, shape_or_z, y, diffusion, steps, cfg_scale, scale_pow, method, eta,
                            generator, progress, clip_denoised, guided_channels):
        pass
    return last["x"]


def generate(model, n: int, diffusion: GaussianDiffusion | None = None, steps="100", cfg_scale: float = 1.0,
             seed: int = 0, method: str = "ddpm", batch: int = 256, labels=None, scale_pow: float = 4.0):
    """n samples of `model` (classes 0, 1, 2, ... in turn unless `labels`), drawn through one seeded generator so
    the global RNG is never touched (the trainer's grids, `mdt-teach sample` / `eval`, the race);
    returns (x0 (n, C, H, W) on the CPU, labels)."""
    diffusion = diffusion or GaussianDiffusion()
    device = _model_device(model)
    labels = torch.arange(n) % model.num_classes if labels is None else torch.as_tensor(labels).long()
    gen = torch.Generator(device=device).manual_seed(seed)
    shape = (model.in_channels, model.input_size, model.input_size)
    chunks = [sample(model, (len(y),) + shape, y.to(device), diffusion, steps=steps, cfg_scale=cfg_scale,
                     scale_pow=scale_pow, method=method, generator=gen) for y in labels.split(batch)]
    images = torch.cat(chunks).float().cpu() if chunks else torch.zeros((0,) + shape)
    return images, labels


# ---------------------------------------------------------------------------------------------------
# Inpainting: RePaint (Lugmayr et al. 2022), for any of our models and the official ones
# ---------------------------------------------------------------------------------------------------

def keep_from_tokens(token_keep: torch.Tensor, patch_size: int) -> torch.Tensor:
    """A token-level keep mask (B, N) (row-major over a G×G grid) → the pixel mask (B, 1, G·p, G·p)."""
    token_keep = torch.as_tensor(token_keep).bool()
    token_keep = token_keep[None] if token_keep.dim() == 1 else token_keep
    g = int(round(token_keep.shape[1] ** 0.5))
    if g * g != token_keep.shape[1]:
        raise ValueError(f"a token mask needs a square number of tokens, got {token_keep.shape[1]}")
    grid = token_keep.view(-1, 1, g, g).float()
    return grid.repeat_interleave(patch_size, 2).repeat_interleave(patch_size, 3)


def repaint_schedule(num_steps: int, jump_length: int = 1, resamples: int = 1) -> list[int]:
    """The levels RePaint visits, counting steps still to go (num_steps = pure noise, 0 = clean): down one
    step at a time; every `jump_length` steps it goes back up `jump_length` steps `resamples − 1` times
    and comes down again (RePaint, Alg. 1 with its jumps). resamples = 1 is plain replacement.

    The jump points are those of RePaint's `get_schedule_jump` (guided_diffusion/scheduler.py), which
    counts the timestep index of x (T − 1 = pure noise, −1 = clean): jumps at index 0, L, 2L, … are our
    levels 1, L + 1, …, so the last jump starts from x at index 0 and the clean x₀ is never re-noised."""
    if jump_length < 1 or resamples < 1:
        raise ValueError(f"jump_length ({jump_length}) and resamples ({resamples}) must be at least 1")
    jumps = {t + 1: resamples - 1 for t in range(0, num_steps - jump_length, jump_length)}
    t, levels = num_steps, [num_steps]
    while t > 0:
        t -= 1
        levels.append(t)
        if jumps.get(t, 0) > 0:
            jumps[t] -= 1
            for _ in range(jump_length):
                t += 1
                levels.append(t)
    return levels


@torch.no_grad()
def inpaint(model, x_known: torch.Tensor, keep: torch.Tensor, y, diffusion: GaussianDiffusion, steps="50",
            jump_length: int = 1, resamples: int = 1, cfg_scale: float = 1.0, scale_pow: float = 4.0,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Complete x_known (B, C, H, W) where `keep` (broadcastable to it: 1 = given, 0 = to draw) is 0.

    At every reverse step the known region is replaced by x_known noised to that step, so the model
    draws the rest to fit it; going back up and down again (`resamples` > 1) lets the drawn part and the
    given part agree, which plain replacement often fails to do (RePaint, Lugmayr et al. 2022). After the
    last step the known region is x_known exactly. Latent models inpaint latents: encode, inpaint, decode."""
    device = _model_device(model)
    x_known = x_known.to(device, torch.float32)
    keep = torch.as_tensor(keep, dtype=torch.float32, device=device).expand_as(x_known)
    y = torch.as_tensor(y, device=device).long().reshape(-1)
    _check_sampling_args("ddpm", 0.0, y, x_known.shape[0], getattr(model, "num_classes", None))
    spaced = respace(diffusion, steps)
    model_fn = _guided_model_fn(model, cfg_scale, scale_pow, 3, spaced.original_num_steps)
    guided = cfg_scale != 1.0
    y_in = torch.cat([y, torch.full_like(y, model.num_classes)]) if guided else y
    timestep_map = torch.as_tensor(spaced.timestep_map, device=device)
    x = randn(x_known.shape, generator, device)                       # level num_steps: pure noise
    levels = repaint_schedule(spaced.num_timesteps, jump_length, resamples)
    with _eval_mode(model):
        for now, then in zip(levels[:-1], levels[1:]):
            if then < now:                                            # down: one reverse step, index now − 1
                i = torch.full((x.shape[0],), now - 1, device=device, dtype=torch.long)
                x_in = torch.cat([x, x]) if guided else x
                t_in = timestep_map[torch.cat([i, i]) if guided else i]
                out = model_fn(x_in, t_in, y_in).float()[: x.shape[0]]
                drawn, _ = ddpm_step(spaced, out, x, i, randn(x.shape, generator, device))
                known = x_known if then == 0 else spaced.q_sample(x_known, i - 1, randn(x.shape, generator, device))
                x = keep * known + (1 - keep) * drawn
            else:                                                     # up: forward-noise one respaced step
                beta = float(spaced.betas[then - 1])
                x = math.sqrt(1 - beta) * x + math.sqrt(beta) * randn(x.shape, generator, device)
    return x
