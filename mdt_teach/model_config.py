"""A model's configuration: the fields that rebuild it, the checks that refuse one that cannot be
built, and the official presets by name (DiT /2 /4 /8, MDT /2 /4 /8, MDTv2 /2, and the tiny T/4 of
the lessons).

Sources: `masked_diffusion/models.py` of sail-sg/MDT (`MDTv2_S_2` … `MDTv2_XL_2`, `MDT_*` on branch
`mdtv1`) and facebookresearch/DiT's `models.py` (`DiT_models`).
"""
from __future__ import annotations

from dataclasses import dataclass

FAMILIES = ("DiT", "MDT", "MDTv2")


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model; `asdict(cfg)` is what checkpoints store."""

    family: str = "MDTv2"
    input_size: int = 32
    patch_size: int = 2
    in_channels: int = 4
    hidden_size: int = 1152
    depth: int = 28
    num_heads: int = 16
    mlp_ratio: float = 4.0
    class_dropout_prob: float = 0.1
    num_classes: int = 1000
    learn_sigma: bool = True
    mask_ratio: float | None = None       # MDT only; None = never masks
    decode_layer: int | None = None       # MDT only; v1: blocks after the side-interpolater,
                                          # v2: decoder depth
    mask_ratio_jitter: float | None = None  # MDT only; ratio ~ U[r, r + jitter) per forward


def validate(cfg: ModelConfig) -> None:
    """Raise a one-sentence ValueError for a configuration that cannot be built as asked."""
    if cfg.family not in FAMILIES:
        raise ValueError(f"unknown model family {cfg.family!r}; use one of {', '.join(FAMILIES)}")
    if cfg.input_size % cfg.patch_size:
        raise ValueError(f"image size {cfg.input_size} is not divisible by patch size "
                         f"{cfg.patch_size}; use "
                         f"{cfg.input_size - cfg.input_size % cfg.patch_size or cfg.patch_size} "
                         "or a patch size that divides it")
    if cfg.hidden_size % cfg.num_heads or cfg.hidden_size % 4:
        raise ValueError(f"hidden size {cfg.hidden_size} must be divisible by 4 and by the "
                         f"{cfg.num_heads} heads")
    if min(cfg.depth, cfg.in_channels, cfg.num_classes) < 1:
        raise ValueError("depth, in_channels and num_classes must each be at least 1")
    if cfg.family == "DiT":
        return
    _validate_mdt(cfg)


def _validate_mdt(cfg: ModelConfig) -> None:
    """MDT-only checks: mask ratio range and the decoder depth arithmetic
    (official `MDTv2.__init__`)."""
    dl = cfg.decode_layer
    if dl is None or int(dl) != dl:
        raise ValueError(f"{cfg.family} needs an integer decode_layer "
                         "(official: MDT 2, MDTv2 4 or 6 for S/2)")
    r, jitter = cfg.mask_ratio, cfg.mask_ratio_jitter or 0.0
    if r is not None and not (0 <= r < 1 and 0 <= jitter and r + jitter <= 1):
        raise ValueError(f"mask_ratio {r:g} with jitter {jitter:g} must satisfy "
                         "0 <= ratio < 1 and ratio + jitter <= 1")
    if cfg.family == "MDT" and not 1 <= dl <= cfg.depth:
        raise ValueError(f"MDT decode_layer {dl} must lie in 1..depth={cfg.depth} "
                         "(blocks after the side-interpolater)")
    if cfg.family == "MDTv2" and not 0 <= dl <= cfg.depth:
        raise ValueError(f"MDTv2 decode_layer {dl} must lie in 0..depth={cfg.depth}")
    if cfg.family == "MDTv2" and (cfg.depth - dl) % 2:
        options = " or ".join(str(d) for d in (dl - 1, dl + 1) if 0 <= d <= cfg.depth)
        raise ValueError(f"depth − decode_layer = {cfg.depth} − {dl} is odd, so the official "
                         "code would silently drop one encoder block; "
                         f"pick decode_layer {options}")


# ----------------------------------------------------------------------------------------------
# Presets
# ----------------------------------------------------------------------------------------------

_SIZES = {"S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16)}
_TINY = dict(depth=6, hidden_size=128, num_heads=4, patch_size=4, input_size=32, in_channels=3,
             num_classes=4, learn_sigma=True)


def _presets() -> dict[str, dict]:
    """Official names (DiT /2 /4 /8, MDT /2 /4 /8, MDTv2 /2) with official decode_layer and
    mask_ratio 0.3."""
    presets = {}
    for size, (depth, hidden, heads) in _SIZES.items():
        base = dict(depth=depth, hidden_size=hidden, num_heads=heads)
        for p in (2, 4, 8):
            presets[f"DiT-{size}/{p}"] = dict(family="DiT", patch_size=p, **base)
            presets[f"MDT-{size}/{p}"] = dict(family="MDT", patch_size=p, decode_layer=2,
                                              mask_ratio=0.3, **base)
        presets[f"MDTv2-{size}/2"] = dict(family="MDTv2", patch_size=2,
                                          decode_layer=6 if size == "S" else 4,
                                          mask_ratio=0.3, **base)
    presets["DiT-T/4"] = dict(family="DiT", **_TINY)
    presets["MDT-T/4"] = dict(family="MDT", decode_layer=2, mask_ratio=0.3, **_TINY)
    presets["MDTv2-T/4"] = dict(family="MDTv2", decode_layer=2, mask_ratio=0.3, **_TINY)
    return presets


MODEL_PRESETS: dict[str, dict] = _presets()
