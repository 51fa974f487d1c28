"""Official checkpoints: infer the configuration from keys and shapes, build, load strictly.

The layout is that of the state dicts of `masked_diffusion/models.py` (as released in `shgao/MDT-XL2`)
and of DiT's `models.py`.

`load_official("mdt_xl2_v2_ckpt.pt")` works for MDT (v1), MDTv2 and DiT files, plain state_dicts or
training dicts wrapped as {"ema": ...} / {"model": ...}; `load_model` takes those or one of our training
checkpoints. Every file is read with the safe reader (`checkpoint.read_torch_file`). `mdt-teach convert
CKPT [--out FILE]` prints what was inferred and can re-save the plain state_dict.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import asdict
from pathlib import Path

import torch

from .checkpoint import FORMAT, atomic_save, read_torch_file
from .layers import relative_position_index
from .model_config import MODEL_PRESETS, ModelConfig
from .models import DiffusionTransformer, from_config

# DiT checkpoints carry no relative bias, so the head count comes from the DiT presets
# (official S 6, B 12, L 16, XL 16; our tiny 128-wide DiT-T/4 has 4).
DIT_HEADS = {p["hidden_size"]: p["num_heads"] for p in MODEL_PRESETS.values() if p["family"] == "DiT"}
OFFICIAL_MASK_RATIO = 0.3      # every official training script passes --mask_ratio 0.3
OFFICIAL_V1_DECODE_LAYER = 2   # v1 stores no trace of decode_layer; every v1 script uses 2
_PREFIXES = ("module.", "_orig_mod.")


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------

def read_state_dict(path_or_state_dict, map_location="cpu") -> dict[str, torch.Tensor]:
    """A plain state_dict from a path (memory-mapped) or dict: unwraps {"ema"/"model": ...} (EMA first, as DiT
    does), strips DDP prefixes."""
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        obj = read_torch_file(path_or_state_dict, map_location, mmap=True)
    else:
        obj = path_or_state_dict
    if not isinstance(obj, dict):
        raise ValueError(f"expected a state_dict (a dict of tensors), got {type(obj).__name__}")
    for key in ("ema", "model", "state_dict"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    state = {}
    for key, value in obj.items():
        if not torch.is_tensor(value):
            raise ValueError(f"entry {key!r} is a {type(value).__name__}, not a tensor; this is not a model state_dict")
        for prefix in _PREFIXES:
            key = key[len(prefix):] if key.startswith(prefix) else key
        state[key] = value
    return state


# ----------------------------------------------------------------------------------------------
# Inference of the configuration
# ----------------------------------------------------------------------------------------------

def _block_count(state: dict, group: str) -> int:
    """Number of blocks `<group>.<i>.` present (indices must run 0..n−1)."""
    ids = {int(m.group(1)) for k in state if (m := re.match(rf"{group}\.(\d+)\.", k))}
    if ids and ids != set(range(len(ids))):
        raise ValueError(f"block indices of {group} are not contiguous ({sorted(ids)[:8]}...); the file is truncated")
    return len(ids)


def _family(state: dict) -> str:
    """MDTv2 (en_/de_ blocks), MDT (blocks + side block) or DiT (blocks only)."""
    if any(k.startswith(("en_inblocks.", "en_outblocks.", "de_blocks.")) for k in state):
        return "MDTv2"
    if any(k.startswith("blocks.") for k in state):
        return "MDT" if "decoder_pos_embed" in state or any(k.startswith("sideblocks.") for k in state) else "DiT"
    raise ValueError("no DiT / MDT blocks found (keys blocks.*, en_inblocks.* or de_blocks.*); "
                     "this is not a DiT or MDT checkpoint")


def _require(state: dict, key: str) -> torch.Tensor:
    """state[key] or a clear error."""
    if key not in state:
        raise ValueError(f"key {key!r} is missing; this is not a DiT/MDT checkpoint or it is truncated")
    return state[key]


def _heads(state: dict, family: str, first_block: str, hidden: int, grid: int, notes: list[str]) -> int:
    """Heads from the relative bias table (MDT) or from DiT's configs table."""
    if family != "DiT":
        table = _require(state, f"{first_block}.attn.rel_pos_bias.relative_position_bias_table")
        if table.shape[0] != (2 * grid - 1) ** 2 + 3:
            raise ValueError(f"relative bias table has {table.shape[0]} rows but a {grid}×{grid} grid needs "
                             f"{(2 * grid - 1) ** 2 + 3}; the checkpoint does not match its pos_embed")
        notes.append("num_heads read from the relative-position bias table")
        return int(table.shape[1])
    heads = DIT_HEADS.get(hidden, hidden // 64)
    notes.append(f"num_heads = {heads}: DiT checkpoints carry no head count; taken from the DiT presets for "
                 f"hidden size {hidden} (S 6, B 12, L 16, XL 16, T 4; otherwise hidden/64); pass num_heads= to override")
    return heads


def infer_config(state: dict, decode_layer: int | None = None) -> tuple[ModelConfig, list[str]]:
    """ModelConfig of an official state_dict from its keys and shapes, plus notes on what was assumed."""
    notes: list[str] = []
    family = _family(state)
    proj = _require(state, "x_embedder.proj.weight")                     # (D, C, p, p)
    pos = _require(state, "pos_embed")                                   # (1, N, D)
    hidden, in_channels, patch = int(proj.shape[0]), int(proj.shape[1]), int(proj.shape[2])
    grid = math.isqrt(int(pos.shape[1]))
    if grid * grid != pos.shape[1] or pos.shape[-1] != hidden:
        raise ValueError(f"pos_embed {tuple(pos.shape)} does not fit patch embedding {tuple(proj.shape)}")
    out = int(_require(state, "final_layer.linear.weight").shape[0]) // (patch * patch)
    if out not in (in_channels, 2 * in_channels):
        raise ValueError(f"final layer gives {out} channels per pixel for {in_channels} input channels; expected "
                         f"{in_channels} or {2 * in_channels}")
    num_classes = int(_require(state, "y_embedder.embedding_table.weight").shape[0]) - 1
    notes.append("num_classes = table rows − 1 (the last row is the CFG null class)")
    cfg = ModelConfig(family=family, input_size=grid * patch, patch_size=patch, in_channels=in_channels,
                      hidden_size=hidden, num_classes=num_classes, learn_sigma=out == 2 * in_channels)
    groups = {"DiT": ["blocks"], "MDT": ["blocks"], "MDTv2": ["en_inblocks", "en_outblocks", "de_blocks"]}[family]
    counts = {g: _block_count(state, g) for g in groups}
    cfg.depth = sum(counts.values())
    first = next((f"{g}.0" for g in groups if counts[g]), None)
    if first is None:
        raise ValueError("the checkpoint has no transformer blocks; it is truncated")
    cfg.num_heads = _heads(state, family, first, hidden, grid, notes)
    if family != "DiT":
        _mdt_settings(state, cfg, counts, decode_layer, notes)
    return cfg, notes


def _mdt_settings(state: dict, cfg: ModelConfig, counts: dict, decode_layer: int | None, notes: list[str]) -> None:
    """decode_layer (counted for v2, assumed for v1) and mask_ratio (0.3 when the mask token was trained)."""
    if cfg.family == "MDTv2":
        if counts["en_inblocks"] != counts["en_outblocks"]:
            raise ValueError(f"{counts['en_inblocks']} in-blocks but {counts['en_outblocks']} out-blocks; "
                             "the checkpoint is truncated or not MDTv2")
        cfg.decode_layer = counts["de_blocks"]
        notes.append(f"decode_layer = {cfg.decode_layer} (number of de_blocks)")
    else:
        cfg.decode_layer = OFFICIAL_V1_DECODE_LAYER if decode_layer is None else int(decode_layer)
        notes.append(f"decode_layer = {cfg.decode_layer}: v1 checkpoints do not store it "
                     f"({'given' if decode_layer is not None else 'official default'})")
    token = _require(state, "mask_token")
    if token.is_meta:  # a layout without values (a dry run): nothing says whether it masked
        cfg.mask_ratio = None
        notes.append("mask_ratio = None: the mask token has no values (meta tensors)")
        return
    trained = bool(token.abs().sum() > 0)
    cfg.mask_ratio = OFFICIAL_MASK_RATIO if trained else None
    notes.append(f"mask_ratio = {cfg.mask_ratio}: not stored; "
                 f"{'the mask token is non-zero, so the official 0.3' if trained else 'the mask token is zero'}")


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------

def _mismatch(model: torch.nn.Module, state: dict) -> str | None:
    """One sentence naming missing / unexpected keys and shape mismatches, or None when all match."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and state[k].shape != v.shape]
    parts = [f"{len(missing)} missing keys ({', '.join(missing[:3])})" if missing else "",
             f"{len(unexpected)} unexpected keys ({', '.join(unexpected[:3])})" if unexpected else "",
             f"{len(shapes)} shape mismatches ({', '.join(shapes[:2])})" if shapes else ""]
    parts = [p for p in parts if p]
    return "; ".join(parts) if parts else None


def _check_index_buffers(state: dict, grid: int) -> None:
    """Every stored relative_position_index must equal the regenerated BEiT index (BEiT, arXiv 2106.08254)."""
    reference = relative_position_index(grid)
    for key, value in state.items():
        if key.endswith("relative_position_index") and not torch.equal(value.cpu(), reference):
            raise ValueError(f"{key} differs from the BEiT index of a {grid}×{grid} grid; the checkpoint is corrupt")


def load_official(path_or_state_dict, map_location="cpu", decode_layer: int | None = None,
                  **overrides) -> DiffusionTransformer:
    """Infer the config (v1 / v2 / DiT, sizes, heads, classes, learn_sigma, decode_layer), build, load strictly; eval mode.

    `decode_layer` only matters for v1 (not stored there; official 2); `overrides` (e.g. mask_ratio)
    replace inferred settings that do not change the parameter shapes. A dict argument is copied,
    so the model never shares memory with it.
    """
    state = read_state_dict(path_or_state_dict, map_location)
    if not isinstance(path_or_state_dict, (str, os.PathLike)):
        state = {k: v.detach().clone() for k, v in state.items()}
    cfg, _ = infer_config(state, decode_layer)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return build_and_load(cfg, state)


def build_and_load(cfg: ModelConfig | dict, state: dict) -> DiffusionTransformer:
    """Build `cfg` on the meta device and adopt the tensors of `state` (strict, no second copy: the tensors of a
    memory-mapped file stay mapped, so a CPU model reads its weights from the page cache)."""
    with torch.device("meta"):
        model = from_config(cfg)
    problem = _mismatch(model, state)
    if problem:
        raise ValueError(f"the checkpoint does not match the {model.family} layout it describes: {problem}")
    _check_index_buffers(state, model.input_size // model.patch_size)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def load_model(path, use_ema: bool = True, device="cpu", decode_layer: int | None = None):
    """(model in eval mode, one-line description) from one of our ckpt_*.pt (EMA weights unless `use_ema` is
    False) or an official MDT / MDTv2 / DiT checkpoint, read with the safe reader and memory-mapped: only the
    weights used are read from disk, never the raw weights beside the EMA or the optimizer's buffers (Adan's 4
    are 2/3 of a training checkpoint), and on the CPU every rank of a node shares the same pages."""
    obj = read_torch_file(path, mmap=True)
    try:
        if isinstance(obj, dict) and obj.get("format") == FORMAT:
            model = build_and_load(obj["model_config"], obj["ema" if use_ema else "model"])
            info = f"{obj['config']['model']} step {obj['step']} ({'EMA' if use_ema else 'raw'} weights)"
        else:
            state = read_state_dict(obj)
            model = build_and_load(infer_config(state, decode_layer)[0], state)
            info = f"official checkpoint {Path(path).name}"
    except (ValueError, RuntimeError) as err:   # a torch file, but not the weights of a model we know
        raise ValueError(f"{path} cannot be loaded as a model: {err}") from None
    return model.to(device).eval(), info


def recorded_world(path) -> str | None:
    """The smileys world a checkpoint of ours was trained on, by name ("smileys", "smileys-classic", …): from a
    run's config or a lesson file's info; runs from before worlds were recorded trained on smileys-classic.
    None for other data and for official checkpoints."""
    obj = read_torch_file(path, mmap=True)
    if not isinstance(obj, dict):
        return None
    config = obj.get("config") or obj.get("info") or {}
    if config.get("world"):
        return str(config["world"]).split("@")[0]
    return "smileys-classic" if config.get("data") in ("smileys", None) and obj.get("format") == FORMAT else None


def describe(cfg: ModelConfig, notes: list[str]) -> str:
    """Human-readable summary of an inferred config."""
    lines = [f"{k}: {v}" for k, v in asdict(cfg).items() if v is not None]
    return "\n".join(lines + [f"note: {n}" for n in notes])
