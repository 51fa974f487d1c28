"""`mdt-teach train` (and `torchrun ... -m mdt_teach train`): flags → TrainConfig → Trainer.fit().

With no arguments it is the main job: MDTv2-T/4 on smileys in the tiny profile, 1,000 steps of training
plus the final grid and evaluation (≤ 10 minutes on 2 cores; data/main_job.json). The run folder is
described in runlog.py.
"""
from __future__ import annotations

import argparse
import ast
import sys

import torch.distributed as torch_dist

from ..recipe import TrainConfig
from ..train import NonFiniteLossError, Trainer

_FLAGS = [  # (flag, type, help); every default is None so the trainer knows what was given
    ("--model", str, "preset name, e.g. MDTv2-T/4, DiT-T/4, MDTv2-XL/2 (default: the profile's)"),
    ("--data", str, "smileys | digits | PATH to an image folder or a latent cache (default smileys)"),
    ("--image-size", int, "pixel side of an image folder (default: the profile's; 256 in full)"),
    ("--vae", str, "latent profiles on an image folder: the VAE that encodes every batch, flips included "
                   "(default stabilityai/sd-vae-ft-mse; 'tiny' = a random test VAE)"),
    ("--steps", int, "optimizer steps (default 1000 unless --minutes is given)"),
    ("--batch-size", int, "GLOBAL batch over all processes and accumulation steps (default: the profile's)"),
    ("--out", str, "run folder (default runs/<model>-<data>-<time>)"),
    ("--seed", int, "seed of the init, the data order and every training draw (default 0)"),
    ("--ckpt-every", int, "checkpoint every K steps (default: the profile's, 500; full 10000 as the official run)"),
    ("--minutes", float, "training-time budget in minutes; sample grids and evaluations do not count "
                         "(default: none; the run ends at --steps)"),
    ("--profile", str, "tiny | small | full (default: auto)"),
    ("--dtype", str, "float32 | float16 | bfloat16 autocast (default: the profile's)"),
    ("--opt", str, "adan | adamw (default: the model's recipe)"),
    ("--lr", float, "learning rate (default: the recipe's; constant)"),
    ("--weighting", str, "loss weighting: none | min_snr | soft_min_snr | p2"),
    ("--mask-ratio", float, "MDT mask ratio r (MDTv2 draws U[r, r + jitter))"),
    ("--max-grad-norm", float, "clip the global gradient norm (0 = off)"),
    ("--ema-decay", float, "EMA decay (default 0.9999; tiny presets 0.999)"),
    ("--warmup-steps", int, "linear lr warm-up steps (default 0, as official)"),
    ("--lr-schedule", str, "constant (official) | cosine: decay to 0 over --steps"),
    ("--grad-accum", int, "accumulation shards per process and step (default 1)"),
    ("--keep", int, "keep the newest K checkpoints (default 3)"),
    ("--sample-every", int, "EMA sample grid every K steps (default 500; 0 = the end only)"),
    ("--eval-every", int, "smileys: two-eyes + FD every K steps (default: the end only)"),
    ("--eval-samples", int, "samples of the final evaluation (default 256; 0 = none)"),
    ("--grid-samples", int, "images per sample grid (default 32; 0 = none)"),
    ("--sample-steps", str, "respacing for grids and evaluation: 50, 100, or ddim50 (ADM's DDIM-style stride) "
                            "(default 50)"),
    ("--method", str, "sampler for grids and evaluation: ddpm | ddim (default ddpm)"),
    ("--cfg", float, "guidance scale for grids and evaluation (default 1 = none)"),
    ("--num-workers", int, "DataLoader workers for image folders and latent caches (default 0)"),
    ("--threads", int, "torch CPU threads per process (default: the profile's, split between local ranks)"),
]
_SWITCHES = [
    ("--resume", "continue the run in --out (default: the newest run under runs/) from its last checkpoint"),
    ("--compile", "torch.compile the model"),
    ("--zero", "shard the optimizer state over the processes (ZeroRedundancyOptimizer)"),
    ("--deterministic", "deterministic CUDA kernels: bit-identical reruns on the same GPUs, slower "
                        "(docs/reproducibility.md; CPU runs always are)"),
    ("--no-ema-warmup", "EMA without warm-up (official)"),
    ("--no-progress", "no tqdm progress bar"),
]
_RENAME = {"cfg": "cfg_scale", "method": "sample_method"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `mdt-teach train` flags."""
    for flag, kind, help_text in _FLAGS:
        parser.add_argument(flag, type=kind, default=None, help=help_text)
    for flag, help_text in _SWITCHES:
        parser.add_argument(flag, action="store_true", help=help_text)
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="build_model override, repeatable, e.g. --model-arg depth=2")


def _literal(text: str):
    """'2' → 2, '0.3' → 0.3, 'None' → None, anything else stays a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_model_args(items: list[str]) -> dict:
    """['depth=2', 'hidden_size=32'] → {'depth': 2, 'hidden_size': 32}."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-arg {item!r} is not KEY=VALUE; write e.g. --model-arg depth=2")
        out[key.strip().replace("-", "_")] = _literal(value.strip())
    return out


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """A TrainConfig holding only what was given on the command line (the rest: defaults and recipe)."""
    names = {flag[2:].replace("-", "_") for flag, _, _ in _FLAGS}
    given = {_RENAME.get(n, n): getattr(args, n) for n in names if getattr(args, n) is not None}
    model_args = parse_model_args(args.model_arg)
    if "mask_ratio" in given:
        model_args["mask_ratio"] = given.pop("mask_ratio")
    flags = dict(resume=args.resume, compile=args.compile, zero=args.zero, deterministic=args.deterministic,
                 progress=not args.no_progress)
    if args.no_ema_warmup:
        flags["ema_warmup"] = False
    return TrainConfig(**given, **flags, model_args=model_args)


def run(args: argparse.Namespace) -> int:
    """Validate everything, then train; a non-finite loss ends with one line and exit code 3."""
    try:
        Trainer(config_from_args(args)).fit()
    except NonFiniteLossError as err:
        print(f"mdt-teach train: {err}", file=sys.stderr, flush=True)
        return 3
    finally:
        if torch_dist.is_available() and torch_dist.is_initialized():
            torch_dist.destroy_process_group()
    return 0
