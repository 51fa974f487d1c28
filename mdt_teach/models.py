"""DiT, MDT (v1) and MDTv2 with the official parameter names, init and forward passes.

Sources: `masked_diffusion/models.py` of sail-sg/MDT (branch `main` for MDTv2, `mdtv1` for MDT) and
facebookresearch/DiT's `models.py`.

`build_model("MDTv2-S/2")` gives the official configuration; `MODEL_PRESETS` (`model_config.py`,
with the config and its checks) lists every name; parameter and FLOP counts are `model_size.py`.
State-dict keys and their order equal the official ones, so published checkpoints load strictly
(`mdt_teach.compat.load_official`).
"""
from __future__ import annotations

from dataclasses import asdict, fields

import torch
import torch.nn as nn

from .guidance import cfg_forward   # the one implementation of the guided mix
from .layers import (Block, FinalLayer, LabelEmbedder, PatchEmbed, TimestepEmbedder, sincos_2d,
                     unpatchify)
from .masking import draw_mask_ratio, random_masking, unshuffle_with_tokens
from .model_config import FAMILIES, MODEL_PRESETS, ModelConfig, validate

# ----------------------------------------------------------------------------------------------
# The shared skeleton: stem (embedders + pos_embed), body (per family), head (final layer)
# ----------------------------------------------------------------------------------------------

