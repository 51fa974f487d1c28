"""The `mdt-teach` command line: one subcommand per job, each living in its own module.

A subcommand module exposes `add_arguments(parser)` and `run(args) -> int`; it is imported only when
used, so `mdt-teach --help` is instant. User errors (ValueError, FileNotFoundError) become one line.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS = {
    "train": ("mdt_teach.train_cli", "train DiT / MDT / MDTv2 (default: MDTv2 tiny on smileys)"),
    "sample": ("mdt_teach.sample_cli", "sample an image grid from a checkpoint (ours or official)"),
    "eval": ("mdt_teach.eval_cli", "two-eyes score and FD-smileys of a checkpoint"),
    "plan": ("mdt_teach.plan", "memory per GPU and the torchrun command for a big run"),
    "convert": ("mdt_teach.compat", "check / convert an official MDT or DiT checkpoint"),
    "cache-latents": ("mdt_teach.latent_cache", "encode an image folder to a sharded SD-VAE latent cache"),
    "race": ("mdt_teach.race", "DiT vs MDT vs MDTv2 (+ ablations) on smileys, equal budgets"),
}


def _load(name: str):
    """Import a subcommand module, or explain that it has not landed yet."""
    module, _ = COMMANDS[name]
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name == module:
            raise SystemExit(f"mdt-teach {name}: not available in this version yet ({module} is missing).")
        raise
    if not hasattr(mod, "add_arguments"):
        raise SystemExit(f"mdt-teach {name}: not available in this version yet.")
    return mod


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
