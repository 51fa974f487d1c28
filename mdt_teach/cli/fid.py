"""`mdt-teach fid A.npz B.npz`: the Fréchet distance between two .npz files (`fid.fid_between`) — sample sets
(`arr_0`, as `sample-fid` writes them) or ADM reference batches (`mu`, `sigma`)."""
from __future__ import annotations

import argparse

from ..fid import FEATURES, fid_between


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `mdt-teach fid`."""
    parser.add_argument("samples", help="an .npz of samples (arr_0 uint8 N×H×W×3), e.g. from sample-fid")
    parser.add_argument("reference", help="an .npz of reference images, or of mu/sigma (e.g. "
                                          "VIRTUAL_imagenet256_labeled.npz)")
    parser.add_argument("--features", default="inception", choices=FEATURES,
                        help="inception = FID (needs mdt-teach[fid]); smileys = FD-smileys (32×32 smileys)")
    parser.add_argument("--batch-size", type=int, default=100, help="images per feature batch (default 100)")
    parser.add_argument("--device", default="cpu", help="device of the feature net (default cpu)")


def run(args: argparse.Namespace) -> int:
    """Compute and print one number."""
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    try:
        value = fid_between(args.samples, args.reference, args.features, args.batch_size, args.device)
    except ModuleNotFoundError as err:   # `fid._inception`: no [fid] extra; its message says what to install
        raise ValueError(str(err)) from None
    name = "FID" if args.features == "inception" else "FD-smileys"
    print(f"{name} {value:.4f}  ({args.samples} vs {args.reference})")
    return 0