class DiffusionTransformer(nn.Module):
    """Shared stem, head, init, input checks and CFG of DiT / MDT / MDTv2;
    subclasses add the body."""

    family = "DiT"
    is_mdt = False
    pos_embed_trainable = False
    relative_bias = False
    label_drop_on_cpu = False

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        validate(cfg)
        self.in_channels = cfg.in_channels
        self.out_channels = cfg.in_channels * 2 if cfg.learn_sigma else cfg.in_channels
        self.learn_sigma = cfg.learn_sigma
        self.input_size, self.patch_size = cfg.input_size, cfg.patch_size
        self.hidden_size, self.depth, self.num_heads = cfg.hidden_size, cfg.depth, cfg.num_heads
        self.mlp_ratio, self.class_dropout_prob = cfg.mlp_ratio, cfg.class_dropout_prob
        self.num_classes = cfg.num_classes
        self.mask_ratio = None
        self.x_embedder = PatchEmbed(cfg.input_size, cfg.patch_size, cfg.in_channels,
                                     cfg.hidden_size)
        self.t_embedder = TimestepEmbedder(cfg.hidden_size)
        self.y_embedder = LabelEmbedder(cfg.num_classes, cfg.hidden_size, cfg.class_dropout_prob,
                                        draw_on_cpu=self.label_drop_on_cpu)
        num_patches = self.x_embedder.num_patches
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, cfg.hidden_size),
                                      requires_grad=self.pos_embed_trainable)
        self._build_body(cfg)
        self.final_layer = FinalLayer(cfg.hidden_size, cfg.patch_size, self.out_channels)
        self.initialize_weights()

    # -- construction ---------------------------------------------------------------------------
    def _build_body(self, cfg: ModelConfig) -> None:
        """DiT body: `depth` plain adaLN-Zero blocks without relative bias."""
        self.blocks = nn.ModuleList([self._block(cfg) for _ in range(cfg.depth)])

    def _block(self, cfg: ModelConfig, skip: bool = False) -> Block:
        """One adaLN-Zero block; MDT blocks carry their own relative position bias."""
        grid = self.x_embedder.grid_size if self.relative_bias else None
        return Block(cfg.hidden_size, cfg.num_heads, cfg.mlp_ratio, grid_size=grid, skip=skip)

    def all_blocks(self) -> list[Block]:
        """Every adaLN-Zero block in state-dict order (side block included for MDT)."""
        return list(self.blocks)

    def sincos_parameters(self) -> list[nn.Parameter]:
        """Position tables that start from the 2-D sin-cos table."""
        return [self.pos_embed]

    def initialize_weights(self) -> None:
        """Official init (`MDTv2.initialize_weights`): xavier linears, sin-cos pos,
        N(0,.02²) embeds, 0 adaLN/final."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        table = sincos_2d(self.hidden_size, self.x_embedder.grid_size).unsqueeze(0)   # (1, N, D)
        with torch.no_grad():
            for param in self.sincos_parameters():
                param.copy_(table)
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))  # conv weight as a (D, C·p·p) matrix
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.all_blocks():
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        for layer in (self.final_layer.adaLN_modulation[-1], self.final_layer.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    # -- config ---------------------------------------------------------------------------------
    @property
    def config(self) -> ModelConfig:
        """The configuration this model was built with (current mask settings included)."""
        return ModelConfig(family=self.family, input_size=self.input_size,
                           patch_size=self.patch_size, in_channels=self.in_channels,
                           hidden_size=self.hidden_size, depth=self.depth,
                           num_heads=self.num_heads, mlp_ratio=self.mlp_ratio,
                           class_dropout_prob=self.class_dropout_prob, num_classes=self.num_classes,
                           learn_sigma=self.learn_sigma, **self._mdt_config())

    def _mdt_config(self) -> dict:
        """MDT-only config fields (none for DiT)."""
        return {}

    # -- shared forward pieces ------------------------------------------------------------------
    def check_inputs(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> None:
        """Raise a one-sentence ValueError for inputs the model cannot take."""
        if x.ndim != 4:
            raise ValueError(f"x must be a (B, C, H, W) batch, got shape {tuple(x.shape)}")
        B, C, H, W = x.shape
        s, p = self.input_size, self.patch_size
        if C != self.in_channels:
            raise ValueError(f"x has {C} channels but this model takes {self.in_channels}; "
                             f"build it with in_channels={C} "
                             f"or pass {self.in_channels}-channel inputs")
        if H % p or W % p:
            raise ValueError(f"image size {H}×{W} is not divisible by patch size {p}; "
                             f"use {s}×{s} inputs")
        if (H, W) != (s, s):
            raise ValueError(f"input is {H}×{W} but the model was built for {s}×{s}; "
                             f"resize the input or build the model with input_size={H}")
        if tuple(t.shape) != (B,):
            raise ValueError(f"t must have shape ({B},), one timestep per image, "
                             f"got {tuple(t.shape)}")
        if tuple(y.shape) != (B,) or y.is_floating_point():
            raise ValueError(f"y must be ({B},) integer class labels, "
                             f"got {y.dtype} of shape {tuple(y.shape)}")
        top = self.y_embedder.embedding_table.num_embeddings - 1
        if y.device.type != "meta" and B and bool(((y < 0) | (y > top)).any()):
            raise ValueError(f"labels must lie in 0..{top} ({self.num_classes} = the null class "
                             f"when class_dropout_prob > 0), got {int(y.min())}..{int(y.max())}")

    def embed(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens h0 = PatchEmbed(x) + pos_embed (B, N, D) and
        condition c = t_emb + y_emb (B, D)."""
        self.check_inputs(x, t, y)
        h0 = self.x_embedder(x) + self.pos_embed                              # (B, N, D)
        c = self.t_embedder(t) + self.y_embedder(y, self.training, generator=generator)  # (B, D)
        return h0, c

    def head(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Final adaLN layer and unpatchify: (B, N, D) → (B, C_out, H, W)."""
        return unpatchify(self.final_layer(h, c), self.patch_size, self.out_channels)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, p²·C_out) → (B, C_out, H, W), official method name."""
        return unpatchify(x, self.patch_size, self.out_channels)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, enable_mask: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """DiT forward (B, C, H, W) → (B, C_out, H, W);
        DiT never masks, so enable_mask is ignored."""
        h, c = self.embed(x, t, y, generator)
        for block in self.blocks:
            h = block(h, c)                                                   # (B, N, D)
        return self.head(h, c)

    def forward_with_cfg(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor,
                         cfg_scale: float | None = None, diffusion_steps: int = 1000,
                         scale_pow: float = 4.0, guided_channels: int | None = 3) -> torch.Tensor:
        """Official CFG (`MDTv2.forward_with_cfg`) on the doubled batch [z; z], labels [y; null],
        power-cosine weight.

        Only the first `guided_channels` ε channels are guided (3 = DiT/MDT's legacy; None = all
        in_channels); scale_pow = 0 gives DiT's constant scale.
        """
        if cfg_scale is None:
            return self.forward(x, t, y)
        if len(x) % 2:
            raise ValueError("forward_with_cfg needs the doubled batch [z; z] (even size), "
                             f"got {len(x)} images")
        return cfg_forward(self, x, t, y, cfg_scale, scale_pow, guided_channels, diffusion_steps)


class DiT(DiffusionTransformer):
    """DiT (arXiv 2212.09748; DiT's `models.py: DiT`): frozen sin-cos pos_embed, plain blocks,
    no relative bias."""

    def __init__(self, input_size: int = 32, patch_size: int = 2, in_channels: int = 4,
                 hidden_size: int = 1152, depth: int = 28, num_heads: int = 16,
                 mlp_ratio: float = 4.0, class_dropout_prob: float = 0.1,
                 num_classes: int = 1000, learn_sigma: bool = True):
        super().__init__(ModelConfig("DiT", input_size, patch_size, in_channels, hidden_size,
                                     depth, num_heads, mlp_ratio, class_dropout_prob, num_classes,
                                     learn_sigma))


class _MDTBase(DiffusionTransformer):
    """What MDT v1 and v2 share: learnable pos embeds, relative bias, mask token, masking,
    side-interpolater."""

    is_mdt = True
    pos_embed_trainable = True
    relative_bias = True
    label_drop_on_cpu = True
    default_jitter = 0.0

    def _build_mdt_parts(self, cfg: ModelConfig) -> None:
        """decoder_pos_embed, mask_token (frozen zeros when mask_ratio is None) and the single
        side block."""
        self.decode_layer = int(cfg.decode_layer)
        self.mask_ratio = None if cfg.mask_ratio is None else float(cfg.mask_ratio)
        jitter = cfg.mask_ratio_jitter
        self.mask_ratio_jitter = self.default_jitter if jitter is None else float(jitter)
        num_patches = self.x_embedder.num_patches
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, num_patches, cfg.hidden_size))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.hidden_size),
                                       requires_grad=self.mask_ratio is not None)
        self.sideblocks = nn.ModuleList([self._block(cfg)])

    def sincos_parameters(self) -> list[nn.Parameter]:
        """pos_embed and decoder_pos_embed both start from the same sin-cos table."""
        return [self.pos_embed, self.decoder_pos_embed]

    def initialize_weights(self) -> None:
        """Shared init, then the mask token ~ N(0, 0.02²) when the model masks
        (`MDTv2.initialize_weights`)."""
        super().initialize_weights()
        if self.mask_ratio is not None:
            nn.init.normal_(self.mask_token, std=0.02)

    def _mdt_config(self) -> dict:
        """mask_ratio, decode_layer and mask_ratio_jitter."""
        return dict(mask_ratio=self.mask_ratio, decode_layer=self.decode_layer,
                    mask_ratio_jitter=self.mask_ratio_jitter)

    def mask_tokens(self, h0: torch.Tensor, generator: torch.Generator | None = None):
        """Draw this forward's ratio (r + jitter·u), then mask h0;
        returns (h, mask, ids_restore, ids_keep)."""
        if not (0 <= self.mask_ratio_jitter and self.mask_ratio + self.mask_ratio_jitter <= 1):
            raise ValueError("mask_ratio + mask_ratio_jitter = "
                             f"{self.mask_ratio + self.mask_ratio_jitter:g} "
                             "must lie in [0, 1]; lower one of them")
        ratio = draw_mask_ratio(self.mask_ratio, self.mask_ratio_jitter, h0.device, generator)
        return random_masking(h0, ratio, generator)

    def forward_side_interpolater(self, h: torch.Tensor, c: torch.Tensor, mask: torch.Tensor,
                                  ids_restore: torch.Tensor) -> torch.Tensor:
        """Side-interpolater (`MDTv2.forward_side_interpolater`): mask tokens, decoder_pos_embed,
        block, shortcut."""
        # (B, N, D)
        x_before = unshuffle_with_tokens(h, self.mask_token, ids_restore) + self.decoder_pos_embed
        x_side = x_before
        for block in self.sideblocks:
            x_side = block(x_side, c)                   # (B, N, D), full bias
        m = mask.unsqueeze(-1)                          # (B, N, 1)
        return x_side * m + (1 - m) * x_before          # kept tokens bypass the block

    def hand_off(self, h: torch.Tensor, c: torch.Tensor, masked) -> torch.Tensor:
        """Encoder → decoder: side-interpolater in the masked pass, else h + decoder_pos_embed."""
        if masked is None:
            return h + self.decoder_pos_embed
        _, mask, ids_restore, _ = masked
        return self.forward_side_interpolater(h, c, mask, ids_restore)

    def start(self, x, t, y, enable_mask, generator):
        """Embed, then mask when asked and mask_ratio is set;
        returns (h0, h, c, masked, ids_keep)."""
        h0, c = self.embed(x, t, y, generator)
        if not (enable_mask and self.mask_ratio is not None):
            return h0, h0, c, None, None
        masked = self.mask_tokens(h0, generator)
        return h0, masked[0], c, masked, masked[3]


