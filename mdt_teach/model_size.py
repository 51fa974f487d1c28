"""Size accounting (lessons 02, 04, 05): parameters with and without the training-only parts, and
the FLOPs of one forward pass, masked or not."""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from .models import DiffusionTransformer


def count_params(model: nn.Module, inference: bool = False, trainable: bool = False) -> int:
    """Entries of parameters(); inference=True drops the side block and mask_token
    (unused when sampling)."""
    total = 0
    for name, p in model.named_parameters():
        if inference and (name.startswith("sideblocks.") or name == "mask_token"):
            continue
        if trainable and not p.requires_grad:
            continue
        total += p.numel()
    return total


@contextlib.contextmanager
def fixed_mask_ratio(model: nn.Module, mask_ratio: float | None):
    """Temporarily fix an MDT's mask ratio (jitter 0) so a masked pass has a known K."""
    if mask_ratio is None or not getattr(model, "is_mdt", False):
        yield
        return
    saved = model.mask_ratio, model.mask_ratio_jitter
    model.mask_ratio, model.mask_ratio_jitter = float(mask_ratio), 0.0
    try:
        yield
    finally:
        model.mask_ratio, model.mask_ratio_jitter = saved


def count_flops(model: DiffusionTransformer, batch_size: int = 1, enable_mask: bool = False,
                mask_ratio: float | None = None) -> int:
    """FLOPs of one forward pass counted by torch's FlopCounterMode
    (FLOPs = 2·MACs; DiT's "Gflops" = FLOPs/2e9).

    Works on the meta device; a masked pass there needs a fixed ratio (pass mask_ratio, e.g. 0.3).
    """
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    x = torch.zeros(batch_size, model.in_channels, model.input_size, model.input_size,
                    device=device)
    t = torch.zeros(batch_size, dtype=torch.long, device=device)
    y = torch.zeros(batch_size, dtype=torch.long, device=device)
    if (device.type == "meta" and enable_mask and mask_ratio is None
            and getattr(model, "mask_ratio_jitter", 0)):
        raise ValueError("a masked pass on the meta device needs a fixed ratio; "
                         "pass mask_ratio=0.3 (for example)")
    counter = FlopCounterMode(display=False)
    with fixed_mask_ratio(model, mask_ratio), counter, torch.no_grad():
        model(x, t, y, enable_mask=enable_mask)
    return int(counter.get_total_flops())
