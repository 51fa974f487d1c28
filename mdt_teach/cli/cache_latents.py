"""`mdt-teach cache-latents IMAGES OUT`: encode an image folder once, both orientations of every image, into a
sharded SD-VAE latent cache."""
from __future__ import annotations

import argparse
import os

from ..config import setup
from ..latent_cache import DTYPES, cache_latents
from ..vae import DEFAULT_VAE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `mdt-teach cache-latents`."""
    parser.add_argument("data", help="image folder (ADM naming or class subfolders), or digits")
    parser.add_argument("out", help="output folder (created; rerun with the same arguments to resume)")
    parser.add_argument("--vae", default=DEFAULT_VAE,
                        help=f"hub id or local folder of an AutoencoderKL (default {DEFAULT_VAE}; 'tiny' = test-only random VAE)")
    parser.add_argument("--image-size", type=int, default=256, help="pixel side after the ADM centre crop")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--shard-size", type=int, default=10_000, help="images per shard file")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="DataLoader workers")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: what mdt_teach.setup picks)")
    parser.add_argument("--dtype", default="float16", choices=DTYPES,
                        help="storage precision of the posterior mean and std (default float16; see the README)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    """Encode (resuming a partial cache), then say what was written."""
    device = args.device or setup(quiet=True).device
    report = cache_latents(args.data, args.out, vae=args.vae, image_size=args.image_size,
                           batch_size=args.batch_size, shard_size=args.shard_size, workers=args.workers,
                           device=device, progress=not args.no_progress, dtype=args.dtype)
    print(f"cache-latents: {args.out}: wrote shards {report['written']}, kept {report['skipped']}")
    return 0
