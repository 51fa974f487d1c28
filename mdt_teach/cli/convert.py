"""`mdt-teach convert`: check an official MDT / MDTv2 / DiT checkpoint (what is inferred from its keys and
shapes, a strict load) and optionally re-save it as a plain state_dict; or upgrade one of our old
training checkpoints (format 1) to the current format."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..checkpoint import atomic_save, upgrade_checkpoint
from ..compat import build_and_load, describe, infer_config, read_state_dict


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `mdt-teach convert CKPT [--out FILE] [--decode-layer N] [--upgrade]`."""
    parser.add_argument("checkpoint", help="official MDT / MDTv2 / DiT checkpoint (.pt), or with --upgrade one of ours")
    parser.add_argument("--out", default=None, help="write the result here (default with --upgrade: in place)")
    parser.add_argument("--decode-layer", type=int, default=None,
                        help="MDT v1 only: blocks after the side-interpolater (not stored; official 2)")
    parser.add_argument("--upgrade", action="store_true",
                        help="rewrite an mdt_teach training checkpoint of format 1 in the current format")


def run(args: argparse.Namespace) -> int:
    """Upgrade, or print the inferred configuration, load strictly and optionally re-save the state_dict."""
    out = None if args.out is None else Path(args.out)
    if out is not None and out.is_dir():
        raise ValueError(f"--out {out} is a folder; name a .pt file")
    if args.upgrade:
        print(f"upgraded → {upgrade_checkpoint(args.checkpoint, out)}")
        return 0
    try:
        state = read_state_dict(args.checkpoint)
        cfg, notes = infer_config(state, args.decode_layer)
        print(describe(cfg, notes))
        model = build_and_load(cfg, state)
    except ValueError as err:
        message = str(err)
        raise ValueError(message if args.checkpoint in message else f"{args.checkpoint}: {message}") from None
    print(f"loaded strictly: {len(state)} entries, {sum(p.numel() for p in model.parameters()):,} parameters")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        print(f"saved {atomic_save(model.state_dict(), out)}")
    return 0
