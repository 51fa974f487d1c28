"""The `mdt-teach` command line: one subcommand per job, each a module of this package.

Every subcommand module (`cli/train.py`, `cli/sample.py`, ...) has `add_arguments(parser)` and
`run(args) -> int` and nothing else: the work is done by the library, which never imports this package.
A module is imported only when its command is used, so `mdt-teach --help` is instant. User errors
(ValueError, FileNotFoundError) become one line on stderr and exit code 2.

`python -m mdt_teach COMMAND ...` is the same command line; torchrun launches `-m mdt_teach train` and
`-m mdt_teach sample-fid`.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS = {
    "train": ("mdt_teach.cli.train", "train DiT / MDT / MDTv2 (default: MDTv2 tiny on smileys)"),
    "sample": ("mdt_teach.cli.sample", "sample an image grid from a checkpoint (ours or official)"),
    "sample-fid": ("mdt_teach.cli.sample_fid", "N samples (default 50,000) in the official .npz for FID; torchrun-able"),
    "fid": ("mdt_teach.cli.fid", "FID between two .npz files (samples or ADM reference batches)"),
    "eval": ("mdt_teach.cli.eval", "two-eyes score and FD-smileys of a checkpoint"),
    "probe": ("mdt_teach.cli.probe", "the missing-eye probe of a smileys checkpoint (+ controls, attention)"),
    "inpaint": ("mdt_teach.cli.inpaint", "redraw the hidden part of an image (RePaint), pixel or latent models"),
    "plan": ("mdt_teach.cli.plan", "memory per GPU and the torchrun command for a big run"),
    "convert": ("mdt_teach.cli.convert", "check / convert an official MDT or DiT checkpoint; upgrade an old one of ours"),
    "cache-latents": ("mdt_teach.cli.cache_latents", "encode an image folder to a sharded SD-VAE latent cache"),
    "race": ("mdt_teach.cli.race", "DiT vs MDT vs MDTv2 (+ ablations) on smileys, equal budgets"),
}


def _load(name: str):
    """The module of subcommand `name`."""
    return importlib.import_module(COMMANDS[name][0])


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """Top-level parser; only the chosen subcommand's module is imported."""
    parser = argparse.ArgumentParser(
        prog="mdt-teach",
        description="Masked Diffusion Transformers (MDT, MDTv2) — learn them, train them, sample them.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            _load(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    mod = _load(args.command)
    try:
        return int(mod.run(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        print(f"mdt-teach {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
