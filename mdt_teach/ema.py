"""The exponential moving average of the weights, which every sample and evaluation uses.

θ_ema ← d·θ_ema + (1 − d)·θ after each optimizer step (`masked_diffusion/nn.py: update_ema`, d = 0.9999).
"""
from __future__ import annotations

import copy

import torch


class EMA:
    """θ_ema ← d·θ_ema + (1 − d)·θ after every optimizer step (official `update_ema`, rate 0.9999).

    With warm-up, d_k = min(d, (1 + k)/(10 + k)) so short runs are not dominated by the zero-initialised
    weights (docs/toy_recipe.md; the official
    `masked_diffusion/train_util.py: TrainLoop._update_ema` has none).
    """

    def __init__(self, model: torch.nn.Module, decay: float, warmup: bool):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.warmup = decay, warmup

    def decay_at(self, step: int) -> float:
        """The decay used for the update after optimizer step number `step` (0-based)."""
        return min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        """Move the average toward the current weights; buffers are copied."""
        d = self.decay_at(step)
        ema_params, params = list(self.model.parameters()), [p.detach() for p in model.parameters()]
        torch._foreach_mul_(ema_params, d)
        torch._foreach_add_(ema_params, params, alpha=1 - d)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)
