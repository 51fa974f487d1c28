"""MAE-style per-sample random masking and the MDT / MDTv2 mask-ratio draw.

Official `masked_diffusion/models.py: MDTv2.random_masking` and the ratio draw in `MDTv2.forward`
(MDT v1 on the `mdtv1` branch uses the fixed ratio).

With the global RNG the draws happen in the official order — the ratio first (`torch.rand(1)` on
x's device, MDTv2 only), then the per-token noise `torch.rand(B, L)` on x's device — so a seeded
masked forward pass picks the same tokens as the official code.
"""
from __future__ import annotations

import torch


def _check_ratio(mask_ratio: float) -> None:
    """Raise when a mask ratio is outside [0, 1)."""
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask ratio {mask_ratio:g} is outside [0, 1); use e.g. 0.3 (MDT) or 0 to keep every token")


def draw_mask_ratio(mask_ratio: float, jitter: float, device: torch.device | str = "cpu",
                    generator: torch.Generator | None = None) -> float | torch.Tensor:
    """MDTv2's ratio ρ = r + jitter·u, u ~ U[0,1) once per forward (a (1,) float32 tensor); r itself when jitter = 0."""
    _check_ratio(mask_ratio)
    if jitter == 0:
        return float(mask_ratio)
    if generator is not None:
        u = torch.rand(1, generator=generator, device=generator.device).to(device)
    else:
        u = torch.rand(1, device=device)
    return u * jitter + mask_ratio


def num_kept(num_tokens: int, mask_ratio: float | torch.Tensor) -> int:
    """K = int(L·(1 − ratio)), computed like the official code (float32 when the ratio is a tensor)."""
    return int(num_tokens * (1 - mask_ratio))


def random_masking(x: torch.Tensor, mask_ratio: float | torch.Tensor, generator: torch.Generator | None = None):
    """Keep a random int(L·(1−ratio)) tokens per sample (MDT §3.2, MAE); returns x_kept, mask, ids_restore, ids_keep.

    x: (B, L, D). x_kept (B, K, D) lists the kept tokens in shuffled order; mask (B, L) is 1 where a
    token was removed (original order); ids_restore (B, L) undoes the shuffle; ids_keep (B, K).
    """
    ratio_value = float(mask_ratio) if torch.is_tensor(mask_ratio) else mask_ratio
    _check_ratio(ratio_value)
    B, L, D = x.shape
    len_keep = num_kept(L, mask_ratio)
    if len_keep < 1:
        raise ValueError(f"mask ratio {ratio_value:g} keeps no token of {L}; use a ratio below {1 - 1 / L:g}")
    if generator is not None:
        noise = torch.rand(B, L, generator=generator, device=generator.device).to(x.device)  # (B, L)
    else:
        noise = torch.rand(B, L, device=x.device)                                             # (B, L)
    ids_shuffle = torch.argsort(noise, dim=1)              # (B, L): ascending noise, small = keep
    ids_restore = torch.argsort(ids_shuffle, dim=1)        # (B, L): rank of each token in the shuffle
    ids_keep = ids_shuffle[:, :len_keep]                   # (B, K)
    x_kept = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, D))  # (B, K, D)
    mask = (ids_restore >= len_keep).to(x.dtype)           # (B, L): 1 = removed, original token order
    return x_kept, mask, ids_restore, ids_keep


def mask_from_hidden(x: torch.Tensor, hidden: torch.Tensor):
    """`random_masking`'s four outputs for a *chosen* set of hidden tokens (B, L) bool instead of a random one
    (every row must hide as many tokens); the kept tokens stay in their original order."""
    hidden = hidden.to(x.device).bool()
    counts = hidden.sum(1)
    if not bool((counts == counts[0]).all()):
        raise ValueError(f"every image must hide as many tokens; got {counts.tolist()}")
    B, L, D = x.shape
    len_keep = L - int(counts[0])
    ids_shuffle = torch.argsort(hidden.to(torch.int8), dim=1, stable=True)   # kept tokens first, in order
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    x_kept = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, D))
    return x_kept, hidden.to(x.dtype), ids_restore, ids_keep


def unshuffle_with_tokens(x_kept: torch.Tensor, fill: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
    """Append L−K copies of `fill` (1, 1, D) to the kept tokens and undo the shuffle → (B, L, D)."""
    B, K, D = x_kept.shape
    L = ids_restore.shape[1]
    x = torch.cat([x_kept, fill.to(x_kept.dtype).expand(B, L - K, D)], dim=1)     # (B, L, D), shuffled order
    return torch.gather(x, 1, ids_restore.unsqueeze(-1).expand(-1, -1, D))        # (B, L, D), original order