class MDT(_MDTBase):
    """MDT v1 (ICCV 2023; `MDT.forward`, branch `mdtv1`): side-interpolater before the last
    `decode_layer` blocks."""

    family = "MDT"

    def __init__(self, input_size: int = 32, patch_size: int = 2, in_channels: int = 4,
                 hidden_size: int = 1152, depth: int = 28, num_heads: int = 16,
                 mlp_ratio: float = 4.0, class_dropout_prob: float = 0.1,
                 num_classes: int = 1000, learn_sigma: bool = True, mask_ratio: float | None = None,
                 decode_layer: int = 2, mask_ratio_jitter: float = 0.0):
        super().__init__(ModelConfig("MDT", input_size, patch_size, in_channels, hidden_size,
                                     depth, num_heads, mlp_ratio, class_dropout_prob, num_classes,
                                     learn_sigma, mask_ratio, decode_layer, mask_ratio_jitter))

    def _build_body(self, cfg: ModelConfig) -> None:
        """`blocks` [depth] then `sideblocks` [1]."""
        self.blocks = nn.ModuleList([self._block(cfg) for _ in range(cfg.depth)])
        self._build_mdt_parts(cfg)

    def all_blocks(self) -> list[Block]:
        """blocks, then the side block."""
        return [*self.blocks, *self.sideblocks]

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, enable_mask: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """v1: blocks on kept tokens until depth − decode_layer, hand-off, remaining blocks on
        all tokens."""
        _, h, c, masked, ids_keep = self.start(x, t, y, enable_mask, generator)
        hand_off_at = len(self.blocks) - self.decode_layer
        for i, block in enumerate(self.blocks):
            if i == hand_off_at:
                h = self.hand_off(h, c, masked)                               # (B, N, D)
                ids_keep = None
            h = block(h, c, ids_keep=ids_keep)                                # (B, K or N, D)
        return self.head(h, c)


