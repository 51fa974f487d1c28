"""The command line shared by the tools that measure a lesson checkpoint (tools/cfg_class_consistency.py,
tools/cfg_pow_variety.py): --n, --out, --checkpoint, --threads, and what a tool adds.

    from lesson_checkpoint_cli import lesson_checkpoint_tool
    args, model, info = lesson_checkpoint_tool(__doc__, 512, "data/NAME.json", argv)
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mdt_teach.lessons import load_lesson_checkpoint


def lesson_checkpoint_tool(doc: str, n: int, out: str, argv=None, extra=None):
    """The shared command line of the tools that measure a lesson checkpoint (--n, --out, --checkpoint, --threads,
    plus `extra(parser)`): returns (args, model, checkpoint info), with torch's threads already set."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--n", type=int, default=n)
    parser.add_argument("--out", default=out)
    parser.add_argument("--checkpoint", default="data/lesson09_mdtv2_tiny.pt",
                        help="a lesson checkpoint (default: lesson 09's)")
    parser.add_argument("--threads", type=int, default=2)
    if extra:
        extra(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    root = Path(__file__).resolve().parents[1]
    model, info = load_lesson_checkpoint(str(root / args.checkpoint))      # an absolute path stays as it is
    return args, model, info
