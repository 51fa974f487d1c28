"""All of MDTv2's training in one file, top to bottom: the short door into the package (nanoGPT `train.py`).

    smileys → MDTv2-T/4 → dual-pass loss, Min-SNR-5 → AdamW → clip at 1 → EMA with warm-up → a sample grid

Run it with `python -m mdt_teach.minimal_train` (flags: --steps, --seed, --out; it writes OUT/samples.png).
It imports the model (`models.py`), the diffusion schedule (`diffusion.py`: q-sample and the VLB term of
the hybrid loss), the data and its seeds (`data.py`, `data_order.py`), and the sampler for the final grid;
the loss and the loop are written out here on purpose. They are the same step as `train.py:
Trainer.train_step` with `diffusion.py: training_loss`, which serve every model, profile, DDP,
accumulation and resume. So this is the one place where the package's `duplicates` checker may point at a
repeated idea: the repetition is the lesson, the same step read on one screen. `tests/test_minimal_train.py`
holds the two to the same weights and EMA weights, bit for bit, after N steps with one seed: the short door
opens onto the same house.

Left out (all in `train.py` and the modules it names): DDP and accumulation, resume and checkpoints, mixed
precision, lr schedules, other models and data, evaluations, the run folder and its logs.
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch

from .config import setup
from .data import SMILEY_CLASSES, SMILEY_SIZE, smileys_batch
from .data_order import seed_shard
from .diffusion import GaussianDiffusion
from .images import save_grid
from .models import build_model
from .optim import clip_grads_
from .sampling import generate

# The tiny recipe: `recipe.py: recipe("MDTv2-T/4")`, the toy deviations of docs/toy_recipe.md.
MODEL = "MDTv2-T/4"      # depth 6, width 128, 4 heads, patch 4: a 32×32 face is 8×8 = 64 tokens
LR = 4e-3                # AdamW with betas (0.9, 0.99), no weight decay, constant lr (official MDTv2: Adan)
BETAS = (0.9, 0.99)
MAX_GRAD_NORM = 1.0      # clip the global gradient norm at 1 (official MDTv2)
MIN_SNR_GAMMA = 5.0      # Min-SNR-γ weighting of the ε-MSE (Hang et al. 2023), MDTv2's loss
EMA_DECAY = 0.999        # warm-up: decay_k = min(0.999, (1 + k)/(10 + k)); official 0.9999 from step 0


def pass_loss(model, x0, t, y, weight, diffusion, enable_mask=False) -> torch.Tensor:
    """Per-sample hybrid loss w_t·‖ε − ε̂‖² + L_vb of one forward pass (official `training_losses`)."""
    noise = torch.randn(x0.shape)                                          # (B, 3, 32, 32), fresh per pass
    x_t = diffusion.q_sample(x0, t, noise)                                 # √ᾱ_t·x_0 + √(1−ᾱ_t)·ε
    eps, v = model(x_t, t, y, enable_mask=enable_mask).split(x0.shape[1], dim=1)  # (B, 3, 32, 32) each
    mse = ((noise - eps) ** 2).mean(dim=(1, 2, 3))                         # (B,)
    frozen = torch.cat([eps.detach(), v], dim=1)                           # (B, 6, 32, 32): only v learns vb
    vb = diffusion.vb_bits_per_dim(frozen, x0, x_t, t)                     # (B,) KL, or NLL at t = 0
    return weight * mse + vb                                               # (B,)


def dual_pass_loss(model, x0, y, diffusion) -> torch.Tensor:
    """mean_b(L_full) + mean_b(L_masked): one t for both passes, fresh noise for each (MDT §3.3; official
    `masked_diffusion/train_util.py: TrainLoop.forward_backward`)."""
    t = torch.randint(0, diffusion.num_timesteps, (x0.shape[0],))          # (B,) t ~ U{0..999}
    snr = torch.as_tensor(diffusion.snr)[t]                                # (B,) ᾱ_t/(1 − ᾱ_t), float64
    weight = (snr.clamp(max=MIN_SNR_GAMMA) / snr).float()                  # (B,) Min-SNR: min(SNR, γ)/SNR
    full = pass_loss(model, x0, t, y, weight, diffusion)                   # every token seen
    masked = pass_loss(model, x0, t, y, weight, diffusion, enable_mask=True)  # 30–50% of tokens hidden
    return full.mean() + masked.mean()


def train(steps: int = 1000, seed: int = 0, batch_size: int = 32, log_every: int = 0):
    """Train MDTv2-T/4 on smileys; returns (model, ema), the weights `Trainer` reaches with
    `TrainConfig(profile="tiny", steps=steps, seed=seed, batch_size=batch_size)`, bit for bit."""
    setup("tiny", seed=seed, quiet=not log_every)     # CPU, fp32, the profile's threads; seeds everything
    model = build_model(MODEL, in_channels=3, num_classes=len(SMILEY_CLASSES), input_size=SMILEY_SIZE)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, betas=BETAS, weight_decay=0.0)
    diffusion = GaussianDiffusion()                                        # linear β, T = 1000
    for step in range(steps):
        x0, y = smileys_batch(batch_size, seed=seed, start=step * batch_size)   # (B, 3, 32, 32), (B,)
        seed_shard(seed, step, 0)            # t, noise, label dropout and mask follow from (seed, step) alone
        loss = dual_pass_loss(model, x0, y, diffusion)
        loss.backward()                                                    # one backward for both passes
        clip_grads_([p.grad for p in params if p.grad is not None], MAX_GRAD_NORM, eps=1e-8)
        opt.step()
        opt.zero_grad(set_to_none=True)
        decay = min(EMA_DECAY, (1 + step) / (10 + step))                   # the EMA's warm-up
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), model.parameters()):
                p_ema.mul_(decay).add_(p, alpha=1 - decay)                 # θ_ema ← d·θ_ema + (1 − d)·θ
        if log_every and ((step + 1) % log_every == 0 or step + 1 == steps):
            print(f"step {step + 1}/{steps}  loss {loss.item():.4f}", flush=True)
    return model, ema


def save_sample_grid(ema, path, n: int = 32, steps: str = "50", seed: int = 0, scale: int = 4) -> None:
    """n EMA samples (classes in turn, 50 DDPM steps) as one PNG, 8 to a row, each pixel scale× (no blur)."""
    images, _ = generate(ema, n, steps=steps, seed=seed)                  # (n, 3, 32, 32) in [-1, 1]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_grid(images, path, nrow=8, scale=scale)


def main(argv=None) -> None:
    """`python -m mdt_teach.minimal_train [--steps N] [--seed S] [--out DIR]`."""
    parser = argparse.ArgumentParser(prog="python -m mdt_teach.minimal_train",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000, help="optimizer steps (as `mdt-teach train`)")
    parser.add_argument("--seed", type=int, default=0, help="the data, the weights and every draw")
    parser.add_argument("--out", default="runs/minimal", help="folder for samples.png")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    _, ema = train(args.steps, args.seed, log_every=max(1, min(50, args.steps // 10)))
    path = Path(args.out) / "samples.png"
    save_sample_grid(ema, path, seed=args.seed)
    print(f"EMA samples → {path}")


if __name__ == "__main__":
    main()