class MDTv2(_MDTBase):
    """MDTv2 (`MDTv2.forward`; arXiv 2303.14389 v2): U-Net encoder (long skips),
    side-interpolater, dense decoder."""

    family = "MDTv2"
    default_jitter = 0.2

    def __init__(self, input_size: int = 32, patch_size: int = 2, in_channels: int = 4,
                 hidden_size: int = 1152, depth: int = 28, num_heads: int = 16,
                 mlp_ratio: float = 4.0, class_dropout_prob: float = 0.1,
                 num_classes: int = 1000, learn_sigma: bool = True, mask_ratio: float | None = None,
                 decode_layer: int = 4, mask_ratio_jitter: float = 0.2):
        super().__init__(ModelConfig("MDTv2", input_size, patch_size, in_channels, hidden_size,
                                     depth, num_heads, mlp_ratio, class_dropout_prob, num_classes,
                                     learn_sigma, mask_ratio, decode_layer, mask_ratio_jitter))

    def _build_body(self, cfg: ModelConfig) -> None:
        """`en_inblocks` [h], `en_outblocks` [h] and `de_blocks` [dl] with skip_linear,
        `sideblocks` [1]."""
        half = (cfg.depth - cfg.decode_layer) // 2
        self.half_depth = half
        self.en_inblocks = nn.ModuleList([self._block(cfg) for _ in range(half)])
        self.en_outblocks = nn.ModuleList([self._block(cfg, skip=True) for _ in range(half)])
        self.de_blocks = nn.ModuleList([self._block(cfg, skip=True)
                                        for _ in range(cfg.decode_layer)])
        self._build_mdt_parts(cfg)

    def all_blocks(self) -> list[Block]:
        """In-, out-, decoder and side blocks in state-dict order."""
        return [*self.en_inblocks, *self.en_outblocks, *self.de_blocks, *self.sideblocks]

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, enable_mask: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """v2: in-blocks push outputs, out-blocks pop them (LIFO), hand-off, decoder fuses h0
        every block."""
        h0, h, c, masked, ids_keep = self.start(x, t, y, enable_mask, generator)
        skips = []
        for block in self.en_inblocks:
            h = block(h, c, ids_keep=ids_keep)                    # (B, K or N, D)
            skips.append(h)
        for block in self.en_outblocks:
            h = block(h, c, skip=skips.pop(), ids_keep=ids_keep)  # long U-Net skip
        h = self.hand_off(h, c, masked)                           # (B, N, D)
        for block in self.de_blocks:
            h = block(h, c, skip=h0)                              # dense input skip, full bias
        return self.head(h, c)


