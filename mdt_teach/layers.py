"""Building blocks shared by DiT, MDT and MDTv2 (official `masked_diffusion/models.py`), with the official names.

Every module here keeps the official parameter names (`x_embedder.proj`, `t_embedder.mlp.0`,
`attn.rel_pos_bias.relative_position_bias_table`, ...) so published checkpoints load with strict=True.
"""
from __future__ import annotations

from contextlib import contextmanager

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation x·(1 + scale) + shift, with (B, D) shift/scale broadcast over tokens."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


# ----------------------------------------------------------------------------------------------
# Position and time features
# ----------------------------------------------------------------------------------------------

def sincos_1d(embed_dim: int, pos: torch.Tensor) -> torch.Tensor:
    """MAE 1-D table: [sin(pos·ω), cos(pos·ω)] with ω_k = 10000^(-k/(embed_dim/2)), float64."""
    omega = torch.arange(embed_dim // 2, dtype=torch.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000 ** omega                           # (embed_dim/2,)
    args = pos.reshape(-1).double()[:, None] * omega[None]  # (M, embed_dim/2)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)  # (M, embed_dim)


def sincos_2d(embed_dim: int, grid_size: int) -> torch.Tensor:
    """2-D sin-cos table: column index in channels [0, D/2), row index in [D/2, D).

    Official `masked_diffusion/models.py: get_2d_sincos_pos_embed` (MAE's layout).
    """
    if embed_dim % 4:
        raise ValueError(f"hidden size {embed_dim} is not divisible by 4; the 2-D sin-cos table needs a multiple of 4")
    g = torch.arange(grid_size, dtype=torch.float64)
    rows, cols = torch.meshgrid(g, g, indexing="ij")       # (G, G) each, token n = r·G + q
    emb_col = sincos_1d(embed_dim // 2, cols)              # (G·G, D/2)
    emb_row = sincos_1d(embed_dim // 2, rows)              # (G·G, D/2)
    return torch.cat([emb_col, emb_row], dim=1).float()    # (G·G, D)


def timestep_embedding(t: torch.Tensor, dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """GLIDE/DiT timestep features [cos(t·f), sin(t·f)], f_k = exp(-ln(max_period)·k/half).

    Official `masked_diffusion/models.py: TimestepEmbedder.timestep_embedding`.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half).to(t.device)
    args = t[:, None].float() * freqs[None]                # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, 2·half)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)  # (B, dim)
    return emb


def _uniform(n: int, device: torch.device, generator: torch.Generator | None, on_cpu: bool = False) -> torch.Tensor:
    """n draws of U[0,1): from `generator` (on its own device), else the global RNG on CPU or `device`."""
    if generator is not None:
        return torch.rand(n, generator=generator, device=generator.device).to(device)
    return torch.rand(n) if on_cpu else torch.rand(n, device=device)


# ----------------------------------------------------------------------------------------------
# Embedders
# ----------------------------------------------------------------------------------------------

class PatchEmbed(nn.Module):
    """timm-style patch embedding: Conv2d(C→D, kernel = stride = p), then tokens in row-major order."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.img_size = (img_size, img_size)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = img_size // patch_size
        self.num_patches = self.grid_size ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, N, D)."""
        x = self.proj(x)                                   # (B, D, G, G)
        return x.flatten(2).transpose(1, 2)                # (B, N, D)


class TimestepEmbedder(nn.Module):
    """Integer timestep → 256 frequency features [cos, sin] → Linear, SiLU, Linear.

    Official `masked_diffusion/models.py: TimestepEmbedder`.
    """

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size, bias=True),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size, bias=True),
        )
        self.frequency_embedding_size = frequency_embedding_size

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """(B,) timesteps → (B, D)."""
        return self.mlp(timestep_embedding(t, self.frequency_embedding_size))


class LabelEmbedder(nn.Module):
    """Class table with one extra null row (index num_classes) and label dropout for CFG.

    Official `masked_diffusion/models.py: LabelEmbedder` and DiT's `models.py: LabelEmbedder`.
    MDT draws the dropout coins on the CPU (`draw_on_cpu=True`), DiT on the labels' device; only the
    RNG stream differs.
    """

    def __init__(self, num_classes: int, hidden_size: int, dropout_prob: float, draw_on_cpu: bool = True):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), hidden_size)
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob
        self.draw_on_cpu = draw_on_cpu

    def token_drop(self, labels: torch.Tensor, force_drop_ids: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
        """Replace each label by the null class with probability dropout_prob (or where force_drop_ids == 1)."""
        if force_drop_ids is None:
            drop = _uniform(labels.shape[0], labels.device, generator, self.draw_on_cpu) < self.dropout_prob
        else:
            drop = force_drop_ids == 1
        return torch.where(drop.to(labels.device), self.num_classes, labels)

    def forward(self, labels: torch.Tensor, train: bool, force_drop_ids: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """(B,) labels → (B, D); drops labels only in training mode (or when forced)."""
        if (train and self.dropout_prob > 0) or force_drop_ids is not None:
            labels = self.token_drop(labels, force_drop_ids, generator)
        return self.embedding_table(labels)


# ----------------------------------------------------------------------------------------------
# Attention with a BEiT relative position bias
# ----------------------------------------------------------------------------------------------

def relative_position_index(grid_size: int) -> torch.Tensor:
    """BEiT index idx(i,j) = (r_i − r_j + G − 1)·(2G − 1) + (q_i − q_j + G − 1), shape (N, N), 0..(2G−1)²−1."""
    g = torch.arange(grid_size)
    rows, cols = torch.meshgrid(g, g, indexing="ij")       # (G, G)
    rows, cols = rows.reshape(-1), cols.reshape(-1)        # (N,)
    d_row = rows[:, None] - rows[None, :] + grid_size - 1  # (N, N)
    d_col = cols[:, None] - cols[None, :] + grid_size - 1  # (N, N)
    return d_row * (2 * grid_size - 1) + d_col             # (N, N) int64


class RelativePositionBias(nn.Module):
    """One learnable (964, H) table per attention layer (3 unused BEiT rows kept) and its index buffer."""

    def __init__(self, grid_size: int, num_heads: int):
        super().__init__()
        self.grid_size = grid_size
        self.num_relative_distance = (2 * grid_size - 1) ** 2 + 3
        self.relative_position_bias_table = nn.Parameter(torch.zeros(self.num_relative_distance, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(grid_size), persistent=True)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02, a=-2.0, b=2.0)

    def forward(self, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """Full bias (H, N, N), or the kept×kept bias (B, H, K, K) in ids_keep order.

        Official `masked_diffusion/models.py: RelativePositionBias.forward` and `Attention.get_masked_rel_bias`.
        """
        index = self.relative_position_index
        if ids_keep is not None:
            index = index[ids_keep[:, :, None], ids_keep[:, None, :]]   # (B, K, K): gather indices, not biases
        # index_select, not table[index]: the same gather, but its backward (index_add) sums the gradient of a
        # table row in a fixed order, where advanced indexing's backward adds with atomics across CPU threads
        # and makes two identical runs differ in the last bits (docs/reproducibility.md).
        bias = self.relative_position_bias_table.index_select(0, index.reshape(-1))   # (B·K·K, H)
        bias = bias.view(*index.shape, -1)                              # (..., K, K, H)
        return bias.movedim(-1, -3)                                     # (..., H, K, K)


class Attention(nn.Module):
    """Multi-head self-attention via scaled_dot_product_attention, plus an additive relative bias when grid_size is set.

    Inside `explicit_attention()` every instance computes softmax(q·kᵀ·d_h^-½ + bias)·v step by step instead,
    as the official `masked_diffusion/models.py: Attention` does (a fused kernel never forms the N×N matrix):
    the GPU benchmark compares the two, and attention maps read `self.weights`."""

    explicit = False        # switched by `explicit_attention` for every instance at once
    keep_weights = False    # with explicit: keep each layer's last probabilities (B, H, N, N) in `.weights`

    def __init__(self, dim: int, num_heads: int, grid_size: int | None = None, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden size {dim} is not divisible by {num_heads} heads; pick a divisor of {dim}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_bias = RelativePositionBias(grid_size, num_heads) if grid_size is not None else None

    def forward(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, D) → (B, N, D); softmax(q·kᵀ·d_h^-½ + bias)·v with the bias gathered by ids_keep."""
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim)   # (B, N, 3, H, d_h)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)                       # 3 × (B, H, N, d_h)
        bias = None if self.rel_pos_bias is None else self.rel_pos_bias(ids_keep).to(q.dtype)
        if Attention.explicit:   # the official code's form: the N×N probabilities exist as a tensor
            logits = (q @ k.transpose(-2, -1)) * self.scale + (0 if bias is None else bias)   # (B, H, N, N)
            weights = logits.softmax(dim=-1)
            self.weights = weights.detach() if Attention.keep_weights else None
            out = weights @ v                                                   # (B, H, N, d_h)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)  # (B, H, N, d_h)
        out = out.transpose(1, 2).reshape(B, N, D)                           # (B, N, D)
        return self.proj(out)


@contextmanager
def explicit_attention(keep_weights: bool = False):
    """Every Attention uses the explicit softmax form inside this block (and keeps its weights if asked)."""
    before = Attention.explicit, Attention.keep_weights
    Attention.explicit, Attention.keep_weights = True, keep_weights
    try:
        yield
    finally:
        Attention.explicit, Attention.keep_weights = before


# ----------------------------------------------------------------------------------------------
# adaLN-Zero block, final layer, unpatchify
# ----------------------------------------------------------------------------------------------

class Mlp(nn.Module):
    """timm Mlp as used by DiT/MDT: fc1 (D→4D), GELU (tanh approximation), fc2 (4D→D)."""

    def __init__(self, in_features: int, hidden_features: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) → (B, N, D)."""
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """adaLN-Zero transformer block, optionally with MDTv2's skip_linear on concat[x, skip].

    Official `masked_diffusion/models.py: MDTBlock` (DiT's `models.py: DiTBlock` without the skip).
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0,
                 grid_size: int | None = None, skip: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads, grid_size=grid_size, qkv_bias=True)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size, bias=True))
        self.skip_linear = nn.Linear(2 * hidden_size, hidden_size) if skip else None

    def forward(self, x: torch.Tensor, c: torch.Tensor, skip: torch.Tensor | None = None,
                ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, N, D), c (B, D) → (B, N, D); chunks (shift, scale, gate) × (msa, mlp)."""
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))               # (B, N, 2D) → (B, N, D)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa), ids_keep)
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class FinalLayer(nn.Module):
    """adaLN (shift, scale) on a non-affine LayerNorm, then Linear(D → p²·C_out).

    Official `masked_diffusion/models.py: FinalLayer`.
    """

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size, bias=True))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """(B, N, D) → (B, N, p²·C_out)."""
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


def unpatchify(x: torch.Tensor, patch_size: int, channels: int) -> torch.Tensor:
    """(B, N, p·p·C) with outputs ordered (pixel-row, pixel-col, channel) → (B, C, G·p, G·p)."""
    B, N, _ = x.shape
    g = int(round(N ** 0.5))
    if g * g != N:
        raise ValueError(f"{N} tokens do not form a square grid; unpatchify needs N = G²")
    x = x.reshape(B, g, g, patch_size, patch_size, channels)    # (B, G, G, p, p, C)
    x = torch.einsum("nhwpqc->nchpwq", x)                        # (B, C, G, p, G, p)
    return x.reshape(B, channels, g * patch_size, g * patch_size)  # (B, C, H, W)
