"""`mdt-teach sample-fid` (also under `torchrun ... -m mdt_teach sample-fid`): N samples for FID in the
official .npz layout (`fid_samples.sample_for_fid`). Defaults are the official FID settings (`--preset fid`):
250 DDPM steps, cfg 3.8, pow 4, the ema VAE decoder, random classes, N = 50,000; a DiT checkpoint gets DiT's
own FID setting, cfg 1.5 with constant guidance (pow 0; `sampling.preset`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch.distributed as torch_dist

from ..compat import load_model
from ..config import setup
from ..distributed import dist_from_env, init_distributed
from ..fid_samples import FidSampling, sample_for_fid
from ..sampling import METHODS, PRESETS, preset, space_timesteps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `mdt-teach sample-fid`."""
    fid = PRESETS["fid"]
    parser.add_argument("--ckpt", required=True, help="ckpt_*.pt of a run (EMA weights), or an official checkpoint")
    parser.add_argument("--out", required=True, help="folder for the shards and the final samples_*.npz "
                                                     "(run the same command again to continue an interrupted job)")
    parser.add_argument("--num-samples", type=int, default=50_000,
                        help="number of images (default 50000; the official --num_samples)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--steps", default=fid["steps"], help=f"respacing (default {fid['steps']})")
    parser.add_argument("--method", default=fid["method"], choices=METHODS, help="sampler (default ddpm)")
    parser.add_argument("--cfg", type=float, default=None,
                        help=f"guidance scale (default {fid['cfg_scale']:g}; DiT checkpoints 1.5, as DiT's FID)")
    parser.add_argument("--scale-pow", type=float, default=None,
                        help="guidance schedule power (default: 4 for MDT, 0 = constant for DiT)")
    parser.add_argument("--vae-decoder", default=fid["vae_decoder"], help="latent models: ema | mse | a folder | tiny "
                                                                          "(default ema, as the official FID script)")
    parser.add_argument("--shard-size", type=int, default=64, help="images per shard file (default 64)")
    parser.add_argument("--decode-layer", type=int, default=None, help="official MDT v1 checkpoints only")
    parser.add_argument("--no-progress", action="store_true", help="no progress line")


def check_arguments(args: argparse.Namespace) -> None:
    """One sentence naming this command's flag for every bad value, before a process group or a checkpoint."""
    for flag, value in (("--num-samples", args.num_samples), ("--shard-size", args.shard_size)):
        if value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    if Path(args.out).is_file():
        raise ValueError(f"--out {args.out} is a file; name a folder for the shards and the .npz")
    space_timesteps(1000, args.steps)


def run(args: argparse.Namespace) -> int:
    """Check, join the process group, load, sample this rank's shards; rank 0 writes the .npz."""
    check_arguments(args)
    run_cfg = setup(quiet=True)
    dist = dist_from_env()
    device = init_distributed(dist, run_cfg.device)
    try:
        model, info = load_model(args.ckpt, device=device, decode_layer=args.decode_layer)
        fid = preset("fid", getattr(model, "family", None))        # MDT's official setting, or DiT's own
        cfg_scale = fid["cfg_scale"] if args.cfg is None else args.cfg
        scale_pow = fid["scale_pow"] if args.scale_pow is None else args.scale_pow
        settings = FidSampling(ckpt=str(args.ckpt), n=args.num_samples, seed=args.seed, steps=str(args.steps),
                               method=args.method, cfg_scale=cfg_scale, scale_pow=scale_pow,
                               vae_decoder=args.vae_decoder, shard_size=args.shard_size)
        path = sample_for_fid(model, settings, args.out, dist, progress=not args.no_progress)
        if path is not None:
            print(f"{info}: {args.num_samples} samples ({args.method} {args.steps} steps, cfg {cfg_scale:g}, "
                  f"pow {scale_pow:g}) → {path}")
    finally:
        if torch_dist.is_initialized():
            torch_dist.destroy_process_group()
    return 0