MODEL_CLASSES = {"DiT": DiT, "MDT": MDT, "MDTv2": MDTv2}


def _accepted(family: str) -> set[str]:
    """Config fields a family's constructor takes."""
    names = {f.name for f in fields(ModelConfig)} - {"family"}
    return names - {"mask_ratio", "decode_layer", "mask_ratio_jitter"} if family == "DiT" else names


def from_config(cfg: ModelConfig | dict) -> DiffusionTransformer:
    """Build a model from a ModelConfig (or its asdict form, e.g. from a checkpoint)."""
    spec = dict(asdict(cfg) if isinstance(cfg, ModelConfig) else cfg)
    family = spec.pop("family", None)
    if family not in MODEL_CLASSES:
        raise ValueError(f"unknown model family {family!r}; use one of {', '.join(FAMILIES)}")
    unknown = sorted(k for k, v in spec.items() if k not in _accepted(family) and v is not None)
    if unknown:
        raise ValueError(f"{family} does not take {', '.join(unknown)}; "
                         f"valid settings: {', '.join(sorted(_accepted(family)))}")
    spec = {k: v for k, v in spec.items() if k in _accepted(family) and v is not None}
    return MODEL_CLASSES[family](**spec)


def build_model(name: str, **overrides) -> DiffusionTransformer:
    """Build a preset by name, e.g.
    build_model("MDTv2-S/2", input_size=32, num_classes=10, mask_ratio=None)."""
    if name not in MODEL_PRESETS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODEL_PRESETS)}")
    family = MODEL_PRESETS[name]["family"]
    if overrides.get("family", family) != family:
        raise ValueError(f"{name} is a {family} preset; "
                         f"pick a preset of family {overrides['family']} instead")
    return from_config({**MODEL_PRESETS[name], **overrides})
